import Chat
@testable import ChatEngine
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
}
