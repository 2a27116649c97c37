import ArgumentParser
import Foundation
import GGUF
import Tokenizer
import Transformer

enum ExportType: String, ExpressibleByArgument, CaseIterable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, q4_k
    var ggml: GGMLType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_1: .q4_1
        case .q4_k: .q4_K
        }
    }
}

/// `--embeddings`: the token embedding's and output layer's type.
enum EmbeddingType: String, ExpressibleByArgument, CaseIterable {
    case standard, same, f32, f16, q8_0
}

extension QuantizationPolicy {
    init(_ type: ExportType, embeddings: EmbeddingType) {
        switch embeddings {
        case .standard: self = .standard(type.ggml)
        case .same: self.init(type: type.ggml)
        case .f32: self.init(type: type.ggml, embeddings: .f32)
        case .f16: self.init(type: type.ggml, embeddings: .f16)
        case .q8_0: self.init(type: type.ggml, embeddings: .q8_0)
        }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint as a GGUF file llama.cpp runs (Llama-style as llama, GPT-2-style as gpt2).")

    @Option(help: "Checkpoint directory.") var model: String
    @Option(help: "The GGUF file to write.") var out: String
    @Option(help: "Matrices as f32, f16, bf16, q8_0, q4_0, q4_1 or q4_k (norms, biases and positions stay f32).") var type: ExportType = .f32
    @Option(help: "Token embedding and output layer: standard (q8_0 under a 4-bit type), same, f32, f16 or q8_0.")
    var embeddings: EmbeddingType = .standard
    @Option(help: "The model's name in the file (default: the directory's).") var name: String?

    func run() throws {
        let loaded = try Checkpoint.load(from: model)
        let tokenizer = try Checkpoint.tokenizerPath(in: model).map { try SentencePieceTokenizer(contentsOf: $0) }
        let writer = try GGUFExport.gguf(loaded, tokenizer: tokenizer, policy: QuantizationPolicy(type, embeddings: embeddings),
                                         name: name ?? URL(fileURLWithPath: model).lastPathComponent)
        try writer.write(to: out)
        let architecture = try GGUFExport.architecture(of: loaded.config)
        print("wrote \(out): \(architecture), \(loaded.parameterCount) parameters, \(type.rawValue)\(tokenizer == nil ? ", no tokenizer" : "")")
    }
}

/// `tinylm quantize`: a checkpoint or any GGUF TinyLM reads, re-encoded as a llama.cpp-loadable
/// GGUF of the chosen type.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a checkpoint directory or a GGUF file to q4_0, q4_1, q4_k or q8_0 (a GGUF llama.cpp loads).",
        discussion: """
            Matrices take --type (a Q4_K matrix whose rows are not whole super-blocks of 256 falls back to Q4_1). \
            The token embedding and output layer stay Q8_0 under a 4-bit type unless --embeddings says otherwise; \
            norms and biases stay F32. A GGUF input keeps its metadata (tokenizer, chat template).
            """)

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "q4_0, q4_1, q4_k, q8_0 (or f16, bf16, f32).") var type: ExportType
    @Option(help: "The GGUF file to write.") var out: String
    @Option(help: "Token embedding and output layer: standard (q8_0 under a 4-bit type), same, f32, f16 or q8_0.")
    var embeddings: EmbeddingType = .standard

    func run() throws {
        let policy = QuantizationPolicy(type, embeddings: embeddings)
        if LoadedModel.isGGUF(model) {
            let file = try GGUFFile(path: model)
            _ = try GGUFModel.config(of: file)   // a model TinyLM runs, or an error naming the field
            let (writer, summary) = try GGUFQuantize.requantize(file, policy: policy)
            try writer.write(to: out)
            var counts: [String: Int] = [:]
            for t in summary.tensors { counts["\(t.to)", default: 0] += 1 }
            let mix = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            print(String(format: "wrote %@: %.1f MB (from %.1f MB); tensors: %@", out, Double(summary.bytesAfter) / 1e6,
                         Double(summary.bytesBefore) / 1e6, mix))
        } else {
            let loaded = try Checkpoint.load(from: model)
            let tokenizer = try Checkpoint.tokenizerPath(in: model).map { try SentencePieceTokenizer(contentsOf: $0) }
            let writer = try GGUFExport.gguf(loaded, tokenizer: tokenizer, policy: policy, name: URL(fileURLWithPath: model).lastPathComponent)
            try writer.write(to: out)
            print("wrote \(out): \(try GGUFExport.architecture(of: loaded.config)), \(loaded.parameterCount) parameters, \(type.rawValue)")
        }
    }
}
