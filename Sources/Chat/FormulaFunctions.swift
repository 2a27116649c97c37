import Foundation

/// Made-up functions that compute a formula (geometry, number theory, statistics, finance,
/// physics, text), for synthetic training data that teaches two things about functions the model
/// has never seen:
/// - **arguments**: every value the request states goes into the call, optional parameters
///   included ("…in meters" → `"unit": "meters"`), and nothing the request does not state;
/// - **relevance**: the same request is called when its function is listed and answered in
///   words (the formula worked out) when only other functions are listed, so whether to call
///   depends on the list, not on the wording.
///
/// Each function has several names in the styles users write (`triangle_area`,
/// `geometry.triangle_area`, `calculate_triangle_area`), so the model reads the list instead of
/// remembering names. Results are computed, so answers in words are right.
struct FormulaFunction: Sendable {
    struct Parameter: Sendable {
        var name: String
        /// JSON Schema type: number, integer, string, array (of numbers) or boolean.
        var type: String
        var description: String
        /// For an optional parameter, the phrases that state it in a request (`{v}` is its value);
        /// empty for a required one, which every request template names as `{name}`.
        var mentions: [String] = []
        /// How a request words the value, beyond its plain spelling.
        var wording = Wording.plain
        /// The description without its hint ("as a decimal"), listed half the time: BFCL's rates
        /// mostly say only "The annual interest rate." and still expect 5% passed as 0.05.
        var plainDescription: String? = nil
        /// For an optional unit: the required parameter whose value it may follow directly
        /// ("a radius of 4 inches") instead of being stated apart ("…, in inches").
        var attachedTo: String? = nil
        /// Other keys the same parameter goes by in other APIs (`principal`, `principal_amount`,
        /// `initial_amount`), lined up by style: a definition names every parameter in one style
        /// (`keys(style:)`), so the model learns a value's meaning from the schema, not its key.
        var aliases: [String] = []

        var isOptional: Bool { !mentions.isEmpty }

        /// The value as a request states it. A boolean is stated by its mention's words alone
        /// ("…from largest to smallest" for `descending: true`), so it has no spoken value.
        func spoken(_ v: JSONValue) -> String {
            switch wording {
            case .percent:
                if let x = v.numberValue { return JSONValue.format(FormulaFunction.rounded(x * 100, 4)) + "%" }
            case .frequency:
                if let x = v.numberValue, let word = Wording.frequencies[Int(x)] { return word }
            case .coordinate:
                if case .array(let c) = v, c.count == 2, let lat = c[0].numberValue, let lon = c[1].numberValue {
                    return "(\(JSONValue.format(abs(lat))) \(lat < 0 ? "S" : "N"), \(JSONValue.format(abs(lon))) \(lon < 0 ? "W" : "E"))"
                }
            case .plain: break
            }
            return FormulaFunction.spoken(v)
        }
    }

    /// How a request words a parameter's value.
    enum Wording: Sendable {
        case plain
        /// Stated as a percentage ("5%"), passed as the decimal fraction (0.05), as rates are.
        case percent
        /// Times a year, stated as a word ("monthly" → 12, "quarterly" → 4).
        case frequency
        /// A (latitude, longitude) pair stated with hemispheres ("33.45 N, 112.07 W" →
        /// [33.45, -112.07]): south and west are negative.
        case coordinate

        static let frequencies = [1: "annually", 2: "semiannually", 4: "quarterly", 12: "monthly", 52: "weekly", 365: "daily"]
    }

    var names: [String]
    var description: String
    /// Functions of one domain are listed together when a request's own function is missing,
    /// so that a near miss (a circle's area asked, a triangle's listed) is not called.
    var domain: String
    var parameters: [Parameter]
    /// Request templates: `{name}` for each required parameter, `{+}` where the stated optional
    /// parameters go.
    var requests: [String]
    /// Values for every parameter (optional ones too; whether a request states them is drawn apart).
    var draw: @Sendable (inout ForeignToolDraw) -> [String: JSONValue]
    /// The call's result and the answer in words, from the arguments the request states.
    var solve: @Sendable ([String: JSONValue]) -> (result: JSONValue, answer: String)

    /// Styles of parameter keys beyond the canonical one (style 0).
    static let keyStyles = 3

    /// The parameters' keys in `style` (0: their names; k: each one's alias k−1, cycling through
    /// the aliases it has, or its name when it has none), in the parameters' order; the names when
    /// two keys of the style would coincide.
    func keys(style: Int) -> [String] {
        let names = parameters.map(\.name)
        guard style > 0 else { return names }
        let keys = parameters.map { $0.aliases.isEmpty ? $0.name : $0.aliases[(style - 1) % $0.aliases.count] }
        return Set(keys).count == keys.count ? keys : names
    }

    /// The definition under `name`; `plain`: each parameter's description without its hint;
    /// `keys`: the parameters' keys (`keys(style:)`; their names when nil).
    func definition(named name: String, plain: Bool = false, keys: [String]? = nil) -> ToolDefinition {
        let keys = keys ?? parameters.map(\.name)
        var properties: [(String, JSONValue)] = []
        for (p, key) in zip(parameters, keys) {
            let description = plain ? p.plainDescription ?? p.description : p.description
            var schema: [(String, JSONValue)] = [("type", .string(p.type)), ("description", .string(description))]
            if p.type == "array" { schema.append(("items", .object([("type", .string("number"))]))) }
            properties.append((key, .object(schema)))
        }
        let required = zip(parameters, keys).filter { !$0.0.isOptional }.map { JSONValue.string($0.1) }
        return ToolDefinition(name: name, description: description, parameters: .object([
            ("type", .string("object")), ("properties", .object(properties)), ("required", .array(required)),
        ]))
    }

    /// A value as a request states it.
    static func spoken(_ v: JSONValue) -> String {
        switch v {
        case .number(let n): return JSONValue.format(n)
        case .string(let s): return s
        case .bool(let b): return b ? "yes" : "no"
        case .array(let items): return items.map(spoken).joined(separator: ", ")
        default: return v.serialized()
        }
    }

    /// A whole number's digits grouped by thousands ("10,000"), as amounts are often written;
    /// nil for a number below 1,000 or with a fraction.
    static func grouped(_ v: JSONValue) -> String? {
        guard let x = v.numberValue, x >= 1000, x == x.rounded(), x < 1e15 else { return nil }
        var digits = Array(String(Int(x))), out = ""
        while digits.count > 3 { out = "," + String(digits.suffix(3)) + out; digits.removeLast(3) }
        return String(digits) + out
    }

    /// A number rounded to `places` decimals, as answers and results give it.
    static func rounded(_ x: Double, _ places: Int = 2) -> Double {
        let f = pow(10, Double(places))
        return (x * f).rounded() / f
    }
}

extension FormulaFunction {
    private typealias P = Parameter
    private static func num(_ a: [String: JSONValue], _ key: String) -> Double { a[key]?.numberValue ?? 0 }
    private static func text(_ a: [String: JSONValue], _ key: String) -> String? { a[key]?.stringValue }
    private static func numbers(_ a: [String: JSONValue], _ key: String) -> [Double] {
        if case .array(let items)? = a[key] { return items.compactMap(\.numberValue) }
        return []
    }
    private static func f(_ x: Double) -> String { JSONValue.format(rounded(x)) }
    private static func units(_ a: [String: JSONValue]) -> String { text(a, "unit").map { " " + $0 } ?? "" }
    private static let lengthUnits = ["meters", "cm", "inches", "feet", "km"]
    private static let unitMentions = [" in {v}", ", measured in {v}", " (units: {v})"]

    /// The catalogue.
    static let all: [FormulaFunction] = [
        FormulaFunction(
            names: ["triangle_area", "geometry.triangle_area", "calculate_triangle_area"],
            description: "Calculate the area of a triangle from its base and height.", domain: "geometry",
            parameters: [P(name: "base", type: "number", description: "The base of the triangle.", aliases: ["base_length", "b"]),
                         P(name: "height", type: "number", description: "The height of the triangle.", aliases: ["height_length", "h"]),
                         P(name: "unit", type: "string", description: "The unit of length. Default: units.", mentions: unitMentions, attachedTo: "base", aliases: ["units"])],
            requests: ["What is the area of a triangle with base {base} and height {height}{+}?",
                       "Find the area of a triangle whose base is {base} and height is {height}{+}.",
                       "A triangle has a base of {base} and a height of {height}{+}. How large is its area?",
                       "Compute the triangle area for base {base}, height {height}{+}."],
            draw: { d in ["base": .number(Double(d.int(2...40))), "height": .number(Double(d.int(2...30))), "unit": .string(d.pick(lengthUnits))] },
            solve: { a in
                let area = 0.5 * num(a, "base") * num(a, "height")
                return (.object([("area", .number(rounded(area)))]), "The area is ½ × \(f(num(a, "base"))) × \(f(num(a, "height"))) = \(f(area)) square\(units(a).isEmpty ? " units" : units(a)).")
            }),
        FormulaFunction(
            names: ["circle_circumference", "geometry.circumference", "calculate_circumference"],
            description: "Calculate the circumference of a circle from its radius.", domain: "geometry",
            parameters: [P(name: "radius", type: "number", description: "The radius of the circle.", aliases: ["r", "circle_radius"]),
                         P(name: "unit", type: "string", description: "The unit of length. Default: cm.", mentions: unitMentions, attachedTo: "radius", aliases: ["units"])],
            requests: ["What is the circumference of a circle with radius {radius}{+}?", "Find the circumference of a circle whose radius is {radius}{+}.",
                       "How long is the edge of a circle of radius {radius}{+}?", "Circumference for radius {radius}{+}, please."],
            draw: { d in ["radius": .number(Double(d.int(1...60))), "unit": .string(d.pick(lengthUnits))] },
            solve: { a in
                let c = 2 * Double.pi * num(a, "radius")
                return (.object([("circumference", .number(rounded(c)))]), "The circumference is 2π × \(f(num(a, "radius"))) ≈ \(f(c))\(units(a)).")
            }),
        FormulaFunction(
            names: ["rectangle_perimeter", "geometry.rectangle_perimeter", "calc_perimeter_rectangle"],
            description: "Calculate the perimeter of a rectangle.", domain: "geometry",
            parameters: [P(name: "length", type: "number", description: "Length of the rectangle.", aliases: ["l", "rect_length"]),
                         P(name: "width", type: "number", description: "Width of the rectangle.", aliases: ["w", "rect_width"])],
            requests: ["What is the perimeter of a rectangle {length} long and {width} wide?", "Find the perimeter of a {length} by {width} rectangle.",
                       "A rectangle measures {length} by {width}. What is its perimeter?", "Perimeter of a rectangle with length {length} and width {width}?"],
            draw: { d in ["length": .number(Double(d.int(2...90))), "width": .number(Double(d.int(1...50)))] },
            solve: { a in
                let p = 2 * (num(a, "length") + num(a, "width"))
                return (.object([("perimeter", .number(p))]), "The perimeter is 2 × (\(f(num(a, "length"))) + \(f(num(a, "width")))) = \(f(p)).")
            }),
        FormulaFunction(
            names: ["sphere_volume", "geometry.sphere_volume", "calculate_sphere_volume"],
            description: "Calculate the volume of a sphere from its radius.", domain: "geometry",
            parameters: [P(name: "radius", type: "number", description: "The radius of the sphere.", aliases: ["r", "sphere_radius"]),
                         P(name: "unit", type: "string", description: "The unit of length. Default: cm.", mentions: unitMentions, attachedTo: "radius", aliases: ["units"])],
            requests: ["What is the volume of a sphere with radius {radius}{+}?", "Find the volume of a ball whose radius is {radius}{+}.",
                       "How much space does a sphere of radius {radius} take up{+}?", "Sphere volume for r = {radius}{+}?"],
            draw: { d in ["radius": .number(Double(d.int(1...25))), "unit": .string(d.pick(lengthUnits))] },
            solve: { a in
                let v = 4.0 / 3.0 * Double.pi * pow(num(a, "radius"), 3)
                return (.object([("volume", .number(rounded(v)))]), "The volume is 4/3 π r³ ≈ \(f(v)) cubic\(units(a).isEmpty ? " units" : units(a)).")
            }),
        FormulaFunction(
            names: ["cylinder_volume", "geometry.cylinder_volume", "calculate_cylinder_volume"],
            description: "Calculate the volume of a cylinder.", domain: "geometry",
            parameters: [P(name: "radius", type: "number", description: "Radius of the base.", aliases: ["r", "base_radius"]),
                         P(name: "height", type: "number", description: "Height of the cylinder.", aliases: ["h", "cylinder_height"])],
            requests: ["What is the volume of a cylinder with radius {radius} and height {height}?", "A can has radius {radius} and height {height}. What is its volume?",
                       "Find the volume of a cylinder: radius {radius}, height {height}.", "How much does a cylinder of radius {radius} and height {height} hold?"],
            draw: { d in ["radius": .number(Double(d.int(1...20))), "height": .number(Double(d.int(1...40)))] },
            solve: { a in
                let v = Double.pi * pow(num(a, "radius"), 2) * num(a, "height")
                return (.object([("volume", .number(rounded(v)))]), "The volume is π r² h ≈ \(f(v)).")
            }),
        FormulaFunction(
            names: ["hypotenuse", "math.hypotenuse", "calculate_hypotenuse"],
            description: "Calculate the hypotenuse of a right triangle from its two legs.", domain: "geometry",
            parameters: [P(name: "a", type: "number", description: "First leg.", aliases: ["leg1", "side_a", "x"]), P(name: "b", type: "number", description: "Second leg.", aliases: ["leg2", "side_b", "y"])],
            requests: ["A right triangle has legs {a} and {b}. How long is the hypotenuse?", "What is the hypotenuse when the legs are {a} and {b}?",
                       "Find the longest side of a right triangle with sides {a} and {b}.", "Hypotenuse for legs of {a} and {b}?"],
            draw: { d in ["a": .number(Double(d.int(2...30))), "b": .number(Double(d.int(2...30)))] },
            solve: { a in
                let h = (num(a, "a") * num(a, "a") + num(a, "b") * num(a, "b")).squareRoot()
                return (.object([("hypotenuse", .number(rounded(h)))]), "The hypotenuse is √(\(f(num(a, "a")))² + \(f(num(a, "b")))²) ≈ \(f(h)).")
            }),
        FormulaFunction(
            names: ["factorial", "math.factorial", "calculate_factorial"],
            description: "Compute the factorial of a non-negative integer.", domain: "numbers",
            parameters: [P(name: "n", type: "integer", description: "The number.", aliases: ["number", "num"])],
            requests: ["What is the factorial of {n}?", "Compute {n}!", "Calculate {n} factorial.", "How much is {n} factorial?"],
            draw: { d in ["n": .number(Double(d.int(2...12)))] },
            solve: { a in
                let n = Int(num(a, "n"))
                let v = (1...max(1, n)).reduce(1, *)
                return (.object([("result", .number(Double(v)))]), "\(n)! = \(v).")
            }),
        FormulaFunction(
            names: ["gcd", "math.gcd", "greatest_common_divisor"],
            description: "Find the greatest common divisor of two integers.", domain: "numbers",
            parameters: [P(name: "a", type: "integer", description: "First integer.", aliases: ["num1", "number1", "x"]), P(name: "b", type: "integer", description: "Second integer.", aliases: ["num2", "number2", "y"])],
            requests: ["What is the greatest common divisor of {a} and {b}?", "Find the GCD of {a} and {b}.",
                       "What's the largest number that divides both {a} and {b}?", "gcd of {a} and {b}?"],
            draw: { d in ["a": .number(Double(d.int(2...40) * d.int(1...9))), "b": .number(Double(d.int(2...40) * d.int(1...9)))] },
            solve: { a in
                var x = Int(num(a, "a")), y = Int(num(a, "b"))
                while y != 0 { (x, y) = (y, x % y) }
                return (.object([("gcd", .number(Double(x)))]), "The greatest common divisor of \(f(num(a, "a"))) and \(f(num(a, "b"))) is \(x).")
            }),
        FormulaFunction(
            names: ["lcm", "math.lcm", "least_common_multiple"],
            description: "Find the least common multiple of two integers.", domain: "numbers",
            parameters: [P(name: "a", type: "integer", description: "First integer.", aliases: ["num1", "number1", "x"]), P(name: "b", type: "integer", description: "Second integer.", aliases: ["num2", "number2", "y"])],
            requests: ["What is the least common multiple of {a} and {b}?", "Find the LCM of {a} and {b}.",
                       "What's the smallest number both {a} and {b} divide?", "lcm({a}, {b})?"],
            draw: { d in ["a": .number(Double(d.int(2...30))), "b": .number(Double(d.int(2...30)))] },
            solve: { a in
                let p = Int(num(a, "a")), q = Int(num(a, "b"))
                var x = p, y = q
                while y != 0 { (x, y) = (y, x % y) }
                return (.object([("lcm", .number(Double(p / max(1, x) * q)))]), "The least common multiple of \(p) and \(q) is \(p / max(1, x) * q).")
            }),
        FormulaFunction(
            names: ["is_prime", "math.is_prime", "check_prime"],
            description: "Check whether an integer is a prime number.", domain: "numbers",
            parameters: [P(name: "number", type: "integer", description: "The integer to check.", aliases: ["n", "num"])],
            requests: ["Is {number} a prime number?", "Check if {number} is prime.", "Tell me whether {number} is prime.", "Is {number} prime or not?"],
            draw: { d in ["number": .number(Double(d.int(2...500)))] },
            solve: { a in
                let n = Int(num(a, "number"))
                let prime = n > 1 && !(2..<max(2, Int(Double(n).squareRoot()) + 1)).contains { n % $0 == 0 && $0 < n }
                return (.object([("is_prime", .bool(prime))]), prime ? "Yes, \(n) is a prime number." : "No, \(n) is not prime.")
            }),
        FormulaFunction(
            names: ["fibonacci", "math.fibonacci", "nth_fibonacci"],
            description: "Return the n-th Fibonacci number (F(1) = F(2) = 1).", domain: "numbers",
            parameters: [P(name: "n", type: "integer", description: "Position in the sequence.", aliases: ["position", "index"])],
            requests: ["What is the {n}th Fibonacci number?", "Give me Fibonacci number {n}.", "Find term {n} of the Fibonacci sequence.", "Fibonacci of {n}?"],
            draw: { d in ["n": .number(Double(d.int(3...30)))] },
            solve: { a in
                var (x, y) = (0, 1)
                for _ in 0..<Int(num(a, "n")) { (x, y) = (y, x + y) }
                return (.object([("result", .number(Double(x)))]), "Fibonacci number \(f(num(a, "n"))) is \(x).")
            }),
        FormulaFunction(
            names: ["mean", "statistics.mean", "calculate_average"],
            description: "Calculate the arithmetic mean of a list of numbers.", domain: "statistics",
            parameters: [P(name: "numbers", type: "array", description: "The numbers.", aliases: ["values", "data", "numbers_list"]),
                         P(name: "decimal_places", type: "integer", description: "Decimal places to round to. Default: 2.",
                           mentions: [", rounded to {v} decimal places", " (to {v} decimals)"], aliases: ["precision", "decimals", "round_to"])],
            requests: ["What is the average of {numbers}{+}?", "Find the mean of these numbers: {numbers}{+}.",
                       "Calculate the mean of {numbers}{+}.", "My scores were {numbers}. What's my average{+}?"],
            draw: { d in
                ["numbers": .array((0..<d.int(3...6)).map { _ in .number(Double(d.int(1...99))) }), "decimal_places": .number(Double(d.int(0...3)))]
            },
            solve: { a in
                let xs = numbers(a, "numbers"), m = xs.reduce(0, +) / Double(max(1, xs.count))
                return (.object([("mean", .number(rounded(m)))]), "The average is \(f(m)).")
            }),
        FormulaFunction(
            names: ["standard_deviation", "statistics.std_dev", "calculate_standard_deviation"],
            description: "Calculate the population standard deviation of a list of numbers.", domain: "statistics",
            parameters: [P(name: "numbers", type: "array", description: "The numbers.", aliases: ["values", "data", "dataset"])],
            requests: ["What is the standard deviation of {numbers}?", "Find the standard deviation of this data: {numbers}.",
                       "How spread out are {numbers}? Give the standard deviation.", "Std dev of {numbers}?"],
            draw: { d in ["numbers": .array((0..<d.int(3...6)).map { _ in .number(Double(d.int(1...50))) })] },
            solve: { a in
                let xs = numbers(a, "numbers"), m = xs.reduce(0, +) / Double(max(1, xs.count))
                let s = (xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(1, xs.count))).squareRoot()
                return (.object([("std_dev", .number(rounded(s)))]), "The standard deviation is about \(f(s)).")
            }),
        FormulaFunction(
            names: ["median", "statistics.median", "find_median"],
            description: "Find the median of a list of numbers.", domain: "statistics",
            parameters: [P(name: "numbers", type: "array", description: "The numbers.", aliases: ["values", "data", "numbers_list"])],
            requests: ["What is the median of {numbers}?", "Find the middle value of {numbers}.", "Median of this list: {numbers}?", "Compute the median of {numbers}."],
            draw: { d in ["numbers": .array((0..<d.int(3...7)).map { _ in .number(Double(d.int(1...90))) })] },
            solve: { a in
                let xs = numbers(a, "numbers").sorted(), n = xs.count
                let m = n == 0 ? 0 : n % 2 == 1 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2
                return (.object([("median", .number(m))]), "The median is \(f(m)).")
            }),
        FormulaFunction(
            names: ["simple_interest", "finance.simple_interest", "calculate_simple_interest"],
            description: "Calculate simple interest earned on a principal.", domain: "finance",
            parameters: [P(name: "principal", type: "number", description: "The amount invested.", aliases: ["principal_amount", "amount", "initial_amount"]),
                         P(name: "rate", type: "number", description: "Yearly interest rate as a decimal, e.g. 0.05 for 5%.", wording: .percent,
                           plainDescription: "The yearly interest rate.", aliases: ["interest_rate", "annual_interest_rate", "annual_rate"]),
                         P(name: "years", type: "integer", description: "Number of years.", aliases: ["time", "duration", "time_years"])],
            requests: ["How much simple interest does ${principal} earn at a rate of {rate} over {years} years?",
                       "Simple interest on {principal} dollars, rate {rate}, for {years} years?",
                       "Calculate the simple interest for a principal of {principal} at {rate} for {years} years.",
                       "If I put ${principal} away at a simple rate of {rate} for {years} years, what interest do I get?"],
            draw: { d in ["principal": .number(Double(d.int(1...90) * 100)), "rate": .number(Double(d.int(1...9)) / 100), "years": .number(Double(d.int(1...15)))] },
            solve: { a in
                let i = num(a, "principal") * num(a, "rate") * num(a, "years")
                return (.object([("interest", .number(rounded(i)))]), "The interest is \(f(num(a, "principal"))) × \(f(num(a, "rate"))) × \(f(num(a, "years"))) = $\(f(i)).")
            }),
        FormulaFunction(
            names: ["loan_payment", "finance.monthly_payment", "calculate_mortgage_payment"],
            description: "Calculate the monthly payment of a loan.", domain: "finance",
            parameters: [P(name: "loan_amount", type: "number", description: "The amount borrowed.", aliases: ["principal", "amount", "loan_principal"]),
                         P(name: "annual_rate", type: "number", description: "Yearly interest rate in percent.", aliases: ["interest_rate", "annual_interest_rate", "rate"]),
                         P(name: "years", type: "integer", description: "Length of the loan in years.", aliases: ["loan_term", "term_years", "duration"])],
            requests: ["What is the monthly payment on a ${loan_amount} loan at {annual_rate}% for {years} years?",
                       "I borrow {loan_amount} dollars for {years} years at {annual_rate} percent. How much do I pay each month?",
                       "Monthly payment for a loan of {loan_amount}, {annual_rate}% interest, {years} years?",
                       "Calculate my mortgage payment: {loan_amount} borrowed, {years} years, rate {annual_rate}%."],
            draw: { d in ["loan_amount": .number(Double(d.int(5...400) * 1000)), "annual_rate": .number(Double(d.int(2...9))), "years": .number(Double(d.pick([5, 10, 15, 20, 30])))] },
            solve: { a in
                let r = num(a, "annual_rate") / 1200, n = num(a, "years") * 12, p = num(a, "loan_amount")
                let m = r == 0 ? p / max(1, n) : p * r / (1 - pow(1 + r, -n))
                return (.object([("monthly_payment", .number(rounded(m)))]), "The monthly payment is about $\(f(m)).")
            }),
        FormulaFunction(
            names: ["compound_interest", "finance.compound_interest", "calculate_compound_interest"],
            description: "Calculate the compound interest earned on a principal.", domain: "finance",
            parameters: [P(name: "principal", type: "number", description: "The amount invested.", aliases: ["principal_amount", "initial_amount", "amount"]),
                         P(name: "rate", type: "number", description: "Annual interest rate as a decimal (0.05 for 5%).", wording: .percent,
                           plainDescription: "The annual interest rate.", aliases: ["interest_rate", "annual_interest_rate", "annual_rate"]),
                         P(name: "years", type: "integer", description: "Number of years.", aliases: ["time", "period", "duration"]),
                         P(name: "times_per_year", type: "integer", description: "How often interest is compounded per year. Default: 1 (annually).",
                           mentions: [", compounded {v}", " with interest compounded {v}"], wording: .frequency, aliases: ["compounding_frequency", "n", "compounds_per_year"])],
            requests: ["How much compound interest does ${principal} earn at {rate} over {years} years{+}?",
                       "Calculate the compound interest on {principal} dollars at an annual rate of {rate} for {years} years{+}.",
                       "I invest ${principal} for {years} years at {rate} a year{+}. How much interest do I earn?",
                       "Compound interest for a principal of {principal}, a rate of {rate} and {years} years{+}?"],
            draw: { d in ["principal": .number(Double(d.int(1...80) * 250)), "rate": .number(Double(d.int(1...12)) / 100),
                          "years": .number(Double(d.int(1...20))), "times_per_year": .number(Double(d.pick([1, 2, 4, 12, 365])))] },
            solve: { a in
                let n = a["times_per_year"]?.numberValue ?? 1, p = num(a, "principal")
                let i = p * pow(1 + num(a, "rate") / n, n * num(a, "years")) - p
                return (.object([("interest", .number(rounded(i)))]), "The interest is \(f(p)) × (1 + \(f(num(a, "rate"))) / \(f(n)))^(\(f(n)) × \(f(num(a, "years")))) − \(f(p)) ≈ $\(f(i)).")
            }),
        FormulaFunction(
            names: ["future_value", "finance.future_value", "calculate_future_value"],
            description: "Calculate the future value of an investment compounded yearly.", domain: "finance",
            parameters: [P(name: "present_value", type: "number", description: "The amount invested now.", aliases: ["initial_investment", "investment_amount", "principal"]),
                         P(name: "annual_rate", type: "number", description: "Yearly rate of return as a decimal, e.g. 0.07.", wording: .percent,
                           plainDescription: "The annual rate of return.", aliases: ["rate_of_return", "annual_return", "interest_rate"]),
                         P(name: "years", type: "integer", description: "Number of years.", aliases: ["time_years", "holding_period", "duration"])],
            requests: ["What will ${present_value} be worth after {years} years at {annual_rate} a year?",
                       "Find the future value of a ${present_value} investment growing {annual_rate} a year for {years} years.",
                       "If I invest {present_value} dollars at an annual return of {annual_rate}, how much will I have in {years} years?",
                       "Future value of {present_value} after {years} years with a {annual_rate} annual rate?"],
            draw: { d in ["present_value": .number(Double(d.int(1...100) * 500)), "annual_rate": .number(Double(d.int(2...10)) / 100),
                          "years": .number(Double(d.int(2...30)))] },
            solve: { a in
                let v = num(a, "present_value") * pow(1 + num(a, "annual_rate"), num(a, "years"))
                return (.object([("future_value", .number(rounded(v)))]), "It grows to \(f(num(a, "present_value"))) × (1 + \(f(num(a, "annual_rate"))))^\(f(num(a, "years"))) ≈ $\(f(v)).")
            }),
        FormulaFunction(
            names: ["sort_numbers", "array.sort", "sort_list"],
            description: "Sort a list of numbers.", domain: "statistics",
            parameters: [P(name: "numbers", type: "array", description: "The numbers to sort.", aliases: ["values", "list", "nums"]),
                         P(name: "descending", type: "boolean", description: "Sort from largest to smallest. Default: false.",
                           mentions: [" from largest to smallest", " in descending order", ", biggest first"], aliases: ["reverse", "desc", "descending_order"])],
            requests: ["Sort {numbers}{+}.", "Arrange these numbers{+}: {numbers}.", "Can you sort the list {numbers}{+}?", "Order {numbers}{+}, please."],
            draw: { d in ["numbers": .array((0..<d.int(4...7)).map { _ in .number(Double(d.int(1...99))) }), "descending": .bool(true)] },
            solve: { a in
                let down = a["descending"] == .bool(true)
                let xs = numbers(a, "numbers").sorted(by: down ? (>) : (<))
                return (.object([("sorted", .array(xs.map(JSONValue.number)))]), "In order\(down ? ", largest first" : ""): \(xs.map { JSONValue.format($0) }.joined(separator: ", ")).")
            }),
        FormulaFunction(
            names: ["prime_factors", "math.prime_factors", "get_prime_factors"],
            description: "Find the prime factors of an integer.", domain: "numbers",
            parameters: [P(name: "number", type: "integer", description: "The integer to factor.", aliases: ["n", "num", "value"]),
                         P(name: "distinct", type: "boolean", description: "List each prime only once. Default: false.",
                           mentions: [", each prime only once", ", without repeats", " (distinct primes only)"], aliases: ["unique", "unique_only", "distinct_only"])],
            requests: ["What are the prime factors of {number}{+}?", "Factor {number} into primes{+}.",
                       "Find the prime factorization of {number}{+}.", "Prime factors of {number}{+}?"],
            draw: { d in ["number": .number(Double(d.pick([2, 3, 5, 7]) * d.pick([2, 3, 5, 7, 11]) * d.int(2...30))), "distinct": .bool(true)] },
            solve: { a in
                var n = max(1, Int(num(a, "number"))), p = 2, factors: [Int] = []
                while n > 1 {
                    if n % p == 0 { factors.append(p); n /= p } else { p += 1 }
                }
                if a["distinct"] == .bool(true) { factors = Array(Set(factors)).sorted() }
                return (.object([("factors", .array(factors.map { .number(Double($0)) }))]), "The prime factors of \(Int(num(a, "number"))) are \(factors.map(String.init).joined(separator: ", ")).")
            }),
        FormulaFunction(
            names: ["net_present_value", "finance.npv", "calculate_npv"],
            description: "Calculate the net present value of yearly cash flows.", domain: "finance",
            parameters: [P(name: "cash_flows", type: "array", description: "The cash flows, one per year, starting a year from now.", aliases: ["cashflows", "flows", "cash_flow_list"]),
                         P(name: "discount_rate", type: "number", description: "The discount rate as a decimal (0.08 for 8%).", wording: .percent,
                           plainDescription: "The discount rate.", aliases: ["rate", "interest_rate", "rate_of_return"]),
                         P(name: "initial_investment", type: "number", description: "The amount invested now. Default: 0.",
                           mentions: [", after an initial investment of ${v}", " with ${v} invested up front"], aliases: ["initial_cost", "investment", "upfront_cost"])],
            requests: ["What is the NPV of the cash flows {cash_flows} at a discount rate of {discount_rate}{+}?",
                       "Find the net present value of {cash_flows} discounted at {discount_rate}{+}.",
                       "Calculate the NPV for cash flows of {cash_flows} with a {discount_rate} discount rate{+}.",
                       "Net present value of {cash_flows} at {discount_rate}{+}?"],
            draw: { d in
                ["cash_flows": .array((0..<d.int(3...5)).map { _ in .number(Double(d.int(1...60) * 100)) }),
                 "discount_rate": .number(Double(d.int(2...12)) / 100), "initial_investment": .number(Double(d.int(1...20) * 500))]
            },
            solve: { a in
                let r = num(a, "discount_rate")
                let value = numbers(a, "cash_flows").enumerated().reduce(0) { $0 + $1.element / pow(1 + r, Double($1.offset + 1)) }
                    - num(a, "initial_investment")
                return (.object([("npv", .number(rounded(value)))]), "Discounting each year's cash flow at \(f(r * 100))% gives a net present value of about $\(f(value)).")
            }),
        FormulaFunction(
            names: ["population_growth", "demographics.project_population", "predict_population"],
            description: "Project a population growing at a constant yearly rate.", domain: "statistics",
            parameters: [P(name: "current_population", type: "integer", description: "The population today.", aliases: ["population", "initial_population", "start_population"]),
                         P(name: "growth_rate", type: "number", description: "Yearly growth rate as a decimal (0.02 for 2%).", wording: .percent,
                           plainDescription: "The annual growth rate.", aliases: ["annual_growth_rate", "rate", "rate_of_growth"]),
                         P(name: "years", type: "integer", description: "Number of years ahead.", aliases: ["time", "period", "num_years"])],
            requests: ["A town of {current_population} people grows {growth_rate} a year. What is its population after {years} years?",
                       "Project a population of {current_population} growing at {growth_rate} annually for {years} years.",
                       "What will a population of {current_population} be in {years} years with a growth rate of {growth_rate}?",
                       "Population after {years} years: starting at {current_population}, growing {growth_rate} per year?"],
            draw: { d in
                ["current_population": .number(Double(d.int(2...900) * 100)), "growth_rate": .number(Double(d.int(1...8)) / 200),
                 "years": .number(Double(d.int(2...30)))]
            },
            solve: { a in
                let p = (num(a, "current_population") * pow(1 + num(a, "growth_rate"), num(a, "years"))).rounded()
                return (.object([("population", .number(p))]), "After \(f(num(a, "years"))) years the population is about \(f(p)).")
            }),
        FormulaFunction(
            names: ["coordinate_distance", "geo.distance_between", "calculate_gps_distance"],
            description: "Calculate the great-circle distance between two points given as (latitude, longitude).", domain: "geography",
            parameters: [P(name: "coord1", type: "array", description: "The first point as [latitude, longitude]; south and west negative.",
                           wording: .coordinate, aliases: ["point1", "start", "origin"]),
                         P(name: "coord2", type: "array", description: "The second point as [latitude, longitude]; south and west negative.",
                           wording: .coordinate, aliases: ["point2", "end", "destination"]),
                         P(name: "unit", type: "string", description: "miles or kilometers. Default: kilometers.", mentions: [" in {v}", ", in {v}"], aliases: ["units"])],
            requests: ["How far apart are {coord1} and {coord2}{+}?", "Calculate the distance between the coordinates {coord1} and {coord2}{+}.",
                       "What is the distance from {coord1} to {coord2}{+}?", "Distance between the GPS points {coord1} and {coord2}{+}?"],
            draw: { d in
                func point() -> JSONValue {
                    .array([.number(Double(d.int(-6000...6000)) / 100), .number(Double(d.int(-17_000...17_000)) / 100)])
                }
                return ["coord1": point(), "coord2": point(), "unit": .string(d.pick(["miles", "kilometers"]))]
            },
            solve: { a in
                let p = numbers(a, "coord1"), q = numbers(a, "coord2")
                guard p.count == 2, q.count == 2 else { return (.object([("error", .string("expected [latitude, longitude]"))]), "Each point needs a latitude and a longitude.") }
                let rad = Double.pi / 180, miles = text(a, "unit") == "miles"
                let h = pow(sin((q[0] - p[0]) * rad / 2), 2) + cos(p[0] * rad) * cos(q[0] * rad) * pow(sin((q[1] - p[1]) * rad / 2), 2)
                let distance = 2 * (miles ? 3958.8 : 6371.0) * asin(min(1, h.squareRoot()))
                return (.object([("distance", .number(rounded(distance)))]), "The two points are about \(f(distance)) \(miles ? "miles" : "kilometers") apart.")
            }),
        FormulaFunction(
            names: ["percentage_change", "finance.percent_change", "calculate_percentage_change"],
            description: "Calculate the percentage change from an old value to a new value.", domain: "finance",
            parameters: [P(name: "old_value", type: "number", description: "The starting value.", aliases: ["initial_value", "start_value", "before"]), P(name: "new_value", type: "number", description: "The final value.", aliases: ["final_value", "end_value", "after"])],
            requests: ["What is the percentage change from {old_value} to {new_value}?", "A price went from {old_value} to {new_value}. By what percent did it change?",
                       "Percent change between {old_value} and {new_value}?", "How much did it grow in percent, from {old_value} to {new_value}?"],
            draw: { d in ["old_value": .number(Double(d.int(10...500))), "new_value": .number(Double(d.int(10...500)))] },
            solve: { a in
                let c = (num(a, "new_value") - num(a, "old_value")) / max(1e-9, num(a, "old_value")) * 100
                return (.object([("percent_change", .number(rounded(c)))]), "The change is (\(f(num(a, "new_value"))) − \(f(num(a, "old_value")))) / \(f(num(a, "old_value"))) = \(f(c))%.")
            }),
        FormulaFunction(
            names: ["average_speed", "physics.speed", "calculate_speed"],
            description: "Calculate average speed from distance and time.", domain: "physics",
            parameters: [P(name: "distance", type: "number", description: "Distance travelled.", aliases: ["distance_traveled", "d", "total_distance"]),
                         P(name: "time", type: "number", description: "Time taken.", aliases: ["duration", "t", "total_time"]),
                         P(name: "unit", type: "string", description: "Unit of the result, e.g. km/h. Default: m/s.",
                           mentions: [", in {v}", " (answer in {v})"], aliases: ["units", "speed_unit"])],
            requests: ["What is the average speed for {distance} covered in {time}{+}?", "A car goes {distance} in {time}. How fast is it on average{+}?",
                       "Find the speed if the distance is {distance} and the time is {time}{+}.", "Speed for distance {distance}, time {time}{+}?"],
            draw: { d in ["distance": .number(Double(d.int(10...900))), "time": .number(Double(d.int(1...20))), "unit": .string(d.pick(["km/h", "m/s", "mph"]))] },
            solve: { a in
                let s = num(a, "distance") / max(1e-9, num(a, "time"))
                return (.object([("speed", .number(rounded(s)))]), "The average speed is \(f(num(a, "distance"))) / \(f(num(a, "time"))) = \(f(s))\(units(a)).")
            }),
        FormulaFunction(
            names: ["kinetic_energy", "physics.kinetic_energy", "calculate_kinetic_energy"],
            description: "Calculate the kinetic energy of a moving object.", domain: "physics",
            parameters: [P(name: "mass", type: "number", description: "Mass in kilograms.", aliases: ["m", "mass_kg", "object_mass"]), P(name: "velocity", type: "number", description: "Speed in meters per second.", aliases: ["v", "speed", "velocity_ms"])],
            requests: ["What is the kinetic energy of a {mass} kg object moving at {velocity} m/s?", "Find the kinetic energy: mass {mass} kg, velocity {velocity} m/s.",
                       "A {mass} kg ball flies at {velocity} m/s. How much kinetic energy does it have?", "Kinetic energy for m = {mass} kg and v = {velocity} m/s?"],
            draw: { d in ["mass": .number(Double(d.int(1...80))), "velocity": .number(Double(d.int(1...40)))] },
            solve: { a in
                let e = 0.5 * num(a, "mass") * num(a, "velocity") * num(a, "velocity")
                return (.object([("energy_joules", .number(rounded(e)))]), "The kinetic energy is ½ m v² = \(f(e)) J.")
            }),
        FormulaFunction(
            names: ["force", "physics.net_force", "calculate_force"],
            description: "Calculate force from mass and acceleration (F = m·a).", domain: "physics",
            parameters: [P(name: "mass", type: "number", description: "Mass in kilograms.", aliases: ["m", "mass_kg", "object_mass"]), P(name: "acceleration", type: "number", description: "Acceleration in m/s².", aliases: ["a", "accel", "acceleration_ms2"])],
            requests: ["What force accelerates {mass} kg at {acceleration} m/s²?", "Find the force on a {mass} kg mass accelerating at {acceleration} m/s^2.",
                       "How many newtons for mass {mass} kg and acceleration {acceleration}?", "Force needed: {mass} kg, {acceleration} m/s²?"],
            draw: { d in ["mass": .number(Double(d.int(1...200))), "acceleration": .number(Double(d.int(1...20)))] },
            solve: { a in
                let F = num(a, "mass") * num(a, "acceleration")
                return (.object([("force_newtons", .number(F))]), "F = m·a = \(f(num(a, "mass"))) × \(f(num(a, "acceleration"))) = \(f(F)) N.")
            }),
        FormulaFunction(
            names: ["density", "physics.density", "calculate_density"],
            description: "Calculate density from mass and volume.", domain: "physics",
            parameters: [P(name: "mass", type: "number", description: "Mass in kilograms.", aliases: ["m", "mass_kg", "object_mass"]), P(name: "volume", type: "number", description: "Volume in cubic meters.", aliases: ["v", "volume_m3", "object_volume"])],
            requests: ["What is the density of an object of {mass} kg and {volume} cubic meters?", "Density for mass {mass} kg and volume {volume} m³?",
                       "An object weighs {mass} kg and takes up {volume} m^3. How dense is it?", "Calculate the density: {mass} kg in {volume} cubic meters."],
            draw: { d in ["mass": .number(Double(d.int(1...900))), "volume": .number(Double(d.int(1...30)))] },
            solve: { a in
                let r = num(a, "mass") / max(1e-9, num(a, "volume"))
                return (.object([("density", .number(rounded(r)))]), "The density is \(f(num(a, "mass"))) / \(f(num(a, "volume"))) = \(f(r)) kg/m³.")
            }),
        FormulaFunction(
            names: ["ohms_law_voltage", "electric.voltage", "calculate_voltage"],
            description: "Calculate voltage from current and resistance (V = I·R).", domain: "physics",
            parameters: [P(name: "current", type: "number", description: "Current in amperes.", aliases: ["i", "current_amperes", "amps"]), P(name: "resistance", type: "number", description: "Resistance in ohms.", aliases: ["r", "resistance_ohms", "ohms"])],
            requests: ["What voltage drives {current} A through {resistance} ohms?", "Find the voltage for a current of {current} amps and a resistance of {resistance} Ω.",
                       "A {resistance} ohm resistor carries {current} A. What is the voltage across it?", "Voltage when I = {current} A and R = {resistance} ohms?"],
            draw: { d in ["current": .number(Double(d.int(1...20))), "resistance": .number(Double(d.int(1...100)))] },
            solve: { a in
                let v = num(a, "current") * num(a, "resistance")
                return (.object([("voltage", .number(v))]), "V = I·R = \(f(v)) volts.")
            }),
        FormulaFunction(
            names: ["power_mod", "math.power", "calculate_power"],
            description: "Raise a number to a power, optionally modulo another number.", domain: "numbers",
            parameters: [P(name: "base", type: "integer", description: "The base.", aliases: ["x", "number", "b"]), P(name: "exponent", type: "integer", description: "The exponent.", aliases: ["power", "exp", "e"]),
                         P(name: "mod", type: "integer", description: "The modulus. Default: none.", mentions: [" modulo {v}", ", mod {v}"], aliases: ["modulus", "m", "modulo"])],
            requests: ["What is {base} to the power of {exponent}{+}?", "Compute {base} raised to {exponent}{+}.",
                       "Calculate {base}^{exponent}{+}.", "Raise {base} to the {exponent}th power{+}."],
            draw: { d in ["base": .number(Double(d.int(2...9))), "exponent": .number(Double(d.int(2...10))), "mod": .number(Double(d.int(3...50)))] },
            solve: { a in
                var v = 1
                let m = a["mod"]?.numberValue.map(Int.init)
                for _ in 0..<Int(num(a, "exponent")) { v = m.map { v * Int(num(a, "base")) % max(1, $0) } ?? v * Int(num(a, "base")) }
                return (.object([("result", .number(Double(v)))]), "The result is \(v).")
            }),
        FormulaFunction(
            names: ["round_number", "math.round", "round_to_decimals"],
            description: "Round a number to a given number of decimal places.", domain: "numbers",
            parameters: [P(name: "number", type: "number", description: "The number to round.", aliases: ["value", "x", "num"]),
                         P(name: "decimals", type: "integer", description: "Decimal places. Default: 0.", mentions: [" to {v} decimal places", " with {v} decimals"], aliases: ["ndigits", "precision", "decimal_places"])],
            requests: ["Round {number}{+}.", "What is {number} rounded{+}?", "Please round the number {number}{+}.", "Round off {number}{+} for me."],
            draw: { d in ["number": .number(Double(d.int(1...9999)) / 1000), "decimals": .number(Double(d.int(1...2)))] },
            solve: { a in
                let r = rounded(num(a, "number"), Int(a["decimals"]?.numberValue ?? 0))
                return (.object([("result", .number(r))]), "\(JSONValue.format(num(a, "number"))) rounded is \(JSONValue.format(r)).")
            }),
        FormulaFunction(
            names: ["word_count", "text.count_words", "count_words"],
            description: "Count the words in a piece of text.", domain: "text",
            parameters: [P(name: "text", type: "string", description: "The text.", aliases: ["input_text", "string", "content"])],
            requests: ["How many words are in \"{text}\"?", "Count the words in this sentence: \"{text}\"", "Word count of \"{text}\"?",
                       "Tell me how many words \"{text}\" has."],
            draw: { d in ["text": .string(d.pick(["the quick brown fox jumps", "I like green tea in the morning", "see you next week",
                                                  "rain is expected later today", "small models can still be useful"]))] },
            solve: { a in
                let n = (text(a, "text") ?? "").split(separator: " ").count
                return (.object([("words", .number(Double(n)))]), "\"\(text(a, "text") ?? "")\" has \(n) words.")
            }),
        FormulaFunction(
            names: ["reverse_string", "text.reverse", "reverse_text"],
            description: "Reverse the characters of a string.", domain: "text",
            parameters: [P(name: "text", type: "string", description: "The text to reverse.", aliases: ["input_string", "string", "s"])],
            requests: ["Reverse the string \"{text}\".", "What is \"{text}\" spelled backwards?", "Write \"{text}\" in reverse.", "Flip the text \"{text}\"."],
            draw: { d in ["text": .string(d.pick(["hello", "swift", "banana", "level up", "tiny model", "keyboard"]))] },
            solve: { a in
                let r = String((text(a, "text") ?? "").reversed())
                return (.object([("result", .string(r))]), "Backwards it reads \"\(r)\".")
            }),
        FormulaFunction(
            names: ["calories_burned", "fitness.calories_burned", "estimate_calories"],
            description: "Estimate calories burned during exercise.", domain: "health",
            parameters: [P(name: "weight_kg", type: "number", description: "Body weight in kilograms.", aliases: ["weight", "body_weight", "mass_kg"]),
                         P(name: "minutes", type: "integer", description: "Duration in minutes.", aliases: ["duration", "duration_minutes", "time_minutes"]),
                         P(name: "activity", type: "string", description: "running, cycling, walking or swimming. Default: walking.",
                           mentions: [" {v}", " of {v}"], aliases: ["exercise", "activity_type", "sport"])],
            requests: ["How many calories does a {weight_kg} kg person burn in {minutes} minutes{+}?",
                       "I weigh {weight_kg} kg. How many calories do I burn with {minutes} minutes{+}?",
                       "Estimate calories burned: {weight_kg} kg, {minutes} minutes{+}.", "Calories for {minutes} minutes{+} at {weight_kg} kg?"],
            draw: { d in ["weight_kg": .number(Double(d.int(45...110))), "minutes": .number(Double(d.int(10...90))), "activity": .string(d.pick(["running", "cycling", "walking", "swimming"]))] },
            solve: { a in
                let met = ["running": 9.8, "cycling": 7.5, "swimming": 6.0][text(a, "activity") ?? ""] ?? 3.5
                let kcal = met * num(a, "weight_kg") * num(a, "minutes") / 60
                return (.object([("calories", .number(rounded(kcal, 0)))]), "That is roughly \(Int(kcal.rounded())) kcal.")
            }),
        FormulaFunction(
            names: ["paint_needed", "home.paint_estimate", "calculate_paint"],
            description: "Estimate liters of paint needed for a wall area.", domain: "home",
            parameters: [P(name: "area", type: "number", description: "Wall area in square meters.", aliases: ["wall_area", "surface_area", "area_m2"]),
                         P(name: "coats", type: "integer", description: "Number of coats. Default: 1.", mentions: [" with {v} coats", ", {v} coats"], aliases: ["num_coats", "layers", "number_of_coats"])],
            requests: ["How much paint do I need for {area} square meters{+}?", "Estimate the paint for a {area} m² wall{+}.",
                       "I want to paint {area} m^2{+}. How many liters?", "Paint needed for an area of {area} square meters{+}?"],
            draw: { d in ["area": .number(Double(d.int(5...120))), "coats": .number(Double(d.int(2...3)))] },
            solve: { a in
                let l = num(a, "area") * (a["coats"]?.numberValue ?? 1) / 10
                return (.object([("liters", .number(rounded(l, 1)))]), "At about 10 m² per liter you need \(f(l)) liters.")
            }),
    ]
}
