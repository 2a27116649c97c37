import ArgumentParser
import Foundation
import GGUF
import Kernels
import Training
import Transformer

/// `tinylm bench lora`: LoRA training tokens/s and peak memory beside Hugging Face PEFT on the
/// same base, in alternating rounds (`../shared/peers/peft_lora_bench.py`).
struct BenchLoRA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "LoRA training tokens/s and peak memory beside PEFT (random ids, every token counted), in alternating rounds.")

    @Option(help: "The base: a GGUF file or a checkpoint directory.") var model: String
    @Option(help: "qv or all (q,k,v,o,gate,up,down).") var targets = "all"
    @Option(help: "Adapter rank (alpha is 2 x rank, as the peer's).") var rank = 8
    @Option(help: "Sequences per step.") var batch = 4
    @Option(help: "Tokens per sequence.") var seq = 256
    @Option(help: "Timed steps per round.") var steps = 8
    @Option(help: "Untimed steps first.") var warmup = 2
    @Option(help: "Rounds of TinyLM then PEFT.") var rounds = 3
    @Option(help: "Linear layers' products: fp32 or bf16 (the peer stays fp32).") var precision: MatmulPrecision = .fp32
    @Option(help: "A GGUF base's matrices: fp32 (dequantized) or quantized (QLoRA).") var baseWeights = "fp32"
    @Option(help: "Python with PEFT (../shared/peers/setup.sh makes it).")
    var peerPython = (ProcessInfo.processInfo.environment["PEERS_VENV"] ?? NSHomeDirectory() + "/.cache/tinylm-peers-venv") + "/bin/python"
    @Option(help: "The folder with peft_lora_bench.py.") var peerDirectory = "../shared/peers"
    @Flag(help: "Skip the PEFT peer.") var noPeer = false
    @Flag(help: "After the rounds, where a step's time goes (kernel phases).") var profile = false

    func validate() throws {
        try OptionDomain.count(rank, "rank", max: 1024)
        try OptionDomain.count(batch, "batch", max: 4096)
        try OptionDomain.count(seq, "seq", min: 2, max: 1 << 16)
        try OptionDomain.count(steps, "steps", max: 1 << 20)
        try OptionDomain.count(warmup, "warmup", min: 0, max: 1 << 20)
        try OptionDomain.count(rounds, "rounds", max: 1000)
        guard ["qv", "all"].contains(targets) else { throw ValidationError("--targets must be qv or all") }
        guard GGUFModel.WeightStorage(rawValue: baseWeights) != nil else { throw ValidationError("--base-weights must be fp32 or quantized") }
    }

    func run() throws {
        let loaded = try LoadedModel.load(model, storage: GGUFModel.WeightStorage(rawValue: baseWeights)!)
        let adapters = AdapterConfig(rank: rank, alpha: Double(2 * rank), targets: targets == "qv" ? ["q", "v"] : AdapterConfig.allTargets)
        let adapted = try TransformerModel.adapting(loaded.model, with: adapters, seed: 0)
        let c = adapted.config
        guard seq <= c.contextLength else { throw ValidationError("--seq \(seq) exceeds the model's context of \(c.contextLength)") }
        var options = TrainingOptions()
        options.steps = rounds * (steps + warmup) + (profile ? steps : 0)
        options.batch = batch
        options.sequenceLength = seq
        options.schedule = LearningRateSchedule(maxLR: 1e-4, minLR: 1e-4, warmup: 0, total: options.steps)
        options.weightDecay = 0
        options.clip = 0
        options.spikeFactor = 0
        options.evalEvery = 0
        options.precision = precision
        var rng = SplitMix64(seed: 1)
        let tokens = (0..<(batch * seq * 8 + 1)).map { _ in Int32(rng.next() % UInt64(c.vocabularySize)) }
        let trainer = try Trainer(model: adapted, options: options, train: tokens, validation: nil)
        let isGGUF = LoadedModel.isGGUF(model)
        let script = peerDirectory + "/peft_lora_bench.py"
        let peer = !noPeer && isGGUF && FileManager.default.isExecutableFile(atPath: peerPython) && FileManager.default.fileExists(atPath: script)
        print("tinylm bench lora: \(model), targets \(targets), rank \(rank), batch \(batch) x \(seq), \(ThreadPool.shared.threadCount) threads, \(precision.rawValue) products, base \(adapted.layout.isQuantized ? "in quantized blocks (QLoRA)" : "fp32"); \(adapted.layout.gradientCount) trainable")
        if !peer { print("peer: skipped (\(noPeer ? "--no-peer" : isGGUF ? "no \(peerPython) or \(script)" : "PEFT's script reads GGUF bases"))") }
        var ratios: [Double] = []
        var peerMemory = 0.0
        for round in 1...rounds {
            let (median, clean) = try CPUMeter.measureRound(warmup: warmup, steps: steps) { _ = try trainer.step() }
            let ours = Double(batch * seq) / median
            var line = String(format: "round %d  TinyLM %7.0f ms/step %6.0f tokens/s (clean %d/%d), peak memory %.0f MB",
                              round, median * 1000, ours, clean, steps, Double(peakResidentBytes()) / 1e6)
            if peer {
                let answer = try runPeer(script: script)
                ratios.append(ours / answer.tokens)
                peerMemory = answer.memory
                line += String(format: "   PEFT %6.0f tokens/s, peak %.0f MB   ratio %.2fx", answer.tokens, answer.memory, ratios.last!)
            }
            print(line)
        }
        let ourMemory = Double(peakResidentBytes()) / 1e6
        if !ratios.isEmpty {
            let sorted = ratios.sorted()
            print(String(format: "ratio (median of rounds): %.2fx PEFT's tokens/s; peak memory %.0f MB vs %.0f MB (%.2fx)",
                         sorted[sorted.count / 2], ourMemory, peerMemory, ourMemory / peerMemory))
        }
        if profile { try printTrainingProfile(trainer, steps: steps) }
    }

    /// One run of PEFT's benchmark on the same base and shape (its own process: its own peak memory).
    private func runPeer(script: String) throws -> (tokens: Double, memory: Double) {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("tinylm-peft-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: peerPython)
        process.arguments = [script, "--gguf", model, "--targets", targets, "--rank", "\(rank)", "--batch", "\(batch)", "--seq", "\(seq)",
                             "--steps", "\(steps)", "--warmup", "\(warmup)", "--threads", "\(ThreadPool.shared.threadCount)", "--json", json]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let data = FileManager.default.contents(atPath: json),
              let result = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let tokens = result["tokens_per_s"] as? Double, let memory = result["peak_rss_mb"] as? Double else {
            throw ValidationError("peft_lora_bench.py failed on \(model) (exit \(process.terminationStatus))")
        }
        return (tokens, memory * 1.048576)   // MiB to MB
    }
}
