import Chat

/// Scores a model's first action on conversations whose first assistant turn is known: the right
/// tool with the right arguments (numbers compared by value, JSON otherwise normalized), or a
/// plain answer where no tool is needed.
public enum ToolUseEvaluation {
    public struct Result: Sendable {
        /// Per category (the expected tool's name, or "no tool"): correct and total.
        public var byCategory: [String: (correct: Int, total: Int)] = [:]
        /// Right tool, wrong arguments.
        public var wrongArguments = 0
        public var total: Int { byCategory.values.reduce(0) { $0 + $1.total } }
        public var correct: Int { byCategory.values.reduce(0) { $0 + $1.correct } }
    }

    /// The messages before the first assistant turn, and that turn.
    public static func split(_ c: Conversation) -> (history: [Message], expected: Message)? {
        guard let i = c.messages.firstIndex(where: { $0.role == .assistant }) else { return nil }
        return (Array(c.messages[..<i]).filter { $0.role != .system }, c.messages[i])
    }

    /// Whether `calls` are `expected`'s calls: the same names in order, arguments equal as JSON
    /// values (numbers by value, strings exactly, keys in any order).
    public static func matches(_ calls: [ToolCall], _ expected: [ToolCall]) -> Bool {
        calls.count == expected.count && zip(calls, expected).allSatisfy { $0.name == $1.name && equal($0.arguments, $1.arguments) }
    }

    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): return abs(x - y) <= 1e-9 * max(1, abs(y))
        case (.string(let x), .number(let y)): return Double(x).map { abs($0 - y) <= 1e-9 * max(1, abs(y)) } ?? false
        case (.object(let x), .object(let y)):
            guard x.count == y.count else { return false }
            return y.allSatisfy { field in x.first { $0.key == field.key }.map { equal($0.value, field.value) } ?? false }
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        default: return a == b
        }
    }

    /// Runs `engine` on each conversation and scores the first action; `progress` gets each
    /// conversation's outcome. The engine is offered the conversation's own tools (the engine's
    /// tools where the names match, so built-in tools really run; stubs otherwise) and its
    /// system message is the engine's.
    public static func run(_ engine: ChatEngine, on conversations: [Conversation],
                           progress: (Int, Bool, String) -> Void = { _, _, _ in }) throws -> Result {
        var result = Result()
        let available = engine.tools
        defer { engine.tools = available }
        for (i, c) in conversations.enumerated() {
            guard let (history, expected) = split(c) else { continue }
            engine.tools = ToolRegistry(c.tools.map { definition in
                available.tools.first { $0.definition == definition } ?? Tool(definition: definition) { _ in .object([]) }
            })
            let category = expected.toolCalls.first?.name ?? "no tool"
            let (text, calls, _) = try engine.nextMessage(after: history)
            let valid = calls.filter { !$0.name.isEmpty }
            let ok = expected.toolCalls.isEmpty ? (calls.isEmpty && !text.isEmpty) : matches(valid, expected.toolCalls)
            if !ok && !expected.toolCalls.isEmpty && valid.map(\.name) == expected.toolCalls.map(\.name) { result.wrongArguments += 1 }
            var entry = result.byCategory[category] ?? (0, 0)
            entry.total += 1
            if ok { entry.correct += 1 }
            result.byCategory[category] = entry
            progress(i, ok, valid.isEmpty ? "text: \(text.prefix(60))" : valid.map { "\($0.name) \($0.arguments.serialized(spaced: false))" }.joined(separator: "; "))
        }
        return result
    }
}
