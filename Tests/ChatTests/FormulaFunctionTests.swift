@testable import Chat
import Foundation
import Testing

@Suite("formula functions: synthetic calls to unseen functions, and the same requests unlisted")
struct FormulaFunctionTests {
    static func function(_ name: String) -> FormulaFunction { FormulaFunction.all.first { $0.names.contains(name) }! }

    static func solved(_ name: String, _ arguments: [String: JSONValue]) -> JSONValue { function(name).solve(arguments).result }

    /// The key `definition` (a listing of `function`) gives each of the function's parameters, by name.
    static func keys(of function: FormulaFunction, in definition: ToolDefinition) -> [String: String] {
        let keys = definition.parameters["properties"]?.objectFields?.map(\.key) ?? []
        return Dictionary(uniqueKeysWithValues: zip(function.parameters.map(\.name), keys))
    }

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
        // 1000 at 5% for 2 years: 1102.50 yearly; 1000·1.0125⁸ = 1104.486… quarterly.
        #expect(Self.solved("compound_interest", ["principal": .number(1000), "rate": .number(0.05), "years": .number(2)])["interest"]?.numberValue == 102.5)
        #expect(Self.solved("compound_interest", ["principal": .number(1000), "rate": .number(0.05), "years": .number(2), "times_per_year": .number(4)])["interest"]?.numberValue == 104.49)
        #expect(Self.solved("future_value", ["present_value": .number(1000), "annual_rate": .number(0.1), "years": .number(2)])["future_value"]?.numberValue == 1210)
        let list: JSONValue = .array([.number(5), .number(1), .number(9), .number(1)])
        #expect(Self.solved("sort_numbers", ["numbers": list])["sorted"] == .array([.number(1), .number(1), .number(5), .number(9)]))
        #expect(Self.solved("sort_numbers", ["numbers": list, "descending": .bool(true)])["sorted"] == .array([.number(9), .number(5), .number(1), .number(1)]))
        #expect(Self.solved("prime_factors", ["number": .number(450)])["factors"] == .array([2, 3, 3, 5, 5].map { .number($0) }))
        #expect(Self.solved("prime_factors", ["number": .number(450), "distinct": .bool(true)])["factors"] == .array([2, 3, 5].map { .number($0) }))
        // 100/1.1 + 100/1.21 = 173.553…; less 100 invested now.
        let flows: JSONValue = .array([.number(100), .number(100)])
        #expect(Self.solved("net_present_value", ["cash_flows": flows, "discount_rate": .number(0.1)])["npv"]?.numberValue == 173.55)
        #expect(Self.solved("net_present_value", ["cash_flows": flows, "discount_rate": .number(0.1), "initial_investment": .number(100)])["npv"]?.numberValue == 73.55)
        #expect(Self.solved("population_growth", ["current_population": .number(1000), "growth_rate": .number(0.1), "years": .number(2)])["population"]?.numberValue == 1210)
        // A quarter of the equator: 6371 km · π/2; a degree of latitude: 3958.8 mi · π/180.
        let origin: JSONValue = .array([.number(0), .number(0)])
        #expect(Self.solved("coordinate_distance", ["coord1": origin, "coord2": .array([.number(0), .number(-90)])])["distance"]?.numberValue == 10007.54)
        #expect(Self.solved("coordinate_distance", ["coord1": origin, "coord2": .array([.number(-1), .number(0)]), "unit": .string("miles")])["distance"]?.numberValue == 69.09)
    }

    @Test("a rate stated as a percentage is passed as a decimal; a boolean is stated in words")
    func spokenValues() {
        let rate = Self.function("compound_interest").parameters.first { $0.name == "rate" }!
        #expect(rate.spoken(.number(0.05)) == "5%" && rate.spoken(.number(0.125)) == "12.5%" && rate.spoken(.number(0.07)) == "7%")
        let principal = Self.function("compound_interest").parameters[0]
        #expect(principal.spoken(.number(0.05)) == "0.05")
        let times = Self.function("compound_interest").parameters.first { $0.name == "times_per_year" }!
        #expect(times.spoken(.number(12)) == "monthly" && times.spoken(.number(4)) == "quarterly" && times.spoken(.number(1)) == "annually")
        let point = Self.function("coordinate_distance").parameters[0]
        #expect(point.spoken(.array([.number(33.4484), .number(-112.074)])) == "(33.4484 N, 112.074 W)")
        #expect(point.spoken(.array([.number(-12.5), .number(45)])) == "(12.5 S, 45 E)")
        #expect(FormulaFunction.grouped(.number(10000)) == "10,000" && FormulaFunction.grouped(.number(1_234_567)) == "1,234,567")
        #expect(FormulaFunction.grouped(.number(1000)) == "1,000" && FormulaFunction.grouped(.number(999)) == nil && FormulaFunction.grouped(.number(1500.5)) == nil)
    }

    @Test("a rate's definition says \"as a decimal\" or not (half each); the call passes the decimal either way")
    func plainRates() {
        var generator = SyntheticToolData(seed: 5)
        var hinted = 0, plain = 0, grouped = 0, attached = 0
        for _ in 0..<600 {
            let c = generator.conversation(.formulaCall)
            let call = c.messages.flatMap(\.toolCalls)[0]
            let user = c.messages.first { $0.role == .user }!.content
            if user.range(of: #"\d,\d{3}"#, options: .regularExpression) != nil { grouped += 1 }
            if ["inches", "meters", "feet"].contains(where: { user.contains("0 \($0)") || user.range(of: "\\d \($0)", options: .regularExpression) != nil }) { attached += 1 }
            let function = FormulaFunction.all.first { $0.names.contains(call.name) }!
            let definition = c.tools.first { $0.name == call.name }!, keys = Self.keys(of: function, in: definition)
            for p in function.parameters where p.wording == .percent {
                let key = keys[p.name]!
                let description = definition.parameters["properties"]?[key]?["description"]?.stringValue
                if description == p.plainDescription { plain += 1 } else { hinted += 1; #expect(description == p.description) }
                let value = call.arguments[key]?.numberValue ?? .nan
                #expect(value > 0 && value < 0.2, "\(p.name) = \(value) in \(call)")
            }
        }
        #expect(hinted > 15 && plain > 15, "\(hinted) hinted, \(plain) plain")
        #expect(grouped > 10 && attached > 3, "\(grouped) with thousands separators, \(attached) with a unit after its value")
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

    @Test("parameter aliases: every style names distinct keys; a call keys its arguments as its listed definition does")
    func aliases() {
        for f in FormulaFunction.all {
            for style in 0...FormulaFunction.keyStyles {
                let keys = f.keys(style: style)
                #expect(Set(keys).count == keys.count && keys.count == f.parameters.count, "\(f.names[0]) style \(style): \(keys)")
                let definition = f.definition(named: f.names[0], keys: keys)
                #expect(definition.parameters["properties"]?.objectFields?.map(\.key) == keys)
                var required: [JSONValue] = []
                if case .array(let names)? = definition.parameters["required"] { required = names }
                #expect(required == zip(f.parameters, keys).filter { !$0.0.isOptional }.map { .string($0.1) })
            }
            #expect(f.keys(style: 0) == f.parameters.map(\.name))
        }
        var generator = SyntheticToolData(seed: 6)
        var canonical = 0, aliased = 0
        for _ in 0..<400 {
            let c = generator.conversation(.formulaCall)
            let call = c.messages.flatMap(\.toolCalls)[0]
            let function = FormulaFunction.all.first { $0.names.contains(call.name) }!
            let definition = c.tools.first { $0.name == call.name }!
            let keys = definition.parameters["properties"]?.objectFields?.map(\.key) ?? []
            if keys == function.parameters.map(\.name) { canonical += 1 } else { aliased += 1 }
            guard case .object(let arguments) = call.arguments else { Issue.record("\(call)"); continue }
            #expect(arguments.allSatisfy { keys.contains($0.key) }, "\(call) against \(keys)")
            #expect(JSONSchema.validate(call.arguments, against: definition.parameters) == nil, "\(call)")
        }
        #expect(canonical > 120 && aliased > 120, "\(canonical) canonical, \(aliased) aliased")
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
            guard case .object(let keyed) = call.arguments else { Issue.record("\(call)"); continue }
            // Back to the parameters' names, through the listed definition's keys.
            let names = Dictionary(uniqueKeysWithValues: Self.keys(of: function, in: definition).map { ($0.value, $0.key) })
            let arguments = keyed.map { (key: names[$0.key]!, value: $0.value) }
            for (key, value) in arguments {
                let p = function.parameters.first { $0.name == key }!
                if p.type == "boolean" {
                    #expect(p.mentions.contains { user.contains($0.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: " ,"))) },
                            "\(key) = \(value): none of its wordings is in \"\(user)\"")
                } else {
                    let forms = [p.spoken(value)] + (FormulaFunction.grouped(value).map { [$0] } ?? [])
                    #expect(forms.contains { user.contains($0.lowercased()) }, "\(key) = \(value) is not in \"\(user)\"")
                }
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

    @Test("a session: each turn answered before the next, tools switch, a formula function listed only when it is called")
    func sessions() {
        var generator = SyntheticToolData(seed: 5)
        generator.otherTools = true
        var switches = 0, repeats = 0, wordsForUnlisted = 0 // turns answered in words
        for _ in 0..<300 {
            let c = generator.conversation(.session)
            let users = c.messages.filter { $0.role == .user }
            #expect((2...4).contains(users.count))
            // Built-in three always; at most one formula function, and it is called.
            #expect(Set(ToolRegistry.builtIn().definitions.map(\.name)).isSubset(of: Set(c.tools.map(\.name))))
            #expect(c.tools.count <= 4)
            let called = Set(c.messages.flatMap(\.toolCalls).map(\.name))
            #expect(Set(c.tools.map(\.name)).subtracting(ToolRegistry.builtIn().definitions.map(\.name)).isSubset(of: called))
            // Each user turn is followed by its own calls and an answer before the next user turn.
            var turnTools: [Set<String>] = []
            for (i, m) in c.messages.enumerated() where m.role == .user {
                let rest = c.messages[(i + 1)...].prefix { $0.role != .user }
                #expect(rest.last?.role == .assistant && rest.last?.toolCalls.isEmpty == true)
                turnTools.append(Set(rest.flatMap(\.toolCalls).map(\.name)))
            }
            for (a, b) in zip(turnTools, turnTools.dropFirst()) where !a.isEmpty && !b.isEmpty {
                if a == b { repeats += 1 } else { switches += 1 }
            }
            wordsForUnlisted += turnTools.filter(\.isEmpty).count
        }
        #expect(switches > 5 * max(1, repeats), "\(switches) switches, \(repeats) repeats")
        #expect(wordsForUnlisted > 50)
    }
}
