/// The shape a value must have while it is generated: the part of a tool's JSON Schema that
/// decides which bytes may come next (`type`, `properties`, `required`, string `enum`, `items`).
indirect enum ValueShape: Sendable {
    case any
    /// A string; with `options`, one of these (each the bytes between the quotes, as JSON writes them).
    case string(options: [[UInt8]]?)
    case integer, number, boolean, null
    case array(ValueShape)
    /// An object with these keys (in this order when `ordered`), the `required` ones before it
    /// may close; `open`: any keys, any values (a schema without `properties`).
    case object(properties: [(key: [UInt8], shape: ValueShape)], required: [[UInt8]], open: Bool, ordered: Bool)
    /// The call's tool name: any string, kept for `arguments`.
    case toolName
    /// The arguments of the tool the call named (any object when no listed tool has that name).
    case arguments

    init(schema: JSONValue) {
        if case .array(let values)? = schema["enum"] {
            let strings = values.compactMap(\.stringValue)
            if strings.count == values.count && !strings.isEmpty {
                self = .string(options: strings.map(Self.body))
                return
            }
        }
        switch schema["type"]?.stringValue {
        case "string": self = .string(options: nil)
        case "integer": self = .integer
        case "number": self = .number
        case "boolean": self = .boolean
        case "null": self = .null
        case "array": self = .array(schema["items"].map(ValueShape.init(schema:)) ?? .any)
        case "object":
            guard let properties = schema["properties"]?.objectFields else {
                self = .object(properties: [], required: [], open: true, ordered: false)
                return
            }
            var required: [String] = []
            if case .array(let names)? = schema["required"] { required = names.compactMap(\.stringValue) }
            self = .object(properties: properties.map { (Self.body($0.key), ValueShape(schema: $0.value)) },
                           required: required.map(Self.body), open: false, ordered: false)
        default: self = .any
        }
    }

    /// `text`'s bytes between the quotes of its JSON string literal.
    static func body(_ text: String) -> [UInt8] { Array(JSONValue.quote(text).utf8.dropFirst().dropLast()) }
}

/// Accepts, byte by byte, exactly the texts that can begin a call object
/// `{"name": <a string>, "arguments": <an object>}` whose arguments match the parameters of the
/// listed tool it names. The name itself is free: a model that reaches for a tool nobody listed
/// is declining the listed ones, and that call goes back to it as an unknown tool (forcing a
/// listed name there turns a refusal into a wrong call). This is a
/// pushdown recognizer whose stack holds one frame per open JSON value. `feed` says whether a
/// byte keeps the text a prefix of some valid call; a copy is cheap, so a decoder can try each
/// candidate token on a copy and keep the one it picks. Whitespace between JSON tokens is
/// allowed up to `maxSpaces` bytes in a row, numbers up to `maxNumberBytes` bytes: a model cannot
/// pad a call forever. Left to the registry's check when the call runs: `minimum`/`maximum`, and
/// enums of values other than strings.
public struct CallGrammar: Sendable {
    static let maxSpaces = 4
    static let maxNumberBytes = 24
    /// Objects and arrays open at once, the call object included: half the parser's limit
    /// (`HermesToolCallParser` reads calls with a depth limit of 64).
    static let maxNesting = 32

    private enum Frame: Sendable {
        /// A value is due here (whitespace may come first).
        case value(ValueShape)
        case object(ObjectFrame)
        case array(item: ValueShape, phase: ArrayPhase)
        case string(StringFrame)
        case number(NumberFrame)
        /// The rest of `true`, `false` or `null`.
        case literal(ArraySlice<UInt8>)
    }

    private enum ArrayPhase: Sendable { case start, afterComma, afterValue }

    private struct ObjectFrame: Sendable {
        enum Phase: Sendable { case start, afterComma, afterKey, inValue, afterValue }
        var properties: [(key: [UInt8], shape: ValueShape)]
        var required: [[UInt8]]
        var open: Bool
        var ordered: Bool
        var phase = Phase.start
        var seen: [[UInt8]] = []
        var key: [UInt8] = []

        /// The keys that may come next; nil: any.
        var allowedKeys: [[UInt8]]? {
            if open { return nil }
            let unseen = properties.map(\.key).filter { !seen.contains($0) }
            return ordered ? Array(unseen.prefix(1)) : unseen
        }
        var mayClose: Bool { required.allSatisfy(seen.contains) && (!ordered || properties.allSatisfy { seen.contains($0.key) }) }
        var mayContinue: Bool { open || properties.contains { !seen.contains($0.key) } }
        func shape(of key: [UInt8]) -> ValueShape { properties.first { $0.key == key }?.shape ?? .any }
    }

    private struct StringFrame: Sendable {
        /// Allowed bodies; nil: any string.
        var options: [[UInt8]]?
        var isKey: Bool
        /// Keep the bytes (keys, names, strings with options do).
        var keeps = false
        var bytes: [UInt8] = []
        /// After a backslash: 1; after `\u`: 1 + the hex digits still due.
        var escape = 0
    }

    private struct NumberFrame: Sendable {
        enum Phase: Sendable { case sign, zero, integer, dot, fraction, exponent, exponentSign, exponentDigits }
        var phase: Phase
        var integerOnly: Bool
        var length = 1
        var isComplete: Bool { phase == .zero || phase == .integer || phase == .fraction || phase == .exponentDigits }
    }

    private let argumentShapes: [[UInt8]: ValueShape]
    private var stack: [Frame]
    private var chosenName: [UInt8]?
    private var spaces = 0
    /// Objects and arrays on the stack.
    private var nesting = 0
    /// The call object has closed.
    public private(set) var isComplete = false

    /// A recognizer for a call to one of `tools`.
    public init(tools: [ToolDefinition]) {
        var shapes: [[UInt8]: ValueShape] = [:]
        for tool in tools { shapes[ValueShape.body(tool.name)] = ValueShape(schema: tool.parameters) }
        argumentShapes = shapes
        let name = Array("name".utf8), arguments = Array("arguments".utf8)
        stack = [.value(.object(properties: [(name, .toolName), (arguments, .arguments)],
                                required: [name, arguments], open: false, ordered: true))]
    }

    /// Whether `bytes` continue the text to a prefix of a valid call (the state is then advanced;
    /// after `false` it is undefined: feed a copy when trying).
    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> Bool {
        for b in bytes where !feed(b) { return false }
        return true
    }

    public mutating func feed(_ b: UInt8) -> Bool {
        guard !isComplete, let top = stack.last else { return false }
        switch top {
        case .string(var s):
            return string(&s, b)
        case .number(var n):
            if let next = Self.advance(n, b), next.length <= Self.maxNumberBytes {
                n = next
                stack[stack.count - 1] = .number(n)
                return true
            }
            guard n.isComplete else { return false }
            stack.removeLast()
            valueEnded(nil)
            return feed(b)
        case .literal(let rest):
            guard rest.first == b else { return false }
            let remaining = rest.dropFirst()
            if remaining.isEmpty {
                stack.removeLast()
                valueEnded(nil)
            } else {
                stack[stack.count - 1] = .literal(remaining)
            }
            return true
        default:
            break
        }
        if b.isJSONWhitespace {
            spaces += 1
            return spaces <= Self.maxSpaces
        }
        spaces = 0
        switch top {
        case .value(let shape):
            stack.removeLast()
            return start(shape, b)
        case .object(var o):
            return object(&o, b)
        case .array(let item, let phase):
            switch (phase, b) {
            case (.start, UInt8(ascii: "]")), (.afterValue, UInt8(ascii: "]")):
                closeContainer()
                return true
            case (.afterValue, UInt8(ascii: ",")):
                stack[stack.count - 1] = .array(item: item, phase: .afterComma)
                return true
            case (.afterValue, _):
                return false
            default:
                return start(item, b)
            }
        default:
            return false
        }
    }

    /// Starts a value of `shape` with its first byte `b` (not whitespace).
    private mutating func start(_ shape: ValueShape, _ b: UInt8) -> Bool {
        switch (shape, b) {
        case (.arguments, _):
            // Arguments are an object: the named tool's, or any object (an unknown tool, or a
            // schema that does not say "object").
            if let name = chosenName, let shape = argumentShapes[name], case .object = shape { return start(shape, b) }
            return start(.object(properties: [], required: [], open: true, ordered: false), b)
        case (.toolName, UInt8(ascii: "\"")):
            stack.append(.string(StringFrame(options: nil, isKey: false, keeps: true)))
        case (.any, UInt8(ascii: "{")):
            return opens(.object(ObjectFrame(properties: [], required: [], open: true, ordered: false)))
        case (.any, UInt8(ascii: "[")):
            return opens(.array(item: .any, phase: .start))
        case (.any, UInt8(ascii: "\"")), (.string(nil), UInt8(ascii: "\"")):
            stack.append(.string(StringFrame(options: nil, isKey: false)))
        case (.string(let options?), UInt8(ascii: "\"")):
            stack.append(.string(StringFrame(options: options, isKey: false)))
        case (.any, _), (.number, _), (.integer, _):
            let integerOnly: Bool = if case .integer = shape { true } else { false }
            guard b == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) else {
                if case .any = shape { return literal(b, allowed: ["true", "false", "null"]) }
                return false
            }
            let phase: NumberFrame.Phase = b == UInt8(ascii: "-") ? .sign : b == UInt8(ascii: "0") ? .zero : .integer
            stack.append(.number(NumberFrame(phase: phase, integerOnly: integerOnly)))
        case (.boolean, _):
            return literal(b, allowed: ["true", "false"])
        case (.null, _):
            return literal(b, allowed: ["null"])
        case (.array(let item), UInt8(ascii: "[")):
            return opens(.array(item: item, phase: .start))
        case (.object(let properties, let required, let open, let ordered), UInt8(ascii: "{")):
            return opens(.object(ObjectFrame(properties: properties, required: required, open: open, ordered: ordered)))
        default:
            return false
        }
        return true
    }

    /// Pushes an object or array frame, unless that nests deeper than `maxNesting`.
    private mutating func opens(_ frame: Frame) -> Bool {
        guard nesting < Self.maxNesting else { return false }
        nesting += 1
        stack.append(frame)
        return true
    }

    /// Pops the object or array frame on top, whose value has ended.
    private mutating func closeContainer() {
        stack.removeLast()
        nesting -= 1
        valueEnded(nil)
    }

    private mutating func literal(_ b: UInt8, allowed: [String]) -> Bool {
        guard let word = allowed.first(where: { $0.utf8.first == b }) else { return false }
        stack.append(.literal(Array(word.utf8).dropFirst()))
        return true
    }

    private mutating func object(_ o: inout ObjectFrame, _ b: UInt8) -> Bool {
        switch (o.phase, b) {
        case (.start, UInt8(ascii: "\"")), (.afterComma, UInt8(ascii: "\"")):
            let keys = o.allowedKeys
            if let keys, keys.isEmpty { return false }
            stack.append(.string(StringFrame(options: keys, isKey: true)))
            return true
        case (.start, UInt8(ascii: "}")), (.afterValue, UInt8(ascii: "}")):
            guard o.mayClose else { return false }
            closeContainer()
            return true
        case (.afterValue, UInt8(ascii: ",")):
            guard o.mayContinue else { return false }
            o.phase = .afterComma
        case (.afterKey, UInt8(ascii: ":")):
            o.phase = .inValue
            stack[stack.count - 1] = .object(o)
            stack.append(.value(o.shape(of: o.key)))
            return true
        default:
            return false
        }
        stack[stack.count - 1] = .object(o)
        return true
    }

    private mutating func string(_ s: inout StringFrame, _ b: UInt8) -> Bool {
        if s.escape == 1 {
            guard let next = Self.escapes[b] else { return false }
            s.escape = next
        } else if s.escape > 1 {
            guard b.isHexDigit else { return false }
            s.escape -= 1
            if s.escape == 1 { s.escape = 0 }
        } else if b == UInt8(ascii: "\"") {
            if let options = s.options, !options.contains(s.bytes) { return false }
            if s.keeps && !s.isKey && s.bytes.isEmpty { return false }   // a call needs a name
            stack.removeLast()
            if s.isKey {
                guard case .object(var o) = stack[stack.count - 1] else { return false }
                o.seen.append(s.bytes)
                o.key = s.bytes
                o.phase = .afterKey
                stack[stack.count - 1] = .object(o)
            } else {
                valueEnded(s.bytes)
            }
            return true
        } else if b == UInt8(ascii: "\\") {
            s.escape = 1
        } else if b < 0x20 {
            return false
        }
        if let options = s.options {
            s.bytes.append(b)
            let prefix = s.bytes
            guard options.contains(where: { $0.starts(with: prefix) }) else { return false }
        } else if s.isKey || s.keeps {
            s.bytes.append(b)
        }
        stack[stack.count - 1] = .string(s)
        return true
    }

    /// What may follow a backslash: the state after it (0: the escape is over; 5: `u`, its 4 hex
    /// digits due, counted down).
    private static let escapes: [UInt8: Int] = {
        var table: [UInt8: Int] = [:]
        for c in "\"\\/bfnrt".utf8 { table[c] = 0 }
        table[UInt8(ascii: "u")] = 5
        return table
    }()

    /// The value on top of the stack has ended (a string's bytes given for the call's name).
    private mutating func valueEnded(_ bytes: [UInt8]?) {
        guard let parent = stack.last else {
            isComplete = true
            return
        }
        switch parent {
        case .object(var o):
            if stack.count == 1 && o.key == Array("name".utf8) { chosenName = bytes }
            o.phase = .afterValue
            stack[stack.count - 1] = .object(o)
        case .array(let item, _):
            stack[stack.count - 1] = .array(item: item, phase: .afterValue)
        default:
            break
        }
    }

    /// A number's next state after `b`, or nil when `b` cannot continue it.
    private static func advance(_ n: NumberFrame, _ b: UInt8) -> NumberFrame? {
        let digit = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
        var next = n
        next.length += 1
        switch (n.phase, b) {
        case (.sign, UInt8(ascii: "0")): next.phase = .zero
        case (.sign, _) where digit: next.phase = .integer
        case (.integer, _) where digit: next.phase = .integer
        case (.zero, UInt8(ascii: ".")), (.integer, UInt8(ascii: ".")):
            guard !n.integerOnly else { return nil }
            next.phase = .dot
        case (.zero, UInt8(ascii: "e")), (.zero, UInt8(ascii: "E")), (.integer, UInt8(ascii: "e")), (.integer, UInt8(ascii: "E")),
             (.fraction, UInt8(ascii: "e")), (.fraction, UInt8(ascii: "E")):
            guard !n.integerOnly else { return nil }
            next.phase = .exponent
        case (.dot, _) where digit, (.fraction, _) where digit: next.phase = .fraction
        case (.exponent, UInt8(ascii: "+")), (.exponent, UInt8(ascii: "-")): next.phase = .exponentSign
        case (.exponent, _) where digit, (.exponentSign, _) where digit, (.exponentDigits, _) where digit:
            next.phase = .exponentDigits
        default: return nil
        }
        return next
    }
}

extension UInt8 {
    var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}
