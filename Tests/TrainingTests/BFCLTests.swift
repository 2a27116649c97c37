import Foundation
import Chat
@testable import ChatEngine
import Support
import Testing

@Suite("BFCL scoring: the leaderboard's AST rules")
struct BFCLTests {
    static let function = ToolDefinition(name: "calc.area", description: "Area.", parameters: BFCL.jsonSchema(.object([
        ("type", .string("dict")),
        ("properties", .object([("base", .object([("type", .string("integer"))])), ("height", .object([("type", .string("float"))])),
                                ("unit", .object([("type", .string("string"))]))])),
        ("required", .array([.string("base"), .string("height")])),
    ])))

    static func question(_ answers: [[String: [String: [JSONValue]]]]) -> BFCL.Question {
        BFCL.Question(id: "t", messages: [Message(role: .user, content: "?")], functions: [function], answers: answers)
    }

    static func call(_ name: String, _ args: [(String, JSONValue)]) -> ToolCall { ToolCall(id: "c", name: name, arguments: .object(args)) }

    @Test("a call matches when its values are allowed, required ones are there, optional ones may go, nothing unknown is passed")
    func simple() {
        #expect(Self.function.parameters["type"]?.stringValue == "object")
        #expect(Self.function.parameters["properties"]?["height"]?["type"]?.stringValue == "number")
        let q = Self.question([["calc.area": ["base": [.number(10)], "height": [.number(5)], "unit": [.string("meters"), .string("")]]]])
        #expect(BFCL.score([Self.call("calc.area", [("base", .number(10)), ("height", .number(5))])], q, category: "simple_python"))
        #expect(BFCL.score([Self.call("calc_area", [("base", .number(10)), ("height", .number(5.0)), ("unit", .string("Meters"))])], q, category: "simple_python"))
        #expect(!BFCL.score([Self.call("calc.area", [("base", .number(10)), ("height", .number(6))])], q, category: "simple_python"))
        #expect(!BFCL.score([Self.call("calc.area", [("base", .number(10))])], q, category: "simple_python"), "a required parameter is missing")
        #expect(!BFCL.score([Self.call("calc.area", [("base", .number(10)), ("height", .number(5)), ("color", .string("red"))])], q, category: "simple_python"))
        #expect(!BFCL.score([Self.call("other", [("base", .number(10)), ("height", .number(5))])], q, category: "simple_python"))
        #expect(!BFCL.score([], q, category: "simple_python"))
        // Strings compare as BFCL standardizes them.
        #expect(BFCL.standardized("New York, NY") == BFCL.standardized("new-york ny"))
        #expect(BFCL.standardized("it's 'quoted'") == BFCL.standardized("It\"s \"Quoted\""))
        #expect(BFCL.standardized("a+b") != BFCL.standardized("ab"))
    }

    @Test("parallel calls match in any order, each once; irrelevance wants no call")
    func parallelAndIrrelevance() {
        let q = Self.question([["calc.area": ["base": [.number(1)], "height": [.number(2)]]], ["calc.area": ["base": [.number(3)], "height": [.number(4)]]]])
        let a = Self.call("calc.area", [("base", .number(1)), ("height", .number(2))]), b = Self.call("calc.area", [("base", .number(3)), ("height", .number(4))])
        #expect(BFCL.score([b, a], q, category: "parallel"))
        #expect(!BFCL.score([a, a], q, category: "parallel"))
        #expect(!BFCL.score([a], q, category: "parallel"))
        #expect(BFCL.score([], Self.question([]), category: "irrelevance"))
        #expect(!BFCL.score([a], Self.question([]), category: "irrelevance"))
    }

    @Test("live categories: irrelevance wants no call, relevance any call (even one that does not fit); they load without an answer file")
    func liveCategories() throws {
        let a = Self.call("calc.area", [("base", .number(1)), ("height", .number(2))])
        let none = Self.question([])
        let madeUp = Self.refusals("<tool_call>{\"name\": \"draw\", \"arguments\": {}}</tool_call>")
        #expect(BFCL.score([], none, category: "live_irrelevance") && !BFCL.score([a], none, category: "live_irrelevance"))
        #expect(BFCL.score([a], none, category: "live_relevance") && !BFCL.score([], none, category: "live_relevance"))
        #expect(BFCL.score([], refused: madeUp, none, category: "live_relevance"), "a call to an unlisted function is a call")
        #expect(!BFCL.score([], refused: Self.refusals("<tool_call>{\"name\": "), none, category: "live_relevance"))
        // A live_simple question scores as simple_python does, its answers from possible_answer/.
        let dir = ScratchDirectory.make("bfcl-live")
        try FileManager.default.createDirectory(atPath: dir + "/possible_answer", withIntermediateDirectories: true)
        let function = #"{"name": "calc.area", "description": "Area.", "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "float"}}, "required": ["base", "height"]}}"#
        for (category, id) in [("live_simple", "live_simple_0-0-0"), ("live_relevance", "live_relevance_0-0-0")] {
            try #"{"id": "\#(id)", "question": [[{"role": "system", "content": "Be exact."}, {"role": "user", "content": "Area of 1 by 2?"}]], "function": [\#(function)]}"#
                .write(toFile: dir + "/BFCL_v4_\(category).json", atomically: true, encoding: .utf8)
        }
        try #"{"id": "live_simple_0-0-0", "ground_truth": [{"calc.area": {"base": [1], "height": [2.0]}}]}"#
            .write(toFile: dir + "/possible_answer/BFCL_v4_live_simple.json", atomically: true, encoding: .utf8)
        let simple = try BFCL.load(dir, category: "live_simple"), relevance = try BFCL.load(dir, category: "live_relevance")
        #expect(simple.count == 1 && simple[0].answers.count == 1 && simple[0].messages.first?.role == .system)
        #expect(BFCL.score([a], simple[0], category: "live_simple"))
        #expect(!BFCL.score([Self.call("calc.area", [("base", .number(1)), ("height", .number(3))])], simple[0], category: "live_simple"))
        #expect(relevance.count == 1 && relevance[0].answers.isEmpty && BFCL.score([a], relevance[0], category: "live_relevance"))
    }

    /// What the Hermes parser refuses in `text` with `function` as the only tool.
    static func refusals(_ text: String) -> [ToolCallError] {
        var parser = ToolCallFormat.hermes.makeParser(tools: [function])
        return (parser.feed(text) + parser.finish()).compactMap { if case .error(let e) = $0 { e } else { nil } }
    }

    @Test("a call to a function that is not listed is still a call (BFCL decodes it); broken markup is not")
    func refusedCalls() {
        let madeUp = Self.refusals("<tool_call>\n{\"name\": \"calculate_area\", \"arguments\": {\"radius\": 4}}\n</tool_call>")
        let badArguments = Self.refusals("<tool_call>\n{\"name\": \"calc.area\", \"arguments\": {\"base\": \"ten\"}}\n</tool_call>")
        let broken = Self.refusals("<tool_call>\n{\"name\": \"calc.area\", \"arguments\": {\"base\": 1,}\n</tool_call>")
        let unclosed = Self.refusals("<tool_call>\n{\"name\": \"calc.area\", \"argu")
        #expect(madeUp.map(\.kind) == [.unknownTool])
        #expect(badArguments.map(\.kind) == [.invalidArguments])
        #expect(broken.count == 1 && unclosed.count == 1)
        let none = Self.question([])
        #expect(!BFCL.score([], refused: madeUp, none, category: "irrelevance"), "a made-up function is a call")
        #expect(!BFCL.score([], refused: badArguments, none, category: "irrelevance"))
        #expect(BFCL.score([], refused: broken, none, category: "irrelevance"), "markup that does not decode is no call")
        #expect(BFCL.score([], refused: unclosed, none, category: "irrelevance"))
        // Beside a right call, a decoded extra call fails the question; a broken one does not count.
        let q = Self.question([["calc.area": ["base": [.number(10)], "height": [.number(5)]]]])
        let right = Self.call("calc.area", [("base", .number(10)), ("height", .number(5))])
        #expect(BFCL.score([right], refused: broken, q, category: "simple_python"))
        #expect(!BFCL.score([right], refused: madeUp, q, category: "simple_python"))
    }
}
