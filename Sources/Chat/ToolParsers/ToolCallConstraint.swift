/// Keeps a reply's tool calls well-formed while they are generated (Hermes markup). Text outside
/// a call is free; once `<tool_call>` has been written, only bytes that keep the call a prefix
/// of `{"name": …, "arguments": …}` followed by `</tool_call>` are allowed, the arguments of a
/// listed tool matching its parameters' schema (`CallGrammar`). A decoder asks `allows` of each
/// candidate token's bytes and `feed`s the token it picks: a call to a listed tool comes out with
/// its required arguments, the right JSON types, and JSON that parses; the model still chooses
/// the tool and every value.
public struct ToolCallConstraint: Sendable {
    static let open = Array("<tool_call>".utf8)
    /// The bytes that open a call.
    public static var openingMarker: [UInt8] { open }
    static let close = Array("</tool_call>".utf8)

    private enum Mode: Sendable {
        /// Outside a call: the last bytes, to find the opening marker across tokens.
        case free(tail: [UInt8])
        case call(CallGrammar)
        /// After the call's JSON: `matched` bytes of the closing marker, after `spaces` whitespace.
        case closing(matched: Int, spaces: Int)
    }

    private let grammar: CallGrammar
    private var mode = Mode.free(tail: [])

    /// A constraint for calls to `tools` in `format`; nil when there are no tools, or for a
    /// format whose calls are not constrained (Llama 3's and Mistral's).
    public init?(format: ToolCallFormat, tools: [ToolDefinition]) {
        guard format == .hermes, !tools.isEmpty else { return nil }
        grammar = CallGrammar(tools: tools)
    }

    /// Inside a call (its bytes are being checked).
    public var isInCall: Bool {
        if case .free = mode { return false }
        return true
    }

    /// Whether `bytes` may come next.
    public func allows<S: Sequence<UInt8>>(_ bytes: S) -> Bool {
        var copy = self
        return copy.feed(bytes)
    }

    /// Advances past `bytes`; false (and an undefined state) when they break a call.
    @discardableResult
    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> Bool {
        for b in bytes where !feed(b) { return false }
        return true
    }

    private mutating func feed(_ b: UInt8) -> Bool {
        switch mode {
        case .free(var tail):
            tail.append(b)
            if tail.count >= Self.open.count && tail.suffix(Self.open.count).elementsEqual(Self.open) {
                mode = .call(grammar)
            } else {
                if tail.count > 2 * Self.open.count { tail.removeFirst(tail.count - Self.open.count) }
                mode = .free(tail: tail)
            }
            return true
        case .call(var g):
            guard g.feed(b) else { return false }
            mode = g.isComplete ? .closing(matched: 0, spaces: 0) : .call(g)
            return true
        case .closing(let matched, let spaces):
            if matched == 0 && b.isJSONWhitespace {
                guard spaces < CallGrammar.maxSpaces else { return false }
                mode = .closing(matched: 0, spaces: spaces + 1)
                return true
            }
            guard b == Self.close[matched] else { return false }
            mode = matched + 1 == Self.close.count ? .free(tail: []) : .closing(matched: matched + 1, spaces: spaces)
            return true
        }
    }
}
