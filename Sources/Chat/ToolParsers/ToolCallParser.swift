/// What a tool-call parser reports. The events of a completion partition it: text deltas and
/// the raw spans of calls and errors, in order, concatenate to the input.
public enum ToolCallEvent: Sendable, Equatable {
    /// Plain text, emitted as soon as it cannot be the start of a marker.
    case text(String)
    /// A complete, valid call, and the exact text it was parsed from (empty for the second and
    /// later calls of one Mistral array, whose text the first call carries).
    case toolCall(ToolCall, raw: String)
    /// A call that could not be used; its raw text is not lost.
    case error(ToolCallError)
}

public struct ToolCallError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case malformedJSON = "malformed JSON"
        case unclosedCall = "unclosed call"
        case notACall = "not a tool call"
        case unknownTool = "unknown tool"
        case invalidArguments = "invalid arguments"
    }

    public var kind: Kind
    public var message: String
    public var raw: String

    public var description: String { "\(kind.rawValue): \(message)" }
}

/// A streaming parser for one tool-call format. Feed it the completion in chunks of any size
/// (even inside a UTF-8 sequence or a marker), then call `finish()`; the events are the same
/// for every way of splitting the input.
public protocol ToolCallParser {
    /// The tools calls are checked against (name known, arguments valid); none: no checks.
    init(tools: [ToolDefinition]?)
    mutating func feed(_ bytes: [UInt8]) -> [ToolCallEvent]
    mutating func finish() -> [ToolCallEvent]
}

extension ToolCallParser {
    public mutating func feed(_ text: String) -> [ToolCallEvent] { feed(Array(text.utf8)) }

    /// Parses a whole completion.
    public static func parse(_ text: String, tools: [ToolDefinition]? = nil) -> [ToolCallEvent] {
        var parser = Self(tools: tools)
        return parser.feed(text) + parser.finish()
    }
}

/// The formats TinyLM parses.
public enum ToolCallFormat: String, Sendable, CaseIterable {
    case hermes, llama3, mistral

    public func makeParser(tools: [ToolDefinition]? = nil) -> any ToolCallParser {
        switch self {
        case .hermes: HermesToolCallParser(tools: tools)
        case .llama3: Llama3ToolCallParser(tools: tools)
        case .mistral: MistralToolCallParser(tools: tools)
        }
    }
}

/// Merges adjacent text events (streaming splits text differently from a one-shot parse).
public func coalesced(_ events: [ToolCallEvent]) -> [ToolCallEvent] {
    var out: [ToolCallEvent] = []
    for event in events {
        if case .text(let t) = event, case .text(let previous)? = out.last {
            out[out.count - 1] = .text(previous + t)
        } else if case .text(let t) = event, t.isEmpty {
            continue
        } else {
            out.append(event)
        }
    }
    return out
}
