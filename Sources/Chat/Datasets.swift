import Foundation
import Support

/// Conversation datasets: ShareGPT JSON (as LLaMA-Factory's glaive tool-call data) and OpenAI
/// `messages` JSONL, read into `Conversation`s; OpenAI JSONL written back.
public enum ChatDatasets {
    /// Reads a file by its form: a JSON array (ShareGPT, or OpenAI objects) or JSONL.
    /// `allowEmptyReplies`: an assistant turn with neither text nor calls is kept (a saved chat
    /// where the model said nothing), instead of refused as a training-data error.
    public static func read(_ path: String, allowEmptyReplies: Bool = false) throws -> [Conversation] {
        let bytes = try MappedFile(path: path).data()
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ChatError.invalidData(source: path, reason: "not valid UTF-8")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var records: [(JSONValue, String)] = []
        if trimmed.hasPrefix("[") {
            do {
                guard case .array(let items) = try JSONValue.parse(trimmed, maxDepth: 64) else {
                    throw ChatError.invalidData(source: path, reason: "the file starts with '[' but is not a JSON array")
                }
                records = items.enumerated().map { ($0.element, "\(path): record \($0.offset + 1)") }
            } catch let error as JSONValue.ParseError {
                throw ChatError.invalidData(source: path, reason: error.description)
            }
        } else {
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.isEmpty { continue }
                do {
                    records.append((try JSONValue.parse(l, maxDepth: 64), "\(path): line \(i + 1)"))
                } catch let error as JSONValue.ParseError {
                    throw ChatError.invalidData(source: "\(path): line \(i + 1)", reason: error.description)
                }
            }
        }
        guard !records.isEmpty else {
            throw ChatError.invalidData(source: path, reason: "the file holds no conversations")
        }
        return try records.map { record, source in
            if record["conversations"] != nil { return try shareGPT(record, source: source) }
            if record["messages"] != nil { return try openAI(record, source: source, allowEmptyReplies: allowEmptyReplies) }
            throw ChatError.invalidData(source: source, reason: "neither \"conversations\" (ShareGPT) nor \"messages\" (OpenAI)")
        }
    }

    /// One ShareGPT record: `conversations` with from = human / gpt / function_call /
    /// observation / system, and an optional `tools` JSON string (or array).
    public static func shareGPT(_ record: JSONValue, source: String) throws -> Conversation {
        guard case .array(let turns) = record["conversations"] else {
            throw ChatError.invalidData(source: source, reason: "\"conversations\" is not an array")
        }
        var tools: [ToolDefinition] = []
        if let raw = record["tools"] {
            var list = raw
            if let text = raw.stringValue {
                list = text.isEmpty ? .array([]) : try parseEmbedded(text, source: source, field: "tools")
            }
            guard case .array(let items) = list else { throw ChatError.invalidData(source: source, reason: "\"tools\" is not a list") }
            tools = try items.map { try ToolDefinition(json: $0) }
        }
        var messages: [Message] = []
        if let system = record["system"]?.stringValue, !system.isEmpty { messages.append(Message(role: .system, content: system)) }
        var callCount = 0
        // Observations answer the latest calls in order.
        var pending: [ToolCall] = []
        for (i, turn) in turns.enumerated() {
            guard let from = turn["from"]?.stringValue, let value = turn["value"]?.stringValue else {
                throw ChatError.invalidData(source: source, reason: "turn \(i + 1) needs string \"from\" and \"value\"")
            }
            switch from {
            case "human", "user": messages.append(Message(role: .user, content: value))
            case "gpt", "assistant":
                guard !value.isEmpty else {
                    throw ChatError.invalidData(source: source, reason: "turn \(i + 1): an empty assistant turn")
                }
                messages.append(Message(role: .assistant, content: value))
            case "system": messages.append(Message(role: .system, content: value))
            case "function_call":
                let call = try parseEmbedded(value, source: source, field: "turn \(i + 1) function_call")
                let calls: [JSONValue] = if case .array(let many) = call { many } else { [call] }
                var parsed: [ToolCall] = []
                for c in calls {
                    guard let name = c["name"]?.stringValue else {
                        throw ChatError.invalidData(source: source, reason: "turn \(i + 1): a function call has no name")
                    }
                    var arguments = c["arguments"] ?? c["parameters"] ?? .object([])
                    if let text = arguments.stringValue { arguments = try parseEmbedded(text, source: source, field: "turn \(i + 1) arguments") }
                    parsed.append(ToolCall(id: "call_\(callCount)", name: name, arguments: arguments))
                    callCount += 1
                }
                messages.append(Message(role: .assistant, content: "", toolCalls: parsed))
                pending = parsed
            case "observation", "function", "tool":
                let call = pending.isEmpty ? nil : pending.removeFirst()
                messages.append(Message(role: .tool, content: value, toolCallID: call?.id, name: call?.name))
            default:
                throw ChatError.invalidData(source: source, reason: "turn \(i + 1): unknown speaker \"\(from)\"")
            }
        }
        return Conversation(messages: messages, tools: tools)
    }

    /// One OpenAI record: `messages` with role, content, tool_calls (function name and JSON
    /// string arguments) and tool_call_id; optional `tools`.
    public static func openAI(_ record: JSONValue, source: String, allowEmptyReplies: Bool = false) throws -> Conversation {
        guard case .array(let list) = record["messages"] else {
            throw ChatError.invalidData(source: source, reason: "\"messages\" is not an array")
        }
        var tools: [ToolDefinition] = []
        switch record["tools"] {
        case nil, .null?: break
        case .array(let items)?: tools = try items.map { try ToolDefinition(json: $0) }
        default: throw ChatError.invalidData(source: source, reason: "\"tools\" must be an array")
        }
        guard !list.isEmpty else { throw ChatError.invalidData(source: source, reason: "\"messages\" is empty") }
        let messages = try list.enumerated().map { i, m -> Message in
            guard case .object = m else {
                throw ChatError.invalidData(source: source, reason: "message \(i + 1) is not an object")
            }
            guard let roleName = m["role"]?.stringValue, let role = Role(rawValue: roleName) else {
                throw ChatError.invalidData(source: source, reason: "message \(i + 1): \"role\" must be one of system, user, assistant, tool")
            }
            var calls: [ToolCall] = []
            switch m["tool_calls"] {
            case nil, .null?: break
            case .array(let items)?:
                calls = try items.enumerated().map { j, item in
                    let function = item["function"] ?? item
                    guard let name = function["name"]?.stringValue else {
                        throw ChatError.invalidData(source: source, reason: "message \(i + 1): tool call \(j + 1) has no name")
                    }
                    var arguments = function["arguments"] ?? .object([])
                    if let text = arguments.stringValue { arguments = try parseEmbedded(text, source: source, field: "message \(i + 1) arguments") }
                    guard case .object = arguments else {
                        throw ChatError.invalidData(source: source, reason: "message \(i + 1): tool call \(j + 1): \"arguments\" must be a JSON object")
                    }
                    return ToolCall(id: item["id"]?.stringValue ?? "call_\(j)", name: name, arguments: arguments)
                }
            default:
                throw ChatError.invalidData(source: source, reason: "message \(i + 1): \"tool_calls\" must be an array")
            }
            // Content: a string, an array of text parts (OpenAI's multi-part form), or null /
            // absent for an assistant turn that only calls tools.
            let content: String
            switch m["content"] {
            case .string(let text)?: content = text
            case .array(let parts)?:
                content = try parts.enumerated().map { k, part in
                    guard let text = part["text"]?.stringValue ?? part.stringValue else {
                        throw ChatError.invalidData(source: source, reason: "message \(i + 1): content part \(k + 1) has no \"text\" string")
                    }
                    return text
                }.joined()
            case nil, .null?:
                guard !calls.isEmpty else {
                    throw ChatError.invalidData(source: source, reason: "message \(i + 1): \"content\" is missing (only an assistant turn with tool_calls may omit it)")
                }
                content = ""
            default:
                throw ChatError.invalidData(source: source, reason: "message \(i + 1): \"content\" must be a string, got \(m["content"]!.serialized(spaced: false).prefix(40))")
            }
            if role == .assistant && content.isEmpty && calls.isEmpty && !allowEmptyReplies {
                throw ChatError.invalidData(source: source, reason: "message \(i + 1): an assistant turn with no content and no tool calls")
            }
            return Message(role: role, content: content, toolCalls: calls,
                           toolCallID: m["tool_call_id"]?.stringValue, name: m["name"]?.stringValue)
        }
        return Conversation(messages: messages, tools: tools)
    }

    /// The OpenAI JSON object of a conversation (arguments as JSON strings, as the API sends them).
    public static func openAIJSON(_ c: Conversation) -> JSONValue {
        let messages: [JSONValue] = c.messages.map { m in
            var fields: [(key: String, value: JSONValue)] = [("role", .string(m.role.rawValue)), ("content", .string(m.content))]
            if !m.toolCalls.isEmpty {
                fields.append(("tool_calls", .array(m.toolCalls.map { call in
                    .object([("id", .string(call.id)), ("type", .string("function")), ("function", .object([
                        ("name", .string(call.name)), ("arguments", .string(call.arguments.serialized())),
                    ]))])
                })))
            }
            if let id = m.toolCallID { fields.append(("tool_call_id", .string(id))) }
            if let name = m.name { fields.append(("name", .string(name))) }
            return .object(fields)
        }
        var fields: [(key: String, value: JSONValue)] = [("messages", .array(messages))]
        if !c.tools.isEmpty { fields.append(("tools", .array(c.tools.map(\.json)))) }
        return .object(fields)
    }

    /// Writes conversations as OpenAI JSONL, atomically.
    public static func writeOpenAI(_ conversations: [Conversation], to path: String) throws {
        let text = conversations.map { openAIJSON($0).serialized(spaced: false) + "\n" }.joined()
        try AtomicFile.write(Data(text.utf8), to: path)
    }

    private static func parseEmbedded(_ text: String, source: String, field: String) throws -> JSONValue {
        do {
            return try JSONValue.parse(text, maxDepth: 64)
        } catch let error as JSONValue.ParseError {
            throw ChatError.invalidData(source: source, reason: "\(field): \(error.description)")
        }
    }
}
