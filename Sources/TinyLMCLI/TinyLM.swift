import ArgumentParser

import Foundation

@main
struct TinyLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tinylm",
        abstract: "Train, fine-tune, quantize and chat with small transformer language models.",
        subcommands: [TokenizerCommand.self, DataCommand.self, InitCommand.self, GenerateCommand.self, EvalCommand.self, LogitsCommand.self, GradientsCommand.self, TrainStepsCommand.self, PretrainCommand.self, ToolsCommand.self, ChatCommand.self, Bench.self, ExportCommand.self, QuantizeCommand.self, FuseCommand.self, ExportAdapterCommand.self, LoRACommand.self, EvalToolsCommand.self, FuzzCommand.self, InspectRouterCommand.self]
    )

    /// Every failure, whether a usage error the argument parser finds or bad input a command
    /// finds, prints `Error: …` on standard error and exits with status 1; help exits 0.
    static func main() {
        do {
            // Arguments arrive as bytes; Swift would replace invalid UTF-8 with U+FFFD unseen.
            for i in 1..<Int(CommandLine.argc) {
                guard let raw = CommandLine.unsafeArgv[i] else { continue }
                let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: strlen(raw))
                guard String(validating: bytes, as: UTF8.self) != nil else {
                    throw ValidationError("argument \(i) is not valid UTF-8")
                }
            }
            var command = try parseAsRoot()
            do {
                try command.run()
            } catch let error as ValidationError {
                // Bad input found while running: the message alone (usage is for parse errors).
                printError("Error: \(error.message)")
                Foundation.exit(1)
            }
        } catch let exit as ExitCode {
            // A command's own status (130 after Ctrl-C, 1 after a reported failure): no message.
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            printError(message.hasPrefix("Error:") ? message : "Error: " + message)
            Foundation.exit(1)
        }
    }
}
