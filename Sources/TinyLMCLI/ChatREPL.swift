import ArgumentParser
import Chat
import ChatEngine
import Foundation
import GGUF
import Support
import Synchronization
import Training
import Transformer

/// Set by SIGINT during a reply: the reply stops, the program goes on.
let replyInterrupted = Atomic<Bool>(false)

struct ChatREPL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Talk to a model: one message per line, replies streamed; tools run as the model calls them.",
        discussion: """
            Commands: /help, /clear, /system TEXT, /tools, /regen, /save FILE, /load FILE, /exit (or Ctrl-D). \
            Ctrl-C stops the reply being generated. With standard input not a terminal, each line is one user \
            message and only the replies are printed.
            """)

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "A LoRA adapter directory (PEFT files, as tinylm lora writes them).") var adapter: String?
    @Option(help: "The system message (default: the model's template's own, if any).") var system: String?
    @Option(help: "Comma-separated tools the model may call (calculator, current_time, unit_convert), or none.")
    var tools = "calculator,current_time,unit_convert"
    @Option(help: "A JSON file of your own tools: OpenAI-style function schemas, each with \"command\": [program, args…] that reads the arguments as JSON on stdin and answers JSON on stdout.")
    var toolsFile: String?
    @Option(help: "Most tokens per reply.") var maxTokens = 512
    @Option(help: "Tokens of context the chat keeps (default: the model's); older turns are dropped when it fills.")
    var maxContext: Int?
    @Option(help: "Tool calls allowed per turn.") var maxToolCalls = 4
    @Flag(help: "Print prefill and decode figures after each reply.") var stats = false
    @OptionGroup var toolCalls: ToolCallOptions
    @Option(help: "What finished turns keep in the prompt: full (tool calls and results too) or answers (questions and final answers).")
    var history = "full"

    @Option(help: "Key/value cache: 32 (fp32), 16 (IEEE halves, as llama.cpp's default f16 cache) or 8 (blocks of 32 bytes and a scale, as its q8_0).")
    var kvBits = 32
    @OptionGroup var sampling: SamplingOptions

    func validate() throws {
        try OptionDomain.count(maxTokens, "max-tokens", max: 1 << 20)
        guard KVCacheBits(rawValue: kvBits) != nil else { throw ValidationError("--kv-bits must be \(KVCacheBits.choices)") }
        try OptionDomain.count(maxToolCalls, "max-tool-calls", min: 0, max: 100)
        try OptionDomain.count(maxContext, "max-context", min: 16, max: 1 << 20)
        guard ["full", "answers"].contains(history) else { throw ValidationError("--history must be full or answers") }
    }

    func run() throws {
        var loaded = try LoadedModel.load(model)
        if let adapter { loaded.model = try PEFTAdapter.load(adapter, onto: loaded.model) }
        let (template, defaultSystem) = try chatTemplate(of: loaded)
        var registry = try Self.registry(tools)
        if let toolsFile { for tool in try CommandTool.load(toolsFile) { registry.register(tool) } }
        let engine = ChatEngine(model: try SessionChatModel(loaded.model, maxContext: maxContext,
                                                                       kvBits: KVCacheBits(rawValue: kvBits)!), tokenizer: loaded.tokenizer, template: template,
                                system: system ?? defaultSystem, tools: registry)
        engine.sampler = try sampling.sampler()
        engine.maxTokens = maxTokens
        toolCalls.apply(to: engine)
        engine.maxToolCalls = maxToolCalls
        engine.keepToolTurns = history == "full"
        engine.shouldStop = { replyInterrupted.load(ordering: .relaxed) }
        let terminal = isatty(0) != 0 && isatty(1) != 0
        signal(SIGINT) { _ in
            if replyInterrupted.exchange(true, ordering: .relaxed) { _exit(130) }
        }
        let dim = terminal ? "\u{1B}[2m" : "", reset = terminal ? "\u{1B}[0m" : ""
        if terminal {
            print("\(dim)TinyLM chat — \(model) (\(loaded.model.parameterCount) parameters); tools: \(registry.definitions.map(\.name).joined(separator: ", ").nilIfEmpty ?? "none"); /help for commands\(reset)")
        }
        let editor = LineEditor(interactive: terminal)
        while true {
            guard let raw = editor.readLine(prompt: "> ") else { break }
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            replyInterrupted.store(false, ordering: .relaxed)
            if line.hasPrefix("/") {
                if try command(line, engine: engine, terminal: terminal, dim: dim, reset: reset) { break }
                continue
            }
            try answer(engine: engine, terminal: terminal, dim: dim, reset: reset) { try engine.send(line, onEvent: $0) }
        }
        if terminal { print("") }
    }

    /// Streams one reply.
    func answer(engine: ChatEngine, terminal: Bool, dim: String, reset: String,
                _ body: ((ChatEngine.Event) -> Void) throws -> ChatEngine.Stats?) throws {
        var atLineStart = true
        let out = { (s: String) in
            FileHandle.standardOutput.write(Data(s.utf8))
            atLineStart = s.hasSuffix("\n")
        }
        let result = try body { event in
            switch event {
            case .text(let t): out(t)
            case .toolCall(let call):
                if !atLineStart { out("\n") }
                out("\(dim)→ \(call.name) \(call.arguments.serialized())\(reset)\n")
            case .toolResult(let name, let result):
                if terminal || name == "(malformed call)" { out("\(dim)← \(result)\(reset)\n") }
            case .notice(let text):
                printError("\(dim)[\(text)]\(reset)")
            }
        }
        out("\n")
        if stats, let s = result {
            printError(String(format: "\(dim)[%d prompt tokens, %d prefilled, %d generated, %d tool calls; prefill %.1f ms, decode %.1f tokens/s]\(reset)",
                              s.promptTokens, s.prefilledTokens, s.generatedTokens, s.toolCalls, s.prefillSeconds * 1000, s.decodeTokensPerSecond))
        }
    }

    /// Runs a slash command; true ends the chat.
    func command(_ line: String, engine: ChatEngine, terminal: Bool, dim: String, reset: String) throws -> Bool {
        let (name, argument) = line.firstIndex(of: " ").map { (String(line[..<$0]), String(line[$0...]).trimmingCharacters(in: .whitespaces)) } ?? (line, "")
        switch name {
        case "/exit", "/quit": return true
        case "/help":
            print("""
                /clear          forget the conversation (the system message stays)
                /system TEXT    set the system message (empty: none)
                /tools          list the tools the model may call
                /regen          answer the last message again
                /save FILE      write the conversation as OpenAI-style JSON messages
                /load FILE      read a conversation written by /save (or any OpenAI JSONL)
                /exit           leave (Ctrl-D too); Ctrl-C stops a reply
                """)
        case "/clear":
            engine.clear()
            print("\(dim)(conversation cleared)\(reset)")
        case "/system":
            engine.system = argument.isEmpty ? nil : argument
            print("\(dim)(system message \(argument.isEmpty ? "removed" : "set"))\(reset)")
        case "/tools":
            let list = engine.tools.definitions
            print(list.isEmpty ? "no tools" : list.map { "\($0.name): \($0.description)" }.joined(separator: "\n"))
        case "/regen":
            try answer(engine: engine, terminal: terminal, dim: dim, reset: reset) { try engine.regenerate(onEvent: $0) }
        case "/save":
            guard !argument.isEmpty else { printError("usage: /save FILE"); return false }
            do {
                try ChatDatasets.writeOpenAI([engine.conversation], to: argument)
                print("\(dim)(saved \(engine.messages.count) messages to \(argument))\(reset)")
            } catch { printError("Error: \(error)") }
        case "/load":
            guard !argument.isEmpty else { printError("usage: /load FILE"); return false }
            do {
                let conversations = try ChatDatasets.read(argument, allowEmptyReplies: true)
                engine.load(conversations[conversations.count - 1])
                print("\(dim)(loaded \(engine.messages.count) messages from \(argument))\(reset)")
            } catch { printError("Error: \(error)") }
        default:
            printError("unknown command \(name); /help lists them")
        }
        return false
    }

    /// The named built-in tools (or none).
    static func registry(_ list: String) throws -> ToolRegistry {
        let all = ToolRegistry.builtIn()
        if list == "none" || list.isEmpty { return ToolRegistry() }
        let names = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var registry = ToolRegistry()
        for name in names {
            guard let tool = all.tools.first(where: { $0.definition.name == name }) else {
                throw ValidationError("--tools: '\(name)' is not a built-in tool (\(all.definitions.map(\.name).joined(separator: ", ")), or none)")
            }
            registry.register(tool)
        }
        return registry
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// The chat template a loaded model's file names (ChatML and its default system prompt), or
/// ChatML with none for a checkpoint directory.
func chatTemplate(of loaded: LoadedModel) throws -> (template: ChatTemplate, defaultSystem: String?) {
    try loaded.chatTemplate.map { try ChatTemplate.recognizing($0, source: loaded.path) } ?? (.chatML, nil)
}
