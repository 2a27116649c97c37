import ArgumentParser
import Chat
import Foundation
import Tokenizer

struct ToolsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tools",
        abstract: "Parse tool calls, run the built-in tools, list their schemas.",
        subcommands: [ToolsParse.self, ToolsCall.self, ToolsList.self]
    )
}

extension ToolCallFormat: ExpressibleByArgument {}

/// One parser event as a JSON line.
func eventJSON(_ event: ToolCallEvent) -> String {
    switch event {
    case .text(let t):
        return JSONValue.object([("type", .string("text")), ("text", .string(t))]).serialized(spaced: false)
    case .toolCall(let call, let raw):
        return JSONValue.object([("type", .string("tool_call")), ("id", .string(call.id)), ("name", .string(call.name)),
                                 ("arguments", call.arguments), ("raw", .string(raw))]).serialized(spaced: false)
    case .error(let e):
        return JSONValue.object([("type", .string("error")), ("kind", .string(e.kind.rawValue)), ("message", .string(e.message)),
                                 ("raw", .string(e.raw))]).serialized(spaced: false)
    }
}

struct ToolsParse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse", abstract: "Read a completion on standard input; print the parser's events as JSON lines.")

    @Option(help: "hermes, llama3 or mistral.") var format: ToolCallFormat = .hermes
    @Option(help: "Feed the input in chunks of this many bytes (streaming), instead of all at once.") var chunkSize: Int?

    func validate() throws { try OptionDomain.count(chunkSize, "chunk-size", max: 1 << 30) }
    @Flag(help: "Check calls against the built-in tools (unknown names and bad arguments become errors).") var builtInTools = false

    func run() throws {
        if let chunkSize, chunkSize <= 0 { throw ValidationError("--chunk-size must be positive") }
        let input = Array(FileHandle.standardInput.readDataToEndOfFile())
        guard String(validating: input, as: UTF8.self) != nil else {
            throw ValidationError("<stdin> is not valid UTF-8 (a completion is text)")
        }
        var parser = format.makeParser(tools: builtInTools ? ToolRegistry.builtIn().definitions : nil)
        var events: [ToolCallEvent] = []
        let size = chunkSize ?? max(1, input.count)
        var start = 0
        while start < input.count {
            events += parser.feed(Array(input[start..<min(input.count, start + size)]))
            start += size
        }
        events += parser.finish()
        for event in events { print(eventJSON(event)) }
    }
}

struct ToolsCall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call", abstract: "Run a built-in tool and print its result.")

    @Argument(help: "calculator, current_time or unit_convert.") var name: String
    @Argument(help: "The arguments as a JSON object, e.g. '{\"expression\": \"2+2\"}'.") var arguments: String = "{}"

    func run() throws {
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parse(arguments)
        } catch {
            throw ValidationError("the arguments are not valid JSON: \(error)")
        }
        let result = ToolRegistry.builtIn().call(name, arguments: parsed)
        print(result.serialized())
        if result["error"] != nil { throw ExitCode(1) }
    }
}

struct ToolsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Print the built-in tools' schemas.")

    func run() throws {
        for definition in ToolRegistry.builtIn().definitions { print(definition.json.serialized()) }
    }
}

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "Talk to a model (tinylm chat --model …), or render chat data (chat render).",
        subcommands: [ChatREPL.self, ChatRender.self], defaultSubcommand: ChatREPL.self)
}

struct ChatRender: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Print conversations (ShareGPT JSON or OpenAI JSONL) in the chat template, with the loss mask marked.")

    @Option(help: "The dataset.") var data: String
    @Option(help: "With a tokenizer, print tokens and mark trained ones; without, mark trained text spans.") var tokenizer: String?
    @Option(help: "Only the first N conversations.") var limit: Int?

    func validate() throws { try OptionDomain.count(limit, "limit", min: 0, max: Int.max) }

    func run() throws {
        let conversations = try ChatDatasets.read(data)
        let template = ChatTemplate.chatML
        let tok = try tokenizer.map { try SentencePieceTokenizer(contentsOf: $0) }
        for (i, conversation) in conversations.prefix(limit ?? conversations.count).enumerated() {
            print("=== conversation \(i + 1)")
            if let tok {
                let (ids, mask) = try template.tokenize(conversation, with: tok)
                var line = ""
                for (id, m) in zip(ids, mask) {
                    let piece = try tok.piece(for: id)
                    line += m == 1 ? "[\(piece)]" : piece
                }
                print(line)
                print("(\(ids.count) tokens, \(mask.filter { $0 == 1 }.count) trained)")
            } else {
                // Trained spans between ⟦ and ⟧.
                var text = "", inside = false
                for segment in template.segments(conversation) {
                    if segment.trained != inside { text += inside ? "⟧" : "⟦"; inside = segment.trained }
                    text += segment.text
                }
                print(text + (inside ? "⟧" : ""), terminator: "")
            }
        }
    }
}

struct SynthTools: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-tools", abstract: "Write synthetic tool-use conversations as OpenAI JSONL.")

    @Option(help: "Conversations to write.") var count = 1000
    @Option(help: "Random seed (the same seed writes the same file).") var seed: UInt64 = 0
    @Option(help: "The JSONL file to write.") var out: String
    @Flag(help: "Word the requests with the held-out quarter of the templates (never in training data): an evaluation set.")
    var heldOut = false
    @Flag(help: "Also other domains' functions: calls to made-up functions listed among others (optional arguments passed when the request states them; several calls in one message), and the same requests answered in words when their function is not listed.")
    var otherTools = false

    func validate() throws { try OptionDomain.count(count, "count", max: 200_000) }

    func run() throws {
        guard count > 0 else { throw ValidationError("--count must be positive") }
        var generator = SyntheticToolData(seed: seed)
        generator.heldOutPhrasings = heldOut
        generator.otherTools = otherTools
        let conversations = generator.conversations(count)
        try ChatDatasets.writeOpenAI(conversations, to: out)
        let calls = conversations.filter { $0.messages.contains { !$0.toolCalls.isEmpty } }.count
        print("wrote \(out): \(count) conversations, \(calls) with tool calls")
    }
}
