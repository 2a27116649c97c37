/// Mistral calls after `[TOOL_CALLS]`: a JSON array `[{"name": …, "arguments": {…}}, …]`, or the
/// newer `name[ARGS]{…}` form; text before the marker is plain text.
public struct MistralToolCallParser: ToolCallParser, SteppedToolCallParser {
    static let marker = Array("[TOOL_CALLS]".utf8)
    static let argsMarker = Array("[ARGS]".utf8)

    private enum Mode { case text, afterMarker, array, name, arguments(name: String) }
    var state: StreamState
    private var mode = Mode.text
    private var scanner = JSONExtentScanner()
    private var jsonStart = 0

    public init(tools: [ToolDefinition]?) { state = StreamState(tools: tools) }

    public mutating func feed(_ bytes: [UInt8]) -> [ToolCallEvent] { drive(bytes) }
    public mutating func finish() -> [ToolCallEvent] { driveToEnd() }

    /// Settles what is left in the buffer once no step makes progress at the end of the stream.
    mutating func flush(into events: inout [ToolCallEvent]) {
        if case .text = mode {
            if !state.buffer.isEmpty { state.emitText(upTo: state.buffer.count, final: true, into: &events) }
        } else if !state.buffer.isEmpty {
            events.append(.error(ToolCallError(kind: .unclosedCall, message: "the stream ended inside [TOOL_CALLS]", raw: state.take(state.buffer.count))))
        }
        mode = .text
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
    }

    mutating func step(final: Bool, into events: inout [ToolCallEvent]) -> Bool {
        switch mode {
        case .text:
            if let at = state.find(Self.marker) {
                state.emitText(upTo: at, final: true, into: &events)
                mode = .afterMarker
                return true
            }
            if final { return false }
            state.emitText(upTo: state.buffer.count - state.heldSuffix([Self.marker]), into: &events)
            return false
        case .afterMarker:
            var i = Self.marker.count
            while i < state.buffer.count && state.buffer[i].isJSONWhitespace { i += 1 }
            guard i < state.buffer.count else { return false }
            let b = state.buffer[i]
            if b == UInt8(ascii: "[") {
                jsonStart = i
                scanner = JSONExtentScanner()
                mode = .array
            } else if Self.isNameByte(b) {
                jsonStart = i
                mode = .name
            } else {
                events.append(.error(ToolCallError(kind: .notACall, message: "[TOOL_CALLS] is followed by neither a JSON array nor name[ARGS]", raw: state.take(i))))
                mode = .text
            }
            return true
        case .array:
            guard let end = scanner.scan(state.buffer, start: jsonStart, end: state.buffer.count) else { return false }
            let json = String(decoding: state.buffer[jsonStart..<end], as: UTF8.self)
            let raw = state.take(end)
            mode = .text
            guard case .array(let items)? = try? JSONValue.parse(json, maxDepth: 64), !items.isEmpty else {
                events.append(.error(ToolCallError(kind: .malformedJSON, message: "the [TOOL_CALLS] array does not parse", raw: raw)))
                return true
            }
            // One event per call, the first carrying the whole span; if any call fails, the
            // whole array is one error (no call of a half-valid batch runs).
            var trial = state
            var calls: [ToolCallEvent] = []
            for (index, item) in items.enumerated() {
                let event = trial.makeCall(name: item["name"]?.stringValue, arguments: item["arguments"] ?? item["parameters"], raw: raw)
                switch event {
                case .toolCall(let call, _):
                    calls.append(.toolCall(call, raw: index == 0 ? raw : ""))
                case .error(let failure):
                    events.append(.error(ToolCallError(kind: failure.kind, message: failure.message, raw: raw)))
                    return true
                case .text:
                    break
                }
            }
            state.callCount = trial.callCount
            events += calls
            return true
        case .name:
            var i = jsonStart
            while i < state.buffer.count && Self.isNameByte(state.buffer[i]) { i += 1 }
            guard i < state.buffer.count else { return false }
            let rest = state.buffer.count - i
            if rest < Self.argsMarker.count {
                if Array(state.buffer[i...]) == Array(Self.argsMarker[0..<rest]) && !final { return false }
            } else if Array(state.buffer[i..<(i + Self.argsMarker.count)]) == Self.argsMarker {
                let name = String(decoding: state.buffer[jsonStart..<i], as: UTF8.self)
                var j = i + Self.argsMarker.count
                while j < state.buffer.count && state.buffer[j].isJSONWhitespace { j += 1 }
                guard j < state.buffer.count else { return false }
                guard state.buffer[j] == UInt8(ascii: "{") else {
                    events.append(.error(ToolCallError(kind: .malformedJSON, message: "[ARGS] is not followed by a JSON object", raw: state.take(j))))
                    mode = .text
                    return true
                }
                jsonStart = j
                scanner = JSONExtentScanner()
                mode = .arguments(name: name)
                return true
            }
            events.append(.error(ToolCallError(kind: .notACall, message: "a tool name is not followed by [ARGS]", raw: state.take(i))))
            mode = .text
            return true
        case .arguments(let name):
            guard let end = scanner.scan(state.buffer, start: jsonStart, end: state.buffer.count) else { return false }
            let json = String(decoding: state.buffer[jsonStart..<end], as: UTF8.self)
            let raw = state.take(end)
            mode = .text
            if let arguments = try? JSONValue.parse(json, maxDepth: 64) {
                events.append(state.makeCall(name: name, arguments: arguments, raw: raw))
            } else {
                events.append(.error(ToolCallError(kind: .malformedJSON, message: "the arguments of \(name) do not parse", raw: raw)))
            }
            return true
        }
    }

}
