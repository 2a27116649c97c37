/// Hermes / Qwen calls: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, any number per
/// turn, anywhere in the text. The JSON is scanned for its end, so `</tool_call>` inside a JSON
/// string does not close the call.
public struct HermesToolCallParser: ToolCallParser, SteppedToolCallParser {
    static let open = Array("<tool_call>".utf8)
    static let close = Array("</tool_call>".utf8)

    var state: StreamState
    private var inCall = false
    private var scanner = JSONExtentScanner()
    /// Offset of the JSON's opening brace in the buffer, once seen.
    private var jsonStart: Int?
    /// Offset just past the JSON's closing brace, once seen.
    private var jsonEnd: Int?

    public init(tools: [ToolDefinition]?) { state = StreamState(tools: tools) }

    public mutating func feed(_ bytes: [UInt8]) -> [ToolCallEvent] { drive(bytes) }
    public mutating func finish() -> [ToolCallEvent] { driveToEnd() }

    /// Settles what is left in the buffer once no step makes progress at the end of the stream.
    mutating func flush(into events: inout [ToolCallEvent]) {
        if inCall && !state.buffer.isEmpty {
            events.append(.error(ToolCallError(kind: .unclosedCall, message: "the stream ended inside <tool_call>",
                                               raw: state.take(state.buffer.count))))
            inCall = false
        } else if !state.buffer.isEmpty {
            state.emitText(upTo: state.buffer.count, final: true, into: &events)
        }
    }

    /// Makes progress; returns false when it needs more input.
    mutating func step(final: Bool, into events: inout [ToolCallEvent]) -> Bool {
        if !inCall {
            if let at = state.find(Self.open) {
                state.emitText(upTo: at, final: true, into: &events)
                inCall = true
                scanner = JSONExtentScanner()
                jsonStart = nil
                jsonEnd = nil
                return true
            }
            if final { return false }
            let hold = state.heldSuffix([Self.open])
            state.emitText(upTo: state.buffer.count - hold, into: &events)
            return false
        }
        // In a call: the buffer starts with <tool_call>.
        let body = Self.open.count
        if jsonStart == nil {
            var i = body
            while i < state.buffer.count && state.buffer[i].isJSONWhitespace { i += 1 }
            guard i < state.buffer.count else { return false }
            guard state.buffer[i] == UInt8(ascii: "{") else { return malformed(from: i, "the call is not a JSON object", into: &events) }
            jsonStart = i
        }
        let start = jsonStart!
        if jsonEnd == nil {
            switch scanner.scan(state.buffer, start: start, end: state.buffer.count, stopAt: Self.close) {
            case .complete(let end): jsonEnd = end
            case .marker(let at):
                // </tool_call> outside any JSON string before the object closed: a broken call.
                return malformed(from: at, "the JSON ends before it is complete", into: &events, closeAt: at)
            case .needMore: return false
            }
        }
        let end = jsonEnd!
        var j = end
        while j < state.buffer.count && state.buffer[j].isJSONWhitespace { j += 1 }
        let rest = state.buffer.count - j
        if rest >= Self.close.count {
            guard Array(state.buffer[j..<(j + Self.close.count)]) == Self.close else {
                return malformed(from: j, "text after the call's JSON before </tool_call>", into: &events)
            }
            let json = String(decoding: state.buffer[start..<end], as: UTF8.self)
            let raw = state.take(j + Self.close.count)
            inCall = false
            events.append(Self.call(from: json, raw: raw, state: &state))
            return true
        }
        if Array(state.buffer[j...]) != Array(Self.close[0..<rest]) {
            return malformed(from: j, "text after the call's JSON before </tool_call>", into: &events)
        }
        return false
    }

    /// Ends a broken call at the next `</tool_call>` (or waits for it); the raw text becomes an
    /// error event.
    private mutating func malformed(from: Int, _ message: String, into events: inout [ToolCallEvent], closeAt: Int? = nil) -> Bool {
        guard let at = closeAt ?? state.find(Self.close, from: from) else { return false }
        events.append(.error(ToolCallError(kind: .malformedJSON, message: message, raw: state.take(at + Self.close.count))))
        inCall = false
        return true
    }

    static func call(from json: String, raw: String, state: inout StreamState) -> ToolCallEvent {
        do {
            let value = try JSONValue.parse(json, maxDepth: 64)
            return state.makeCall(name: value["name"]?.stringValue, arguments: value["arguments"] ?? value["parameters"], raw: raw)
        } catch {
            return .error(ToolCallError(kind: .malformedJSON, message: "\(error)", raw: raw))
        }
    }
}
