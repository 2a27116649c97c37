import ArgumentParser

@main
struct TinyLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tinylm",
        abstract: "Train, fine-tune, quantize and chat with small transformer language models.",
        subcommands: [TokenizerCommand.self, DataCommand.self, InitCommand.self, GenerateCommand.self, EvalCommand.self, LogitsCommand.self, GradientsCommand.self, TrainStepsCommand.self, PretrainCommand.self, ToolsCommand.self, ChatCommand.self, Bench.self]
    )
}
