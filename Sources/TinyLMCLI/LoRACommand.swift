import ArgumentParser
import Chat
import Foundation
import GGUF
import Kernels
import Support
import Training
import Transformer

struct LoRACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "Fine-tune low-rank adapters on a frozen base (PEFT-format adapter files).",
        discussion: """
            --data is a directory with train.jsonl (and optionally valid.jsonl): lines of {"messages": […], "tools": […]} \
            (trained on the assistant turns), {"prompt", "completion"} or {"text"}.
            """)

    @Option(help: "The base: a checkpoint directory or a GGUF file.") var model: String
    @Option(help: "Directory with train.jsonl and optionally valid.jsonl.") var data: String
    @Option(help: "Where to write the adapter (adapter_model.safetensors, adapter_config.json).") var adapterPath: String
    @Option(help: "Start from this adapter's weights (a PEFT directory, TinyLM's or PEFT's), as mlx-lm's --resume-adapter-file: its rank, alpha, targets and dropout replace --rank, --alpha, --targets, --num-layers, --rs-lora and --dropout; the optimizer and schedule start afresh.")
    var fromAdapter: String?
    @Option(help: "Adapter rank.") var rank = 8
    @Option(help: "Adapter alpha (scale alpha / rank).") var alpha = 16.0
    @Option(help: "Comma-separated projections: q,k,v,o,gate,up,down (default all of them); experts adds a mixture of experts' expert matrices.") var targets = AdapterConfig.allTargets.joined(separator: ",")
    @Option(help: "Adapt only the last N blocks.") var numLayers: Int?
    @Flag(help: "rsLoRA: scale alpha / √rank.") var rsLora = false
    @Option(help: "Dropout on the adapters' input in training (PEFT's lora_dropout).") var dropout = 0.0
    @Option(help: "Optimizer steps.") var iters = 600
    @Option(help: "Examples per micro-batch.") var batch = 4
    @Option(help: "Micro-batches per optimizer step (gradients accumulated).") var gradAccum = 1
    @Flag(help: "Make each micro-batch of examples of nearly one length (sorted within windows of 32 micro-batches of the shuffled order, then shuffled again), so that less of it is padding.")
    var groupByLength = false
    @Option(help: "Stop after this many validations without improvement (0: never).") var patience = 0
    @Flag(help: "At the end, report the loss on test.jsonl in --data.") var test = false
    @Flag(help: "Continue the run saved in --adapter-path (same base, data and options); the result is bit-identical to an uninterrupted run.")
    var resume = false
    @Option(help: "Peak learning rate.") var lr = 2e-4
    @Option(help: "Final learning rate.") var minLr = 2e-5
    @Option(help: "Warmup steps.") var warmup = 20
    @Option(help: "Longest example in tokens (longer ones are cut).") var maxSeqLength = 512
    @Flag(help: "As mlx-lm: train on the final assistant turn of each conversation only (prompt/completion lines always train on the completion).")
    var maskPrompt = false
    @Option(help: "Validate every N steps (0: only at the end).") var evalEvery = 100
    @Option(help: "Save the adapter every N steps (0: only at the end).") var saveEvery = 100
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Linear layers' products: fp32 or bf16.") var precision: MatmulPrecision = .fp32
    @Option(help: "A GGUF base's quantized matrices: quantized (QLoRA: they stay in their blocks, frozen) or fp32 (dequantized).")
    var baseWeights: String = "quantized"

    func validate() throws {
        try OptionDomain.count(rank, "rank", max: 1024)
        try OptionDomain.number(alpha, "alpha", 0...1e6, openLower: true)
        try OptionDomain.number(dropout, "dropout", 0...0.99)
        try OptionDomain.count(numLayers, "num-layers", max: 1024)
        try OptionDomain.count(iters, "iters", max: 1 << 30)
        try OptionDomain.count(batch, "batch", max: 4096)
        try OptionDomain.count(gradAccum, "grad-accum", max: 4096)
        try OptionDomain.count(patience, "patience", min: 0, max: 1 << 20)
        try OptionDomain.number(lr, "lr", 0...10, openLower: true)
        try OptionDomain.number(minLr, "min-lr", 0...lr)
        try OptionDomain.count(warmup, "warmup", min: 0, max: 1 << 30)
        try OptionDomain.count(maxSeqLength, "max-seq-length", min: 2, max: 1 << 16)
        try OptionDomain.count(evalEvery, "eval-every", min: 0, max: 1 << 30)
        try OptionDomain.count(saveEvery, "save-every", min: 0, max: 1 << 30)
        guard GGUFModel.WeightStorage(rawValue: baseWeights) != nil else { throw ValidationError("--base-weights must be quantized or fp32") }
    }

    func run() throws {
        let loaded = try LoadedModel.load(model, storage: GGUFModel.WeightStorage(rawValue: baseWeights)!)
        let (template, defaultSystem) = try chatTemplate(of: loaded)
        var dataOptions = FineTuneData.Options()
        dataOptions.template = template
        dataOptions.defaultSystem = defaultSystem
        dataOptions.maxLength = min(maxSeqLength, loaded.model.config.contextLength)
        dataOptions.lastTurnOnly = maskPrompt
        let train = try FineTuneData.read(data + "/train.jsonl", tokenizer: loaded.tokenizer, options: dataOptions)
        let valid = FileManager.default.fileExists(atPath: data + "/valid.jsonl")
            ? try FineTuneData.read(data + "/valid.jsonl", tokenizer: loaded.tokenizer, options: dataOptions) : nil
        let length = min(dataOptions.maxLength, train.map(\.ids.count).max() ?? 2)
        var adapters = AdapterConfig(rank: rank, alpha: alpha, targets: targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) },
                                     lastLayers: numLayers, rankStabilized: rsLora)
        adapters.dropout = dropout
        let adapted: TransformerModel
        if let fromAdapter {
            adapted = try PEFTAdapter.load(fromAdapter, onto: loaded.model, trainable: { $0.contains(".lora_") })
            adapters = adapted.adapters ?? adapters
            printError("lora: starting from the adapter in \(fromAdapter)")
        } else {
            adapted = try TransformerModel.adapting(loaded.model, with: adapters, seed: seed)
        }
        var options = TrainingOptions()
        options.steps = iters
        options.batch = batch
        options.accumulation = gradAccum
        options.sequenceLength = max(2, length)
        options.schedule = LearningRateSchedule(maxLR: lr, minLR: minLr, warmup: warmup, total: iters)
        options.weightDecay = 0
        options.seed = seed
        options.precision = precision
        options.spikeFactor = 0
        let source = try MaskedExamples(examples: train, vocabularySize: adapted.config.vocabularySize, seed: seed,
                                        groupedBy: groupByLength ? batch : nil)
        let trainer = try Trainer(model: adapted, options: options, data: source, validation: nil)
        let trainable = adapted.layout.gradientCount
        let meanLength = train.reduce(0) { $0 + min($1.ids.count, options.sequenceLength) } / max(1, train.count)
        let padding = String(format: "%.0f%%", 100 * source.paddingShare(batch: batch, length: options.sequenceLength))
        printError("lora: \(train.count) training examples\(valid.map { ", \($0.count) validation" } ?? ""), examples of \(meanLength) tokens on average and at most \(options.sequenceLength) (a batch is padded to its longest: \(padding) of its tokens\(groupByLength ? ", batches grouped by length" : "")); \(trainable) adapter parameters (rank \(adapters.rank), \(adapters.targets.joined(separator: ","))) on a frozen base\(adapted.layout.isQuantized ? " in quantized blocks (QLoRA)" : " of \(adapted.layout.baseCount) floats")")
        if precision == .bf16 && !amxAvailable {
            printError("note: this CPU has no usable AMX-BF16; bf16 products are emulated (same results, slower than fp32)")
        }
        let statePath = adapterPath + "/" + Trainer.stateFile
        if resume {
            guard FileManager.default.fileExists(atPath: statePath) else {
                throw ValidationError("--resume: \(statePath) not found (the run saves it with the adapter)")
            }
            try trainer.restoreTrainableState(from: statePath)
            printError("resuming at step \(trainer.state.step) of \(iters)")
        }
        /// The adapter files and the state to resume from, together.
        func save() throws {
            try PEFTAdapter.save(adapted, to: adapterPath, baseModel: model)
            try trainer.saveTrainableState(to: statePath)
        }
        installInterruptHandler()
        try AtomicFile.createDirectory(adapterPath)
        let log = try TrainingLog(directory: adapterPath, startingAfter: trainer.state.step)
        func validate() throws -> Double? {
            guard let valid else { return nil }
            return try adapted.evaluate(examples: valid, batch: batch, length: options.sequenceLength, precision: precision)
        }
        if let v = try validate() { printError(String(format: "step %d: validation loss %.4f", trainer.state.step, v)) }
        let start = Date(), firstStep = trainer.state.step
        var tokens = 0
        var bestValidation = Double.infinity, staleValidations = 0
        while trainer.state.step < iters {
            if patience > 0 && staleValidations >= patience {
                printError("stopping early at step \(trainer.state.step): \(patience) validations without improvement")
                break
            }
            if interruptRequested.load(ordering: .relaxed) {
                try save()
                printError("interrupted at step \(trainer.state.step); adapter saved in \(adapterPath) (continue with --resume)")
                throw ExitCode(130)
            }
            let report = try trainer.step()
            tokens += report.tokens
            let step = report.step
            var validation: Double?
            if (evalEvery > 0 && step % evalEvery == 0) || step == iters { validation = try validate() }
            if let validation {
                if validation < bestValidation { bestValidation = validation; staleValidations = 0 } else { staleValidations += 1 }
            }
            if saveEvery > 0 && step % saveEvery == 0 && step < iters { try save() }
            let elapsed = Date().timeIntervalSince(start)
            // This run's mean step, validations included, for the steps left.
            let secondsLeft = elapsed / Double(step - firstStep) * Double(iters - step)
            let line = String(format: "step %d/%d  loss %.4f  val %@  lr %.2e  %.0f tok/s  ETA %@", step, iters, report.loss,
                              validation.map { String(format: "%.4f", $0) } ?? "–", report.learningRate, Double(tokens) / elapsed,
                              formatDuration(secondsLeft))
            printError(line)
            // Seconds since the run began: a resumed run's clock goes on from the log's.
            var entry = "{\"step\": \(step), \"loss\": \(report.loss), \"lr\": \(report.learningRate), \"seconds\": \(log.previousSeconds + elapsed)"
            if let validation { entry += ", \"val_loss\": \(validation)" }
            try log.append(Data((entry + "}").utf8))
        }
        try save()
        print("wrote \(adapterPath): \(trainable) adapter parameters after \(trainer.state.step) steps (\(Int(Date().timeIntervalSince(start))) s)")
        if test {
            let examples = try FineTuneData.read(data + "/test.jsonl", tokenizer: loaded.tokenizer, options: dataOptions)
            let loss = try adapted.evaluate(examples: examples, batch: batch, length: options.sequenceLength, precision: precision)
            print(String(format: "test loss %.4f, perplexity %.3f (%d examples of %@/test.jsonl)", loss, Foundation.exp(loss), examples.count, data))
        }
    }
}

/// `tinylm fuse`: merge an adapter into its base.
struct FuseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuse",
        abstract: "Merge a LoRA adapter into its base (W += scale·B·A): a checkpoint directory, or a GGUF from a GGUF base.")

    @Option(help: "The base: a checkpoint directory or a GGUF file.") var model: String
    @Option(help: "The adapter directory (PEFT files).") var adapter: String
    @Option(help: "Where to write: a directory for a checkpoint base, a .gguf file for a GGUF base.") var out: String
    @Option(help: "For a GGUF out: the type of the merged matrices (default: each keeps the base's type).") var type: ExportType?

    func run() throws {
        let gguf = LoadedModel.isGGUF(model)
        let loaded = try LoadedModel.load(model, storage: .fp32)
        let adapted = try PEFTAdapter.load(adapter, onto: loaded.model)
        let fused = try adapted.fused()
        if gguf {
            let file = try GGUFFile(path: model)
            let changed = GGUFModel.changedMatrices(of: fused, adapted: adapted.adapters!)
            let policy = type.map { QuantizationPolicy($0, embeddings: .standard) } ?? .keep
            let (writer, summary) = try GGUFQuantize.requantize(file, policy: policy, replacing: changed)
            try writer.write(to: out)
            print(String(format: "wrote %@: %d matrices merged, %.1f MB", out, changed.count, Double(summary.bytesAfter) / 1e6))
        } else {
            guard type == nil else { throw ValidationError("--type applies to GGUF output; export the fused checkpoint with tinylm quantize") }
            try Checkpoint.save(fused, to: out)
            if let tokenizer = Checkpoint.tokenizerPath(in: model) {
                try FileManager.default.copyItem(atPath: tokenizer, toPath: out + "/" + Checkpoint.tokenizerFile)
            }
            print("wrote \(out): \(fused.parameterCount) parameters, adapter merged")
        }
    }
}

/// `tinylm export-adapter`: a PEFT adapter as llama.cpp's LoRA GGUF.
struct ExportAdapterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-adapter",
        abstract: "Write a LoRA adapter as llama.cpp's adapter GGUF (llama-cli --lora FILE).")

    @Option(help: "The base the adapter was trained on (a checkpoint directory or a GGUF file).") var model: String
    @Option(help: "The adapter directory (PEFT files).") var adapter: String
    @Option(help: "The GGUF file to write.") var out: String

    func run() throws {
        let loaded = try LoadedModel.load(model)
        let adapted = try PEFTAdapter.load(adapter, onto: loaded.model)
        let writer = try GGUFAdapter.gguf(adapted, name: URL(fileURLWithPath: adapter).lastPathComponent)
        try writer.write(to: out)
        print("wrote \(out): \(adapted.layout.tensors.filter { $0.group == .adapter }.count) adapter tensors, rank \(adapted.adapters!.rank)")
    }
}
