/// Llama 3.x JSON tool calls: `{"name": …, "parameters": {…}}` as the whole start of the
/// message, or after `<|python_tag|>` anywhere; several calls may follow each other, separated
/// by whitespace or `;`. A leading JSON object that is not a call is plain text.
public struct Llama3ToolCallParser: ToolCallParser, SteppedToolCallParser {
    static let tag = Array("<|python_tag|>".utf8)

    private enum Mode { case start, text, afterTag, call(tagged: Bool), betweenCalls }
    var state: StreamState
    private var mode = Mode.start
    private var scanner = JSONExtentScanner()
    private var jsonStart = 0

    public init(tools: [ToolDefinition]?) { state = StreamState(tools: tools) }

    public mutating func feed(_ bytes: [UInt8]) -> [ToolCallEvent] { drive(bytes) }
    public mutating func finish() -> [ToolCallEvent] { driveToEnd() }

    /// Settles what is left in the buffer once no step makes progress at the end of the stream.
    mutating func flush(into events: inout [ToolCallEvent]) {
        if case .call(let tagged) = mode, !state.buffer.isEmpty {
            let raw = state.take(state.buffer.count)
            // An unfinished object at the very start was never announced as a call: it is text.
            events.append(tagged ? .error(ToolCallError(kind: .unclosedCall, message: "the stream ended inside a call's JSON", raw: raw)) : .text(raw))
        } else if case .afterTag = mode, !state.buffer.isEmpty {
            events.append(.error(ToolCallError(kind: .unclosedCall, message: "<|python_tag|> is not followed by a call", raw: state.take(state.buffer.count))))
        } else if !state.buffer.isEmpty {
            state.emitText(upTo: state.buffer.count, final: true, into: &events)
        }
    }

    private func firstNonWhitespace(from: Int = 0) -> Int? {
        var i = from
        while i < state.buffer.count {
            if !state.buffer[i].isJSONWhitespace { return i }
            i += 1
        }
        return nil
    }

    mutating func step(final: Bool, into events: inout [ToolCallEvent]) -> Bool {
        switch mode {
        case .start:
            guard let i = firstNonWhitespace() else { return false }
            if state.buffer[i] == UInt8(ascii: "{") {
                state.emitText(upTo: i, final: true, into: &events)
                startCall(tagged: false)
                return true
            }
            let rest = state.buffer.count - i
            if rest < Self.tag.count && Array(state.buffer[i...]) == Array(Self.tag[0..<rest]) && !final { return false }
            mode = .text
            return true
        case .text:
            if let at = state.find(Self.tag) {
                state.emitText(upTo: at, final: true, into: &events)
                mode = .afterTag
                return true
            }
            if final { return false }
            state.emitText(upTo: state.buffer.count - state.heldSuffix([Self.tag]), into: &events)
            return false
        case .afterTag:
            // The buffer starts with the tag.
            guard let i = firstNonWhitespace(from: Self.tag.count) else { return false }
            guard state.buffer[i] == UInt8(ascii: "{") else {
                events.append(.error(ToolCallError(kind: .notACall, message: "<|python_tag|> is not followed by a JSON object", raw: state.take(i))))
                mode = .text
                return true
            }
            jsonStart = i
            scanner = JSONExtentScanner()
            mode = .call(tagged: true)
            return true
        case .call(let tagged):
            guard let end = scanner.scan(state.buffer, start: jsonStart, end: state.buffer.count) else { return false }
            let json = String(decoding: state.buffer[jsonStart..<end], as: UTF8.self)
            let raw = state.take(end)
            let parsed = try? JSONValue.parse(json, maxDepth: 64)
            let isCall = parsed?["name"]?.stringValue != nil && (parsed?["parameters"] ?? parsed?["arguments"]) != nil
            if !tagged && !isCall {
                events.append(.text(raw))
                mode = .text
                return true
            }
            if let parsed {
                events.append(state.makeCall(name: parsed["name"]?.stringValue, arguments: parsed["parameters"] ?? parsed["arguments"], raw: raw))
            } else {
                events.append(.error(ToolCallError(kind: .malformedJSON, message: "the call's JSON does not parse", raw: raw)))
            }
            mode = .betweenCalls
            return true
        case .betweenCalls:
            var i = 0
            while i < state.buffer.count && (state.buffer[i].isJSONWhitespace || state.buffer[i] == UInt8(ascii: ";")) { i += 1 }
            guard i < state.buffer.count else { return false }
            if state.buffer[i] == UInt8(ascii: "{") {
                state.emitText(upTo: i, final: true, into: &events)
                startCall(tagged: true)
                return true
            }
            mode = .text
            return true
        }
    }

    private mutating func startCall(tagged: Bool) {
        jsonStart = 0
        scanner = JSONExtentScanner()
        mode = .call(tagged: tagged)
    }
}
