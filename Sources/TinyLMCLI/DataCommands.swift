import ArgumentParser
import Kernels
import Foundation
import Tokenizer

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare training data.",
        subcommands: [DataPrepare.self, SynthTools.self]
    )
}

extension DocumentBoundary: ExpressibleByArgument {}
extension MatmulPrecision: ExpressibleByArgument {}

struct DataPrepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Tokenize text files into train/validation token shards (documents end with EOS).")

    @Option(help: "The SentencePiece model.") var tokenizer: String
    @Option(name: .customLong("input"), parsing: .upToNextOption, help: "Text files.") var inputs: [String]
    @Option(help: "Output directory (train.bin, val.bin, meta.json).") var out: String
    @Option(help: "Fraction of documents for validation.") var valFraction = 0.01
    @Option(help: "newline (a newline after a non-blank line ends a document), blank-line, or file.")
    var documentBoundary: DocumentBoundary = .newline

    func validate() throws { try OptionDomain.number(valFraction, "val-fraction", 0...0.5) }

    func run() throws {
        let model = try SentencePieceTokenizer(contentsOf: tokenizer)
        var preparer = CorpusPreparer(tokenizer: model)
        preparer.validationFraction = valFraction
        preparer.boundary = documentBoundary
        let start = Date()
        let interactive = standardErrorIsTerminal
        var lastReport = Date.distantPast
        preparer.progress = { done, total, tokens in
            let now = Date()
            guard now.timeIntervalSince(lastReport) > (interactive ? 0.1 : 5) || done == total else { return }
            lastReport = now
            let line = String(format: "prepare: %5.1f%%  %.1f / %.1f MB  %d tokens  %.0f s",
                              100 * Double(done) / Double(max(total, 1)), Double(done) / 1e6, Double(total) / 1e6,
                              tokens, now.timeIntervalSince(start))
            printError(interactive ? "\r" + line : line, terminator: interactive ? "" : "\n")
        }
        let summary = try preparer.prepare(inputs: inputs, directory: out)
        if interactive { printError("") }
        print("wrote \(out)/train.bin (\(summary.trainTokens) tokens, \(summary.trainDocuments) documents) and \(out)/val.bin (\(summary.validationTokens) tokens, \(summary.validationDocuments) documents)")
    }
}
