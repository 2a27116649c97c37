import Foundation
import Support
import Tokenizer
import Transformer

/// A model and its tokenizer from either kind of file TinyLM reads: a checkpoint directory
/// (`config.json`, `model.safetensors`, `tokenizer.model`) or a GGUF file.
public struct LoadedModel {
    public var model: TransformerModel
    public var tokenizer: any TextTokenizer
    /// The Jinja chat template the file carries (GGUF `tokenizer.chat_template`), if any.
    public var chatTemplate: String?
    /// Where it came from.
    public var path: String

    /// Whether `path` names a GGUF file (by its magic bytes).
    public static func isGGUF(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// Loads `path`; `tokenizer` overrides a checkpoint's own SentencePiece model. A GGUF's
    /// quantized matrices stay in their blocks (interleaved for decoding by default) unless
    /// `storage` is `.fp32`.
    public static func load(_ path: String, tokenizer override: String? = nil,
                            storage: GGUFModel.WeightStorage = .packed) throws -> LoadedModel {
        if isGGUF(path) {
            let file = try GGUFFile(path: path)
            let model = try GGUFModel.load(file, storage: storage)
            let tokenizer: any TextTokenizer = try override.map { try SentencePieceTokenizer(contentsOf: $0) } ?? GGUFTokenizer.load(file)
            return LoadedModel(model: model, tokenizer: tokenizer, chatTemplate: file["tokenizer.chat_template"]?.string, path: path)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw FileError.notFound(path: path) }
        guard isDirectory.boolValue else {
            throw TransformerError.checkpoint(path: path, reason: "neither a checkpoint directory nor a GGUF file")
        }
        let model = try Checkpoint.load(from: path)
        guard let tokenizerPath = override ?? Checkpoint.tokenizerPath(in: path) else {
            throw TransformerError.checkpoint(path: path, reason: "no \(Checkpoint.tokenizerFile); pass --tokenizer")
        }
        return LoadedModel(model: model, tokenizer: try SentencePieceTokenizer(contentsOf: tokenizerPath), chatTemplate: nil, path: path)
    }
}
