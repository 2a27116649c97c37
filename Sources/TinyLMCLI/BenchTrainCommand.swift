import ArgumentParser
import Foundation
import Kernels
import Training
import Transformer

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training tokens/s for full steps (forward, backward, AdamW) and MFU, beside PyTorch eager.")

    @Option(help: "tiny, small, base or a config JSON file.") var config = "small"
    @Option(help: "Sequences per step (default: the peer's, 16 for tiny, 8 otherwise).") var batch: Int?
    @Option(help: "Timed steps.") var steps = 10
    @Option(help: "Untimed steps first.") var warmup = 2
    @Option(help: "Python with PyTorch for the peer (../shared/peers/setup.sh makes it).")
    var peerPython = (ProcessInfo.processInfo.environment["PEERS_VENV"] ?? NSHomeDirectory() + "/.cache/tinylm-peers-venv") + "/bin/python"
    @Option(help: "The peer script.") var peerScript = "../shared/peers/torch_train_bench.py"
    @Flag(help: "Skip the PyTorch peer.") var noPeer = false

    func run() throws {
        let modelConfig = try ModelConfig.load(config)
        let batchSize = batch ?? (config == "tiny" ? 16 : 8)
        let t = modelConfig.contextLength
        let model = try TransformerModel(config: modelConfig, seed: 0)
        var options = TrainingOptions()
        options.steps = steps + warmup
        options.batch = batchSize
        options.sequenceLength = t
        options.schedule = LearningRateSchedule(maxLR: 3e-4, minLR: 3e-4, warmup: 0, total: steps + warmup)
        options.clip = 0
        options.spikeFactor = 0
        options.evalEvery = 0
        var rng = SplitMix64(seed: 1)
        let tokens = (0..<(batchSize * t * 4 + 1)).map { _ in Int32(rng.next() % UInt64(modelConfig.vocabularySize)) }
        let trainer = try Trainer(model: model, options: options, train: tokens, validation: nil)
        // FLOPs per token as the peer counts them: 6 N (N without position embeddings) plus the
        // attention matmuls, 12 L d T.
        let positions = modelConfig.positions == .learned ? modelConfig.contextLength * modelConfig.dModel : 0
        let flopsPerToken = 6 * Double(model.parameterCount - positions) + 12 * Double(modelConfig.layers * modelConfig.dModel * t)

        print("tinylm bench train: config \(config) (\(model.parameterCount) parameters), batch \(batchSize) x \(t) tokens, \(ThreadPool.shared.threadCount) threads")
        let peak = KernelBenchmark.gflops(KernelBenchmark.Shape("peak", m: 2048, n: 2048, k: 2048), pool: .shared, seconds: 0.5)
        func measure() throws -> Double {
            var times: [Double] = []
            for i in 0..<(warmup + steps) {
                let report = try trainer.step()
                if i >= warmup { times.append(report.seconds) }
            }
            times.sort()
            return times[times.count / 2]
        }
        let first = try measure()
        var peer: Double?
        var peerNote = "skipped (--no-peer)"
        if !noPeer {
            (peer, peerNote) = runPeer()
        }
        // Measure again after the peer; the faster median counts (the machine is shared).
        trainer.optimizer.step = 0
        let second = try measure()
        let median = min(first, second)
        let tokensPerSecond = Double(batchSize * t) / median
        let gflops = flopsPerToken * tokensPerSecond / 1e9
        print(String(format: "TinyLM   step %.1f ms (median of %d)  %8.0f tokens/s  %6.1f GFLOP/s  MFU %.0f%% of the %.0f GFLOP/s sgemm peak",
                     median * 1000, steps, tokensPerSecond, gflops, 100 * gflops / peak, peak))
        if let peer {
            print(String(format: "PyTorch  eager fp32 %8.0f tokens/s   ratio %.2f×", peer, tokensPerSecond / peer))
        } else {
            print("PyTorch  \(peerNote)")
        }
    }

    /// Runs the peer script for this config; returns its tokens/s or why it could not run.
    private func runPeer() -> (Double?, String) {
        guard ["tiny", "small"].contains(config) else { return (nil, "only has the tiny and small configs") }
        guard FileManager.default.isExecutableFile(atPath: peerPython) else {
            return (nil, "unavailable: \(peerPython) not found (bash ../shared/peers/setup.sh makes it)")
        }
        guard FileManager.default.fileExists(atPath: peerScript) else { return (nil, "unavailable: \(peerScript) not found") }
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("tinylm-peer-\(getpid()).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: peerPython)
        process.arguments = [peerScript, "--config", config, "--steps", String(steps), "--threads",
                             String(ThreadPool.shared.threadCount), "--json", json]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()
            let data = try Data(contentsOf: URL(fileURLWithPath: json))
            let object = try JSONSerialization.jsonObject(with: data)
            let results = (object as? [[String: Any]]) ?? ((object as? [String: Any])?["results"] as? [[String: Any]]) ?? []
            if let value = results.first(where: { ($0["config"] as? String) == config })?["tokens_per_s"] as? Double {
                return (value, "")
            }
            return (nil, "unavailable: no result for \(config) in the peer's output")
        } catch {
            return (nil, "unavailable: \(error)")
        }
    }
}
