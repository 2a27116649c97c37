import ArgumentParser
import Chat
import ChatEngine
import Foundation
import GGUF
import Training
import Transformer

struct EvalToolsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-tools",
        abstract: "Score a model's first action on tool-use conversations: the right call with the right arguments, or a plain answer.")

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "A LoRA adapter directory.") var adapter: String?
    @Option(help: "Conversations (OpenAI JSONL or ShareGPT JSON); each one's first assistant turn is the expected action.") var data: String?
    @Option(help: "The Berkeley Function Calling Leaderboard's data folder (bfcl_eval/data from PyPI's bfcl-eval) instead of --data.")
    var bfcl: String?
    @Option(help: "With --bfcl: comma-separated categories (also \(BFCL.otherCategories.joined(separator: ", "))).") var categories = BFCL.categories.joined(separator: ",")
    @Option(help: "Only the first N conversations.") var limit: Int?
    @Flag(help: "Print each conversation's outcome, with the probability its first token gave to opening a call.") var verbose = false
    @OptionGroup var toolCalls: ToolCallOptions

    func validate() throws {
        try OptionDomain.count(limit, "limit", max: 1 << 30)
        guard (data == nil) != (bfcl == nil) else { throw ValidationError("give --data or --bfcl (one of them)") }
        let known = BFCL.categories + BFCL.otherCategories
        for c in categories.split(separator: ",") where !known.contains(String(c)) {
            throw ValidationError("--categories: '\(c)' is not one of \(known.joined(separator: ", "))")
        }
    }

    func run() throws {
        var loaded = try LoadedModel.load(model)
        if let adapter { loaded.model = try PEFTAdapter.load(adapter, onto: loaded.model) }
        let (template, defaultSystem) = try chatTemplate(of: loaded)
        let engine = ChatEngine(model: try SessionChatModel(loaded.model), tokenizer: loaded.tokenizer, template: template,
                                system: defaultSystem, tools: ToolRegistry.builtIn())
        engine.sampler.temperature = 0
        engine.maxTokens = 160
        toolCalls.apply(to: engine)
        if let bfcl {
            var total = (correct: 0, count: 0)
            for category in categories.split(separator: ",").map(String.init) {
                var questions = try BFCL.load(bfcl, category: category)
                if let limit { questions = Array(questions.prefix(limit)) }
                let (correct, count) = try BFCL.run(engine, questions: questions, category: category) { i, ok, what in
                    if verbose { print("\(category) \(i + 1) \(ok ? "ok  " : "MISS") \(callProbability(engine))\(what)") }
                }
                total.correct += correct
                total.count += count
                print(String(format: "%-14@ %4d / %4d  %5.1f%%", category, correct, count, 100 * Double(correct) / Double(max(1, count))))
            }
            return
        }
        var conversations = try ChatDatasets.read(data!)
        if let limit { conversations = Array(conversations.prefix(limit)) }
        let result = try ToolUseEvaluation.run(engine, on: conversations) { i, ok, what in
            if verbose { print("\(i + 1) \(ok ? "ok  " : "MISS") \(callProbability(engine))\(what)") }
        }
        for (category, c) in result.byCategory.sorted(by: { $0.key < $1.key }) {
            print(String(format: "%-14@ %4d / %4d  %5.1f%%", category, c.correct, c.total, 100 * Double(c.correct) / Double(max(1, c.total))))
        }
        print(String(format: "%-14@ %4d / %4d  %5.1f%%  (right tool, wrong arguments: %d)", "all", result.correct, result.total,
                     100 * Double(result.correct) / Double(max(1, result.total)), result.wrongArguments))
    }

    /// The first token's probability of opening a call, for `--verbose`.
    private func callProbability(_ engine: ChatEngine) -> String {
        engine.lastCallProbability.map { String(format: "p(call) %.3f  ", $0) } ?? ""
    }
}
