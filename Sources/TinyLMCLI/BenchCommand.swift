import ArgumentParser
import Foundation
import Kernels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure TinyLM's speed beside its peers on this machine.",
        subcommands: [BenchKernels.self, BenchTrain.self]
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

    func run() throws {
        let shapes = KernelBenchmark.standardShapes.filter { shape in
            filter.map { shape.name.contains($0) } ?? true
        }
        guard rounds > 0, seconds > 0 else {
            throw ValidationError("--rounds and --seconds must be positive")
        }
        guard !shapes.isEmpty else {
            throw ValidationError("no benchmark shape matches --filter '\(filter ?? "")'")
        }
        let all = ThreadPool.shared.threadCount
        let threadCounts = all > 1 ? [1, all] : [1]
        print("tinylm bench kernels: \(all) threads available; best of ≥\(seconds)s per figure")
        for threads in threadCounts {
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
                    ours = max(ours, KernelBenchmark.gflops(shape, pool: pool, seconds: seconds))
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

private struct PeerAnswer: Decodable {
    var gflops: Double
}
