import Foundation
import Kernels
import Tokenizer

/// Text generation with streaming output: prompt → ids → cached prefill → sample, feed,
/// decode, until EOS, `maxTokens`, or a full context.
public struct TextGenerator {
    public let model: TransformerModel
    public let tokenizer: any TextTokenizer
    public var sampler = Sampler()
    public var maxTokens = 200
    /// Stop when the model emits EOS.
    public var stopAtEOS = true
    /// Put EOS before the prompt: in TinyLM's shards a document starts after an EOS.
    public var startWithEOS = true
    /// Pass the prompt itself to `onText` first, once it has been checked.
    public var echoPrompt = false
    /// How the key/value cache stores its rows.
    public var kvBits = KVCacheBits.fp32

    public init(model: TransformerModel, tokenizer: any TextTokenizer) throws {
        guard tokenizer.vocabularySize <= model.config.vocabularySize else {
            throw TransformerError.invalidConfig(source: tokenizer.source, field: "vocab_size",
                reason: "the tokenizer has \(tokenizer.vocabularySize) pieces but the model only \(model.config.vocabularySize)")
        }
        self.model = model
        self.tokenizer = tokenizer
    }

    public enum StopReason: String, Sendable { case endOfText = "end of text", maxTokens = "max tokens", contextFull = "context full" }

    public struct Result: Sendable {
        public var promptTokens: Int
        public var tokens: [Int32]
        public var text: String
        public var stopReason: StopReason
        public var prefillSeconds: Double
        public var decodeSeconds: Double
        public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(max(0, tokens.count - 1)) / decodeSeconds : 0 }
    }

    /// Generates a continuation of `prompt`, passing each new piece of text to `onText` as soon
    /// as it is complete UTF-8. The prompt must leave room for one new token in the context.
    public mutating func generate(_ prompt: String, onText: (String) -> Void = { _ in }) throws -> Result {
        var ids = try tokenizer.encode(prompt)
        if startWithEOS && tokenizer.eosID >= 0 { ids.insert(tokenizer.eosID, at: 0) }
        return try generate(promptIDs: ids, echo: echoPrompt ? prompt : nil, onText: onText)
    }

    /// Generates a continuation of the token ids `ids` (a chat template's prompt, say); `echo`,
    /// when given, goes to `onText` first.
    public mutating func generate(promptIDs ids: [Int32], echo: String? = nil, onText: (String) -> Void = { _ in }) throws -> Result {
        guard !ids.isEmpty else { throw TransformerError.emptyInput(what: "the prompt") }
        let context = model.config.contextLength
        guard ids.count < context else { throw TransformerError.sequenceTooLong(tokens: ids.count + 1, contextLength: context) }
        try sampler.validate()
        if let echo { onText(echo) }
        let session = try InferenceSession(model: model, reserve: min(context, ids.count + maxTokens), kvBits: kvBits)
        let promptText = try tokenizer.decode(ids)
        var generated: [Int32] = []
        var emitted = ""
        var start = DispatchTime.now().uptimeNanoseconds
        var logits = try session.feed(ids)
        let prefill = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        start = DispatchTime.now().uptimeNanoseconds
        var reason = StopReason.maxTokens
        while generated.count < maxTokens {
            let next = sampler.sample(Array(logits.prefix(tokenizer.vocabularySize)), history: ids + generated)
            if stopAtEOS && next == tokenizer.eosID {
                reason = .endOfText
                break
            }
            generated.append(next)
            // Decode with the prompt so spacing at the seam is right; hold back an incomplete
            // UTF-8 sequence (a byte piece waiting for its continuation).
            let full = try tokenizer.decode(ids + generated)
            if full.hasPrefix(promptText) {
                let text = String(full.dropFirst(promptText.count))
                if !text.hasSuffix("\u{FFFD}") && text.hasPrefix(emitted) && text.count > emitted.count {
                    onText(String(text.dropFirst(emitted.count)))
                    emitted = text
                }
            }
            if session.position >= context {
                reason = .contextFull
                break
            }
            if generated.count < maxTokens { logits = try session.feed([next]) }
        }
        let decode = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let full = try tokenizer.decode(ids + generated)
        let text = full.hasPrefix(promptText) ? String(full.dropFirst(promptText.count)) : try tokenizer.decode(generated)
        if text.count > emitted.count && text.hasPrefix(emitted) { onText(String(text.dropFirst(emitted.count))) }
        return Result(promptTokens: ids.count, tokens: generated, text: text, stopReason: reason,
                      prefillSeconds: prefill, decodeSeconds: decode)
    }
}

extension TransformerModel {
    /// Mean next-token cross-entropy over `tokens`, in non-overlapping windows of the context
    /// length (the last, shorter window counts too). Returns the loss and the tokens scored.
    /// With `workspace` (a trainer's), windows are its sequence length and no buffers are
    /// allocated; its activations and gradients are overwritten.
    public func evaluate(
        tokens: [Int32], batch: Int = 8, workspace given: TrainingWorkspace? = nil, pool: ThreadPool = .shared
    ) throws -> (loss: Double, count: Int) {
        let t = given?.capacity ?? config.contextLength
        guard tokens.count >= 2 else { throw TransformerError.emptyInput(what: "the evaluation data (fewer than 2 tokens)") }
        var windows: [(Int, Int)] = []
        var start = 0
        while start + 1 < tokens.count {
            let length = min(t, tokens.count - 1 - start)
            windows.append((start, length))
            start += length
        }
        let workspace = try given ?? TrainingWorkspace(model: self, batch: min(batch, windows.count), length: t, training: false)
        try workspace.setLength(t)
        var total = 0.0, counted = 0
        var index = 0
        while index < windows.count {
            let group = windows[index..<min(windows.count, index + workspace.batch)]
            var ids = [Int32](repeating: 0, count: workspace.batch * t)
            var targets = [Int32](repeating: -1, count: workspace.batch * t)
            for (row, (s, length)) in group.enumerated() {
                for j in 0..<length {
                    ids[row * t + j] = tokens[s + j]
                    targets[row * t + j] = tokens[s + j + 1]
                }
            }
            let loss = try forward(ids: ids, targets: targets, workspace: workspace, pool: pool)
            total += Double(loss) * Double(workspace.counted)
            counted += workspace.counted
            index += group.count
        }
        return (total / Double(counted), counted)
    }
}
