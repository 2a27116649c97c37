import Chat
import Foundation
import Kernels
import Testing

/// The tool-call constraint: every valid call is accepted at every split, each kind of broken
/// call is refused at the byte that breaks it, and whatever it accepts the Hermes parser turns
/// into a valid call, or an unknown tool when the name is no listed tool's (random schemas,
/// values and mutations).
@Suite("tool-call constraint")
struct ToolCallConstraintTests {
    static func tool(_ name: String, _ parameters: String) -> ToolDefinition {
        ToolDefinition(name: name, description: "", parameters: try! JSONValue.parse(parameters, maxDepth: 64))
    }

    static let tools: [ToolDefinition] = [
        tool("calculator", #"{"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}"#),
        tool("unit_convert", #"{"type": "object", "properties": {"value": {"type": "number"}, "from": {"type": "string", "enum": ["km", "mi", "kg"]}, "to": {"type": "string"}}, "required": ["value", "from", "to"]}"#),
        tool("flags", #"{"type": "object", "properties": {"count": {"type": "integer"}, "on": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}}, "opts": {"type": "object"}, "nested": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"}}, "required": ["a"]}, "free": {}}, "required": ["count"]}"#),
        tool("ping", #"{"type": "object", "properties": {}}"#),
        tool("calc", #"{"type": "object", "properties": {"x": {"type": "number"}}}"#),
    ]

    static let valid: [String] = [
        #"<tool_call>{"name": "calculator", "arguments": {"expression": "17 * 23"}}</tool_call>"#,
        "Sure. <tool_call>\n{\"name\": \"unit_convert\", \"arguments\": {\"value\": 26.2, \"from\": \"mi\", \"to\": \"km\"}}\n</tool_call> done",
        #"<tool_call>{"name":"unit_convert","arguments":{"to":"k\"m\\","from":"kg","value":-0.5e+3}}</tool_call>"#,
        #"<tool_call>{"name": "flags", "arguments": {"count": -12, "on": true, "tags": ["a", "b\u00e9"], "opts": {"k": [1, {"z": null}], "q": false}, "nested": {"b": null, "a": 0}, "free": "x"}}</tool_call>"#,
        #"<tool_call>{"name": "flags", "arguments": {"count": 0, "tags": [], "free": [1.5, "y", {}]}}</tool_call>"#,
        #"<tool_call>{"name": "ping", "arguments": {}}</tool_call><tool_call>{"name": "calc", "arguments": {}}</tool_call>"#,
        #"<tool_call>{"name": "weather", "arguments": {"city": "Paris", "days": [1, 2], "x": {"y": null}}}</tool_call>"#,
        #"text <tool_call> {"name": "calc", "arguments": {"x": 3}}  </tool_call> and <tool_call>{"name": "calculator", "arguments": {"expression": "日本 😀"}}</tool_call>"#,
    ]

    @Test("valid calls are accepted byte by byte and in two chunks at every split; the parser agrees (but for the unknown tool)")
    func validCalls() throws {
        for text in Self.valid {
            let bytes = Array(text.utf8)
            var whole = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
            for (i, b) in bytes.enumerated() {
                let ok = whole.feed([b])
                #expect(ok, "\(text) refused at byte \(i)")
            }
            #expect(!whole.isInCall, "\(text) left a call open")
            for cut in 0...bytes.count {
                var c = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
                let ok = c.feed(bytes[..<cut]) && c.feed(bytes[cut...])
                #expect(ok, "\(text) split at \(cut)")
            }
            let events = HermesToolCallParser.parse(text, tools: Self.tools)
            #expect(!events.contains { if case .error(let e) = $0 { e.kind != .unknownTool } else { false } }, "\(events)")
        }
    }

    @Test("each way of breaking a call is refused at the byte that breaks it",
          arguments: [
              (#"{"name": "weather", "arguments": 5"#, "an unknown tool's arguments not an object"),
              (#"{"name": 1"#, "a name that is not a string"),
              ("{\"name\": \"\"", "an empty name"),
              (#"{"a"#, "arguments before the name"),
              (#"{"name": "calculator", "arguments": {"expression": 1"#, "a number for a string"),
              (#"{"name": "calculator", "arguments": {}"#, "a required argument missing"),
              (#"{"name": "calculator", "arguments": {"expression": "1","#, "a key beyond the tool's"),
              (#"{"name": "unit_convert", "arguments": {"value": 1, "v"#, "a repeated key"),
              (#"{"name": "calculator", "arguments": {"x"#, "an unknown key"),
              (#"{"name": "flags", "arguments": {"count": 1."#, "a fraction for an integer"),
              (#"{"name": "flags", "arguments": {"count": 1e"#, "an exponent for an integer"),
              (#"{"name": "flags", "arguments": {"count": 01"#, "a leading zero"),
              (#"{"name": "flags", "arguments": {"count": 1, "on": ""#, "a string for a boolean"),
              (#"{"name": "flags", "arguments": {"count": 1, "on": tru "#, "a broken literal"),
              (#"{"name": "flags", "arguments": {"count": 1, "tags": [1"#, "a number in a list of strings"),
              (#"{"name": "flags", "arguments": {"count": 1, "tags": ["a",]"#, "a trailing comma"),
              (#"{"name": "flags", "arguments": {"count": 1, "nested": {}"#, "a nested required key missing"),
              (#"{"name": "unit_convert", "arguments": {"from": "x"#, "a string outside its enum"),
              (#"{"name": "unit_convert", "arguments": {"to": "\x"#, "a bad escape"),
              (#"{"name": "unit_convert", "arguments": {"to": "\u00G"#, "a bad unicode escape"),
              ("{\"name\": \"unit_convert\", \"arguments\": {\"to\": \"a\n", "a raw newline in a string"),
              (#"{"name": "ping", "arguments": {""#, "a key for a tool without parameters"),
              (#"{"name": "ping", "arguments": {}} e"#, "text after the call's JSON"),
              (#"{"name": "ping", "arguments": {}}</tool_cal>"#, "a broken closing marker"),
              (#"{"name": "ping", "arguments": {},"#, "a third key in the call"),
              (#"{"name":     "#, "five spaces in a row"),
          ])
    func refusals(_ example: (text: String, what: String)) throws {
        var c = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
        let opened = c.feed(Array("<tool_call>".utf8))
        #expect(opened)
        let bytes = Array(example.text.utf8)
        var refusedAt: Int?
        for (i, b) in bytes.enumerated() where !c.feed([b]) { refusedAt = i; break }
        #expect(refusedAt == bytes.count - 1, "\(example.what): refused at \(refusedAt.map(String.init) ?? "none") of \(bytes.count)")
    }

    @Test("nesting is bounded below the parser's depth limit: 32 levels pass, the 33rd is refused")
    func nesting() throws {
        // The call object and "free" (any value) make two levels; 30 more lists fill the limit.
        func call(_ lists: Int) -> [UInt8] {
            Array(("<tool_call>{\"name\": \"flags\", \"arguments\": {\"count\": 1, \"free\": " + String(repeating: "[", count: lists)
                + String(repeating: "]", count: lists) + "}}</tool_call>").utf8)
        }
        var fits = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
        let ok = fits.feed(call(30))
        #expect(ok && !fits.isInCall)
        #expect(HermesToolCallParser.parse(String(decoding: call(30), as: UTF8.self), tools: Self.tools).count == 1)
        var deep = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
        let prefix = Array("<tool_call>{\"name\": \"flags\", \"arguments\": {\"count\": 1, \"free\": ".utf8)
        let opened = deep.feed(prefix + Array(repeating: UInt8(ascii: "["), count: 30))
        let beyond = deep.feed([UInt8(ascii: "[")])
        #expect(opened && !beyond)
    }

    @Test("a tool whose schema does not say object still takes an object of arguments, as the parser requires")
    func looseSchema() throws {
        let loose = [Self.tool("loose", "{}")]
        var c = try #require(ToolCallConstraint(format: .hermes, tools: loose))
        let prefix = c.feed(Array(#"<tool_call>{"name": "loose", "arguments": "#.utf8))
        let number = c.allows(Array("5".utf8))
        let text = #"<tool_call>{"name": "loose", "arguments": {"a": [1, "b"]}}</tool_call>"#
        let object = c.feed(Array(#"{"a": [1, "b"]}}</tool_call>"#.utf8))
        #expect(prefix && !number && object && !c.isInCall)
        let events = HermesToolCallParser.parse(text, tools: loose)
        #expect(events.count == 1 && { if case .toolCall? = events.first { true } else { false } }(), "\(events)")
    }

    @Test("no constraint without tools or for formats it does not know; text outside calls is free")
    func scope() throws {
        #expect(ToolCallConstraint(format: .hermes, tools: []) == nil)
        #expect(ToolCallConstraint(format: .llama3, tools: Self.tools) == nil)
        var c = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
        let free = c.feed(Array("anything {\"name\": 1} at all <tool_ca".utf8))
        #expect(free && !c.isInCall)
        let opened = c.feed(Array("ll>".utf8))
        #expect(opened && c.isInCall)
    }

    /// Random values of a shape, serialized compactly or with spaces.
    struct Generator {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        mutating func value(for schema: JSONValue?, depth: Int = 0) -> JSONValue {
            if case .array(let options)? = schema?["enum"] { return options[next(options.count)] }
            switch schema?["type"]?.stringValue {
            case "string"?: return .string(["", "a b", "é\"\\", "17*23", "\u{1}x"][next(5)])
            case "integer"?: return .number(Double(next(2001) - 1000))
            case "number"?: return .number([0, -2.5, 1e-3, 12345.678, 3][next(5)])
            case "boolean"?: return .bool(next(2) == 0)
            case "null"?: return .null
            case "array"?: return .array((0..<next(3)).map { _ in value(for: schema?["items"], depth: depth + 1) })
            case "object"?:
                guard let properties = schema?["properties"]?.objectFields else {
                    return .object((0..<next(3)).map { i in ("k\(i)", value(for: nil, depth: depth + 1)) })
                }
                var required: [String] = []
                if case .array(let names)? = schema?["required"] { required = names.compactMap(\.stringValue) }
                var fields = properties.filter { required.contains($0.key) || next(2) == 0 }.map { ($0.key, value(for: $0.value, depth: depth + 1)) }
                if next(2) == 0 { fields.reverse() }
                return .object(fields)
            default:
                let kinds = depth > 2 ? 3 : 5
                switch next(kinds) {
                case 0: return .number(Double(next(100)))
                case 1: return .string("s")
                case 2: return .null
                case 3: return .array([value(for: nil, depth: depth + 1)])
                default: return .object([("o", value(for: nil, depth: depth + 1))])
                }
            }
        }
    }

    @Test("random valid calls are accepted; whatever a random mutation leaves acceptable, the parser accepts")
    func randomCallsAndMutations() throws {
        var g = Generator(state: 42)
        var accepted = 0, refused = 0
        let alphabet = Array(#"{}[]":, 0123456789.-eEtruefalsn\"#.utf8)
        for _ in 0..<400 {
            let tool = Self.tools[g.next(Self.tools.count)]
            let call = JSONValue.object([("name", .string(tool.name)), ("arguments", g.value(for: tool.parameters))])
            let json = call.serialized(spaced: g.next(2) == 0)
            let text = "<tool_call>" + json + "</tool_call>"
            var c = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
            let ok = c.feed(Array(text.utf8))
            #expect(ok && !c.isInCall, "a valid call refused: \(text)")
            // Mutate one byte of the JSON (replace, insert or delete).
            var bytes = Array(json.utf8)
            let at = g.next(bytes.count)
            switch g.next(3) {
            case 0: bytes[at] = alphabet[g.next(alphabet.count)]
            case 1: bytes.insert(alphabet[g.next(alphabet.count)], at: at)
            default: bytes.remove(at: at)
            }
            let mutated = Array("<tool_call>".utf8) + bytes + Array("</tool_call>".utf8)
            var m = try #require(ToolCallConstraint(format: .hermes, tools: Self.tools))
            if m.feed(mutated) && !m.isInCall {
                accepted += 1
                let events = HermesToolCallParser.parse(String(decoding: mutated, as: UTF8.self), tools: Self.tools)
                let valid: Bool = switch events.first {
                case .toolCall?: true
                case .error(let e)?: e.kind == .unknownTool && !Self.tools.contains { e.raw.contains("\"\($0.name)\"") }
                default: false
                }
                #expect(events.count == 1 && valid, "accepted but not a valid call: \(String(decoding: mutated, as: UTF8.self)) -> \(events)")
            } else {
                refused += 1
            }
        }
        // Both outcomes occur, so the property was exercised on both sides.
        #expect(accepted > 20 && refused > 100, "accepted \(accepted), refused \(refused)")
    }
}
