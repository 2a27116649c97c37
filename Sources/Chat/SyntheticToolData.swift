import Foundation
import Kernels

/// Synthetic tool-use conversations: a user asks for something a built-in tool answers, the
/// assistant calls it, the real tool's result comes back, and the assistant answers with it;
/// plus conversations that need no tool and some where the tool reports an error. Phrasing is
/// composed from templates (numbers, units, wording, politeness, typos); the same seed gives
/// the same file.
public struct SyntheticToolData {
    private var rng: SplitMix64
    private let registry: ToolRegistry
    private var callCount = 0

    public init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
        // A fixed clock: the data must not depend on when it is made.
        let base = Date(timeIntervalSince1970: 1_700_000_000 + Double(seed % 10_000_000))
        registry = ToolRegistry.builtIn(now: { base })
    }

    private mutating func pick<T>(_ options: [T]) -> T { options[Int(rng.next() % UInt64(options.count))] }

    /// Whether requests are worded with the held-out phrasings: every fourth template of each
    /// list is kept out of training data and used only here, so an evaluation set can test
    /// wordings the model never saw.
    public var heldOutPhrasings = false

    /// A request template: from the training three quarters of `options`, or the held-out quarter.
    private mutating func request<T>(_ options: [T]) -> T {
        let eligible = options.indices.filter { ($0 % 4 == 3) == heldOutPhrasings }
        return options[eligible[Int(rng.next() % UInt64(eligible.count))]]
    }
    private mutating func chance(_ p: Double) -> Bool { Double(rng.next() >> 11) * 0x1p-53 < p }
    private mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }

    /// Politeness, casing and an occasional typo around a request.
    private mutating func phrase(_ request: String) -> String {
        var text = pick(["", "Hi! ", "Hello, ", "Hey, ", "Quick question: ", "Excuse me, "]) + request
        if chance(0.3) { text += pick([" Thanks!", " Thank you.", " Please.", " thx"]) }
        if chance(0.15) { text = text.lowercased() }
        if chance(0.1), text.count > 8 {
            // Swap two neighbouring letters: a typo.
            var chars = Array(text)
            let i = int(2...(chars.count - 3))
            if chars[i].isLetter && chars[i + 1].isLetter { chars.swapAt(i, i + 1) }
            text = String(chars)
        }
        return text
    }

    public mutating func conversations(_ count: Int) -> [Conversation] {
        (0..<count).map { _ in next() }
    }

    /// The kinds of conversation, in the proportions drawn.
    public enum Kind: CaseIterable, Sendable {
        case arithmetic, wordProblem, percentage, powerOrRoot, units, time, indirectTime, twoTools, followUp, toolError, noTool
    }

    public mutating func next() -> Conversation {
        let kind: Kind = pick([.arithmetic, .arithmetic, .wordProblem, .wordProblem, .percentage, .powerOrRoot, .units, .units,
                               .time, .indirectTime, .twoTools, .followUp, .toolError, .noTool, .noTool, .noTool])
        return conversation(kind)
    }

    /// One conversation of `kind`.
    public mutating func conversation(_ kind: Kind) -> Conversation {
        var messages: [Message]
        switch kind {
        case .arithmetic: messages = arithmetic()
        case .wordProblem: messages = wordProblem()
        case .percentage: messages = percentage()
        case .powerOrRoot: messages = powerOrRoot()
        case .units: messages = units()
        case .time: messages = time(indirect: false)
        case .indirectTime: messages = time(indirect: true)
        case .twoTools: messages = twoTools()
        case .followUp: messages = followUp()
        case .toolError: messages = toolError()
        case .noTool: return noTool()
        }
        if chance(0.3) {
            messages.insert(Message(role: .system, content: pick(["You are a helpful assistant.", "You are TinyLM, a small helpful assistant.", "Answer briefly."])), at: 0)
        }
        return Conversation(messages: messages, tools: registry.definitions)
    }

    /// A user turn answered through tool calls made one after another (each sees the previous
    /// results): the user message, each call and its result, then the answer.
    private mutating func exchange(_ user: String, _ calls: [(tool: String, arguments: JSONValue)],
                                   answer: ([JSONValue]) -> String) -> [Message] {
        var messages = [Message(role: .user, content: user)]
        var results: [JSONValue] = []
        for call in calls {
            let id = "call_\(callCount)"
            callCount += 1
            let result = registry.call(call.tool, arguments: call.arguments)
            results.append(result)
            messages.append(Message(role: .assistant, content: "", toolCalls: [ToolCall(id: id, name: call.tool, arguments: call.arguments)]))
            messages.append(Message(role: .tool, content: result.serialized(), toolCallID: id, name: call.tool))
        }
        messages.append(Message(role: .assistant, content: answer(results)))
        return messages
    }

    private static func calc(_ expression: String) -> (tool: String, arguments: JSONValue) {
        ("calculator", .object([("expression", .string(expression))]))
    }

    private static func value(_ result: JSONValue) -> String { Calculator.format(result["result"]?.numberValue ?? 0) }

    private mutating func number(_ range: ClosedRange<Int>, decimals: Double = 0.15) -> String {
        chance(decimals) ? Calculator.format(Double(int(range)) + Double(int(1...9)) / 10) : String(int(range))
    }

    private mutating func arithmetic() -> [Message] {
        let a = number(2...999), b = number(2...99)
        let (symbol, words): (String, [String]) = pick([
            ("+", ["plus", "added to", "and"]), ("-", ["minus", "take away"]), ("*", ["times", "multiplied by", "x"]),
            ("/", ["divided by", "over"]),
        ])
        let expression = chance(0.2) ? "(\(a) \(symbol) \(b)) * \(int(2...9))" : "\(a) \(symbol) \(b)"
        let spoken = expression.contains("(") ? expression : "\(a) \(pick(words)) \(b)"
        let request = request(["What is \(spoken)?", "Can you compute \(expression)?", "Calculate \(spoken), please.",
                            "How much is \(spoken)?", "I need \(expression).", "what's \(spoken)", "Work out \(spoken) for me.",
                            "Quick maths: \(spoken)?", "\(expression) = ?"])
        return exchange(phrase(request), [Self.calc(expression)]) { r in
            let v = Self.value(r[0])
            return Self.pickFixed(["\(expression) = \(v).", "The answer is \(v).", "It comes to \(v).", "That's \(v)."], salt: v)
        }
    }

    /// Everyday problems whose arithmetic the model must set up itself.
    private mutating func wordProblem() -> [Message] {
        let a = int(2...60), b = int(2...12), price = int(2...99), total = int(20...500)
        let item = pick(["apples", "books", "tickets", "pens", "cookies", "chairs", "shirts", "boxes"])
        let (request, expression, reply): (String, String, (String) -> String) = request([
            ("I buy \(b) \(item) at $\(price) each. How much do I pay?", "\(b) * \(price)", { "You pay $\($0)." }),
            ("A \(item.dropLast()) costs $\(price). How much do \(b) of them cost?", "\(price) * \(b)", { "\(b) of them cost $\($0)." }),
            ("I had \(total) \(item) and gave away \(a). How many are left?", "\(total) - \(a)", { "You have \($0) \(item) left." }),
            ("We are \(b) friends splitting a $\(total) bill equally. How much does each of us pay?", "\(total) / \(b)", { "Each of you pays $\($0)." }),
            ("A car drives at \(a) km/h for \(b) hours. How far does it go?", "\(a) * \(b)", { "It goes \($0) km." }),
            ("There are \(b) boxes with \(a) \(item) in each. How many \(item) in total?", "\(b) * \(a)", { "There are \($0) \(item) in total." }),
            ("I read \(a) pages a day. How many pages do I read in \(b) weeks?", "\(a) * 7 * \(b)", { "You read \($0) pages." }),
            ("My rent is $\(total * 3) a month. What is that per year?", "\(total * 3) * 12", { "That is $\($0) a year." }),
            ("I scored \(a), \(price) and \(b * 7) in three games. What is my average?", "(\(a) + \(price) + \(b * 7)) / 3", { "Your average is \($0)." }),
            ("A recipe needs \(b) eggs per cake. How many eggs for \(a) cakes?", "\(b) * \(a)", { "You need \($0) eggs." }),
            ("How many minutes are there in \(b) hours and \(a) minutes?", "\(b) * 60 + \(a)", { "That is \($0) minutes." }),
            ("I saved $\(price) a week for \(a) weeks. How much did I save?", "\(price) * \(a)", { "You saved $\($0)." }),
        ])
        return exchange(phrase(request), [Self.calc(expression)]) { r in reply(Self.value(r[0])) }
    }

    private mutating func percentage() -> [Message] {
        let p = pick([5, 10, 12, 15, 18, 20, 25, 30, 40, 50, 75, int(1...99)]), x = int(10...2000)
        let expression = "\(p)% of \(x)"
        let (request, reply): (String, (String) -> String) = request([
            ("What is \(p)% of \(x)?", { "\(p)% of \(x) is \($0)." }),
            ("What's \(p) percent of \(x)?", { "\(p) percent of \(x) is \($0)." }),
            ("How much is a \(p)% tip on a $\(x) bill?", { "A \(p)% tip is $\($0)." }),
            ("A $\(x) jacket is \(p)% off. How much do I save?", { "You save $\($0)." }),
            ("Calculate \(p)% of \(x).", { "It is \($0)." }),
            ("\(p)% of \(x)?", { "\($0)." }),
        ])
        return exchange(phrase(request), [Self.calc(expression)]) { r in reply(Self.value(r[0])) }
    }

    private mutating func powerOrRoot() -> [Message] {
        let base = int(2...20), exponent = int(2...6), radicand = int(2...500), square = pick([4, 9, 16, 25, 36, 49, 64, 81, 100, 121, 144, 169, 196, 225, 400, 625, 900])
        let (request, expression): (String, String) = request([
            ("What is \(base) to the power of \(exponent)?", "\(base) ^ \(exponent)"),
            ("What is \(base) squared?", "\(base) ^ 2"),
            ("What is \(base) cubed?", "\(base) ^ 3"),
            ("What is the square root of \(square)?", "sqrt(\(square))"),
            ("Square root of \(radicand)?", "sqrt(\(radicand))"),
            ("Raise \(base) to the \(exponent)th power.", "\(base) ^ \(exponent)"),
        ])
        return exchange(phrase(request), [Self.calc(expression)]) { r in "The result is \(Self.value(r[0]))." }
    }

    private static let unitNames = ["km": ["kilometers", "kilometres", "km"], "mi": ["miles"], "m": ["meters", "metres"],
                                    "ft": ["feet"], "in": ["inches"], "cm": ["centimeters", "centimetres", "cm"],
                                    "kg": ["kilograms", "kilos", "kg"], "lb": ["pounds", "lbs"], "oz": ["ounces"], "g": ["grams"],
                                    "l": ["liters", "litres"], "gal": ["gallons"], "cup": ["cups"], "ml": ["milliliters", "ml"],
                                    "c": ["degrees Celsius", "Celsius", "°C"], "f": ["degrees Fahrenheit", "Fahrenheit", "°F"]]

    private mutating func unitCall() -> (request: String, call: (tool: String, arguments: JSONValue), reply: (JSONValue) -> String) {
        let (from, to, range): (String, String, ClosedRange<Int>) = pick([
            ("km", "mi", 1...500), ("mi", "km", 1...300), ("m", "ft", 1...100), ("ft", "m", 1...300), ("in", "cm", 1...80),
            ("cm", "in", 1...300), ("kg", "lb", 1...150), ("lb", "kg", 1...300), ("oz", "g", 1...40), ("g", "oz", 10...900),
            ("l", "gal", 1...60), ("gal", "l", 1...30), ("cup", "ml", 1...8), ("c", "f", -20...40), ("f", "c", 0...110),
        ])
        let value = Double(int(range)) + (chance(0.3) ? Double(int(1...9)) / 10 : 0)
        let v = Calculator.format(value)
        let f = pick(Self.unitNames[from]!), t = pick(Self.unitNames[to]!)
        let request = request(["How many \(t) is \(v) \(f)?", "Convert \(v) \(from) to \(to).", "What is \(v) \(f) in \(t)?",
                            "\(v) \(f) to \(t)?", "How much is \(v) \(f) in \(t)?", "Please convert \(v) \(f) into \(t).",
                            "I have \(v) \(f). How many \(t) is that?", "What's \(v) \(f) in \(t)?"])
        let args = JSONValue.object([("value", .number(value)), ("from", .string(from)), ("to", .string(to))])
        return (request, ("unit_convert", args), { result in
            let converted = Calculator.format(((result["value"]?.numberValue ?? 0) * 100).rounded() / 100)
            return "\(v) \(f) is about \(converted) \(t)."
        })
    }

    private mutating func units() -> [Message] {
        let u = unitCall()
        return exchange(phrase(u.request), [u.call]) { r in u.reply(r[0]) }
    }

    private static let cities: [(zone: String, city: String)] = [
        ("Europe/Paris", "Paris"), ("Asia/Tokyo", "Tokyo"), ("America/New_York", "New York"), ("Europe/London", "London"),
        ("Australia/Sydney", "Sydney"), ("Europe/Berlin", "Berlin"), ("America/Los_Angeles", "Los Angeles"),
        ("America/Chicago", "Chicago"), ("Asia/Dubai", "Dubai"), ("Asia/Singapore", "Singapore"), ("Asia/Kolkata", "Mumbai"),
        ("America/Sao_Paulo", "São Paulo"), ("Asia/Shanghai", "Beijing"), ("Asia/Seoul", "Seoul"), ("Europe/Moscow", "Moscow"),
        ("Africa/Cairo", "Cairo"), ("America/Toronto", "Toronto"), ("Europe/Madrid", "Madrid"), ("UTC", "UTC"),
    ]

    private static func partOfDay(_ time: String) -> String {
        let hour = Int(time.prefix(2)) ?? 12
        switch hour {
        case 5..<12: return "morning"
        case 12..<17: return "afternoon"
        case 17..<21: return "evening"
        default: return "night"
        }
    }

    private mutating func timeCall(indirect: Bool) -> (request: String, call: (tool: String, arguments: JSONValue), reply: (JSONValue) -> String) {
        let (zone, city) = pick(Self.cities)
        let call = (tool: "current_time", arguments: JSONValue.object([("timezone", .string(zone))]))
        if indirect {
            let request = request(["Is it morning or evening in \(city) right now?", "Is it day or night in \(city)?",
                                "Would it be too late to call someone in \(city) now?", "What day of the week is it in \(city)?",
                                "Is it the weekend in \(city)?", "Are people in \(city) having lunch or dinner now?",
                                "Is my friend in \(city) probably asleep?"])
            return (request, call, { result in
                let time = result["time"]?.stringValue ?? "12:00", day = result["weekday"]?.stringValue ?? "?"
                return "It is \(time) on \(day) in \(city), so it is \(Self.partOfDay(time)) there."
            })
        }
        let request = request(["What time is it in \(city)?", "What's the time in \(city) right now?", "Current time in \(city)?",
                            "What day is it in \(city)?", "Tell me the time in \(city).", "time in \(city)?",
                            "Do you know what time it is in \(city)?"])
        return (request, call, { result in
            "In \(city) it is \(result["time"]?.stringValue ?? "?") on \(result["weekday"]?.stringValue ?? "?")."
        })
    }

    private mutating func time(indirect: Bool) -> [Message] {
        let t = timeCall(indirect: indirect)
        return exchange(phrase(t.request), [t.call]) { r in t.reply(r[0]) }
    }

    /// Two requests in one message: two calls, one after the other, then one answer.
    private mutating func twoTools() -> [Message] {
        let a = int(2...99), b = int(2...99)
        let first = (request: "what is \(a) times \(b)", call: Self.calc("\(a) * \(b)"))
        let second = chance(0.5) ? timeCall(indirect: false) : unitCall()
        let request = pick(["What is \(a) times \(b), and \(second.request.prefix(1).lowercased() + second.request.dropFirst())",
                            "Two things: \(first.request)? Also, \(second.request.prefix(1).lowercased() + second.request.dropFirst())"])
        return exchange(phrase(request), [first.call, second.call]) { r in
            "\(a) × \(b) = \(Self.value(r[0])). \(second.reply(r[1]))"
        }
    }

    /// A question, its answer, then a follow-up that uses the previous result.
    private mutating func followUp() -> [Message] {
        let first = arithmetic()
        // The earlier result, as the calculator gave it.
        let result = first.first { $0.role == .tool }.flatMap { try? JSONValue.parse($0.content) }.map { Self.value($0) } ?? "0"
        let n = int(2...20)
        let (request, symbol) = request([("And what is that times \(n)?", "*"), ("Now divide that by \(n).", "/"),
                                      ("Add \(n) to that.", "+"), ("What if I subtract \(n)?", "-"), ("And that times \(n)?", "*")])
        let expression = "\(result) \(symbol) \(n)"
        return first + exchange(phrase(request), [Self.calc(expression)]) { r in "That gives \(Self.value(r[0]))." }
    }

    private mutating func toolError() -> [Message] {
        if chance(0.5) {
            let a = int(1...500)
            return exchange(phrase("What is \(a) divided by 0?"), [Self.calc("\(a) / 0")]) { _ in
                "\(a) cannot be divided by zero: the result is undefined."
            }
        }
        let (from, to) = pick([("kg", "km"), ("l", "lb"), ("c", "m"), ("mi", "kg")])
        return exchange(phrase("Convert 5 \(from) to \(to)."),
                        [("unit_convert", .object([("value", .number(5)), ("from", .string(from)), ("to", .string(to))]))]) { r in
            "I can't do that conversion: \(r[0]["error"]?.stringValue ?? "the units do not match")."
        }
    }

    private mutating func noTool() -> Conversation {
        let (question, answer) = request([
            ("Tell me a short story about a cat.", "Once upon a time, a little cat named Tom found a red ball. He played with it all day and was very happy."),
            ("Who are you?", "I am TinyLM, a small language model that can use a calculator, a clock and a unit converter."),
            ("What can you do?", "I can chat, do arithmetic with my calculator, tell the time anywhere, and convert units."),
            ("Say something nice.", "You are doing great today!"),
            ("What color is the sky?", "On a clear day the sky is blue."),
            ("Thank you!", "You're welcome!"),
            ("Tell me about the moon.", "The Moon is Earth's only natural satellite. It reflects sunlight, and its gravity causes the tides."),
            ("Tell me about the sun.", "The Sun is the star at the center of our solar system. It gives Earth light and heat."),
            ("How many legs does a spider have?", "A spider has eight legs."),
            ("What is the capital of France?", "The capital of France is Paris."),
            ("Give me a tip for sleeping better.", "Try to go to bed at the same time every night and keep screens out of the bedroom."),
            ("Write a haiku about rain.", "Soft rain on the roof,\nthe garden drinks quietly,\nclouds drift far away."),
            ("What is a noun?", "A noun is a word that names a person, place, thing or idea, like 'dog' or 'city'."),
            ("Why do leaves change color in autumn?", "In autumn trees stop making green chlorophyll, so the yellow and red pigments in the leaves show."),
            ("Good morning!", "Good morning! How can I help you today?"),
            ("Can you recommend a book?", "Try 'The Little Prince' by Antoine de Saint-Exupéry: short, warm and wise."),
            ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and oxygen."),
            ("How are you?", "I'm doing well, thank you! What can I do for you?"),
            ("What's your favorite color?", "I don't have one, but many people love blue."),
            ("Explain gravity simply.", "Gravity is the pull that objects with mass have on each other. It keeps us on the ground."),
            ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
            ("How many days are in a week?", "A week has seven days."),
            ("What do bees make?", "Bees make honey and beeswax."),
            ("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field!"),
        ])
        var messages = [Message(role: .user, content: phrase(question)), Message(role: .assistant, content: answer)]
        if chance(0.3) {
            messages.insert(Message(role: .system, content: pick(["You are a helpful assistant.", "You are TinyLM, a small helpful assistant."])), at: 0)
        }
        return Conversation(messages: messages, tools: chance(0.8) ? registry.definitions : [])
    }

    /// A choice that depends on a string (so a closure needs no mutable generator).
    private static func pickFixed(_ options: [String], salt: String) -> String {
        options[Int(salt.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF }) % options.count]
    }
}
