import ArgumentParser
import Foundation
import GGUF
import Kernels
import Tokenizer
import Training
import Transformer

/// `tinylm bench quality`: perplexity and size of one model at each quantization type, side by
/// side: the cost of each format, measured on held-out text.
struct BenchQuality: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quality",
        abstract: "Perplexity and file size of a model as F32, Q8_0, Q4_0, Q4_1 and Q4_K (GGUF files made with tinylm quantize's policy).")

    @Option(help: "A checkpoint directory or a GGUF file.") var model: String
    @Option(help: "A text file to measure on (e.g. ../shared/data/eval/botchan.txt).") var data: String
    @Option(help: "Comma-separated types.") var types = "f32,q8_0,q4_0,q4_1,q4_k"
    @Option(help: "Tokens per window (default: the model's context, at most 1024).") var context: Int?
    @Option(help: "Windows per forward pass.") var batch = 4
    @Option(help: "Measure at most this many tokens of the file.") var maxTokens: Int?

    func validate() throws {
        try OptionDomain.count(context, "context", min: 2, max: 1 << 16)
        try OptionDomain.count(batch, "batch", max: 4096)
        try OptionDomain.count(maxTokens, "max-tokens", min: 2, max: 1 << 30)
        for t in types.split(separator: ",") where ExportType(rawValue: String(t)) == nil {
            throw ValidationError("--types: '\(t)' is not one of \(ExportType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let isGGUF = LoadedModel.isGGUF(model)
        let reference = try LoadedModel.load(model, storage: .fp32)
        let tokenizer = reference.tokenizer
        var tokens: [Int32]
        if let sentencePiece = tokenizer as? SentencePieceTokenizer {
            tokens = try loadTokens(data, tokenizer: sentencePiece)
        } else {
            guard let text = String(data: try Data(contentsOf: URL(fileURLWithPath: data)), encoding: .utf8) else {
                throw ValidationError("\(data): not valid UTF-8")
            }
            tokens = try tokenizer.encode(plainText: text)
        }
        if let maxTokens, tokens.count > maxTokens { tokens = Array(tokens.prefix(maxTokens)) }
        let window = min(context ?? min(reference.model.config.contextLength, 1024), reference.model.config.contextLength)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tinylm-quality-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        print("tinylm bench quality: \(model) on \(tokens.count) tokens of \(data), windows of \(window)")
        print("type    weights MB   perplexity   vs f32")
        var baseline: Double?
        for name in types.split(separator: ",").map(String.init) {
            let type = ExportType(rawValue: name)!
            let policy = QuantizationPolicy(type, embeddings: .standard)
            // The matrices stay in their blocks, as `generate` and `chat` run them: from a
            // quantized GGUF file for a GGUF model, encoded in memory for a checkpoint (any
            // architecture).
            let quantized: TransformerModel, size: Double
            if isGGUF {
                let path = folder + "/\(name).gguf"
                let (writer, _) = try GGUFQuantize.requantize(try GGUFFile(path: model), policy: policy)
                try writer.write(to: path)
                size = Double((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / 1e6
                quantized = try GGUFModel.load(try GGUFFile(path: path), storage: .packed)
            } else {
                let (m, bytes) = try reference.model.quantized(policy)
                quantized = m
                size = Double(bytes) / 1e6
            }
            let workspace = try TrainingWorkspace(model: quantized, batch: batch, length: window, training: false)
            let (loss, _) = try quantized.evaluate(tokens: tokens, workspace: workspace)
            let perplexity = Foundation.exp(loss)
            if baseline == nil { baseline = perplexity }
            print(String(format: "%-6@ %11.2f %12.3f   %+6.2f%%", name, size, perplexity, 100 * (perplexity / baseline! - 1)))
        }
    }
}
