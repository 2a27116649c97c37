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

    public mutating func next() -> Conversation {
        let kind = int(0...9)
        switch kind {
        case 0...3: return calculatorConversation()
        case 4, 5: return unitConversation()
        case 6: return timeConversation()
        case 7: return errorConversation()
        default: return plainConversation()
        }
    }

    private mutating func toolTurn(_ user: String, tool: String, arguments: JSONValue, answer: (JSONValue) -> String) -> Conversation {
        let id = "call_\(callCount)"
        callCount += 1
        let result = registry.call(tool, arguments: arguments)
        var messages = [Message(role: .user, content: user)]
        messages.append(Message(role: .assistant, content: "", toolCalls: [ToolCall(id: id, name: tool, arguments: arguments)]))
        messages.append(Message(role: .tool, content: result.serialized(), toolCallID: id, name: tool))
        messages.append(Message(role: .assistant, content: answer(result)))
        if chance(0.3) {
            messages.insert(Message(role: .system, content: pick(["You are a helpful assistant.", "You are TinyLM, a small helpful assistant.", "Answer briefly."])), at: 0)
        }
        return Conversation(messages: messages, tools: registry.definitions)
    }

    private mutating func calculatorConversation() -> Conversation {
        let a = int(2...999), b = int(2...99)
        let (symbol, words): (String, [String]) = pick([
            ("+", ["plus", "added to"]), ("-", ["minus"]), ("*", ["times", "multiplied by"]), ("/", ["divided by"]),
        ])
        let expression = chance(0.2) ? "(\(a) \(symbol) \(b)) * \(int(2...9))" : "\(a) \(symbol) \(b)"
        let spoken = expression.contains("(") ? expression : "\(a) \(pick(words)) \(b)"
        let request = pick(["What is \(spoken)?", "Can you compute \(expression)?", "Calculate \(spoken), please.",
                            "How much is \(spoken)?", "I need \(expression)."])
        let user = phrase(request)
        return toolTurn(user, tool: "calculator", arguments: .object([("expression", .string(expression))])) { result in
            let value = Calculator.format(result["result"]?.numberValue ?? 0)
            return SyntheticToolData.pickFixed(["\(expression) = \(value).", "The answer is \(value).", "It comes to \(value)."], salt: value)
        }
    }

    private mutating func unitConversation() -> Conversation {
        let (from, to, range): (String, String, ClosedRange<Int>) = pick([
            ("km", "mi", 1...500), ("mi", "km", 1...300), ("m", "ft", 1...100), ("ft", "m", 1...300), ("in", "cm", 1...80),
            ("kg", "lb", 1...150), ("lb", "kg", 1...300), ("oz", "g", 1...40), ("l", "gal", 1...60), ("cup", "ml", 1...8),
            ("c", "f", -20...40), ("f", "c", 0...110),
        ])
        let value = Double(int(range)) + (chance(0.3) ? 0.5 : 0)
        let v = Calculator.format(value)
        let names = ["km": "kilometers", "mi": "miles", "m": "meters", "ft": "feet", "in": "inches", "cm": "centimeters",
                     "kg": "kilograms", "lb": "pounds", "oz": "ounces", "g": "grams", "l": "liters", "gal": "gallons",
                     "cup": "cups", "ml": "milliliters", "c": "degrees Celsius", "f": "degrees Fahrenheit"]
        let request = pick(["How many \(names[to]!) is \(v) \(names[from]!)?", "Convert \(v) \(from) to \(to).",
                            "What is \(v) \(names[from]!) in \(names[to]!)?", "\(v) \(names[from]!) to \(names[to]!)?"])
        let args = JSONValue.object([("value", .number(value)), ("from", .string(from)), ("to", .string(to))])
        return toolTurn(phrase(request), tool: "unit_convert", arguments: args) { result in
            let converted = Calculator.format(((result["value"]?.numberValue ?? 0) * 100).rounded() / 100)
            return "\(v) \(names[from]!) is about \(converted) \(names[to]!)."
        }
    }

    private mutating func timeConversation() -> Conversation {
        let (zone, city) = pick([("Europe/Paris", "Paris"), ("Asia/Tokyo", "Tokyo"), ("America/New_York", "New York"),
                                 ("Europe/London", "London"), ("Australia/Sydney", "Sydney"), ("UTC", "UTC")])
        let request = pick(["What time is it in \(city)?", "What's the time in \(city) right now?", "Current time in \(city)?",
                            "What day is it in \(city)?"])
        return toolTurn(phrase(request), tool: "current_time", arguments: .object([("timezone", .string(zone))])) { result in
            "In \(city) it is \(result["time"]?.stringValue ?? "?") on \(result["weekday"]?.stringValue ?? "?")."
        }
    }

    private mutating func errorConversation() -> Conversation {
        if chance(0.5) {
            let a = int(1...500)
            let expression = "\(a) / 0"
            return toolTurn(phrase("What is \(a) divided by 0?"), tool: "calculator", arguments: .object([("expression", .string(expression))])) { _ in
                "\(a) cannot be divided by zero: the result is undefined."
            }
        }
        let (from, to) = pick([("kg", "km"), ("l", "lb"), ("c", "m")])
        return toolTurn(phrase("Convert 5 \(from) to \(to)."), tool: "unit_convert",
                        arguments: .object([("value", .number(5)), ("from", .string(from)), ("to", .string(to))])) { result in
            "I can't do that conversion: \(result["error"]?.stringValue ?? "the units do not match")."
        }
    }

    private mutating func plainConversation() -> Conversation {
        let (question, answer) = pick([
            ("Tell me a short story about a cat.", "Once upon a time, a little cat named Tom found a red ball. He played with it all day and was very happy."),
            ("Who are you?", "I am TinyLM, a small language model that can use a calculator, a clock and a unit converter."),
            ("What can you do?", "I can chat, do arithmetic with my calculator, tell the time anywhere, and convert units."),
            ("Say something nice.", "You are doing great today!"),
            ("What color is the sky?", "On a clear day the sky is blue."),
            ("Thank you!", "You're welcome!"),
        ])
        return Conversation(messages: [Message(role: .user, content: phrase(question)), Message(role: .assistant, content: answer)],
                            tools: chance(0.5) ? registry.definitions : [])
    }

    /// A choice that depends on a string (so a closure needs no mutable generator).
    private static func pickFixed(_ options: [String], salt: String) -> String {
        options[Int(salt.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF }) % options.count]
    }
}
