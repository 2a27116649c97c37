import Foundation
import Kernels
import Support

/// A checkpoint directory: `config.json`, `model.safetensors` (Hugging Face Llama tensor names,
/// PyTorch `[out, in]` weights, F32) and, when the model comes with one, `tokenizer.model`.
/// Every file is written atomically.
public enum Checkpoint {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"
    public static let tokenizerFile = "tokenizer.model"

    /// Writes `model` (and a tokenizer's serialized model) into `directory`, creating it.
    public static func save(
        _ model: TransformerModel, to directory: String, tokenizer: Data? = nil, metadata: [String: String] = [:]
    ) throws {
        guard !model.layout.isQuantized else {
            throw TransformerError.checkpoint(path: directory, reason: "the model's weights are quantized blocks; a checkpoint holds fp32 weights (load the base as fp32)")
        }
        try AtomicFile.createDirectory(directory)
        let base = model.parameters.pointer
        for tensor in model.layout.tensors where tensor.group != .adapter {
            if let bad = firstNonFinite(base + tensor.offset, count: tensor.count) {
                throw TransformerError.checkpoint(path: directory, reason: "tensor '\(tensor.name)' holds \(base[tensor.offset + bad]) at index \(bad): a model with non-finite weights is not written")
            }
        }
        // The base model's tensors (adapters are written in PEFT's own files).
        let entries = model.layout.tensors.filter { $0.group != .adapter }.map { tensor in
            Safetensors.Entry(name: tensor.name, shape: tensor.shape,
                              data: UnsafeBufferPointer(start: base + tensor.offset, count: tensor.count))
        }
        try withExtendedLifetime(model) {
            try Safetensors.write(entries, metadata: metadata.merging(["format": "pt"]) { a, _ in a },
                                  to: directory + "/" + weightsFile)
        }
        try AtomicFile.write(model.config.encoded(), to: directory + "/" + configFile)
        if let tokenizer { try AtomicFile.write(tokenizer, to: directory + "/" + tokenizerFile) }
    }

    /// Reads the config alone.
    public static func config(in directory: String) throws -> ModelConfig {
        let path = directory + "/" + configFile
        guard FileManager.default.fileExists(atPath: path) else {
            throw TransformerError.checkpoint(path: directory, reason: "no \(configFile): not a TinyLM checkpoint directory")
        }
        let data = try MappedFile(path: path).data()
        return try ModelConfig.decode(Data(data), source: path)
    }

    /// Loads a model, checking that the weights hold exactly the tensors its config needs, by
    /// name and shape, before the parameter buffer is allocated, and that every value is finite.
    public static func load(from directory: String) throws -> TransformerModel {
        let config = try config(in: directory)
        let path = directory + "/" + weightsFile
        let file = try Safetensors.File(path: path)
        let layout = ParameterLayout(config)
        let expected = Set(layout.tensors.map(\.name))
        if let extra = file.tensors.keys.filter({ !expected.contains($0) }).sorted().first {
            throw TransformerError.checkpoint(path: path, reason: "unexpected tensor '\(extra)' for this config (\(configFile) and the weights disagree)")
        }
        for tensor in layout.tensors {
            guard let info = file.tensors[tensor.name] else { throw Safetensors.Error.missingTensor(path: path, name: tensor.name) }
            guard info.shape == tensor.shape else {
                throw Safetensors.Error.wrongShape(path: path, name: tensor.name, expected: tensor.shape, found: info.shape)
            }
        }
        try MemoryBudget.check(floats: layout.count, what: "the parameters of \(directory)")
        let buffer = FloatBuffer(count: layout.count)
        for tensor in layout.tensors {
            let p = buffer.pointer + tensor.offset
            try file.read(tensor.name, shape: tensor.shape, into: p)
            if let bad = firstNonFinite(p, count: tensor.count) {
                throw TransformerError.checkpoint(path: path, reason: "tensor '\(tensor.name)' holds \(p[bad]) at index \(bad): weights must be finite")
            }
        }
        return try TransformerModel(config: config, parameters: buffer)
    }

    /// The tokenizer shipped with the checkpoint, if any.
    public static func tokenizerPath(in directory: String) -> String? {
        let path = directory + "/" + tokenizerFile
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
}
