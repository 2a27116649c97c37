import ArgumentParser
import Foundation
import Fuzzing

extension FuzzTarget: ExpressibleByArgument {}

struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Mutation-fuzz the parsers of untrusted input (the test suite runs a few thousand inputs; this runs as many as you ask).")

    @Option(help: "safetensors, config, token-shard, chat-data, hermes, llama3, mistral (default: all).")
    var target: [FuzzTarget] = []
    @Option(help: "Inputs per target.") var iterations = 100_000
    @Option(help: "Random seed (the same seed makes the same inputs).") var seed: UInt64 = 1
    @Option(help: "Where to write inputs that broke a property.") var failures = "fuzz-failures"

    func validate() throws { try OptionDomain.count(iterations, "iterations", max: 1 << 40) }

    func run() throws {
        var broken = 0
        for t in target.isEmpty ? FuzzTarget.allCases : target {
            let report = try Fuzzer.run(t, iterations: iterations, seed: seed)
            print(report)
            for (i, failure) in report.failures.enumerated() {
                try FileManager.default.createDirectory(atPath: failures, withIntermediateDirectories: true)
                let path = "\(failures)/\(t.rawValue)-\(i).bin"
                try Data(failure.input).write(to: URL(fileURLWithPath: path))
                print("  \(failure.message) (input in \(path))")
            }
            broken += report.failures.count
        }
        if broken > 0 { throw ExitCode(1) }
    }
}
