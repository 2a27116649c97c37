import ArgumentParser
import Foundation
import Kernels
import Training
import Transformer

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training tokens/s for full steps (forward, backward, AdamW) and MFU, beside PyTorch eager.")

    @Option(help: "tiny, small, base, small-moe, small-dense (the mixture-of-experts peer's shapes) or a config JSON file.") var config = "small"
    @Option(help: "Sequences per step (default: the peer's, 16 for tiny, 8 otherwise).") var batch: Int?
    @Option(help: "Timed steps per round (default: the peer's, 30 for tiny, 15 otherwise).") var steps: Int?
    @Option(help: "Untimed steps first.") var warmup = 3
    @Option(help: "Rounds of TinyLM then PyTorch, measured in alternation.") var rounds = 3

    func validate() throws {
        try OptionDomain.count(batch, "batch", max: 1 << 16)
        try OptionDomain.count(steps, "steps", max: 1 << 20)
        try OptionDomain.count(warmup, "warmup", min: 0, max: 1 << 20)
        try OptionDomain.count(rounds, "rounds", max: 1000)
    }
    @Option(help: "Python with PyTorch for the peer (../shared/peers/setup.sh makes it).")
    var peerPython = (ProcessInfo.processInfo.environment["PEERS_VENV"] ?? NSHomeDirectory() + "/.cache/tinylm-peers-venv") + "/bin/python"
    @Option(help: "The folder with the peer's torch_train_bench.py.") var peerDirectory = "../shared/peers"
    @Option(help: "The line server that keeps the peer alive between rounds.") var peerServer = "Benchmarks/peer_train.py"
    @Flag(help: "Skip the PyTorch peer.") var noPeer = false
    @Option(help: "fp32, or bf16: mixed precision (bf16 products with fp32 sums) against PyTorch's bf16 autocast.")
    var precision: MatmulPrecision = .fp32
    @Flag(help: "Time each phase of a step (layers, loss, optimizer) over extra steps and print the breakdown.")
    var profile = false

    func run() throws {
        let modelConfig = try ModelConfig.load(config)
        let batchSize = batch ?? (config == "tiny" ? 16 : 8)
        let steps = self.steps ?? (config == "tiny" ? 30 : 15)
        let t = modelConfig.contextLength
        let model = try TransformerModel(config: modelConfig, seed: 0)
        var options = TrainingOptions()
        let totalSteps = rounds * (steps + warmup) + (profile ? steps : 0)
        options.steps = totalSteps
        options.batch = batchSize
        options.sequenceLength = t
        options.schedule = LearningRateSchedule(maxLR: 3e-4, minLR: 3e-4, warmup: 0, total: totalSteps)
        options.clip = 0
        options.spikeFactor = 0
        options.evalEvery = 0
        options.precision = precision
        var rng = SplitMix64(seed: 1)
        let tokens = (0..<(batchSize * t * 4 + 1)).map { _ in Int32(rng.next() % UInt64(modelConfig.vocabularySize)) }
        let trainer = try Trainer(model: model, options: options, train: tokens, validation: nil)
        // FLOPs per token as the peer counts them (nanoGPT's estimate).
        let flopsPerToken = modelConfig.trainingFlopsPerToken(length: t)
        let threads = ThreadPool.shared.threadCount

        print("tinylm bench train: config \(config) (\(model.parameterCount) parameters), batch \(batchSize) x \(t) tokens, \(threads) threads, \(precision.rawValue) products")
        if precision == .bf16 && !amxAvailable { print("note: no usable AMX-BF16 on this CPU; bf16 products are emulated") }
        // The sgemm peak for MFU: best of a measurement before and one after the rounds, since a
        // single one on a shared machine may catch a slow moment.
        let peakShape = KernelBenchmark.Shape("peak", m: 2048, n: 2048, k: 2048)
        var peak = KernelBenchmark.gflops(peakShape, pool: .shared, seconds: 0.5, precision: precision)
        let (peer, peerNote) = startPeer()
        print("peer: \(peerNote)")
        print("Each round: TinyLM, then PyTorch; both wait for a quiet machine and take the median step over")
        print("clean steps (other processes < 0.1 cores), as ../shared/peers/cpuguard.py does.")

        var ours: [Double] = [], theirs: [Double] = [], ratios: [Double] = []
        for round in 1...rounds {
            let (median, clean) = try CPUMeter.measureRound(warmup: warmup, steps: steps) { _ = try trainer.step() }
            let tokensPerSecond = Double(batchSize * t) / median
            ours.append(tokensPerSecond)
            var line = String(format: "round %d  TinyLM %7.1f ms/step %8.0f tokens/s (clean %d/%d)", round, median * 1000, tokensPerSecond, clean, steps)
            if let peer {
                let answer = try peer.request(PeerRequest(config: config, steps: steps, warmup: warmup, threads: threads, amp: precision == .bf16), as: PeerAnswer.self)
                theirs.append(answer.tokens_per_s)
                ratios.append(tokensPerSecond / answer.tokens_per_s)
                line += String(format: "   PyTorch %7.1f ms/step %8.0f tokens/s (clean %d/%d)   ratio %.2f×",
                               answer.step_s_median * 1000, answer.tokens_per_s, answer.clean_steps, answer.steps, ratios.last!)
            }
            print(line)
        }
        let best = ours.max()!
        let gflops = flopsPerToken * best / 1e9
        peak = max(peak, KernelBenchmark.gflops(peakShape, pool: .shared, seconds: 0.5, precision: precision))
        print(String(format: "TinyLM   best round %8.0f tokens/s  %6.1f GFLOP/s  MFU %.0f%% of the %.0f GFLOP/s %@ peak (2048³, best of two)",
                     best, gflops, 100 * gflops / peak, peak, precision == .fp32 ? "sgemm" : "bf16 GEMM"))
        if !ratios.isEmpty {
            print(String(format: "PyTorch  %@ best round %8.0f tokens/s", peerLabel, theirs.max()!))
            print(String(format: "ratio    median over rounds %.2f×   (rounds: %@)", median(ratios),
                         ratios.map { String(format: "%.2f×", $0) }.joined(separator: " ")))
        }
        if profile { try printTrainingProfile(trainer, steps: steps) }
    }

    /// What the peer runs: the same precision as TinyLM, except that the mixture-of-experts
    /// script has only fp32 (its bf16 rounds are then TinyLM bf16 against PyTorch fp32, said so).
    private var peerLabel: String {
        if precision == .bf16 && ["small-moe", "small-dense"].contains(config) { return "eager fp32 (hf_moe_train_bench.py has no bf16 mode)" }
        return precision == .fp32 ? "eager fp32" : "eager bf16 autocast (--amp)"
    }

    private struct PeerRequest: Encodable {
        var config: String, steps: Int, warmup: Int, threads: Int, amp: Bool
    }

    private struct PeerAnswer: Decodable {
        var tokens_per_s: Double, step_s_median: Double, clean_steps: Int, steps: Int
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// Starts the peer's line server for this config, or says why it cannot run.
    private func startPeer() -> (PeerProcess?, String) {
        if noPeer { return (nil, "skipped (--no-peer)") }
        let mixtureConfigs = ["small-moe", "small-dense"]
        guard ["tiny", "small"].contains(config) || mixtureConfigs.contains(config) else {
            return (nil, "the peers' scripts only have the tiny, small, small-moe and small-dense configs")
        }
        guard FileManager.default.isExecutableFile(atPath: peerPython) else {
            return (nil, "unavailable: \(peerPython) not found (bash ../shared/peers/setup.sh makes it)")
        }
        let script = peerDirectory + (mixtureConfigs.contains(config) ? "/hf_moe_train_bench.py" : "/torch_train_bench.py")
        guard FileManager.default.fileExists(atPath: script) else { return (nil, "unavailable: \(script) not found") }
        do {
            let limit = String(ThreadPool.shared.threadCount)
            let peer = try PeerProcess(python: peerPython, script: peerServer, arguments: [peerDirectory], environment: [
                "OMP_NUM_THREADS": limit, "MKL_NUM_THREADS": limit,
            ])
            let what = config == "small-moe" ? "transformers MixtralForCausalLM" : config == "small-dense" ? "transformers LlamaForCausalLM" : "PyTorch"
            return (peer, "\(what) \(peerLabel), \(script), measured in alternation")
        } catch {
            return (nil, "unavailable: \(error)")
        }
    }
}
