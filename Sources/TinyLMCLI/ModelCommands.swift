import ArgumentParser
import Foundation
import GGUF
import Chat
import Kernels
import Support
import Tokenizer
import Training
import Transformer

/// The tokenizer for a checkpoint: `--tokenizer`, else the one inside the checkpoint.
func checkpointTokenizer(_ directory: String, override: String?) throws -> SentencePieceTokenizer {
    if let override { return try SentencePieceTokenizer(contentsOf: override) }
    guard let path = Checkpoint.tokenizerPath(in: directory) else {
        throw ValidationError("\(directory) has no tokenizer.model; pass --tokenizer")
    }
    return try SentencePieceTokenizer(contentsOf: path)
}

/// A note when the checkpoint's tokenizer has fewer pieces than the model has rows.
func noteVocabulary(_ model: TransformerModel, _ tokenizer: any TextTokenizer) {
    if tokenizer.vocabularySize < model.config.vocabularySize {
        printError("note: \(tokenizer.source) has \(tokenizer.vocabularySize) pieces and the model \(model.config.vocabularySize) rows; ids from \(tokenizer.vocabularySize) on never come from text")
    }
}

/// Comma-separated token ids from an option's value.
func parseIDs(_ text: String, option: String) throws -> [Int32] {
    try text.split(separator: ",").map { field in
        guard let id = Int32(field.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("--\(option): '\(field)' is not a token id")
        }
        return id
    }
}

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Write a freshly initialised checkpoint.")

    @Option(help: "A preset (tiny, small, base, tiny-moe, small-moe, small-dense) or a config JSON file.") var config: String
    @Option(help: "The checkpoint directory to write.") var out: String
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "A tokenizer to ship in the checkpoint (default: Tokenizers/tinylm-4k.model when the vocabulary fits).")
    var tokenizer: String?
    @Option(help: "Override the config's vocabulary size (e.g. to the tokenizer's).") var vocabSize: Int?

    func validate() throws { try OptionDomain.count(vocabSize, "vocab-size", max: 1 << 24) }

    func run() throws {
        var modelConfig = try ModelConfig.load(config)
        if let vocabSize { modelConfig.vocabularySize = vocabSize }
        try modelConfig.validate(source: config)
        var tokenizerData: Data?
        let path = tokenizer ?? ShippedFiles.locate(ShippedFiles.defaultTokenizer)
        if let path {
            let t = try SentencePieceTokenizer(contentsOf: path)
            if t.vocabularySize > modelConfig.vocabularySize {
                if tokenizer != nil {
                    throw ValidationError("\(path) has \(t.vocabularySize) pieces, more than the model's vocab_size \(modelConfig.vocabularySize)")
                }
            } else {
                tokenizerData = t.modelData
                if t.vocabularySize < modelConfig.vocabularySize {
                    printError("note: the tokenizer has \(t.vocabularySize) pieces and the model \(modelConfig.vocabularySize) rows; --vocab-size \(t.vocabularySize) would match them")
                }
            }
        }
        let model = try TransformerModel(config: modelConfig, seed: seed)
        try Checkpoint.save(model, to: out, tokenizer: tokenizerData)
        print("wrote \(out): \(model.parameterCount) parameters\(tokenizerData == nil ? ", no tokenizer" : "")")
    }
}

struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature (0: greedy).") var temperature: Float = 0.8
    @Option(help: "Keep the k most likely tokens (0: all).") var topK = 0
    @Option(help: "Nucleus sampling threshold (1: off).") var topP: Float = 0.95
    @Option(help: "Drop tokens below min-p times the best (0: off).") var minP: Float = 0.05
    @Option(help: "Repetition penalty (1: off).") var repeatPenalty: Float = 1.1
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func validate() throws {
        try OptionDomain.number(temperature, "temperature", 0...100)
        try OptionDomain.count(topK, "top-k", min: 0)
        try OptionDomain.number(topP, "top-p", 0...1, openLower: true)
        try OptionDomain.number(minP, "min-p", 0...0.999_999)
        try OptionDomain.number(repeatPenalty, "repeat-penalty", 0...100, openLower: true)
    }

    func sampler() throws -> Sampler {
        var s = Sampler(seed: seed)
        s.temperature = temperature
        s.topK = topK
        s.topP = topP
        s.minP = minP
        s.repetitionPenalty = repeatPenalty
        try s.validate()
        return s
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a prompt (or answer one chat message), streaming text as tokens come.")

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "A LoRA adapter directory (PEFT files).") var adapter: String?
    @Option(help: "The text to continue.") var prompt: String = ""
    @Option(help: "A user message to answer in the model's chat template (instead of --prompt).") var chat: String?
    @Option(help: "The system message for --chat (default: the template's own, if it has one).") var system: String?
    @Option(help: "Most tokens to generate.") var maxTokens = 200
    @Option(help: "Tokenizer (default: the model's).") var tokenizer: String?
    @Flag(help: "Do not start the prompt with EOS (documents in TinyLM's shards start after one).") var noStartToken = false
    @Flag(help: "Print timing to standard error.") var stats = false
    @Option(help: "Key/value cache: 32 (fp32), 16 (IEEE halves, as llama.cpp's default f16 cache) or 8 (blocks of 32 bytes and a scale, as its q8_0).")
    var kvBits = 32
    @OptionGroup var sampling: SamplingOptions

    func validate() throws {
        try OptionDomain.count(maxTokens, "max-tokens", max: 1 << 24)
        guard KVCacheBits(rawValue: kvBits) != nil else { throw ValidationError("--kv-bits must be \(KVCacheBits.choices)") }
        if chat != nil && !prompt.isEmpty { throw ValidationError("give --prompt or --chat, not both") }
    }

    func run() throws {
        var loaded = try LoadedModel.load(model, tokenizer: tokenizer)
        if let adapter { loaded.model = try PEFTAdapter.load(adapter, onto: loaded.model) }
        noteVocabulary(loaded.model, loaded.tokenizer)
        var generator = try TextGenerator(model: loaded.model, tokenizer: loaded.tokenizer)
        generator.sampler = try sampling.sampler()
        generator.maxTokens = maxTokens
        generator.startWithEOS = !noStartToken
        generator.kvBits = KVCacheBits(rawValue: kvBits)!
        let write = { (piece: String) in FileHandle.standardOutput.write(Data(piece.utf8)) }
        let result: TextGenerator.Result
        if let chat {
            let (template, defaultSystem) = try chatTemplate(of: loaded)
            var messages: [Message] = []
            if let system = system ?? defaultSystem { messages.append(Message(role: .system, content: system)) }
            messages.append(Message(role: .user, content: chat))
            let ids = try template.promptIDs(Conversation(messages: messages), with: loaded.tokenizer)
            result = try generator.generate(promptIDs: ids, onText: write)
        } else {
            generator.echoPrompt = true
            result = try generator.generate(prompt, onText: write)
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
        if stats || result.stopReason == .contextFull {
            printError(String(format: "[%d prompt tokens, %d generated, stopped: %@; prefill %.1f ms, decode %.1f tokens/s]",
                              result.promptTokens, result.tokens.count, result.stopReason.rawValue,
                              result.prefillSeconds * 1000, result.decodeTokensPerSecond))
        }
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Print a model's loss and perplexity on a text file or a token shard.")

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "A text file (tokenized with the model's tokenizer) or a .bin token shard.") var data: String
    @Option(help: "Tokenizer (default: the model's).") var tokenizer: String?
    @Option(help: "Sequences per forward pass.") var batch = 8
    @Option(help: "Tokens per window (default: the model's context, at most 1024).") var context: Int?

    func validate() throws {
        try OptionDomain.count(batch, "batch", max: 1 << 16)
        try OptionDomain.count(context, "context", min: 2, max: 1 << 16)
    }

    func run() throws {
        let loaded = try LoadedModel.load(model, tokenizer: tokenizer)
        let t = loaded.tokenizer
        noteVocabulary(loaded.model, t)
        guard t.vocabularySize <= loaded.model.config.vocabularySize else {
            throw ValidationError("\(t.source) has \(t.vocabularySize) pieces but the model only \(loaded.model.config.vocabularySize) rows")
        }
        let tokens: [Int32]
        if let sentencePiece = t as? SentencePieceTokenizer {
            tokens = try loadTokens(data, tokenizer: sentencePiece)
        } else {
            guard !isTokenShard(data) else { throw ValidationError("\(data): token shards are made with SentencePiece tokenizers; give a text file") }
            let bytes = try MappedFile(path: data).data()
            guard let text = String(validating: bytes, as: UTF8.self) else { throw ValidationError("\(data): not valid UTF-8") }
            tokens = try t.encode(plainText: text)
        }
        let window = min(context ?? min(loaded.model.config.contextLength, 1024), loaded.model.config.contextLength)
        let workspace = try TrainingWorkspace(model: loaded.model, batch: batch, length: window, training: false)
        let (loss, count) = try loaded.model.evaluate(tokens: tokens, workspace: workspace)
        print(String(format: "loss %.4f  perplexity %.2f  (%d tokens of %@)", loss, Foundation.exp(loss), count, data))
    }
}

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits", abstract: "Print the logits for token ids as JSON, for checking against other implementations.")

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "Comma-separated token ids.") var ids: String
    @Flag(help: "Every position's logits, not only the last.") var all = false
    @Option(help: "A LoRA adapter directory (PEFT files).") var adapter: String?
    @Option(help: "A GGUF's quantized matrices: fp32 (dequantized, as references load them), quantized (the integer kernels on the mapped blocks) or packed (on blocks interleaved 16 rows at a time).")
    var weights = "fp32"

    func run() throws {
        let parsed = try parseIDs(ids, option: "ids")
        guard let storage = GGUFModel.WeightStorage(rawValue: weights) else { throw ValidationError("--weights must be fp32, quantized or packed") }
        var loaded = try LoadedModel.isGGUF(model) ? GGUFModel.load(GGUFFile(path: model), storage: storage) : Checkpoint.load(from: model)
        if let adapter { loaded = try PEFTAdapter.load(adapter, onto: loaded) }
        let session = try InferenceSession(model: loaded, reserve: parsed.count)
        let logits = try session.feed(parsed, allRows: all)
        let v = loaded.config.vocabularySize
        if let bad = logits.firstIndex(where: { !$0.isFinite }) {
            throw ValidationError("\(model): the logit of token \(bad % v) at position \(bad / v) is \(logits[bad]); JSON has no such number")
        }
        let rows = stride(from: 0, to: logits.count, by: v).map { start in
            "[" + logits[start..<(start + v)].map { String($0) }.joined(separator: ",") + "]"
        }
        print(all ? "{\"ids\":[\(parsed.map(String.init).joined(separator: ","))],\"logits\":[\(rows.joined(separator: ","))]}"
                  : "{\"ids\":[\(parsed.map(String.init).joined(separator: ","))],\"logits\":\(rows[0])}")
    }
}

struct GradientsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradients",
        abstract: "Write the loss gradient of one batch as safetensors (same tensor names as the model), for checking against other implementations. A mixture of experts' loss includes its router losses with their coefficients.")

    @Option(help: "A checkpoint directory or a GGUF file (dequantized to fp32).") var model: String
    @Option(help: "A LoRA adapter directory (PEFT files): the gradients of its tensors only, the base frozen.") var adapter: String?
    @Option(help: "Comma-separated token ids, batch x length of them.") var ids: String
    @Option(help: "Comma-separated targets (-1: not counted); default: ids shifted left by one.") var targets: String?
    @Option(help: "Sequences in the batch.") var batch = 1

    func validate() throws { try OptionDomain.count(batch, "batch", max: 1 << 16) }
    @Option(help: "Where to write the gradients.") var out: String

    func run() throws {
        let input = try parseIDs(ids, option: "ids")
        guard batch > 0, !input.isEmpty, input.count % batch == 0 else {
            throw ValidationError("--ids: \(input.count) ids do not split into \(batch) sequences")
        }
        let length = input.count / batch
        var goal: [Int32] = []
        if let targets {
            goal = try parseIDs(targets, option: "targets")
        } else {
            for i in 0..<input.count { goal.append((i + 1) % length == 0 ? -1 : input[i + 1]) }
        }
        guard goal.count == input.count else { throw ValidationError("--targets: need \(input.count), got \(goal.count)") }
        var loaded = try LoadedModel.isGGUF(model) ? GGUFModel.load(GGUFFile(path: model)) : Checkpoint.load(from: model)
        if let adapter { loaded = try PEFTAdapter.load(adapter, onto: loaded, trainable: { $0.contains(".lora_") }) }
        let workspace = try TrainingWorkspace(model: loaded, batch: batch, length: length)
        let loss = try loaded.forward(ids: input, targets: goal, workspace: workspace)
        loaded.backward(workspace: workspace)
        let base = workspace.gradients.pointer
        let entries = loaded.layout.tensors.compactMap { t in
            t.gradientOffset.map { Safetensors.Entry(name: t.name, shape: t.shape, data: UnsafeBufferPointer(start: base + $0, count: t.count)) }
        }
        // A mixture model's gradient includes its router losses (times their coefficients).
        var metadata = ["loss": String(loss)]
        var router = ""
        if loaded.config.experts > 0 {
            metadata["aux_loss"] = String(workspace.routerAuxLoss)
            metadata["z_loss"] = String(workspace.routerZLoss)
            router = " (cross-entropy); aux_loss \(workspace.routerAuxLoss); z_loss \(workspace.routerZLoss)"
        }
        try withExtendedLifetime(workspace) {
            try Safetensors.write(entries, metadata: metadata, to: out)
        }
        print("loss \(loss)\(router); gradients written to \(out)")
    }
}

struct TrainStepsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-steps",
        abstract: "Run optimizer steps on given batches and print the losses as JSON, for checking the optimizer against another implementation.")

    @Option(help: "Checkpoint directory (the initial weights).") var model: String
    @Option(help: "JSON: {\"batch\": B, \"length\": T, \"steps\": [{\"ids\": […], \"targets\": […]}, …]}.") var batches: String
    @Option(help: "Peak learning rate.") var lr = 1e-3
    @Option(help: "Final learning rate.") var minLr = 1e-4
    @Option(help: "Warmup steps.") var warmup = 5
    @Option(help: "Steps of the cosine schedule (default: the number of batches).") var total: Int?
    @Option(help: "Weight decay.") var weightDecay = 0.1
    @Option(help: "Gradient clipping (0: off).") var clip = 1.0

    func validate() throws {
        try OptionDomain.number(lr, "lr", 0...10, openLower: true)
        try OptionDomain.number(minLr, "min-lr", 0...lr)
        try OptionDomain.count(warmup, "warmup", min: 0)
        try OptionDomain.count(total, "total")
        try OptionDomain.number(weightDecay, "weight-decay", 0...10)
        try OptionDomain.number(clip, "clip", 0...1e6)
    }

    struct Batches: Decodable {
        struct Step: Decodable { var ids: [Int32]; var targets: [Int32] }
        var batch: Int
        var length: Int
        var steps: [Step]
    }

    func run() throws {
        let input: Batches
        do {
            input = try JSONDecoder().decode(Batches.self, from: Data(contentsOf: URL(fileURLWithPath: batches)))
        } catch {
            throw ValidationError("\(batches): \(error)")
        }
        let loaded = try Checkpoint.load(from: model)
        var options = TrainingOptions()
        options.steps = input.steps.count
        options.batch = input.batch
        options.sequenceLength = input.length
        options.schedule = LearningRateSchedule(maxLR: lr, minLR: minLr, warmup: warmup, total: total ?? input.steps.count)
        options.weightDecay = weightDecay
        options.clip = clip
        options.spikeFactor = 0
        guard input.batch > 0, input.batch <= 1 << 16, input.length > 1, input.length <= loaded.config.contextLength else {
            throw ValidationError("\(batches): batch must be in 1...65536 and length in 2...\(loaded.config.contextLength) (the model's context), got \(input.batch) and \(input.length)")
        }
        let n = input.batch * input.length
        for (i, step) in input.steps.enumerated() where step.ids.count != n || step.targets.count != n {
            throw ValidationError("\(batches): steps[\(i)] holds \(step.ids.count) ids and \(step.targets.count) targets, batch × length is \(n)")
        }
        let data = try FixedBatches(batches: input.steps.map { MaskedExample(ids: $0.ids, targets: $0.targets) },
                                    vocabularySize: loaded.config.vocabularySize)
        let trainer = try Trainer(model: loaded, options: options, data: data, validation: nil)
        var losses: [Float] = []
        for _ in input.steps {
            losses.append(try trainer.step().loss)
        }
        print("[" + losses.map { String($0) }.joined(separator: ", ") + "]")
    }
}

struct InspectRouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect-router",
        abstract: "Show where a mixture of experts sends tokens: each block's expert loads and the experts of the first tokens.")

    @Option(help: "A checkpoint directory (a mixture-of-experts model).") var model: String
    @Option(help: "A text file (tokenized with the model's tokenizer) or a .bin token shard.") var data: String
    @Option(help: "Tokens to route (from the start of --data).") var tokens = 16384
    @Option(help: "Tokens whose experts are listed one by one.") var show = 24

    func validate() throws {
        try OptionDomain.count(tokens, "tokens", max: 1 << 24)
        try OptionDomain.count(show, "show", min: 0, max: 1 << 16)
    }

    func run() throws {
        let loaded = try LoadedModel.load(model, tokenizer: nil)
        guard let sentencePiece = loaded.tokenizer as? SentencePieceTokenizer else {
            throw ValidationError("\(model): inspect-router reads checkpoints with a SentencePiece tokenizer")
        }
        let ids = Array(try loadTokens(data, tokenizer: sentencePiece).prefix(tokens))
        let inspection = try loaded.model.inspectRouter(tokens: ids)
        let c = loaded.model.config
        print("Expert loads over \(ids.count) tokens of \(data), as multiples of the uniform share (1/\(c.experts) of the top-\(c.expertsPerToken) assignments):")
        print("layer " + (0..<c.experts).map { String(repeating: " ", count: max(0, 6 - "e\($0)".count)) + "e\($0)" }.joined() + "    min    max")
        for (m, layer) in inspection.layers.enumerated() {
            let shares = inspection.loads[m].map { $0 * Double(c.experts) }
            print(String(format: "%5d ", layer) + shares.map { String(format: "%6.2f", $0) }.joined()
                  + String(format: "  %5.2f  %5.2f", shares.min()!, shares.max()!))
        }
        guard show > 0 else { return }
        print("\nThe first \(min(show, ids.count)) tokens' experts (best first), per mixture block:")
        for r in 0..<min(show, ids.count) {
            let piece = (try? sentencePiece.piece(for: ids[r])) ?? "?"
            let experts = inspection.choices.map { $0[r].map(String.init).joined(separator: ",") }.joined(separator: "  ")
            print(piece.debugDescription.padding(toLength: 16, withPad: " ", startingAt: 0) + experts)
        }
    }
}
