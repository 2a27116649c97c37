import Chat
import Foundation
import Support
import Tokenizer
import Transformer

/// Fine-tuning data in mlx-lm's formats, one JSON object per line: `{"messages": […], "tools":
/// […]}` (or ShareGPT `conversations`), rendered with the chat template and trained on the
/// assistant turns only; `{"prompt": …, "completion": …}`, trained on the completion (or on both
/// without `maskPrompt`); `{"text": …}`, trained on all of it. Bad lines are errors naming the
/// file and line.
public enum FineTuneData {
    public struct Options: Sendable {
        public var template = ChatTemplate.chatML
        /// Put before conversations that have no system message (the model's template's default).
        public var defaultSystem: String?
        /// Train only on completions (prompt/completion lines).
        public var maskPrompt = true
        /// mlx-lm's `--mask-prompt` for conversations: train on the final assistant turn only
        /// (everything before it is the prompt).
        public var lastTurnOnly = false
        /// Longer examples are cut to this many tokens.
        public var maxLength = 1024
        public init() {}
    }

    /// The examples of a JSONL file.
    public static func read(_ path: String, tokenizer: any TextTokenizer, options: Options) throws -> [MaskedExample] {
        let bytes = try MappedFile(path: path).data()
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ChatError.invalidData(source: path, reason: "not valid UTF-8")
        }
        var examples: [MaskedExample] = []
        let turnEnd = tokenizer.id(for: options.template.turnEnd) ?? tokenizer.eosID
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let source = "\(path): line \(i + 1)"
            let record: JSONValue
            do { record = try JSONValue.parse(trimmed, maxDepth: 64) } catch {
                throw ChatError.invalidData(source: source, reason: "\(error)")
            }
            var ids: [Int32], mask: [UInt8]
            if record["messages"] != nil || record["conversations"] != nil {
                var c = record["messages"] != nil ? try ChatDatasets.openAI(record, source: source) : try ChatDatasets.shareGPT(record, source: source)
                if let system = options.defaultSystem, c.messages.first?.role != .system {
                    c.messages.insert(Message(role: .system, content: system), at: 0)
                }
                (ids, mask) = try options.template.tokenize(c, with: tokenizer)
                if options.lastTurnOnly, let last = mask.lastIndex(of: 1) {
                    // The final assistant turn is the last run of trained tokens.
                    var first = last
                    while first > 0 && mask[first - 1] == 1 { first -= 1 }
                    for i in 0..<first { mask[i] = 0 }
                }
            } else if let prompt = record["prompt"]?.stringValue, let completion = record["completion"]?.stringValue {
                let p = try tokenizer.encode(plainText: prompt), c = try tokenizer.encode(plainText: completion) + [turnEnd]
                ids = p + c
                mask = [UInt8](repeating: options.maskPrompt ? 0 : 1, count: p.count) + [UInt8](repeating: 1, count: c.count)
            } else if let text = record["text"]?.stringValue {
                ids = try tokenizer.encode(plainText: text) + [turnEnd]
                mask = [UInt8](repeating: 1, count: ids.count)
            } else {
                throw ChatError.invalidData(source: source, reason: "needs \"messages\", \"conversations\", \"prompt\" and \"completion\" strings, or \"text\"")
            }
            // Position t predicts token t+1, which counts when the mask trains it.
            let n = min(ids.count, options.maxLength + 1)
            guard n >= 2 else { throw ChatError.invalidData(source: source, reason: "the example is empty") }
            let targets = (0..<(n - 1)).map { t in mask[t + 1] == 1 ? ids[t + 1] : -1 }
            guard targets.contains(where: { $0 >= 0 }) else {
                throw ChatError.invalidData(source: source, reason: "nothing to train on within \(options.maxLength) tokens (no assistant turn or completion)")
            }
            examples.append(MaskedExample(ids: Array(ids[0..<(n - 1)]), targets: targets))
        }
        guard !examples.isEmpty else { throw ChatError.invalidData(source: path, reason: "the file holds no examples") }
        return examples
    }
}
