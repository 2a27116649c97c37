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

    /// Politeness, casing and an occasional typo around a request. A typo never touches the
    /// `kept` texts (string arguments the call passes on as written) nor quoted text.
    private mutating func phrase(_ request: String, keeping kept: [String] = []) -> String {
        var text = pick(["", "Hi! ", "Hello, ", "Hey, ", "Quick question: ", "Excuse me, "]) + request
        if chance(0.3) { text += pick([" Thanks!", " Thank you.", " Please.", " thx"]) }
        if chance(0.15) { text = text.lowercased() }
        if chance(0.1), text.count > 8 {
            // Swap two neighbouring letters: a typo — never inside quotes, whose text the call
            // passes on exactly as written.
            var chars = Array(text)
            let i = int(2...(chars.count - 3))
            let quoted = chars[..<i].filter { $0 == "\"" }.count % 2 == 1
            let lower = String(chars).lowercased()
            let inKept = kept.contains { k in
                lower.ranges(of: k.lowercased()).contains { r in
                    let start = lower.distance(from: lower.startIndex, to: r.lowerBound)
                    return i + 1 >= start && i < start + k.count
                }
            }
            if chars[i].isLetter && chars[i + 1].isLetter && !quoted && !inKept { chars.swapAt(i, i + 1) }
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
        /// A function of another domain, listed among others, called with arguments from the request.
        case foreignCall
        /// A request none of the listed tools can serve: answered without a call.
        case missingTool
        /// A formula function (`FormulaFunction`) listed among others, called with every value
        /// the request states, optional parameters included.
        case formulaCall
        /// A formula request whose function is not listed (others of its domain are): worked
        /// out in words, no call.
        case unlistedFormula
        /// Two or three requests for one formula function in one message: as many calls in one
        /// assistant message, then one answer.
        case parallelFormula
        /// Two to four requests in a row, each answered before the next, most with a tool other
        /// than the previous turn's: the built-in three and formula functions.
        case session

        /// Whether the conversation makes no tool call.
        public var answersWithoutTool: Bool { self == .noTool || self == .missingTool || self == .unlistedFormula }
    }

    /// Whether `next()` also draws other domains' functions (`foreignCall`, `formulaCall`,
    /// `unlistedFormula`, `missingTool`): calls to functions the model has never seen, and the
    /// same requests answered in words when their function is not listed. Off by default. The
    /// built-in tools are never left out of a list: measured on SmolLM2-135M (500 QLoRA steps),
    /// refusals of built-in requests without their tool taught the model to refuse some of them
    /// with the tool present (direct time questions 14/25, against 25/25 without).
    public var otherTools = false

    public mutating func next() -> Conversation {
        var kinds: [Kind] = [.arithmetic, .arithmetic, .wordProblem, .wordProblem, .percentage, .powerOrRoot, .units, .units,
                             .time, .indirectTime, .twoTools, .followUp, .toolError, .noTool, .noTool, .noTool]
        if otherTools {
            kinds += [.foreignCall, .foreignCall, .formulaCall, .formulaCall, .formulaCall, .formulaCall,
                      .unlistedFormula, .unlistedFormula, .unlistedFormula, .unlistedFormula, .missingTool,
                      .unlistedFormula, .missingTool, .parallelFormula, .parallelFormula, .session, .session, .session]
        }
        return conversation(pick(kinds))
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
        case .foreignCall: return foreignCall()
        case .missingTool: return missingTool()
        case .formulaCall: return formulaCall()
        case .unlistedFormula: return unlistedFormula()
        case .parallelFormula: return parallelFormula()
        case .session: return session()
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

    /// Everyday problems whose arithmetic the model must set up itself. Each problem has several
    /// wordings, so held-out phrasings test new wordings of problems it learned to set up.
    private mutating func wordProblem() -> [Message] {
        let a = int(2...60), b = int(2...12), price = int(2...99), total = int(20...500), rent = int(20...500) * 3
        let item = pick(["apples", "books", "tickets", "pens", "cookies", "chairs", "shirts", "boxes"]), one = String(item.dropLast())
        let problems: [(phrasings: [String], expression: String, reply: (String) -> String)] = [
            (["I buy \(b) \(item) at $\(price) each. How much do I pay?", "A \(one) costs $\(price). How much do \(b) of them cost?",
              "What do \(b) \(item) cost at $\(price) apiece?", "How much for \(b) \(item) if one is $\(price)?",
              "\(b) \(item) at $\(price) each: what's the total?", "What is the cost of \(b) \(item) priced at $\(price) each?",
              "Each \(one) is $\(price). I want \(b). What do I owe?", "If I get \(b) \(item) for $\(price) apiece, what do I spend?",
              "Total price of \(b) \(item) at $\(price) per \(one)?", "I need \(b) \(item); they are $\(price) each. How much is that?",
              "How much money for \(b) \(item) costing $\(price) each?", "Buying \(b) \(item) at \(price) dollars each, what do I pay?"], "\(b) * \(price)", { "That is $\($0) in total." }),
            (["I had \(total) \(item) and gave away \(a). How many are left?", "There were \(total) \(item); \(a) were sold. How many remain?",
              "Out of \(total) \(item), \(a) are broken. How many are still fine?", "I have \(total) \(item) and use \(a). What's left?",
              "If I start with \(total) \(item) and lose \(a), how many do I have?", "A shop had \(total) \(item) and sold \(a). How many does it have now?",
              "\(total) \(item) minus the \(a) I gave my sister: how many are left?", "I owned \(total) \(item) but \(a) got lost. How many remain?",
              "How many \(item) are left from \(total) after taking out \(a)?", "We had \(total) \(item) and used up \(a). How many now?",
              "Of my \(total) \(item), I sold \(a). How many do I still have?", "Starting with \(total) \(item), \(a) are removed. What remains?"], "\(total) - \(a)", { "\($0) \(item) are left." }),
            (["We are \(b) friends splitting a $\(total) bill equally. How much does each of us pay?", "Split a $\(total) bill evenly among \(b) people.",
              "$\(total) shared by \(b) people: how much each?", "If \(b) of us share a $\(total) dinner, what is each person's part?",
              "Divide $\(total) equally between \(b) friends. How much does everyone get?", "The dinner was $\(total) for \(b) of us. What is each share?",
              "How much does each of \(b) people pay on a $\(total) bill split evenly?", "\(b) roommates share $\(total) rent equally. How much per person?",
              "A $\(total) prize is split between \(b) winners. How much does each get?", "Splitting $\(total) \(b) ways, what is one share?",
              "Our group of \(b) owes $\(total). How much should each of us pay?", "What is $\(total) divided evenly among \(b) people?"], "\(total) / \(b)", { "Each person's share is $\($0)." }),
            (["A car drives at \(a) km/h for \(b) hours. How far does it go?", "Traveling \(b) hours at \(a) km/h, what distance do I cover?",
              "How far does a train get in \(b) hours at \(a) km/h?", "I cycle at \(a) km/h for \(b) hours. How many km is that?",
              "At \(a) km per hour, how far do you go in \(b) hours?", "A bus goes \(a) km/h. How many km does it travel in \(b) hours?",
              "What distance is covered in \(b) hours at a speed of \(a) km/h?", "If I run at \(a) km/h for \(b) hours, how far do I run?",
              "\(b) hours of driving at \(a) km/h is how many kilometers?", "How many kilometers in \(b) hours going \(a) km/h?",
              "Speed \(a) km/h, time \(b) hours: what is the distance?", "My boat does \(a) km/h. How far will it get in \(b) hours?"], "\(a) * \(b)", { "That is \($0) km." }),
            (["There are \(b) boxes with \(a) \(item) in each. How many \(item) in total?", "\(b) bags hold \(a) \(item) each. How many \(item) altogether?",
              "A shelf has \(b) rows of \(a) \(item). How many \(item) is that?", "Each of \(b) crates has \(a) \(item). What's the total?",
              "How many \(item) are in \(b) packs of \(a)?", "I have \(b) boxes and each holds \(a) \(item). How many \(item) do I have?",
              "\(b) groups of \(a) \(item): how many \(item)?", "A store gets \(b) cartons of \(a) \(item) each. How many \(item) arrive?",
              "What is the total number of \(item) in \(b) bags of \(a)?", "Every one of the \(b) tables has \(a) \(item). How many altogether?",
              "If \(b) kids each bring \(a) \(item), how many \(item) are there?", "Count the \(item): \(b) trays with \(a) on each."], "\(b) * \(a)", { "There are \($0) \(item) in total." }),
            (["I read \(a) pages a day. How many pages do I read in \(b) weeks?", "Reading \(a) pages daily, how many pages in \(b) weeks?",
              "If I walk \(a) minutes every day, how many minutes is that over \(b) weeks?", "\(a) pages per day for \(b) weeks: how many pages?",
              "How many pages will I finish in \(b) weeks at \(a) pages a day?", "I practice piano \(a) minutes a day. How many minutes in \(b) weeks?",
              "At \(a) pages per day, how many pages do I read over \(b) weeks?", "I run \(a) minutes daily. How many minutes is that in \(b) weeks?",
              "If I study \(a) minutes every day for \(b) weeks, how many minutes is that?", "How many pages in \(b) weeks if I read \(a) each day?",
              "\(a) minutes a day, every day, for \(b) weeks: how many minutes in total?", "Reading \(a) pages a day, what will I have read after \(b) weeks?"], "\(a) * 7 * \(b)", { "That makes \($0)." }),
            (["My rent is $\(rent) a month. What is that per year?", "I pay $\(rent) monthly. How much is that per year?",
              "A subscription costs $\(rent) a month. What does it cost a year?", "What's my yearly cost if I spend $\(rent) each month?",
              "$\(rent) every month adds up to how much in a year?", "How much do I spend in a year at $\(rent) per month?",
              "My phone bill is $\(rent) a month. What does it come to in a year?", "If I pay $\(rent) each month, what is the yearly total?",
              "What is $\(rent) a month over a full year?", "I spend $\(rent) every month on food. How much is that annually?",
              "Monthly cost $\(rent). Annual cost?", "How much is $\(rent) per month for twelve months?"], "\(rent) * 12", { "That is $\($0) a year." }),
            (["I scored \(a), \(price) and \(b * 7) in three games. What is my average?", "What is the average of \(a), \(price) and \(b * 7)?",
              "My three test results were \(a), \(price) and \(b * 7). What's the mean?", "Average these three numbers: \(a), \(price), \(b * 7).",
              "Three days' temperatures were \(a), \(price) and \(b * 7). What was the average?", "Find the mean of \(a), \(price) and \(b * 7).",
              "What's the average of these: \(a), \(price), \(b * 7)?", "I ran \(a), \(price) and \(b * 7) minutes on three days. What is my average?",
              "Three friends are \(a), \(price) and \(b * 7) years old. What is their average age?", "Compute the average of \(a), \(price) and \(b * 7).",
              "The mean of \(a), \(price) and \(b * 7), please.", "My grades: \(a), \(price), \(b * 7). What is the average grade?"], "(\(a) + \(price) + \(b * 7)) / 3", { "The average is \($0)." }),
            (["How many minutes are there in \(b) hours and \(a) minutes?", "Convert \(b) h \(a) min into minutes.",
              "A movie lasts \(b) hours and \(a) minutes. How many minutes is that?", "What is \(b) hours \(a) minutes in minutes?",
              "How long in minutes is a \(b)-hour, \(a)-minute trip?", "How many minutes is \(b) hours and \(a) minutes?",
              "A flight takes \(b) h \(a) min. How many minutes is that?", "Turn \(b) hours \(a) minutes into minutes.",
              "\(b) hours plus \(a) minutes equals how many minutes?", "My shift is \(b) hours and \(a) minutes long. How many minutes?",
              "Express \(b) h \(a) m in minutes.", "The game lasted \(b) hours \(a) minutes. How many minutes was it?"], "\(b) * 60 + \(a)", { "That is \($0) minutes." }),
            (["I saved $\(price) a week for \(a) weeks. How much did I save?", "If I put away $\(price) every week for \(a) weeks, how much do I have?",
              "Saving $\(price) weekly, what do I have after \(a) weeks?", "$\(price) per week for \(a) weeks comes to how much?",
              "I earn $\(price) each week. What do I earn in \(a) weeks?", "How much is $\(price) a week over \(a) weeks?",
              "If I set aside $\(price) weekly for \(a) weeks, what will I have?", "I get $\(price) pocket money a week. How much after \(a) weeks?",
              "Putting $\(price) aside each week, how much do I save in \(a) weeks?", "$\(price) weekly for \(a) weeks totals how much?",
              "What do I save in \(a) weeks at $\(price) per week?", "A weekly payment of $\(price) for \(a) weeks comes to what?"], "\(price) * \(a)", { "That comes to $\($0)." }),
            (["I earn $\(price) an hour. How much do I make in \(a) hours?", "At $\(price) per hour, what is \(a) hours of work worth?",
              "A babysitter charges $\(price) an hour for \(a) hours. What is the bill?", "How much is \(a) hours of parking at $\(price) per hour?",
              "My wage is $\(price)/hour. What do I get for \(a) hours?", "What do \(a) hours at \(price) dollars an hour pay?",
              "A plumber works \(a) hours at $\(price) per hour. How much does he charge?", "\(a) hours times $\(price) an hour is how much?"],
             "\(price) * \(a)", { "That is $\($0)." }),
            (["\(b) \(item) cost $\(total) together. How much is one?", "If \(b) \(item) are $\(total), what does each cost?",
              "What is the price of one \(one) when \(b) cost $\(total)?", "I paid $\(total) for \(b) \(item). What was the price per \(one)?",
              "$\(total) for \(b) \(item): how much each?", "A pack of \(b) \(item) is $\(total). What does a single \(one) cost?",
              "How much is each \(one) if \(b) of them cost $\(total)?", "Unit price of \(b) \(item) costing $\(total) in total?"],
             "\(total) / \(b)", { "Each one costs $\($0)." }),
        ]
        let problem = pick(problems)
        let request = request(problem.phrasings)
        return exchange(phrase(request), [Self.calc(problem.expression)]) { r in problem.reply(Self.value(r[0])) }
    }

    private mutating func percentage() -> [Message] {
        let p = pick([5, 10, 12, 15, 18, 20, 25, 30, 40, 50, 75, int(1...99)]), x = int(10...2000)
        let expression = "\(p)% of \(x)"
        // Plain percentages, tips and discounts, each with several wordings.
        let forms: [(phrasings: [String], reply: (String) -> String)] = [
            (["What is \(p)% of \(x)?", "What's \(p) percent of \(x)?", "Calculate \(p)% of \(x).", "\(p)% of \(x)?",
              "How much is \(p) percent of \(x)?", "Find \(p)% of \(x).",
              "Work out \(p)% of \(x).", "What number is \(p)% of \(x)?", "\(p) percent of \(x) is what?", "Compute \(p) percent of \(x).",
              "Can you tell me \(p)% of \(x)?", "What do you get for \(p)% of \(x)?"], { "\(p)% of \(x) is \($0)." }),
            (["How much is a \(p)% tip on a $\(x) bill?", "I want to leave a \(p)% tip on $\(x). How much is that?",
              "What tip should I give on a $\(x) meal at \(p) percent?", "Tip of \(p)% on $\(x)?",
              "My bill is $\(x). What is a \(p)% tip?", "How big is a \(p) percent tip on $\(x)?", "I tip \(p)% on a $\(x) check. How much is the tip?",
              "Calculate a \(p)% tip for a $\(x) dinner.", "What's \(p)% gratuity on $\(x)?", "The meal cost $\(x); I want to tip \(p)%. How much?",
              "How much should I tip at \(p)% on $\(x)?", "Work out a \(p) percent tip on a $\(x) bill."], { "A \(p)% tip is $\($0)." }),
            (["A $\(x) jacket is \(p)% off. How much do I save?", "How much do I save with \(p)% off a $\(x) TV?",
              "The store gives \(p)% discount on a $\(x) bike. What's the saving?", "What is the discount on $\(x) at \(p)% off?",
              "\(p)% off a $\(x) price saves how much?",
              "A \(p)% discount on $\(x): how much is taken off?", "How much is \(p)% off $\(x)?", "The $\(x) phone is on sale at \(p)% off. What do I save?",
              "What is \(p)% off of a $\(x) item?", "I get \(p) percent off a $\(x) order. How much money is that?",
              "How many dollars do I save at \(p)% off a $\(x) sofa?", "A coupon gives \(p)% off $\(x). What is the discount?"], { "You save $\($0)." }),
        ]
        let form = pick(forms)
        let request = request(form.phrasings)
        return exchange(phrase(request), [Self.calc(expression)]) { r in form.reply(Self.value(r[0])) }
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
        let tools: [ToolDefinition]
        switch int(0...9) {
        case 0...5: tools = registry.definitions
        case 6...7: tools = otherTools ? foreignTools(excluding: [], count: int(1...2)) : registry.definitions
        case 8:
            // A single unrelated function listed is the case where a call is most tempting.
            guard otherTools else { tools = []; break }
            tools = chance(0.5) ? foreignTools(excluding: [], count: 1) : [formulaDefinition(pick(FormulaFunction.all))]
        default: tools = []
        }
        return Conversation(messages: messages, tools: tools)
    }

    /// `count` foreign tools other than those named, in random order.
    private mutating func foreignTools(excluding names: Set<String>, count: Int) -> [ToolDefinition] {
        var pool = ForeignTool.all.filter { !names.contains($0.definition.name) }.map(\.definition)
        var chosen: [ToolDefinition] = []
        for _ in 0..<min(count, pool.count) { chosen.append(pool.remove(at: int(0...(pool.count - 1)))) }
        return chosen
    }

    private mutating func shuffled<T>(_ items: [T]) -> [T] {
        var items = items
        for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, int(0...i)) }
        return items
    }

    /// `body`'s draws (a foreign tool's example, a formula function's values) from this
    /// generator's stream.
    private mutating func drawing<T>(_ body: (inout ForeignToolDraw) -> T) -> T {
        var generator = rng
        var draw = ForeignToolDraw(int: { range in range.lowerBound + Int(generator.next() % UInt64(range.count)) })
        let drawn = body(&draw)
        rng = generator
        return drawn
    }

    /// One foreign tool's example, drawn from this generator's stream.
    private mutating func foreignExample(_ tool: ForeignTool) -> (requests: [String], arguments: JSONValue, result: JSONValue, answer: String) {
        drawing(tool.example)
    }

    /// A foreign tool listed among 0–2 others (sometimes with the built-in three), called with
    /// the request's arguments; its (invented) result answered in words.
    private mutating func foreignCall() -> Conversation {
        let tool = pick(ForeignTool.all)
        let example = foreignExample(tool)
        var tools = foreignTools(excluding: [tool.definition.name], count: int(0...2)) + [tool.definition]
        // With the built-in three only when short: every signature costs prompt tokens.
        if tools.count == 1 && chance(0.5) { tools += registry.definitions }
        let id = "call_\(callCount)"
        callCount += 1
        var messages = [Message(role: .user, content: phrase(request(example.requests), keeping: Self.strings(example.arguments))),
                        Message(role: .assistant, content: "", toolCalls: [ToolCall(id: id, name: tool.definition.name, arguments: example.arguments)]),
                        Message(role: .tool, content: example.result.serialized(), toolCallID: id, name: tool.definition.name),
                        Message(role: .assistant, content: example.answer)]
        if chance(0.3) { messages.insert(Message(role: .system, content: "You are a helpful assistant."), at: 0) }
        return Conversation(messages: messages, tools: shuffled(tools))
    }

    /// A request for another domain's function that none of the listed tools does (the built-in
    /// three, or other domains' functions), answered without a call.
    private mutating func missingTool() -> Conversation {
        let tool = pick(ForeignTool.all)
        let user = request(foreignExample(tool).requests), capability = tool.capability
        let tools = chance(0.4) ? registry.definitions : foreignTools(excluding: [tool.definition.name], count: int(1...2))
        let names = tools.map(\.name).joined(separator: ", ")
        let answer = Self.pickFixed(["None of the available tools (\(names)) can \(capability), so I can't do that here.",
                                     "I can't help with that: the tools I have (\(names)) cannot \(capability).",
                                     "Sorry, I have no tool to \(capability). My tools are: \(names)."], salt: user)
        return Conversation(messages: [Message(role: .user, content: phrase(user)), Message(role: .assistant, content: answer)],
                            tools: shuffled(tools))
    }

    /// A formula function's request with its arguments: each optional parameter stated or not
    /// (even odds), and the arguments exactly what the request states. A unit may follow the
    /// value it measures ("a radius of 4 inches"); a whole amount of 1,000 or more is written
    /// with thousands separators two times in five ("$10,000").
    private mutating func formulaExample(_ function: FormulaFunction) -> (request: String, arguments: [(String, JSONValue)]) {
        let values = drawing(function.draw)
        var text = request(function.requests), stated = ""
        // Optional parameters first, so that a unit can follow a value not yet in the text.
        var statedOptional: Set<String> = []
        for p in function.parameters where p.isOptional {
            guard let v = values[p.name], chance(0.5) else { continue }
            statedOptional.insert(p.name)
            if let target = p.attachedTo, chance(0.5) {
                text = text.replacingOccurrences(of: "{\(target)}", with: "{\(target)} \(spoken(p, v))")
            } else {
                stated += pick(p.mentions).replacingOccurrences(of: "{v}", with: spoken(p, v))
            }
        }
        var arguments: [(String, JSONValue)] = []
        for p in function.parameters {
            guard let v = values[p.name], !p.isOptional || statedOptional.contains(p.name) else { continue }
            if !p.isOptional { text = text.replacingOccurrences(of: "{\(p.name)}", with: spoken(p, v)) }
            arguments.append((p.name, v))
        }
        return (text.replacingOccurrences(of: "{+}", with: stated), arguments)
    }

    /// `p`'s value as a request states it, grouped by thousands at times.
    private mutating func spoken(_ p: FormulaFunction.Parameter, _ v: JSONValue) -> String {
        if p.wording == .plain, let grouped = FormulaFunction.grouped(v), chance(0.4) { return grouped }
        return p.spoken(v)
    }

    /// Every formula function's names: a foreign tool listed beside formula functions must not
    /// share one (`compound_interest` is both, with the rate in percent in one, decimal in the other).
    private static let formulaNames = Set(FormulaFunction.all.flatMap(\.names))

    /// One formula function's definition under one of its names; a parameter that has a
    /// description without its hint ("as a decimal") gets it half the time; half the time the
    /// parameters go by one style of their aliases (`amount`, `interest_rate`, `time`).
    private mutating func formulaDefinition(_ function: FormulaFunction) -> ToolDefinition {
        let name = pick(function.names)
        let plain = function.parameters.contains { $0.plainDescription != nil } && chance(0.5)
        let style = chance(0.5) ? 0 : int(1...FormulaFunction.keyStyles)
        return function.definition(named: name, plain: plain, keys: function.keys(style: style))
    }

    /// `count` formula functions other than `function`, from its domain when `nearby`.
    private mutating func otherFormulas(than function: FormulaFunction, count: Int, nearby: Bool) -> [ToolDefinition] {
        var pool = FormulaFunction.all.filter { $0.names[0] != function.names[0] && (!nearby || $0.domain == function.domain) }
        if pool.isEmpty { pool = FormulaFunction.all.filter { $0.names[0] != function.names[0] } }
        var chosen: [ToolDefinition] = []
        for _ in 0..<min(count, pool.count) { chosen.append(formulaDefinition(pool.remove(at: int(0...(pool.count - 1))))) }
        return chosen
    }

    /// A call to `definition` (`function` under one of its names) with `arguments`, its result as
    /// a tool turn, and the answer in words.
    private mutating func formulaExchange(_ function: FormulaFunction, _ definition: ToolDefinition,
                                          _ arguments: [(String, JSONValue)]) -> (call: ToolCall, result: Message, answer: String) {
        let id = "call_\(callCount)"
        callCount += 1
        let solved = function.solve(Dictionary(uniqueKeysWithValues: arguments))
        // The arguments keyed as the listed definition names its parameters (in their order).
        let keys = definition.parameters["properties"]?.objectFields?.map(\.key) ?? function.parameters.map(\.name)
        let keyed = arguments.map { name, value in (keys[function.parameters.firstIndex { $0.name == name }!], value) }
        return (ToolCall(id: id, name: definition.name, arguments: .object(keyed)),
                Message(role: .tool, content: solved.result.serialized(), toolCallID: id, name: definition.name), solved.answer)
    }

    /// A formula function listed with 0–2 others (sometimes another domain's tool too), called
    /// with what the request states; its result answered in words.
    private mutating func formulaCall() -> Conversation {
        let function = pick(FormulaFunction.all)
        let (text, arguments) = formulaExample(function)
        let definition = formulaDefinition(function)
        var tools = otherFormulas(than: function, count: int(0...2), nearby: chance(0.5)) + [definition]
        // At most three functions listed: every signature costs prompt tokens.
        if tools.count < 3 && chance(0.25) { tools += foreignTools(excluding: Self.formulaNames, count: 1) }
        let exchange = formulaExchange(function, definition, arguments)
        var messages = [Message(role: .user, content: phrase(text, keeping: Self.strings(arguments))), Message(role: .assistant, content: "", toolCalls: [exchange.call]),
                        exchange.result, Message(role: .assistant, content: exchange.answer)]
        if chance(0.3) { messages.insert(Message(role: .system, content: "You are a helpful assistant."), at: 0) }
        return Conversation(messages: messages, tools: shuffled(tools))
    }

    /// Two or three requests for one formula function in one message, joined as people write
    /// them; one assistant message with a call for each (the order asked), their results, one answer.
    private mutating func parallelFormula() -> Conversation {
        let function = pick(FormulaFunction.all)
        let definition = formulaDefinition(function)
        var texts: [String] = [], calls: [ToolCall] = [], results: [Message] = [], answers: [String] = []
        for _ in 0..<(chance(0.75) ? 2 : 3) {
            let (text, arguments) = formulaExample(function)
            let exchange = formulaExchange(function, definition, arguments)
            texts.append(text)
            calls.append(exchange.call)
            results.append(exchange.result)
            answers.append(exchange.answer)
        }
        let joined = texts.dropFirst().reduce(texts[0]) { $0 + pick([" Also: ", " And ", "\n", " Then: "]) + $1 }
        let tools = otherFormulas(than: function, count: int(0...1), nearby: chance(0.5)) + [definition]
        let messages = [Message(role: .user, content: phrase(joined, keeping: calls.flatMap { Self.strings($0.arguments) })), Message(role: .assistant, content: "", toolCalls: calls)]
            + results + [Message(role: .assistant, content: answers.joined(separator: " "))]
        return Conversation(messages: messages, tools: shuffled(tools))
    }

    /// A formula request with 1–3 other functions listed (mostly of its own domain, so the miss
    /// is a near one), answered in words with the formula worked out: no listed function does
    /// what was asked, so nothing is called — not a listed function, not a made-up one.
    mutating func unlistedFormula(_ chosen: FormulaFunction? = nil) -> Conversation {
        let function = chosen ?? pick(FormulaFunction.all)
        let (text, arguments) = formulaExample(function)
        // Half the time one function alone, as BFCL's irrelevance questions list one.
        var tools = otherFormulas(than: function, count: chance(0.5) ? 1 : int(2...3), nearby: chance(0.7))
        if tools.count < 3 && chance(0.2) { tools += foreignTools(excluding: Self.formulaNames, count: 1) }
        let answer = function.solve(Dictionary(uniqueKeysWithValues: arguments)).answer
        var messages = [Message(role: .user, content: phrase(text)), Message(role: .assistant, content: answer)]
        if chance(0.3) { messages.insert(Message(role: .system, content: "You are a helpful assistant."), at: 0) }
        return Conversation(messages: messages, tools: shuffled(tools))
    }

    /// A choice that depends on a string (so a closure needs no mutable generator).
    private static func pickFixed(_ options: [String], salt: String) -> String {
        options[Int(salt.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF }) % options.count]
    }

    /// Two to four requests in a row, each answered before the next; a turn's tool differs from
    /// the previous turn's. The list is the built-in three, plus the one formula function a turn
    /// calls (a later formula request whose function is not listed is answered in words). Teaches
    /// that a turn's call follows its own question, not the call before it: trained on
    /// single-turn formula data, an adapter answered "How many kilometres is 26.2 miles?" after a
    /// time question with another `current_time` call.
    private mutating func session() -> Conversation {
        var messages: [Message] = [], tools = registry.definitions, previous = -1
        for _ in 0..<int(2...4) {
            var turn = int(0...5)
            if turn == previous { turn = (turn + 1) % 6 }
            previous = turn
            switch turn {
            case 0: messages += chance(0.5) ? arithmetic() : wordProblem()
            case 1: messages += chance(0.5) ? percentage() : powerOrRoot()
            case 2: messages += time(indirect: chance(0.3))
            case 3: messages += units()
            case 4: messages += noTool().messages.filter { $0.role != .system }
            default:
                let function = pick(FormulaFunction.all)
                let (text, arguments) = formulaExample(function)
                let listed = tools.first { function.names.contains($0.name) }
                if let definition = listed ?? (tools.count == registry.definitions.count ? formulaDefinition(function) : nil) {
                    if listed == nil { tools.append(definition) }
                    let exchange = formulaExchange(function, definition, arguments)
                    messages += [Message(role: .user, content: phrase(text, keeping: Self.strings(arguments))), Message(role: .assistant, content: "", toolCalls: [exchange.call]),
                                 exchange.result, Message(role: .assistant, content: exchange.answer)]
                } else {
                    messages += [Message(role: .user, content: phrase(text)),
                                 Message(role: .assistant, content: function.solve(Dictionary(uniqueKeysWithValues: arguments)).answer)]
                }
            }
        }
        if chance(0.3) { messages.insert(Message(role: .system, content: "You are a helpful assistant."), at: 0) }
        return Conversation(messages: messages, tools: shuffled(tools))
    }

    /// The string values among a call's arguments: text the request must state exactly.
    private static func strings(_ arguments: [(String, JSONValue)]) -> [String] { arguments.compactMap { $0.1.stringValue } }
    private static func strings(_ arguments: JSONValue) -> [String] {
        if case .object(let pairs) = arguments { return strings(pairs) }
        return []
    }
}
