import ArgumentParser
import Foundation
import Kernels
import Support
import Synchronization
import Tokenizer
import Training
import Transformer

/// Set by SIGINT; the training loop saves and stops at the next step boundary.
let interruptRequested = Atomic<Bool>(false)

func installInterruptHandler() {
    // A parent may have blocked SIGINT (the mask survives exec); unblock it so Ctrl-C arrives.
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    signal(SIGINT) { _ in
        // A second Ctrl-C while saving ends the process the usual way.
        if interruptRequested.exchange(true, ordering: .relaxed) { _exit(130) }
    }
}

struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain", abstract: "Pretrain a model on text files or token shards.")

    @Option(name: .customLong("corpus"), parsing: .upToNextOption, help: "Training text files (tokenized on the fly; 1% of documents go to validation).")
    var corpus: [String] = []
    @Option(help: "A directory from `tinylm data prepare` (train.bin, val.bin).") var data: String?
    @Option(help: "Validation data instead of the split: a text file or a .bin shard (never train on it).") var valData: String?
    @Option(help: "Fraction of --corpus documents held out for validation.") var valFraction = 0.01
    @Option(help: "Tokenizer (default: the shipped Tokenizers/tinylm-4k.model).") var tokenizer: String?
    @Option(help: "A preset (tiny, small, base, tiny-moe, small-moe, small-dense) or a config JSON file.") var config = "tiny"
    @Option(help: "Vocabulary size (default: the tokenizer's).") var vocabSize: Int?
    @Option(help: "Tokens per sequence (default: the model's context).") var context: Int?
    @Option(help: "Optimizer steps (default 1000; with --resume, the run's own unless given).") var steps: Int?
    @Option(help: "Sequences per micro-batch.") var batch = 8
    @Option(help: "Micro-batches per step.") var accum = 1
    @Option(help: "Peak learning rate.") var lr = 1e-3
    @Option(help: "Final learning rate.") var minLr = 1e-4
    @Option(help: "Warmup steps.") var warmup = 100
    @Option(help: "AdamW weight decay.") var weightDecay = 0.1
    @Option(help: "AdamW beta1.") var beta1 = 0.9
    @Option(help: "AdamW beta2.") var beta2 = 0.95
    @Option(help: "Gradient clipping by global norm (0: off).") var clip = 1.0
    @Option(help: "Dropout probability (overrides the config).") var dropout: Double?
    @Option(help: "Validate every N steps.") var evalEvery = 200
    @Option(help: "Validation tokens per evaluation.") var evalTokens = 65_536
    @Option(help: "Checkpoint every N steps.") var saveEvery = 500
    @Option(help: "Skip a step whose loss exceeds this multiple of the running mean (0: off).") var spikeFactor = 3.0
    @Option(help: "Stop after N validations without improvement (0: never).") var patience = 0
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Linear layers' products: fp32, or bf16 (mixed precision: bf16 operands, fp32 sums, fp32 weights and optimizer; AMX tiles where the CPU has them).")
    var precision: MatmulPrecision = .fp32
    @Option(help: "Output checkpoint directory.") var out: String
    @Flag(help: "Continue the run saved in --out.") var resume = false

    func validate() throws {
        try OptionDomain.number(valFraction, "val-fraction", 0...0.5)
        try OptionDomain.count(vocabSize, "vocab-size", max: 1 << 24)
        try OptionDomain.count(context, "context", min: 2, max: 1 << 16)
        try OptionDomain.count(steps, "steps", max: 1 << 31)
        try OptionDomain.count(batch, "batch", max: 1 << 16)
        try OptionDomain.count(accum, "accum", max: 1 << 16)
        try OptionDomain.number(lr, "lr", 0...10, openLower: true)
        try OptionDomain.number(minLr, "min-lr", 0...lr)
        try OptionDomain.count(warmup, "warmup", min: 0, max: 1 << 31)
        try OptionDomain.number(weightDecay, "weight-decay", 0...10)
        try OptionDomain.number(beta1, "beta1", 0...0.999_999_9)
        try OptionDomain.number(beta2, "beta2", 0...0.999_999_9)
        try OptionDomain.number(clip, "clip", 0...1e6)
        try OptionDomain.number(dropout, "dropout", 0...0.99)
        try OptionDomain.count(evalEvery, "eval-every", min: 0, max: 1 << 31)
        try OptionDomain.count(evalTokens, "eval-tokens", min: 2, max: 1 << 40)
        try OptionDomain.count(saveEvery, "save-every", min: 0, max: 1 << 31)
        try OptionDomain.number(spikeFactor, "spike-factor", 0...1e6)
        try OptionDomain.count(patience, "patience", min: 0, max: 1 << 31)
        if data != nil && !corpus.isEmpty { throw ValidationError("give --corpus or --data, not both") }
    }

    func run() throws {
        let tok = try SentencePieceTokenizer(contentsOf: try tokenizer ?? ShippedFiles.path(ShippedFiles.defaultTokenizer))
        if resume { try Trainer.checkResumable(out) }
        // A kill during a checkpoint write leaves a temporary file; the next start removes it.
        for directory in [out, out + "/best"] {
            for name in AtomicFile.removeStaleTemporaries(in: directory) { printError("removed \(directory)/\(name), left by an interrupted write") }
        }
        var train: [Int32] = [], validation: [Int32]?
        // A resumed run tokenizes its corpus beside the run's data and replaces it only once the
        // resume is accepted, so a refused resume leaves the run as it was.
        let dataDirectory = resume ? out + "/.data-resume-\(getpid())" : out + "/data"
        defer { if resume { try? FileManager.default.removeItem(atPath: dataDirectory) } }
        if let data {
            train = try loadShard(data + "/train.bin", tokenizer: tok)
            if FileManager.default.fileExists(atPath: data + "/val.bin") {
                validation = try loadShard(data + "/val.bin", tokenizer: tok)
            }
        } else if !corpus.isEmpty {
            var preparer = CorpusPreparer(tokenizer: tok)
            preparer.validationFraction = valData == nil ? valFraction : 0
            let directory = dataDirectory
            let summary = try preparer.prepare(inputs: corpus, directory: directory)
            printError("tokenized \(corpus.joined(separator: ", ")): \(summary.trainTokens) training tokens, \(summary.validationTokens) validation tokens")
            train = try loadShard(directory + "/train.bin", tokenizer: tok)
            if summary.validationTokens > 1 { validation = try loadShard(directory + "/val.bin", tokenizer: tok) }
        } else {
            throw ValidationError("give --corpus FILE… or --data DIR")
        }
        if let valData { validation = try loadTokens(valData, tokenizer: tok) }

        let trainer: Trainer
        if resume {
            trainer = try Trainer.resume(from: out, train: train, validation: validation, steps: steps)
            if !corpus.isEmpty {
                try? FileManager.default.removeItem(atPath: out + "/data")
                try FileManager.default.moveItem(atPath: dataDirectory, toPath: out + "/data")
            }
            printError("resuming \(out) at step \(trainer.state.step) of \(trainer.options.steps)")
            for ignored in ignoredOnResume(trainer, tokenizerVocabulary: tok.vocabularySize) {
                printError("note: \(ignored) is ignored: a resumed run keeps the value it was started with, so that it ends as an uninterrupted run would")
            }
        } else {
            var modelConfig = try ModelConfig.load(config)
            modelConfig.vocabularySize = vocabSize ?? tok.vocabularySize
            if let dropout { modelConfig.dropout = dropout }
            try modelConfig.validate(source: config)
            guard tok.vocabularySize <= modelConfig.vocabularySize else {
                throw ValidationError("--vocab-size \(modelConfig.vocabularySize) is smaller than the tokenizer's \(tok.vocabularySize)")
            }
            var options = TrainingOptions()
            let steps = self.steps ?? 1000
            options.steps = steps
            options.batch = batch
            options.accumulation = accum
            options.sequenceLength = context ?? modelConfig.contextLength
            options.schedule = LearningRateSchedule(maxLR: lr, minLR: minLr, warmup: warmup, total: steps)
            options.weightDecay = weightDecay
            options.beta1 = beta1
            options.beta2 = beta2
            options.clip = clip
            options.evalEvery = evalEvery
            options.evalTokens = evalTokens
            options.saveEvery = saveEvery
            options.spikeFactor = spikeFactor
            options.patience = patience
            options.seed = seed
            options.precision = precision
            let model = try TransformerModel(config: modelConfig, seed: seed)
            trainer = try Trainer(model: model, options: options, train: train, validation: validation)
            printError("training \(model.parameterCount) parameters on \(train.count) tokens for \(steps) steps of \(options.tokensPerStep) tokens (\(ThreadPool.shared.threadCount) threads, \(precision.rawValue) products)")
        }
        if trainer.options.matmulPrecision == .bf16 && !amxAvailable {
            printError("note: this CPU has no usable AMX-BF16; bf16 products are emulated (same results, slower than fp32)")
        }
        installInterruptHandler()
        let interactive = standardErrorIsTerminal
        let start = Date()
        var lastLine = Date.distantPast
        let outcome = try PretrainLoop.run(trainer, directory: out, tokenizer: tok.modelData, progress: { p in
            let now = Date()
            let finalStep = p.report.step == p.totalSteps
            guard interactive || now.timeIntervalSince(lastLine) >= 10 || p.validationLoss != nil && p.report.step % max(1, trainer.options.evalEvery) == 0 || finalStep else { return }
            lastLine = now
            let val = p.validationLoss.map { String(format: "%.4f", $0) } ?? "–"
            var router = ""
            if let aux = p.report.routerAuxLoss, let z = p.report.routerZLoss {
                // The busiest and idlest expert over the mixture blocks, as multiples of a uniform share.
                let shares = p.report.expertLoads.flatMap { loads in loads.map { $0 * Double(loads.count) } }
                router = String(format: "  aux %.4f  z %.3f  load %.2f–%.2f×", aux, z, shares.min() ?? 0, shares.max() ?? 0)
            }
            let text = String(format: "step %d/%d  loss %.4f  val %@  lr %.2e  %.0f tok/s  ETA %@",
                              p.report.step, p.totalSteps, p.report.loss, val, p.report.learningRate,
                              p.tokensPerSecond, formatDuration(p.secondsLeft)) + router
            printError(interactive ? "\r\u{1B}[K" + text : text, terminator: interactive ? "" : "\n")
        }, note: { message in
            printError((interactive ? "\n" : "") + message)
        }, shouldStop: { interruptRequested.load(ordering: .relaxed) })
        if interactive { printError("") }
        let elapsed = Date().timeIntervalSince(start)
        switch outcome {
        case .interrupted:
            throw ExitCode(130)
        case .finished, .stoppedEarly:
            let val = trainer.state.lastValidationLoss.map { String(format: "%.4f (perplexity %.2f)", $0, Foundation.exp($0)) } ?? "not measured"
            print("done: \(trainer.state.step) steps in \(formatDuration(elapsed)); validation loss \(val); checkpoint \(out)")
        }
    }
}

extension PretrainCommand {
    /// The options given on this command line whose values differ from the resumed run's saved
    /// ones, as `--name value (saved: value)`. Only `--steps` changes a resumed run; the model
    /// (`--config`, `--vocab-size`, `--dropout`) is the checkpoint's.
    func ignoredOnResume(_ trainer: Trainer, tokenizerVocabulary: Int) -> [String] {
        let saved = trainer.options, savedModel = trainer.model.config
        let given = Set(CommandLine.arguments.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return String(argument.dropFirst(2).prefix { $0 != "=" })
        })
        var ignored: [String] = []
        func compare(_ name: String, _ value: some CustomStringConvertible, _ savedValue: some CustomStringConvertible) {
            if given.contains(name) && value.description != savedValue.description {
                ignored.append("--\(name) \(value) (saved: \(savedValue))")
            }
        }
        compare("batch", batch, saved.batch)
        compare("accum", accum, saved.accumulation)
        if let context { compare("context", context, saved.sequenceLength) }
        compare("lr", lr, saved.schedule.maxLR)
        compare("min-lr", minLr, saved.schedule.minLR)
        compare("warmup", warmup, saved.schedule.warmup)
        compare("weight-decay", weightDecay, saved.weightDecay)
        compare("beta1", beta1, saved.beta1)
        compare("beta2", beta2, saved.beta2)
        compare("clip", clip, saved.clip)
        compare("eval-every", evalEvery, saved.evalEvery)
        compare("eval-tokens", evalTokens, saved.evalTokens)
        compare("save-every", saveEvery, saved.saveEvery)
        compare("spike-factor", spikeFactor, saved.spikeFactor)
        compare("patience", patience, saved.patience)
        compare("seed", seed, saved.seed)
        compare("precision", precision.rawValue, saved.matmulPrecision.rawValue)
        if let vocabSize { compare("vocab-size", vocabSize, savedModel.vocabularySize) }
        if let dropout { compare("dropout", dropout, savedModel.dropout) }
        if given.contains("config") {
            // As a new run would build it from these options.
            let model = (try? ModelConfig.load(config)).map { loaded in
                var model = loaded
                model.vocabularySize = vocabSize ?? tokenizerVocabulary
                if let dropout { model.dropout = dropout }
                return model
            }
            if model != savedModel { ignored.append("--config \(config) (the checkpoint's model differs from it)") }
        }
        return ignored
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
}
