import Chat
import Foundation

/// The Berkeley Function Calling Leaderboard's single-turn categories (`bfcl_eval/data` of PyPI's
/// `bfcl-eval`: `BFCL_v4_<category>.json` and `possible_answer/BFCL_v4_<category>.json`), scored
/// with its AST rules on the model's first message:
/// - `simple_python`, `multiple`: exactly one call, to the right function;
/// - `parallel`: one call per expected call, matched in any order;
/// - `irrelevance`: no call at all.
///
/// A call matches when every parameter it passes exists in the function, every required one is
/// passed, and each value is one of the answer's allowed values (an allowed `""` marks an
/// optional parameter that may be left out). Strings compare as BFCL standardizes them (case,
/// spaces and `,./-_*^` ignored, `'` read as `"`), numbers by value (an integer where a float is
/// allowed), lists and objects element by element. Function names match as written or with dots
/// as underscores.
public enum BFCL {
    public static let categories = ["simple_python", "multiple", "parallel", "irrelevance"]
    /// Further single-turn categories it can run: `parallel_multiple`, and the live ones (users'
    /// questions and functions, a set apart from the four above, e.g. to validate a decoding
    /// choice without looking at them); `live_relevance` wants some call, whichever it is.
    public static let otherCategories = ["parallel_multiple", "live_simple", "live_multiple", "live_parallel",
                                         "live_parallel_multiple", "live_irrelevance", "live_relevance"]
    /// Categories scored on whether the message calls nothing (`irrelevance`) or something
    /// (`live_relevance`); they have no answer file.
    static let noCall: Set = ["irrelevance", "live_irrelevance"], someCall: Set = ["live_relevance"]

    public struct Question: Sendable {
        public var id: String
        public var messages: [Message]
        public var functions: [ToolDefinition]
        /// Allowed calls: function name → parameter → allowed values (empty for irrelevance).
        public var answers: [[String: [String: [JSONValue]]]]
    }

    /// The questions of `category` in `directory` (`bfcl_eval/data`).
    public static func load(_ directory: String, category: String) throws -> [Question] {
        let questionPath = directory + "/BFCL_v4_\(category).json", answerPath = directory + "/possible_answer/BFCL_v4_\(category).json"
        func lines(_ path: String) throws -> [JSONValue] {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw ChatError.invalidData(source: path, reason: "cannot be read (is --bfcl the bfcl_eval/data folder?)")
            }
            return try text.split(separator: "\n").enumerated().map { i, line in
                do { return try JSONValue.parse(String(line)) } catch { throw ChatError.invalidData(source: "\(path): line \(i + 1)", reason: "\(error)") }
            }
        }
        var answers: [String: [[String: [String: [JSONValue]]]]] = [:]
        if !noCall.contains(category) && !someCall.contains(category) {
            for record in try lines(answerPath) {
                guard let id = record["id"]?.stringValue, case .array(let truth)? = record["ground_truth"] else { continue }
                answers[id] = truth.compactMap { call -> [String: [String: [JSONValue]]]? in
                    guard case .object(let fields) = call, let (name, params) = fields.first, case .object(let p) = params else { return nil }
                    var allowed: [String: [JSONValue]] = [:]
                    for (key, value) in p { if case .array(let values) = value { allowed[key] = values } }
                    return [name: allowed]
                }
            }
        }
        return try lines(questionPath).map { record in
            let id = record["id"]?.stringValue ?? "?"
            guard case .array(let turns)? = record["question"], case .array(let first)? = turns.first,
                  case .array(let functions)? = record["function"] else {
                throw ChatError.invalidData(source: "\(questionPath): \(id)", reason: "needs \"question\" and \"function\"")
            }
            let messages = first.compactMap { m -> Message? in
                guard let role = m["role"]?.stringValue.flatMap(Role.init(rawValue:)), let content = m["content"]?.stringValue else { return nil }
                return Message(role: role, content: content)
            }
            let tools = functions.compactMap { f -> ToolDefinition? in
                guard let name = f["name"]?.stringValue else { return nil }
                return ToolDefinition(name: name, description: f["description"]?.stringValue ?? "", parameters: jsonSchema(f["parameters"] ?? .object([])))
            }
            return Question(id: id, messages: messages, functions: tools, answers: answers[id] ?? [])
        }
    }

    /// BFCL's Python type names as JSON Schema's (`dict` → object, `float` → number, `tuple` →
    /// array, `any` → no type), recursively.
    static func jsonSchema(_ v: JSONValue) -> JSONValue {
        switch v {
        case .object(let fields):
            return .object(fields.compactMap { key, value in
                if key == "type", let t = value.stringValue {
                    switch t {
                    case "dict": return (key, .string("object"))
                    case "float": return (key, .string("number"))
                    case "tuple": return (key, .string("array"))
                    case "any": return nil
                    default: return (key, value)
                    }
                }
                return (key, jsonSchema(value))
            })
        case .array(let items): return .array(items.map(jsonSchema))
        default: return v
        }
    }

    /// A string as BFCL's checker compares it: lower case, without spaces and `,./-_*^`, single
    /// quotes as double ones.
    static func standardized(_ s: String) -> String {
        String(s.lowercased().filter { !" ,./-_*^".contains($0) }.map { $0 == "'" ? "\"" : $0 })
    }

    static func valueMatches(_ value: JSONValue, _ allowed: JSONValue) -> Bool {
        switch (value, allowed) {
        case (.number(let a), .number(let b)): return abs(a - b) <= 1e-9 * max(1, abs(b))
        case (.string(let a), .string(let b)): return standardized(a) == standardized(b)
        case (.bool(let a), .bool(let b)): return a == b
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { valueMatches($0, $1) }
        case (.object(let a), .object(let b)):
            // Each key of the answer: the model's value is one of its allowed ones.
            return b.allSatisfy { key, options in
                guard let v = a.first(where: { $0.key == key })?.value else {
                    if case .array(let o) = options { return o.contains(.string("")) }
                    return false
                }
                if case .array(let o) = options { return o.contains { valueMatches(v, $0) } }
                return valueMatches(v, options)
            } && a.allSatisfy { key, _ in b.contains { $0.key == key } }
        default: return false
        }
    }

    /// Whether `call` is one of the allowed forms in `answer` for a function of `functions`.
    static func callMatches(_ call: ToolCall, _ answer: [String: [String: [JSONValue]]], functions: [ToolDefinition]) -> Bool {
        guard let (name, allowed) = answer.first, call.name == name || call.name == name.replacingOccurrences(of: ".", with: "_"),
              let function = functions.first(where: { $0.name == name }), case .object(let args) = call.arguments else { return false }
        let properties = function.parameters["properties"]
        var required: [String] = []
        if case .array(let names)? = function.parameters["required"] { required = names.compactMap(\.stringValue) }
        for (key, _) in args where properties?[key] == nil { return false }
        for key in required where !args.contains(where: { $0.key == key }) { return false }
        for (key, options) in allowed {
            guard let value = args.first(where: { $0.key == key })?.value else {
                if options.contains(.string("")) { continue }
                return false
            }
            guard options.contains(where: { valueMatches(value, $0) }) else { return false }
        }
        return true
    }

    /// Whether a refused call still decodes as a function call, as BFCL's decoder reads the
    /// message: a name and an arguments object, whether or not that function is listed or its
    /// arguments fit the schema. Broken JSON, an unclosed call or one without a name does not.
    static func decodes(_ error: ToolCallError) -> Bool {
        error.kind == .unknownTool || error.kind == .invalidArguments
    }

    /// The score of a first message on `question` of `category`: `calls` the valid calls, and
    /// `refused` the calls that were refused. A refused call that still decodes is a call to BFCL:
    /// it fails `irrelevance` (a made-up function is still a call) and can match no answer.
    public static func score(_ calls: [ToolCall], refused: [ToolCallError] = [], _ question: Question, category: String) -> Bool {
        let decodedRefusals = refused.filter(decodes).count
        if noCall.contains(category) { return calls.isEmpty && decodedRefusals == 0 }
        if someCall.contains(category) { return !calls.isEmpty || decodedRefusals > 0 }
        guard decodedRefusals == 0, calls.count == question.answers.count else { return false }
        var unused = Array(calls.indices)
        for answer in question.answers {
            guard let i = unused.firstIndex(where: { callMatches(calls[$0], answer, functions: question.functions) }) else { return false }
            unused.remove(at: i)
        }
        return true
    }

    /// Runs `engine` on each question (the question's functions as its tools) and scores the first message.
    public static func run(_ engine: ChatEngine, questions: [Question], category: String,
                           progress: (Int, Bool, String) -> Void = { _, _, _ in }) throws -> (correct: Int, total: Int) {
        var correct = 0
        for (i, q) in questions.enumerated() {
            engine.tools = ToolRegistry(q.functions.map { definition in Tool(definition: definition) { _ in .object([]) } })
            let system = q.messages.first { $0.role == .system }?.content
            let saved = engine.system
            if let system { engine.system = system }
            defer { engine.system = saved }
            let (text, calls, refused) = try engine.nextMessage(after: q.messages.filter { $0.role != .system })
            let ok = score(calls.filter { !$0.name.isEmpty }, refused: refused, q, category: category)
            if ok { correct += 1 }
            let shown = calls.filter { !$0.name.isEmpty }.map { "\($0.name) \($0.arguments.serialized(spaced: false))" }
                + refused.map { "(\($0.kind.rawValue)) \($0.message)" }
            progress(i, ok, shown.isEmpty ? "text: \(text.prefix(60))" : shown.joined(separator: "; "))
        }
        return (correct, questions.count)
    }
}
