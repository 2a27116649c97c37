import ArgumentParser
import Foundation
import GGUF
import Tokenizer
import Transformer

enum ExportType: String, ExpressibleByArgument, CaseIterable {
    case f32, f16, q8_0
    var ggml: GGMLType { switch self { case .f32: .f32; case .f16: .f16; case .q8_0: .q8_0 } }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint as a GGUF file llama.cpp runs (Llama-style as llama, GPT-2-style as gpt2).")

    @Option(help: "Checkpoint directory.") var model: String
    @Option(help: "The GGUF file to write.") var out: String
    @Option(help: "Matrices as f32, f16 or q8_0 (norms, biases and positions stay f32).") var type: ExportType = .f32
    @Option(help: "The model's name in the file (default: the directory's).") var name: String?

    func run() throws {
        let loaded = try Checkpoint.load(from: model)
        let tokenizer = try Checkpoint.tokenizerPath(in: model).map { try SentencePieceTokenizer(contentsOf: $0) }
        let writer = try GGUFExport.gguf(loaded, tokenizer: tokenizer, type: type.ggml,
                                         name: name ?? URL(fileURLWithPath: model).lastPathComponent)
        try writer.write(to: out)
        let architecture = try GGUFExport.architecture(of: loaded.config)
        print("wrote \(out): \(architecture), \(loaded.parameterCount) parameters, \(type.rawValue)\(tokenizer == nil ? ", no tokenizer" : "")")
    }
}
