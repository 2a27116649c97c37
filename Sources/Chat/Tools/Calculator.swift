import Foundation

/// An arithmetic evaluator for the `calculator` tool: numbers (decimals, exponents), + − × ÷,
/// `%` as a remainder (`17 % 5`) or a percentage (`15% of 80`, `80 * 15%`), powers (`^` or `**`,
/// right-associative), `√`, parentheses, unary minus, `sqrt`, `abs`, `round`,
/// `floor`, `ceil`, `min`, `max`, `pi`, `e`. It parses text and evaluates nothing else: no
/// names but these, no code. Errors, never traps, for anything else.
public enum Calculator {
    public static let maximumLength = 1000
    public static let maximumDepth = 64

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    public static func evaluate(_ expression: String) throws -> Double {
        guard expression.count <= maximumLength else {
            throw Failure(message: "the expression is \(expression.count) characters long; the limit is \(maximumLength)")
        }
        var parser = Parser(Array(expression.unicodeScalars))
        parser.skipSpaces()
        guard !parser.atEnd else { throw Failure(message: "the expression is empty") }
        let value = try parser.expression(depth: 0)
        parser.skipSpaces()
        guard parser.atEnd else { throw Failure(message: "unexpected '\(parser.current!)' at position \(parser.index + 1)") }
        guard value.isFinite else { throw Failure(message: "the result overflows") }
        return value
    }

    /// A result as text: integers without a fraction, others with up to 12 significant digits.
    public static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        var text = String(format: "%.12g", value)
        if text.contains("e") { return text }
        while text.contains(".") && (text.hasSuffix("0") || text.hasSuffix(".")) { text.removeLast() }
        return text
    }

    struct Parser {
        let scalars: [Unicode.Scalar]
        var index = 0

        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var atEnd: Bool { index >= scalars.count }
        var current: Unicode.Scalar? { atEnd ? nil : scalars[index] }

        mutating func skipSpaces() {
            while let c = current, c.properties.isWhitespace { index += 1 }
        }

        func fail(_ message: String) -> Failure { Failure(message: message) }

        mutating func accept(_ options: String...) -> String? {
            skipSpaces()
            for option in options {
                let s = Array(option.unicodeScalars)
                if index + s.count <= scalars.count && Array(scalars[index..<(index + s.count)]) == s {
                    index += s.count
                    return option
                }
            }
            return nil
        }

        /// Consumes `word` when it comes next as a whole word.
        mutating func acceptWord(_ word: String) -> Bool {
            skipSpaces()
            let w = Array(word.unicodeScalars)
            guard index + w.count <= scalars.count,
                  String(String.UnicodeScalarView(scalars[index..<(index + w.count)])).lowercased() == word else { return false }
            if index + w.count < scalars.count && scalars[index + w.count].properties.isAlphabetic { return false }
            index += w.count
            return true
        }

        /// Whether a `%` just read ends an operand (a percent sign) rather than starts a remainder:
        /// nothing, a closing parenthesis, a comma or another operator follows it.
        mutating func isPercentSign() -> Bool {
            skipSpaces()
            guard let c = current else { return true }
            return [")", ",", "+", "-", "−", "*", "×", "/", "÷"].contains(c)
        }

        mutating func expression(depth: Int) throws -> Double {
            guard depth < maximumDepth else { throw fail("the expression is nested deeper than \(maximumDepth) levels") }
            var value = try term(depth: depth)
            while let op = accept("+", "-", "−") {
                let rhs = try term(depth: depth)
                value = op == "+" ? value + rhs : value - rhs
                try check(value)
            }
            return value
        }

        mutating func term(depth: Int) throws -> Double {
            var value = try unary(depth: depth)
            while true {
                // `**` is a power, not two multiplications.
                skipSpaces()
                if index + 1 < scalars.count && scalars[index] == "*" && scalars[index + 1] == "*" { return value }
                guard var op = accept("*", "×", "/", "÷", "%") else { return value }
                if op == "%" {
                    // `15% of 80` and `80 * 15%` are percentages; `17 % 5` is a remainder.
                    if acceptWord("of") {
                        op = "percent"
                    } else if isPercentSign() {
                        value /= 100
                        continue
                    }
                }
                let rhs = try unary(depth: depth)
                switch op {
                case "*", "×": value *= rhs
                case "%":
                    guard rhs != 0 else { throw fail("modulo by zero") }
                    value = value.truncatingRemainder(dividingBy: rhs)
                case "percent":
                    value = value / 100 * rhs
                default:
                    guard rhs != 0 else { throw fail("division by zero") }
                    value /= rhs
                }
                try check(value)
            }
        }

        mutating func unary(depth: Int) throws -> Double {
            guard depth < maximumDepth else { throw fail("the expression is nested deeper than \(maximumDepth) levels") }
            if accept("-", "−") != nil { return -(try unary(depth: depth + 1)) }
            if accept("+") != nil { return try unary(depth: depth + 1) }
            return try power(depth: depth)
        }

        mutating func power(depth: Int) throws -> Double {
            let base = try primary(depth: depth)
            if accept("**", "^") != nil {
                let exponent = try unary(depth: depth + 1)
                let value = Foundation.pow(base, exponent)
                guard !value.isNaN else { throw fail("\(format(base)) cannot be raised to \(format(exponent))") }
                try check(value)
                return value
            }
            return base
        }

        mutating func primary(depth: Int) throws -> Double {
            skipSpaces()
            guard let c = current else { throw fail("the expression ends too early") }
            if c == "(" {
                index += 1
                let value = try expression(depth: depth + 1)
                guard accept(")") != nil else { throw fail("a '(' is not closed") }
                return value
            }
            if ("0"..."9").contains(c) || c == "." { return try number() }
            if c == "√" {
                index += 1
                let x = try power(depth: depth + 1)
                guard x >= 0 else { throw fail("the square root of a negative number (\(format(x)))") }
                return x.squareRoot()
            }
            if c.properties.isAlphabetic || c == "π" {
                let start = index
                while let d = current, d.properties.isAlphabetic || d == "π" { index += 1 }
                let name = String(String.UnicodeScalarView(scalars[start..<index])).lowercased()
                switch name {
                case "pi", "π": return Double.pi
                case "e": return M_E
                default: break
                }
                guard accept("(") != nil else { throw fail("unknown name '\(name)'") }
                var args: [Double] = []
                if accept(")") == nil {
                    repeat { args.append(try expression(depth: depth + 1)) } while accept(",") != nil
                    guard accept(")") != nil else { throw fail("'\(name)(' is not closed") }
                }
                return try apply(name, args)
            }
            throw fail("unexpected '\(c)' at position \(index + 1)")
        }

        mutating func number() throws -> Double {
            let start = index
            while let c = current, ("0"..."9").contains(c) || c == "." { index += 1 }
            if let c = current, c == "e" || c == "E" {
                let mark = index
                index += 1
                if let s = current, s == "+" || s == "-" { index += 1 }
                let digits = index
                while let d = current, ("0"..."9").contains(d) { index += 1 }
                if index == digits { index = mark } // "2e" followed by no digits: e is a name
            }
            let text = String(String.UnicodeScalarView(scalars[start..<index]))
            guard let value = Double(text) else { throw fail("'\(text)' is not a number") }
            try check(value)
            return value
        }

        func apply(_ name: String, _ args: [Double]) throws -> Double {
            func one() throws -> Double {
                guard args.count == 1 else { throw fail("\(name) takes 1 argument, got \(args.count)") }
                return args[0]
            }
            switch name {
            case "sqrt":
                let x = try one()
                guard x >= 0 else { throw fail("the square root of a negative number (\(format(x)))") }
                return x.squareRoot()
            case "abs": return abs(try one())
            case "round": return (try one()).rounded()
            case "floor": return (try one()).rounded(.down)
            case "ceil": return (try one()).rounded(.up)
            case "min", "max":
                guard !args.isEmpty else { throw fail("\(name) needs at least 1 argument") }
                return name == "min" ? args.min()! : args.max()!
            default: throw fail("unknown function '\(name)'")
            }
        }

        func check(_ value: Double) throws {
            if value.isInfinite { throw fail("the result overflows") }
            if value.isNaN { throw fail("the result is not a number") }
        }
    }

    public static let tool = Tool(
        definition: ToolDefinition(
            name: "calculator",
            description: "Evaluate an arithmetic expression: + - * / ^, percentages (15% of 80), parentheses, sqrt, abs, round, min, max.",
            parameters: .object([
                ("type", .string("object")),
                ("properties", .object([("expression", .object([("type", .string("string")), ("description", .string("e.g. (3 + 4) * 2"))]))])),
                ("required", .array([.string("expression")])),
            ])),
        handler: { arguments in
            let expression = arguments["expression"]?.stringValue ?? ""
            do {
                return .object([("result", .number(try Calculator.evaluate(expression)))])
            } catch let failure as Failure {
                throw ToolFailure(failure.message)
            }
        })
}
