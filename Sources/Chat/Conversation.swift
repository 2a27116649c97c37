/// Who speaks a message.
public enum Role: String, Sendable, Hashable, CaseIterable {
    case system, user, assistant, tool
}

/// A call the assistant makes: a tool's name and JSON arguments.
public struct ToolCall: Sendable, Hashable {
    public var id: String
    public var name: String
    public var arguments: JSONValue

    public init(id: String, name: String, arguments: JSONValue) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// One message of a conversation. Assistant messages may carry tool calls; tool messages carry
/// the result for `toolCallID`.
public struct Message: Sendable, Hashable {
    public var role: Role
    public var content: String
    public var toolCalls: [ToolCall]
    public var toolCallID: String?
    /// The tool's name, on tool messages.
    public var name: String?

    public init(role: Role, content: String, toolCalls: [ToolCall] = [], toolCallID: String? = nil, name: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
    }
}

/// A tool signature in the OpenAI / Hugging Face function format:
/// `{"type": "function", "function": {"name", "description", "parameters": JSON Schema}}`.
public struct ToolDefinition: Sendable, Hashable {
    public var name: String
    public var description: String
    public var parameters: JSONValue

    public init(name: String, description: String, parameters: JSONValue) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }

    /// The definition as it appears in prompts and datasets.
    public var json: JSONValue {
        .object([("type", .string("function")), ("function", .object([
            ("name", .string(name)), ("description", .string(description)), ("parameters", parameters),
        ]))])
    }

    /// Reads either the wrapped form above or a bare `{"name", "description", "parameters"}`.
    public init(json: JSONValue) throws {
        let function = json["function"] ?? json
        guard let name = function["name"]?.stringValue, !name.isEmpty else {
            throw ChatError.invalidData(source: "tools", reason: "a tool has no name: \(json)")
        }
        self.name = name
        description = function["description"]?.stringValue ?? ""
        parameters = function["parameters"] ?? .object([("type", .string("object")), ("properties", .object([]))])
    }
}

/// Messages plus the tools the assistant may call.
public struct Conversation: Sendable, Hashable {
    public var messages: [Message]
    public var tools: [ToolDefinition]

    public init(messages: [Message], tools: [ToolDefinition] = []) {
        self.messages = messages
        self.tools = tools
    }
}

public enum ChatError: Error, CustomStringConvertible, Equatable {
    case invalidData(source: String, reason: String)
    case invalidTemplateText(reason: String)

    public var description: String {
        switch self {
        case .invalidData(let source, let reason): "\(source): \(reason)"
        case .invalidTemplateText(let reason): "not a rendered conversation: \(reason)"
        }
    }
}
