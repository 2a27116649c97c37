import ArgumentParser
import Foundation
import GGUF
import Kernels
import Training
import Transformer

/// `tinylm bench decode`: prefill and decode tokens/s of a model beside llama.cpp's `llama-bench`
/// on the same file, in alternating rounds.
struct BenchDecode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Prefill and decode tokens/s (greedy and sampled) beside llama.cpp on the same GGUF, in alternating rounds.")

    @Option(help: "A GGUF file or a checkpoint directory.") var model: String
    @Option(help: "A LoRA adapter directory, applied as the chat applies it (the peer runs the base alone).") var adapter: String?
    @Option(help: "Prompt tokens (one prefill call).") var promptTokens = 512
    @Option(help: "Tokens decoded after the prompt.") var genTokens = 128
    @Option(help: "Rounds of TinyLM then the peer.") var rounds = 3
    @Option(help: "llama.cpp (llama-bench on the same file) or none.") var peer = "llama.cpp"
    @Option(help: "The llama-bench binary (../shared/peers/build_llamacpp_noamx.sh builds it for an AVX-512 CPU; elsewhere build llama.cpp with -DGGML_NATIVE=ON).")
    var llamaBench = NSHomeDirectory() + "/.cache/tinylm-peers-build/llama-noamx/bin/llama-bench"
    @Option(help: "packed (blocks copied out, 16 rows interleaved: what generate and chat use), quantized (blocks read in the mapped file) or fp32 (dequantized).")
    var weights: String = "packed"
    @Option(help: "Key/value cache: 32 (fp32; llama.cpp runs its default f16, as it has no fp32 cache), 16 (halves; llama.cpp f16) or 8 (blocks of 32 bytes and a scale; llama.cpp q8_0).")
    var kvBits = 32

    @Flag(help: "After the rounds, one more greedy run with the profiler on: where the prompt's time goes, then a decoded token's, with the rate at which each decoding phase reads its weights or the cache.")
    var profile = false
    @Flag(inversion: .prefixedNo, help: "After each round's decoding, the machine's read bandwidth (256 MiB summed on every thread): the share of it that greedy decoding reads in weights.")
    var bandwidth = true

    func validate() throws {
        try OptionDomain.count(promptTokens, "prompt-tokens", max: 1 << 20)
        try OptionDomain.count(genTokens, "gen-tokens", max: 1 << 20)
        try OptionDomain.count(rounds, "rounds", max: 1000)
        guard ["llama.cpp", "none"].contains(peer) else { throw ValidationError("--peer must be llama.cpp or none") }
        guard GGUFModel.WeightStorage(rawValue: weights) != nil else { throw ValidationError("--weights must be packed, quantized or fp32") }
        guard KVCacheBits(rawValue: kvBits) != nil else { throw ValidationError("--kv-bits must be \(KVCacheBits.choices)") }
    }

    func run() throws {
        var loaded = try LoadedModel.load(model, storage: GGUFModel.WeightStorage(rawValue: weights)!)
        if let adapter { loaded.model = try PEFTAdapter.load(adapter, onto: loaded.model) }
        let m = loaded.model, threads = ThreadPool.shared.threadCount, cache = KVCacheBits(rawValue: kvBits)!
        guard promptTokens + genTokens <= m.config.contextLength else {
            throw ValidationError("\(promptTokens) + \(genTokens) tokens exceed the model's context of \(m.config.contextLength)")
        }
        let usePeer = peer == "llama.cpp" && LoadedModel.isGGUF(model)
        if peer == "llama.cpp" && !usePeer { print("note: the peer reads GGUF files only; running TinyLM alone") }
        if usePeer && !FileManager.default.isExecutableFile(atPath: llamaBench) {
            throw ValidationError("no llama-bench at \(llamaBench); run ../shared/peers/build_llamacpp_noamx.sh or pass --peer none")
        }
        print("tinylm bench decode: \(model), \(promptTokens)-token prompt, \(genTokens) decoded, \(threads) threads, weights \(weights) (\(weights == "packed" ? "blocks interleaved 16 rows at a time" : m.layout.isQuantized ? "blocks in the mapped file" : "fp32")), key/value cache \(cache == .int8 ? "8-bit (llama.cpp: q8_0)" : cache == .fp16 ? "fp16 (llama.cpp: f16, its default)" : "fp32 (llama.cpp: its default f16; llama-bench has no fp32 cache)")\(adapter.map { ", adapter \($0) (TinyLM only)" } ?? "")")
        if usePeer { print("llama.cpp decodes after \(promptTokens) tokens in its cache too (llama-bench -d \(promptTokens))") }
        var sampler = Sampler(seed: 1)
        sampler.temperature = 0.8
        sampler.topP = 0.95
        sampler.minP = 0.05
        sampler.repetitionPenalty = 1.1
        // One untimed pass: page in the weights and size the buffers.
        _ = try DecodeBenchmark.run(model: m, promptTokens: min(64, promptTokens), genTokens: min(8, genTokens), sampler: nil,
                                    kvBits: cache)
        var ours: [(prefill: Double, greedy: Double, sampled: Double)] = []
        var theirs: [(prefill: Double, decode: Double)] = []
        // Decoding's own peak, taken before the bandwidth probe's buffer exists.
        var decodePeak = 0, probe: ReadBandwidth?, readGBps: [Double] = []
        let weightBytes = m.layout.linears.reduce(0) { $0 + $1.weightByteCount }
        for round in 1...rounds {
            // The two runs swap places every round, so neither always follows the peer or the probe.
            func run(_ sampler: Sampler?) throws -> DecodeBenchmark.Measurement {
                try DecodeBenchmark.run(model: m, promptTokens: promptTokens, genTokens: genTokens, sampler: sampler, kvBits: cache)
            }
            let sampledFirst = round % 2 == 0
            let first = try run(sampledFirst ? sampler : nil), second = try run(sampledFirst ? nil : sampler)
            let (greedy, sampled) = sampledFirst ? (second, first) : (first, second)
            ours.append((greedy.prefillTokensPerSecond, greedy.decodeTokensPerSecond, sampled.decodeTokensPerSecond))
            var line = String(format: "round %d  tinylm: prefill %7.1f tok/s  decode %6.1f tok/s greedy, %6.1f sampled",
                              round, greedy.prefillTokensPerSecond, greedy.decodeTokensPerSecond, sampled.decodeTokensPerSecond)
            if bandwidth {
                if probe == nil {
                    decodePeak = peakResidentBytes()
                    probe = ReadBandwidth()
                }
                readGBps.append(probe!.gigabytesPerSecond(pool: ThreadPool.shared))
                line += String(format: "  read %5.1f GB/s", readGBps.last!)
            }
            if usePeer {
                let peer = try runLlamaBench(threads: threads)
                theirs.append(peer)
                line += String(format: "   llama.cpp: prefill %7.1f  decode %6.1f", peer.prefill, peer.decode)
            }
            print(line)
        }
        func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
        let prefill = median(ours.map(\.prefill)), greedy = median(ours.map(\.greedy)), sampled = median(ours.map(\.sampled))
        // Per-round ratios, then their median: each round's two runs ran back to back.
        let sampledRatio = median(ours.map { $0.sampled / $0.greedy })
        print(String(format: "median  tinylm: prefill %.1f tok/s, decode %.1f tok/s greedy, %.1f sampled (sampled/greedy %.3f, median of rounds)",
                     prefill, greedy, sampled, sampledRatio))
        if usePeer {
            // Per-round ratios, then their median: each pair ran back to back.
            let prefillRatio = median(zip(ours, theirs).map { $0.prefill / $1.prefill })
            let decodeRatio = median(zip(ours, theirs).map { $0.greedy / $1.decode })
            print(String(format: "median  llama.cpp: prefill %.1f tok/s, decode %.1f tok/s", median(theirs.map(\.prefill)), median(theirs.map(\.decode))))
            print(String(format: "ratio (median of rounds): prefill %.2fx, decode %.2fx llama.cpp", prefillRatio, decodeRatio))
        }
        if bandwidth {
            // Per-round shares, then their median: each decode ran next to its bandwidth pass.
            let share = median(zip(ours, readGBps).map { Double(weightBytes) * $0.greedy / 1e9 / $1 })
            print(String(format: "read bandwidth (%d threads, %.0f MiB, median of rounds): %.1f GB/s; greedy decoding reads its weights at %.1f GB/s, %.0f%% of it (median of rounds)",
                         threads, Double(probe!.bytes) / 1048576, median(readGBps), Double(weightBytes) * greedy / 1e9, 100 * share))
        }
        if profile { try printDecodeProfile(m, cache: cache, sampler: sampler) }
        print(String(format: "weights read per decoded token: %.1f MB; resident memory peak %.1f MB", Double(weightBytes) / 1e6,
                     Double(bandwidth ? decodePeak : peakResidentBytes()) / 1e6) + (bandwidth ? " (before the bandwidth probe's buffer)" : ""))
    }

    /// One greedy run with the profiler on: first the prompt's phases (its one call through the
    /// layers), then each phase's time per decoded token (pool waits included in the phase that
    /// waits), and for the phases that stream memory (the products' weights, attention's cache)
    /// their bytes a token and read rate. Then one sampled run, of which only the choice of the
    /// token is printed: what sampling adds to a token, measured directly rather than as the
    /// difference of two noisy rates.
    private func printDecodeProfile(_ m: TransformerModel, cache: KVCacheBits, sampler: Sampler) throws {
        typealias Phases = [(phase: String, seconds: Double, calls: Int)]
        func profiled(_ sampler: Sampler?) throws -> (DecodeBenchmark.Measurement, prefill: Phases, decode: Phases) {
            var prefill: Phases = []
            Profiler.reset()
            Profiler.isEnabled = true
            defer { Profiler.isEnabled = false }
            let run = try DecodeBenchmark.run(model: m, promptTokens: promptTokens, genTokens: genTokens, sampler: sampler,
                                              kvBits: cache, afterPrefill: { prefill = Profiler.report(); Profiler.reset() })
            return (run, prefill, Profiler.report())
        }
        let (run, prefill, phases) = try profiled(nil)
        let prefillSeconds = Double(promptTokens) / run.prefillTokensPerSecond
        print(String(format: "\nProfile of the %d-token prefill (%.1f tokens/s, %.3f ms):", promptTokens, run.prefillTokensPerSecond,
                     1000 * prefillSeconds))
        printPhases(prefill, over: 1, of: prefillSeconds, unit: "prompt")
        print(String(format: "\nProfile of %d decoded tokens (%.1f tokens/s, %.3f ms a token):", genTokens,
                     run.decodeTokensPerSecond, 1000 / run.decodeTokensPerSecond))
        let read = DecodeBenchmark.bytesReadPerToken(model: m, promptTokens: promptTokens, genTokens: genTokens, kvBits: cache)
        printPhases(phases, over: genTokens, of: Double(genTokens) / run.decodeTokensPerSecond, unit: "token", bytes: read)
        let (sampledRun, _, sampledPhases) = try profiled(sampler)
        let choice = sampledPhases.first { $0.phase == "sampling" }?.seconds ?? 0
        print(String(format: "sampled (temperature %g, top-p %g, min-p %g, repetition penalty %g): %.3f ms a token choosing it, %.1f%% of its %.3f ms",
                     Double(sampler.temperature), Double(sampler.topP), Double(sampler.minP), Double(sampler.repetitionPenalty),
                     1000 * choice / Double(genTokens), 100 * choice * sampledRun.decodeTokensPerSecond / Double(genTokens),
                     1000 / sampledRun.decodeTokensPerSecond))
    }

    /// `llama-bench` on the same file and threads, one repetition each: prefill of the prompt, and
    /// decoding after the prompt (`-d`: the tokens are in its cache first, as in TinyLM's run;
    /// its plain `-n` test decodes from an empty cache, which is faster by a fifth at 512).
    private func runLlamaBench(threads: Int) throws -> (prefill: Double, decode: Double) {
        let prefill = try llamaBenchRun(["-p", "\(promptTokens)", "-n", "0"], threads: threads)
        let decode = try llamaBenchRun(["-p", "0", "-n", "\(genTokens)", "-d", "\(promptTokens)"], threads: threads)
        return (prefill, decode)
    }

    /// One `llama-bench` test's tokens/s.
    private func llamaBenchRun(_ test: [String], threads: Int) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: llamaBench)
        let cache = kvBits == 8 ? ["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "1"] : []
        process.arguments = ["-m", model] + test + cache + ["-t", "\(threads)", "-r", "1", "-o", "json"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let rows = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw ValidationError("llama-bench failed on \(model) (exit \(process.terminationStatus))")
        }
        guard let ts = rows.first?["avg_ts"] as? Double else { throw ValidationError("llama-bench printed no result for \(model)") }
        return ts
    }
}

/// The process's peak resident memory (bytes).
func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int(usage.ru_maxrss) * 1024
}
