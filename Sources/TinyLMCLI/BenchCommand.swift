import ArgumentParser
import Foundation
import Kernels
import Transformer

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure TinyLM's speed beside its peers on this machine.",
        subcommands: [BenchKernels.self, BenchTrain.self, BenchDecode.self, BenchLoRA.self, BenchQuality.self]
    )
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "SGEMM GFLOP/s (square and training shapes, 1 and all threads) and pool dispatch cost, beside numpy/OpenBLAS."
    )

    @Option(help: "Seconds of repetitions per measurement (the best run counts).")
    var seconds: Double = 0.3

    @Option(help: "Alternating rounds of TinyLM and the peer per shape.")
    var rounds: Int = 3

    @Option(help: "Only shapes whose name contains this text.")
    var filter: String?

    @Option(help: "The peer script (numpy matmul); measured in the same run.")
    var peerScript: String = "Benchmarks/peer_gemm.py"

    @Option(help: "Python interpreter with numpy for the peer.")
    var python: String = "python3"

    @Flag(help: "Skip the numpy peer.")
    var noPeer = false

    @Option(help: "TinyLM's product: fp32 (sgemm) or bf16 (operands rounded to bfloat16, fp32 sums; AMX tiles where the CPU has them). The peer stays fp32.")
    var precision: MatmulPrecision = .fp32

    func validate() throws {
        try OptionDomain.number(seconds, "seconds", 0...600, openLower: true)
        try OptionDomain.count(rounds, "rounds", max: 1000)
    }

    func run() throws {
        let shapes = KernelBenchmark.standardShapes.filter { shape in
            filter.map { shape.name.contains($0) } ?? true
        }
        guard rounds > 0, seconds > 0 else {
            throw ValidationError("--rounds and --seconds must be positive")
        }
        let attention = filter.map { "attention head".contains($0) } ?? true
        let steps = precision == .fp32 && (filter.map { "step".contains($0) } ?? true)
        guard !shapes.isEmpty || attention || steps else {
            throw ValidationError("no benchmark shape matches --filter '\(filter ?? "")'")
        }
        let all = ThreadPool.shared.threadCount
        let threadCounts = all > 1 ? [1, all] : [1]
        print("tinylm bench kernels: \(all) threads available; best of ≥\(seconds)s per figure")
        if precision == .bf16 {
            print("TinyLM precision: bf16 \(amxAvailable ? "on AMX tiles" : "emulated (this CPU has no usable AMX-BF16)"); the peer is fp32")
        }
        for threads in threadCounts where !shapes.isEmpty || (steps && threads == all) {
            let pool = threads == all ? ThreadPool.shared : ThreadPool(threadCount: threads)
            if threads > 1 {
                let micro = KernelBenchmark.dispatchMicroseconds(pool: pool)
                print(String(format: "pool dispatch (%d threads, empty parallelFor): %.2f µs", threads, micro))
            }
            var peer: PeerProcess?
            var peerNote = "skipped (--no-peer)"
            if !noPeer {
                do {
                    let limit = String(threads)
                    peer = try PeerProcess(python: python, script: peerScript, environment: [
                        "OPENBLAS_NUM_THREADS": limit, "OMP_NUM_THREADS": limit, "MKL_NUM_THREADS": limit,
                    ])
                    peerNote = "numpy/OpenBLAS, measured in alternation"
                } catch {
                    peerNote = "unavailable: \(error)"
                }
            }
            print("\n\(threads) thread\(threads == 1 ? "" : "s")   peer: \(peerNote)")
            print(pad("shape", 18) + pad("m×n×k", 18) + pad("TinyLM GF/s", 13) + pad("peer GF/s", 11) + "ratio")
            for shape in shapes {
                // Alternate rounds of ours and theirs; the best of each counts.
                var ours = 0.0, theirs: Double?
                for _ in 0..<rounds {
                    ours = max(ours, KernelBenchmark.gflops(shape, pool: pool, seconds: seconds, precision: precision))
                    if let peer {
                        let answer = try? peer.request(PeerRequest(shape, seconds: seconds), as: PeerAnswer.self)
                        if let value = answer?.gflops { theirs = max(theirs ?? 0, value) }
                    }
                }
                let ratio = theirs.map { String(format: "%.2f×", ours / $0) } ?? "–"
                print(pad(shape.name, 18) + pad("\(shape.m)×\(shape.n)×\(shape.k)", 18)
                      + pad(String(format: "%.1f", ours), 13)
                      + pad(theirs.map { String(format: "%.1f", $0) } ?? "–", 11) + ratio)
            }
            if threads == all && steps {
                try printSteps(pool: pool, peer: peer)
            }
        }
        if attention { printAttention() }
        if attention { printDecodeAttention() }
    }

    /// Every linear-layer product of one training step of `tiny` and `small` (the peer
    /// benchmark's batches), run back to back on operands of their own, so that each starts from
    /// memory as in a real step: the time the step's products need, beside the peer's.
    private func printSteps(pool: ThreadPool, peer: PeerProcess?) throws {
        print("\none step's linear products back to back, cold operands (best of 10 runs, alternating)")
        print(pad("config", 18) + pad("GFLOP", 18) + pad("TinyLM ms", 13) + pad("peer ms", 11) + "ratio")
        for (name, batch) in [("tiny", 16), ("small", 8)] {
            let config = ModelConfig.presets[name]!
            let shapes = config.trainingStepProducts(tokens: batch * config.contextLength)
            let flops = shapes.reduce(0) { $0 + $1.flops }
            var ours = Double.infinity, theirs: Double?
            for _ in 0..<rounds {
                ours = min(ours, KernelBenchmark.sequenceSeconds(shapes, pool: pool).best)
                if let peer, let answer = try? peer.request(SequenceRequest(shapes: shapes, repeats: 10), as: SequenceAnswer.self) {
                    theirs = min(theirs ?? .infinity, answer.best)
                }
            }
            let ratio = theirs.map { String(format: "%.2f×", $0 / ours) } ?? "–"
            print(pad(name, 18) + pad(String(format: "%.2f", flops / 1e9), 18) + pad(String(format: "%.1f", ours * 1e3), 13)
                  + pad(theirs.map { String(format: "%.1f", $0 * 1e3) } ?? "–", 11) + ratio)
        }
    }

    /// One causal attention head as a training step runs it (one pool task, so one thread), in
    /// the tiled form training uses and the blocked-GEMM form decoding uses. FLOPs count the
    /// causal half: forward 2·T²·hd, backward 4·T²·hd.
    private func printAttention() {
        print("\nattention head, 1 thread (tiny: T 128, hd 32; small: T 256, hd 64; SmolLM2's 512-token prefill: T 512, hd 64)")
        print(pad("form", 18) + pad("T×hd", 10) + pad("forward µs", 12) + pad("GF/s", 8) + pad("backward µs", 13) + pad("GF/s", 8) + "softmax µs")
        for (t, hd, stride) in [(128, 32, 384), (256, 64, 1152), (512, 64, 960)] {
            for tiled in [true, false] {
                let r = AttentionBenchmark.run(length: t, headDim: hd, stride: stride, tiled: tiled)
                let flops = Double(t * t * hd)
                print(pad(tiled ? "tiled (training)" : "blocked GEMM", 18) + pad("\(t)×\(hd)", 10)
                      + pad(String(format: "%.1f", r.forwardSeconds * 1e6), 12) + pad(String(format: "%.0f", 2 * flops / r.forwardSeconds / 1e9), 8)
                      + pad(String(format: "%.1f", r.backwardSeconds * 1e6), 13) + pad(String(format: "%.0f", 4 * flops / r.backwardSeconds / 1e9), 8)
                      + String(format: "%.1f", r.softmaxSeconds * 1e6))
            }
        }
    }

    /// One decoded token's attention in SmolLM2's shape (9 query heads, 3 key/value heads of 64)
    /// over an fp32, a half and an 8-bit cache: one layer's cache again and again, and 30 layers'
    /// caches in turn.
    private func printDecodeAttention() {
        print("\ndecode attention, 9 query / 3 key-value heads of 64, 1 thread and all")
        print(pad("cache", 7) + pad("positions", 11) + pad("threads", 9) + pad("one layer µs", 14) + pad("GF/s", 8) + pad("GB/s", 8)
              + pad("30 layers µs", 14) + pad("GF/s", 8) + "GB/s")
        for cache in [KVCacheBits.fp32, .fp16, .int8] {
            for positions in [256, 1024] {
                for pool in [ThreadPool(threadCount: 1), ThreadPool.shared] {
                    let r = DecodeAttentionBenchmark.run(positions: positions, heads: 9, kvHeads: 3, headDim: 64, layers: 30,
                                                         cache: cache, pool: pool)
                    let name = switch cache {
                    case .fp32: "fp32"
                    case .fp16: "fp16"
                    case .int8: "8-bit"
                    }
                    print(pad(name, 7) + pad("\(positions)", 11) + pad("\(pool.threadCount)", 9)
                          + pad(String(format: "%.1f", r.cachedSeconds * 1e6), 14) + pad(String(format: "%.1f", r.flops / r.cachedSeconds / 1e9), 8)
                          + pad(String(format: "%.1f", r.bytes / r.cachedSeconds / 1e9), 8)
                          + pad(String(format: "%.1f", r.streamedSeconds * 1e6), 14) + pad(String(format: "%.1f", r.flops / r.streamedSeconds / 1e9), 8)
                          + String(format: "%.1f", r.bytes / r.streamedSeconds / 1e9))
                }
            }
        }
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}

private struct PeerRequest: Encodable {
    var name: String, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, seconds: Double

    init(_ shape: KernelBenchmark.Shape, seconds: Double) {
        name = shape.name
        transA = shape.transA
        transB = shape.transB
        m = shape.m
        n = shape.n
        k = shape.k
        self.seconds = seconds
    }
}

private struct SequenceRequest: Encodable {
    var shapes: [KernelBenchmark.Shape], repeats: Int
}

private struct SequenceAnswer: Decodable {
    var best: Double, median: Double
}

private struct PeerAnswer: Decodable {
    var gflops: Double
}
