/// The parsers' pending input: bytes appended at the back and consumed from the front, both in
/// amortized constant time per byte (an array's `removeFirst` moves everything behind it, which
/// made a long completion quadratic). Indices start at 0 at the current front.
struct ByteWindow: RandomAccessCollection {
    private var storage: [UInt8] = []
    private var head = 0

    var startIndex: Int { 0 }
    var endIndex: Int { storage.count - head }
    subscript(position: Int) -> UInt8 { storage[head + position] }

    static func += (window: inout ByteWindow, bytes: [UInt8]) { window.storage += bytes }

    /// Drops the first `count` bytes; the storage is compacted once the dropped part is at least
    /// half of it, so each byte moves at most once on average.
    mutating func removeFirst(_ count: Int) {
        precondition(count <= self.count, "removing more bytes than the window holds")
        head += count
        if head >= 4096 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
    }
}

/// Pieces the format parsers share: a byte buffer, UTF-8-safe text emission, marker look-ahead,
/// an incremental JSON extent scanner and call validation.
struct StreamState {
    var buffer = ByteWindow()
    var callCount = 0
    let tools: [ToolDefinition]?

    init(tools: [ToolDefinition]?) { self.tools = tools }

    /// Position of the first occurrence of `marker` in `buffer[from...]`.
    func find(_ marker: [UInt8], from: Int = 0) -> Int? {
        guard buffer.count >= marker.count, from <= buffer.count - marker.count else { return nil }
        var i = from
        while i <= buffer.count - marker.count {
            if buffer[i] == marker[0] && Array(buffer[i..<(i + marker.count)]) == marker { return i }
            i += 1
        }
        return nil
    }

    /// Length of the longest suffix of `buffer[from...]` that is a proper prefix of a marker.
    func heldSuffix(_ markers: [[UInt8]], from: Int = 0) -> Int {
        var best = 0
        for marker in markers {
            var k = min(marker.count - 1, buffer.count - from)
            while k > best {
                if Array(buffer[(buffer.count - k)...]) == Array(marker[0..<k]) { best = k; break }
                k -= 1
            }
        }
        return best
    }

    /// Bytes at the end of `bytes[..<end]` that start an unfinished UTF-8 sequence.
    static func incompleteUTF8Tail(_ bytes: ByteWindow, end: Int) -> Int {
        var i = end - 1, back = 0
        while i >= 0 && back < 4 {
            let b = bytes[i]
            if b & 0xC0 != 0x80 {
                let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                return need > back + 1 ? back + 1 : 0
            }
            back += 1
            i -= 1
        }
        return 0
    }

    /// Emits `buffer[..<end]` as text (keeping an unfinished UTF-8 sequence unless `final`) and
    /// drops it from the buffer.
    mutating func emitText(upTo end: Int, final: Bool = false, into events: inout [ToolCallEvent]) {
        let keep = final ? 0 : StreamState.incompleteUTF8Tail(buffer, end: end)
        let cut = end - keep
        if cut > 0 {
            events.append(.text(String(decoding: buffer[0..<cut], as: UTF8.self)))
            buffer.removeFirst(cut)
        }
    }

    /// Removes and returns the first `count` bytes as text.
    mutating func take(_ count: Int) -> String {
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
        buffer.removeFirst(count)
        return text
    }

    mutating func nextID() -> String {
        defer { callCount += 1 }
        return "call_\(callCount)"
    }

    /// A call from parsed JSON, checked against the tools; or the error that says why not.
    mutating func makeCall(name: String?, arguments: JSONValue?, raw: String) -> ToolCallEvent {
        guard let name, !name.isEmpty else {
            return .error(ToolCallError(kind: .notACall, message: "the call has no \"name\"", raw: raw))
        }
        let args = arguments ?? .object([])
        guard case .object = args else {
            return .error(ToolCallError(kind: .invalidArguments, message: "arguments of \(name) are not a JSON object", raw: raw))
        }
        if let tools {
            guard let tool = tools.first(where: { $0.name == name }) else {
                return .error(ToolCallError(kind: .unknownTool, message: "no tool is called \"\(name)\"", raw: raw))
            }
            if let problem = JSONSchema.validate(args, against: tool.parameters) {
                return .error(ToolCallError(kind: .invalidArguments, message: "\(name): \(problem)", raw: raw))
            }
        }
        return .toolCall(ToolCall(id: nextID(), name: name, arguments: args), raw: raw)
    }
}

/// Finds where a JSON object or array ends, byte by byte, across chunks: it tracks strings,
/// escapes and bracket depth (not full validity; the parse that follows checks that). It can
/// also stop at a marker met outside any string (Hermes' `</tool_call>` before the JSON is
/// complete), holding back a partial marker at the end of the input until it is decided.
struct JSONExtentScanner {
    enum Outcome: Equatable {
        /// The value is complete; the index is just past its closing bracket.
        case complete(Int)
        /// The stop marker starts at this index, outside any string.
        case marker(Int)
        case needMore
    }

    private var depth = 0
    private var inString = false
    private var escaped = false
    /// Bytes already scanned (relative to the value's first byte).
    private(set) var position = 0

    /// Scans `bytes[start + position ..< end]`, where `bytes[start]` is the opening bracket.
    mutating func scan(_ bytes: ByteWindow, start: Int, end: Int, stopAt marker: [UInt8]? = nil) -> Outcome {
        var i = start + position
        while i < end {
            let b = bytes[i]
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                i += 1
                continue
            }
            if let marker, b == marker[0] {
                let available = min(marker.count, end - i)
                if Array(bytes[i..<(i + available)]) == Array(marker[0..<available]) {
                    position = i - start
                    return available == marker.count ? .marker(i) : .needMore
                }
            }
            i += 1
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 {
                    position = i - start
                    return .complete(i)
                }
            default: break
            }
        }
        position = i - start
        return .needMore
    }

    /// Without a stop marker: the end index once complete.
    mutating func scan(_ bytes: ByteWindow, start: Int, end: Int) -> Int? {
        if case .complete(let at) = scan(bytes, start: start, end: end, stopAt: nil) { return at }
        return nil
    }
}

extension UInt8 {
    var isJSONWhitespace: Bool { self == 0x20 || self == 0x0A || self == 0x0D || self == 0x09 }
}

/// The streaming driver the format parsers share: a format is its markers, a `step` that makes
/// what progress the buffered bytes allow, and a `flush` for what is left when the stream ends.
/// Feeding appends and steps until no progress; finishing steps with `final` set (markers can no
/// longer be completed) and then flushes.
protocol SteppedToolCallParser {
    var state: StreamState { get set }
    /// Makes progress; returns false when it needs more input (or, with `final`, when none is left
    /// to make).
    mutating func step(final: Bool, into events: inout [ToolCallEvent]) -> Bool
    mutating func flush(into events: inout [ToolCallEvent])
}

extension SteppedToolCallParser {
    mutating func drive(_ bytes: [UInt8]) -> [ToolCallEvent] {
        state.buffer += bytes
        var events: [ToolCallEvent] = []
        while step(final: false, into: &events) {}
        return events
    }

    mutating func driveToEnd() -> [ToolCallEvent] {
        var events: [ToolCallEvent] = []
        while step(final: true, into: &events) {}
        flush(into: &events)
        return events
    }
}
