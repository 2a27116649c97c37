import Chat
import Foundation
import Kernels
import Testing

@Suite("built-in tools")
struct ToolTests {
    /// A random expression and its value computed with the same operations on Double.
    static func randomExpression(_ rng: inout SplitMix64, depth: Int) -> (String, Double) {
        if depth == 0 || rng.next() % 3 == 0 {
            let n = Double(rng.next() % 1000) / (rng.next() % 2 == 0 ? 1 : 8)
            return (Calculator.format(n), n)
        }
        let (a, x) = randomExpression(&rng, depth: depth - 1)
        let (b, y) = randomExpression(&rng, depth: depth - 1)
        switch rng.next() % 5 {
        case 0: return ("(\(a) + \(b))", x + y)
        case 1: return ("(\(a) - \(b))", x - y)
        case 2: return ("(\(a) * \(b))", x * y)
        case 3: return y == 0 ? ("(\(a) + \(b))", x + y) : ("(\(a) / \(b))", x / y)
        default: return ("-(\(a))", -x)
        }
    }

    @Test("the calculator agrees with Double arithmetic on random expressions")
    func calculatorProperty() throws {
        var rng = SplitMix64(seed: 21)
        for _ in 0..<2000 {
            let (text, expected) = Self.randomExpression(&rng, depth: 5)
            let value = try Calculator.evaluate(text)
            #expect(value == expected || abs(value - expected) <= 1e-12 * abs(expected), "\(text) = \(value), expected \(expected)")
        }
    }

    @Test("precedence, associativity, functions and number forms")
    func calculatorCases() throws {
        let cases: [(String, Double)] = [
            ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("2 ^ 3 ^ 2", 512), ("2 ** 10", 1024), ("-2 ^ 2", -4), ("(-2) ^ 2", 4),
            ("10 % 3", 1), ("7 ÷ 2", 3.5), ("3 × 4", 12), ("1.5e3 + 2E-1", 1500.2), (".5 + .25", 0.75), ("--3", 3),
            ("sqrt(16) + abs(-3) + round(2.6) + floor(2.9) + ceil(2.1)", 15), ("min(3, 1, 2) + max(3, 1, 2)", 4),
            ("2 * pi", 2 * Double.pi), ("e", M_E), ("  42  ", 42), ("2(3)", .nan),
            // The spellings models write: percentages, √, × and ÷.
            ("15% of 80", 12), ("15 % of 80", 12), ("80 * 15%", 12), ("(10% of 50) + 1", 6), ("200 - 5%", 199.95),
            ("17 % 5", 2), ("√16", 4), ("√(9 + 7) * 2", 8), ("2 × √9 ÷ 3", 2), ("√-4", .nan), ("15% of", .nan), ("% of 3", .nan),
        ]
        for (text, expected) in cases {
            if expected.isNaN {
                #expect(throws: Calculator.Failure.self) { try Calculator.evaluate(text) }
            } else {
                #expect(abs(try Calculator.evaluate(text) - expected) < 1e-12, "\(text)")
            }
        }
    }

    @Test("bad expressions are errors, never traps")
    func calculatorErrors() {
        let bad = ["", "   ", "1 / 0", "5 % 0", "1e308 * 10", "10 ^ 400", "sqrt(-1)", "(-8) ^ 0.5", "2 +", "(1 + 2", "1 + 2)",
                   "foo(1)", "bar", "1 $ 2", "min()", "sqrt(1, 2)", String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500),
                   String(repeating: "-", count: 300) + "1", String(repeating: "1+", count: 5000) + "1", "import os", "__import__('os')"]
        for text in bad {
            #expect(throws: Calculator.Failure.self, "\(text.prefix(40))") { try Calculator.evaluate(text) }
        }
    }

    @Test("fuzz: random token soup either evaluates or reports an error")
    func calculatorFuzz() {
        var rng = SplitMix64(seed: 8)
        let atoms = ["1", "2.5", "e", "pi", "(", ")", "+", "-", "*", "/", "%", "^", "**", "sqrt(", "min(", ",", " ", "1e9", "1e-9", "x", "÷", "0"]
        var evaluated = 0
        for _ in 0..<5000 {
            let text = (0..<Int(rng.next() % 20)).map { _ in atoms[Int(rng.next() % UInt64(atoms.count))] }.joined()
            if let value = try? Calculator.evaluate(text) {
                #expect(value.isFinite)
                evaluated += 1
            }
        }
        #expect(evaluated > 50)
    }

    @Test("unit conversion: round trips, known values, and refusals")
    func units() throws {
        #expect(abs(try UnitConverter.convert(1, from: "mi", to: "km") - 1.609344) < 1e-12)
        #expect(abs(try UnitConverter.convert(100, from: "c", to: "f") - 212) < 1e-9)
        #expect(abs(try UnitConverter.convert(32, from: "fahrenheit", to: "celsius")) < 1e-9)
        #expect(abs(try UnitConverter.convert(0, from: "k", to: "c") + 273.15) < 1e-9)
        #expect(abs(try UnitConverter.convert(1, from: "gal", to: "l") - 3.785411784) < 1e-12)
        #expect(abs(try UnitConverter.convert(16, from: "oz", to: "lb") - 1) < 1e-12)
        var rng = SplitMix64(seed: 3)
        let pairs = [("km", "ft"), ("lb", "g"), ("cup", "ml"), ("f", "k")]
        for _ in 0..<200 {
            let (a, b) = pairs[Int(rng.next() % 4)]
            let v = Double(rng.next() % 10_000) / 7
            let back = try UnitConverter.convert(try UnitConverter.convert(v, from: a, to: b), from: b, to: a)
            #expect(abs(back - v) <= 1e-9 * max(1, abs(v)))
        }
        #expect(throws: ToolFailure.self) { try UnitConverter.convert(1, from: "kg", to: "m") }
        #expect(throws: ToolFailure.self) { try UnitConverter.convert(1, from: "parsec", to: "m") }
        #expect(throws: ToolFailure.self) { try UnitConverter.convert(-500, from: "c", to: "k") }
    }

    @Test("the registry validates arguments and returns errors as results")
    func registry() {
        let fixed = Date(timeIntervalSince1970: 0)
        let tools = ToolRegistry.builtIn(now: { fixed })
        #expect(tools.call("calculator", arguments: .object([("expression", .string("6*7"))])) == .object([("result", .number(42))]))
        #expect(tools.call("calculator", arguments: .object([("expression", .string("1/0"))]))["error"]?.stringValue == "division by zero")
        #expect(tools.call("calculator", arguments: .object([]))["error"]?.stringValue?.contains("required") == true)
        #expect(tools.call("calculator", arguments: .object([("expression", .number(1))]))["error"] != nil)
        #expect(tools.call("nope", arguments: .object([]))["error"]?.stringValue?.contains("unknown tool") == true)
        let time = tools.call("current_time", arguments: .object([("timezone", .string("Asia/Tokyo"))]))
        #expect(time["datetime"]?.stringValue == "1970-01-01T09:00:00+09:00")
        #expect(time["weekday"]?.stringValue == "Thursday")
        #expect(tools.call("current_time", arguments: .object([("timezone", .string("Mars/Olympus"))]))["error"] != nil)
        #expect(tools.call("unit_convert", arguments: .object([("value", .number(1)), ("from", .string("km")), ("to", .string("m"))]))["value"] == .number(1000))
    }

    @Test("JSON parses, serializes and round-trips; bad and deep input are errors")
    func json() throws {
        let text = #"{"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "x\ny \"q\" \u00e9 \ud83d\ude00"}, "": []}"#
        let value = try JSONValue.parse(text)
        #expect(try JSONValue.parse(value.serialized()) == value)
        #expect(value["b"]?["c"]?.stringValue == "x\ny \"q\" é 😀")
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "\"\\x\"", "[1] 2", "\"\u{01}\"", String(repeating: "[", count: 1000)] {
            #expect(throws: JSONValue.ParseError.self, "\(bad.prefix(20))") { try JSONValue.parse(bad) }
        }
    }
}
