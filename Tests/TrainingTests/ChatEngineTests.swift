import Chat
import ChatEngine
import Foundation
import Support
import Testing
import Tokenizer
import Transformer

/// A model that says what it is told: each prompt it is fed starts the next scripted reply, and each step's logits pick the reply's next token.
final class ScriptedModel: ChatModel {
    let contextLength: Int
    var position = 0
    var replies: [[Int32]]
    var reply = -1, cursor = 0
    let vocabulary: Int
    /// Every feed, for checking what was prefilled.
    var fed: [[Int32]] = []

    init(replies: [[Int32]], vocabulary: Int, contextLength: Int = 4096) {
        self.replies = replies
        self.vocabulary = vocabulary
        self.contextLength = contextLength
    }

    /// The engine truncates the cache before every prompt it feeds.
    var promptNext = false
    func truncate(to position: Int) { self.position = min(self.position, position); promptNext = true }

    func feed(_ ids: [Int32]) throws -> [Float] {
        fed.append(ids)
        position += ids.count
        if promptNext { reply += 1; cursor = 0; promptNext = false } else { cursor += 1 }
        var logits = [Float](repeating: 0, count: vocabulary)
        let script = reply < replies.count ? replies[reply] : []
        logits[Int(cursor < script.count ? script[cursor] : 2)] = 10   // 2: EOS when the script ends
        return logits
    }
}

/// A model whose first token is drawn from given logits; then it follows whichever script
/// starts with the token it was fed (EOS after it).
final class FirstChoiceModel: ChatModel {
    let contextLength = 4096
    var position = 0
    let first: [Float], scripts: [[Int32]]
    var promptNext = false, script: [Int32]?, cursor = 0

    init(first: [Float], scripts: [[Int32]]) { self.first = first; self.scripts = scripts }
    func truncate(to position: Int) { self.position = min(self.position, position); promptNext = true }
    func feed(_ ids: [Int32]) throws -> [Float] {
        position += ids.count
        if promptNext { promptNext = false; script = nil; return first }
        if script == nil { script = scripts.first { $0.first == ids.last } ?? []; cursor = 0 }
        cursor += 1
        var logits = [Float](repeating: -30, count: first.count)
        logits[Int(cursor < script!.count ? script![cursor] : 2)] = 10
        return logits
    }
}

@Suite("chat engine: the tool loop, the cache across turns, limits")
struct ChatEngineTests {
    let tokenizer: SentencePieceTokenizer
    init() throws { tokenizer = try SentencePieceTokenizer(contentsOf: repoTokenizerPath) }

    func ids(_ text: String) throws -> [Int32] { try tokenizer.encode(continuing: text) + [tokenizer.id(for: "<|im_end|>")!] }

    func engine(_ replies: [String], context: Int = 4096) throws -> (ChatEngine, ScriptedModel) {
        let model = ScriptedModel(replies: try replies.map(ids), vocabulary: tokenizer.vocabularySize, contextLength: context)
        let engine = ChatEngine(model: model, tokenizer: tokenizer, system: "Be brief.", tools: ToolRegistry.builtIn())
        engine.sampler.temperature = 0
        return (engine, model)
    }

    @Test("a call runs, its result goes back, the answer follows; call markup never reaches the answer")
    func toolLoop() throws {
        let (engine, model) = try engine([
            "Let me compute. <tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"17*23\"}}\n</tool_call>",
            "17 times 23 is 391.",
            "You are welcome.",
        ])
        var events: [ChatEngine.Event] = []
        let stats = try engine.send("What is 17 times 23?") { events.append($0) }
        let text = events.compactMap { if case .text(let t) = $0 { t } else { nil } }.joined()
        #expect(text.contains("Let me compute.") && text.contains("391") && !text.contains("tool_call"), "\(text)")
        #expect(events.contains(.toolCall(ToolCall(id: "call_0", name: "calculator", arguments: .object([("expression", .string("17*23"))])))))
        #expect(events.contains(.toolResult(name: "calculator", result: "{\"result\": 391}")))
        #expect(engine.messages.map(\.role) == [.user, .assistant, .tool, .assistant])
        #expect(engine.messages[2].content == "{\"result\": 391}" && engine.messages[3].content == "17 times 23 is 391.")
        #expect(stats.toolCalls == 1)
        // The second prompt reused the cache: only the tool turn and what follows were fed.
        let prompts = model.fed.filter { $0.count > 2 }
        #expect(prompts.count == 2 && prompts[1].count < prompts[0].count)
        // The next turn keeps the finished turn's question and answers, not its tool traffic.
        try engine.send("Thanks!") { _ in }
        #expect(!engine.messages.contains { $0.role == .tool || !$0.toolCalls.isEmpty })
        #expect(engine.messages.map(\.content).suffix(3) == ["17 times 23 is 391.", "Thanks!", "You are welcome."])
    }

    @Test("an unknown tool and a malformed call go back to the model as errors; the call limit ends the turn")
    func errorsAndLimit() throws {
        let (engine, _) = try engine([
            "<tool_call>{\"name\": \"weather\", \"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": </tool_call>",
            "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1+1\"}}</tool_call>",
            "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}</tool_call>",
            "never reached",
        ])
        engine.maxToolCalls = 4
        engine.constrainsCalls = false   // the model's broken calls reach the parser as written
        var events: [ChatEngine.Event] = []
        try engine.send("go") { events.append($0) }
        let results = events.compactMap { if case .toolResult(_, let r) = $0 { r } else { nil } }
        #expect(results.count == 4)
        #expect(results[0].contains("error") && results[0].contains("weather"))
        #expect(results[1].contains("error"))
        #expect(results[2] == "{\"result\": 2}" && results[3] == "{\"result\": 4}")
        #expect(events.contains { if case .notice(let n) = $0 { n.contains("limit") } else { false } })
        #expect(!events.contains(.text("never reached")))
    }

    @Test("with the call constraint, a model that writes a call the tool does not accept still makes a valid one")
    func constrainedCalls() throws {
        let script = [
            // Text after the call's JSON, inside the markup: each refused token is replaced by
            // the model's best token that keeps the call valid, so the call closes.
            "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}} and more</tool_call>",
            "Done.",
        ]
        let (constrained, _) = try engine(script)
        var events: [ChatEngine.Event] = []
        try constrained.send("go") { events.append($0) }
        let calls = events.compactMap { if case .toolCall(let call) = $0 { call } else { nil } }
        let results = events.compactMap { if case .toolResult(_, let r) = $0 { r } else { nil } }
        #expect(calls.map(\.name) == ["calculator"] && results == ["{\"result\": 4}"], "\(events)")
        // Without it the same script is a malformed call that goes back to the model.
        let (free, _) = try engine(script)
        free.constrainsCalls = false
        var freeEvents: [ChatEngine.Event] = []
        try free.send("go") { freeEvents.append($0) }
        let freeResults = freeEvents.compactMap { if case .toolResult(_, let r) = $0 { r } else { nil } }
        #expect(freeResults.count == 1 && freeResults[0].contains("error"), "\(freeEvents)")
    }

    @Test("greedy decoding opens a call by the event's probability, not by the likeliest single token")
    func callByEvent() throws {
        let call = try ids("<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}</tool_call>")
        let text = try ids("Paris is the capital.")
        let others = [try tokenizer.encode(continuing: "The")[0], try tokenizer.encode(continuing: "I")[0]]
        let bytes = (0..<tokenizer.vocabularySize).map { tokenizer.bytes(of: [Int32($0)]) }
        let opening = CallOpening(marker: Array("<tool_call>".utf8), tokenBytes: bytes)
        #expect(opening.openingTokens.contains(call[0]) && !opening.openingTokens.contains(text[0]))
        #expect(Set([call[0], text[0]] + others).count == 4 && others.allSatisfy { !opening.openingTokens.contains($0) })
        // The call's first token alone is likeliest (0.45), but text holds 0.55 over three tokens.
        var first = [Float](repeating: -30, count: tokenizer.vocabularySize)
        for (id, p) in [(call[0], 0.45), (text[0], 0.22), (others[0], 0.18), (others[1], 0.15)] { first[Int(id)] = Float(log(p)) }
        let question = [Message(role: .user, content: "What is the capital of France?")]
        for byEvent in [true, false] {
            let engine = ChatEngine(model: FirstChoiceModel(first: first, scripts: [call, text]), tokenizer: tokenizer, tools: ToolRegistry.builtIn())
            engine.sampler.temperature = 0
            engine.decidesCallsByEvent = byEvent
            let (answer, calls, _) = try engine.nextMessage(after: question)
            #expect(abs(engine.lastCallProbability! - 0.45) < 1e-5)
            if byEvent {
                #expect(answer == "Paris is the capital." && calls.isEmpty, "\(answer) \(calls)")
            } else {
                #expect(calls.map(\.name) == ["calculator"], "\(answer) \(calls)")
            }
        }
        // Without tools there is no call to decide.
        let bare = ChatEngine(model: FirstChoiceModel(first: first, scripts: [call, text]), tokenizer: tokenizer)
        bare.sampler.temperature = 0
        _ = try bare.nextMessage(after: question)
        #expect(bare.lastCallProbability == nil)
    }

    @Test("a full context drops the oldest turns, keeping the system message")
    func contextOverflow() throws {
        let (engine, _) = try engine(Array(repeating: "A fine reply with a few words in it.", count: 12), context: 160)
        engine.tools = ToolRegistry()
        engine.maxTokens = 20
        var notices: [String] = []
        for i in 0..<8 {
            try engine.send("Message number \(i) with some words to fill the context.") { if case .notice(let n) = $0 { notices.append(n) } }
        }
        #expect(notices.contains { $0.contains("dropped") })
        #expect(engine.messages.first?.role == .user && engine.messages.last?.role == .assistant)
        #expect(engine.messages.first?.content != "Message number 0 with some words to fill the context.")
        #expect(engine.conversation.messages.first?.content == "Be brief.")
    }

    @Test("Ctrl-C stops a reply and keeps what was said; /regen answers again; save and load round-trip")
    func stopRegenerateSaveLoad() throws {
        let (engine, _) = try engine(["one two three four five six seven eight nine ten", "again"])
        var steps = 0
        engine.shouldStop = { steps += 1; return steps > 4 }
        var text = ""
        try engine.send("count") { if case .text(let t) = $0 { text += t } }
        #expect(!text.isEmpty && !text.contains("ten"))
        engine.shouldStop = { false }
        text = ""
        try engine.regenerate { if case .text(let t) = $0 { text += t } }
        #expect(text == "again" && engine.messages.count == 2)
        let path = ScratchDirectory.make("chat") + "/saved.jsonl"
        try ChatDatasets.writeOpenAI([engine.conversation], to: path)
        let (other, _) = try self.engine([])
        other.system = nil
        other.load(try ChatDatasets.read(path)[0])
        #expect(other.system == "Be brief." && other.messages == engine.messages)
    }
}

let repoTokenizerPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Tokenizers/tinylm-4k.model").path

@Suite("tool-use scoring")
struct ToolUseEvaluationTests {
    @Test("calls match by name and argument values (numbers by value, keys in any order); a plain answer where none is expected")
    func scoring() throws {
        let expected = [ToolCall(id: "a", name: "unit_convert", arguments: .object([("value", .number(26.2)), ("from", .string("mi")), ("to", .string("km"))]))]
        let same = [ToolCall(id: "b", name: "unit_convert", arguments: .object([("to", .string("km")), ("from", .string("mi")), ("value", .number(26.200000000001))]))]
        let wrong = [ToolCall(id: "b", name: "unit_convert", arguments: .object([("to", .string("km")), ("from", .string("mile")), ("value", .number(26.2))]))]
        #expect(ToolUseEvaluation.matches(same, expected))
        #expect(!ToolUseEvaluation.matches(wrong, expected))
        #expect(!ToolUseEvaluation.matches([], expected))
        let tokenizer = try SentencePieceTokenizer(contentsOf: repoTokenizerPath)
        func ids(_ t: String) throws -> [Int32] { try tokenizer.encode(continuing: t) + [tokenizer.id(for: "<|im_end|>")!] }
        let model = ScriptedModel(replies: [
            try ids("<tool_call>{\"name\": \"unit_convert\", \"arguments\": {\"value\": 26.2, \"from\": \"mi\", \"to\": \"km\"}}</tool_call>"),
            try ids("The moon orbits the Earth."),
            try ids("<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1\"}}</tool_call>"),
            try ids("<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Oslo\"}}</tool_call>"),
        ], vocabulary: tokenizer.vocabularySize)
        let engine = ChatEngine(model: model, tokenizer: tokenizer, tools: ToolRegistry.builtIn())
        engine.sampler.temperature = 0
        let builtIn = ToolRegistry.builtIn().definitions
        // Each conversation's own tools are offered: a function of another domain is callable there.
        let weather = ToolDefinition(name: "get_weather", description: "Weather in a city.",
                                     parameters: .object([("type", .string("object")), ("properties", .object([("location", .object([("type", .string("string"))]))]))]))
        let conversations = [
            Conversation(messages: [Message(role: .user, content: "26.2 miles in km?"), Message(role: .assistant, content: "", toolCalls: expected)], tools: builtIn),
            Conversation(messages: [Message(role: .user, content: "The moon?"), Message(role: .assistant, content: "It orbits us.")], tools: builtIn),
            Conversation(messages: [Message(role: .user, content: "Hi"), Message(role: .assistant, content: "Hello!")], tools: builtIn),
            Conversation(messages: [Message(role: .user, content: "Weather in Oslo?"),
                                    Message(role: .assistant, content: "", toolCalls: [ToolCall(id: "w", name: "get_weather", arguments: .object([("location", .string("Oslo"))]))])],
                         tools: [weather]),
        ]
        let result = try ToolUseEvaluation.run(engine, on: conversations)
        #expect(result.total == 4 && result.correct == 3)
        #expect(result.byCategory["unit_convert"]! == (1, 1) && result.byCategory["no tool"]! == (1, 2) && result.byCategory["get_weather"]! == (1, 1))
        #expect(engine.tools.definitions == builtIn, "the engine's own tools are restored")
    }
}
