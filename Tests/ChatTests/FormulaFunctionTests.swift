@testable import Chat
import Foundation
import Testing

@Suite("formula functions: synthetic calls to unseen functions, and the same requests unlisted")
struct FormulaFunctionTests {
    static func function(_ name: String) -> FormulaFunction { FormulaFunction.all.first { $0.names.contains(name) }! }

    static func solved(_ name: String, _ arguments: [String: JSONValue]) -> JSONValue { function(name).solve(arguments).result }

    @Test("results are the formulas' values")
    func results() {
        #expect(Self.solved("triangle_area", ["base": .number(10), "height": .number(5)])["area"]?.numberValue == 25)
        #expect(Self.solved("gcd", ["a": .number(12), "b": .number(18)])["gcd"]?.numberValue == 6)
        #expect(Self.solved("lcm", ["a": .number(4), "b": .number(6)])["lcm"]?.numberValue == 12)
        #expect(Self.solved("is_prime", ["number": .number(97)])["is_prime"] == .bool(true))
        #expect(Self.solved("is_prime", ["number": .number(91)])["is_prime"] == .bool(false))
        #expect(Self.solved("is_prime", ["number": .number(2)])["is_prime"] == .bool(true))
        #expect(Self.solved("fibonacci", ["n": .number(10)])["result"]?.numberValue == 55)
        #expect(Self.solved("factorial", ["n": .number(5)])["result"]?.numberValue == 120)
        #expect(Self.solved("median", ["numbers": .array([.number(3), .number(1), .number(2), .number(10)])])["median"]?.numberValue == 2.5)
        #expect(Self.solved("power_mod", ["base": .number(2), "exponent": .number(10), "mod": .number(1000)])["result"]?.numberValue == 24)
        #expect(Self.solved("power_mod", ["base": .number(2), "exponent": .number(10)])["result"]?.numberValue == 1024)
        #expect(Self.solved("round_number", ["number": .number(3.14159), "decimals": .number(2)])["result"]?.numberValue == 3.14)
        #expect(Self.solved("hypotenuse", ["a": .number(3), "b": .number(4)])["hypotenuse"]?.numberValue == 5)
        #expect(Self.solved("word_count", ["text": .string("see you next week")])["words"]?.numberValue == 4)
        let payment = Self.solved("loan_payment", ["loan_amount": .number(100_000), "annual_rate": .number(6), "years": .number(30)])
        #expect(payment["monthly_payment"]?.numberValue == 599.55)
    }

    @Test("the catalogue is well-formed: unique names, required parameters in every wording, optional ones stated apart")
    func catalogue() {
        let names = FormulaFunction.all.flatMap(\.names)
        #expect(Set(names).count == names.count)
        for f in FormulaFunction.all {
            let definition = f.definition(named: f.names[0])
            var required: [JSONValue] = []
            if case .array(let names)? = definition.parameters["required"] { required = names }
            for p in f.parameters {
                #expect(definition.parameters["properties"]?[p.name]?["type"]?.stringValue == p.type)
                #expect(required.contains(.string(p.name)) == !p.isOptional, "\(f.names[0]).\(p.name)")
                for template in f.requests {
                    #expect(template.contains("{\(p.name)}") == !p.isOptional, "\(template) and \(p.name)")
                }
            }
            let hasOptional = f.parameters.contains(where: \.isOptional)
            #expect(f.requests.allSatisfy { $0.contains("{+}") == hasOptional }, "\(f.names[0])")
        }
    }

    @Test("a formula call passes exactly the values its request states, optional ones only when stated")
    func calls() {
        var generator = SyntheticToolData(seed: 3)
        var optionalStated = 0, optionalLeft = 0
        for _ in 0..<400 {
            let c = generator.conversation(.formulaCall)
            let user = c.messages.first { $0.role == .user }!.content.lowercased()
            let call = c.messages.flatMap(\.toolCalls)[0]
            let definition = c.tools.first { $0.name == call.name }!
            #expect(JSONSchema.validate(call.arguments, against: definition.parameters) == nil, "\(call)")
            let function = FormulaFunction.all.first { $0.names.contains(call.name) }!
            guard case .object(let arguments) = call.arguments else { Issue.record("\(call)"); continue }
            for (key, value) in arguments {
                #expect(user.contains(FormulaFunction.spoken(value).lowercased()), "\(key) = \(value) is not in \"\(user)\"")
            }
            for p in function.parameters where p.isOptional {
                if arguments.contains(where: { $0.key == p.name }) { optionalStated += 1 } else { optionalLeft += 1 }
            }
            // The tool's answer states the result the call returned.
            let result = try? JSONValue.parse(c.messages.first { $0.role == .tool }!.content)
            #expect(result == function.solve(Dictionary(uniqueKeysWithValues: arguments)).result)
        }
        #expect(optionalStated > 20 && optionalLeft > 20, "\(optionalStated) stated, \(optionalLeft) left out")
    }

    @Test("an unlisted formula is answered in words, with its own function never listed")
    func unlisted() {
        var generator = SyntheticToolData(seed: 4)
        for f in FormulaFunction.all {
            for _ in 0..<10 {
                let c = generator.unlistedFormula(f)
                #expect(!c.tools.isEmpty && c.tools.allSatisfy { !f.names.contains($0.name) }, "\(f.names[0]) among \(c.tools.map(\.name))")
                #expect(c.messages.allSatisfy { $0.toolCalls.isEmpty })
                #expect(c.messages.last?.role == .assistant && c.messages.last?.content.isEmpty == false)
            }
        }
    }
}
