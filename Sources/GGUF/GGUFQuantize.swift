import Foundation
import Kernels
import Transformer
import Support

/// Which ggml type each tensor of a quantized file gets.
///
/// - Weight matrices take `type`. A matrix whose rows are not whole blocks of it falls back:
///   Q4_K (super-blocks of 256) to Q4_1, anything else to F16.
/// - The token embedding and the output layer take `embeddings` (Q8_0 by default for the 4-bit
///   types, as they are the most sensitive matrices and the output layer is read every token);
///   `nil` gives them `type` too.
/// - Vectors (norms, biases) stay as they are (F32).
public struct QuantizationPolicy: Sendable {
    public var type: GGMLType
    public var embeddings: GGMLType?
    /// Every tensor keeps the type it has (re-encoding only replaced tensors, e.g. after `fuse`).
    public var keepsTypes = false

    /// Each tensor keeps its current type.
    public static let keep: QuantizationPolicy = {
        var p = QuantizationPolicy(type: .f32)
        p.keepsTypes = true
        return p
    }()

    public init(type: GGMLType, embeddings: GGMLType? = nil) {
        self.type = type
        self.embeddings = embeddings
    }

    /// The documented default: embeddings and output at Q8_0 under a 4-bit type.
    public static func standard(_ type: GGMLType) -> QuantizationPolicy {
        QuantizationPolicy(type: type, embeddings: [.q4_0, .q4_1, .q4_K].contains(type) ? .q8_0 : type)
    }

    /// The type of GGUF tensor `name` of `shape` (PyTorch order) that is now `current`.
    public func target(for name: String, shape: [Int], current: GGMLType) -> GGMLType {
        guard shape.count == 2, !keepsTypes else { return current }
        let isEmbedding = name == "token_embd.weight" || name == "output.weight"
        let wanted = isEmbedding ? (embeddings ?? type) : type
        let columns = shape[1]
        if columns % wanted.blockSize == 0 { return wanted }
        if wanted == .q4_K && columns % 32 == 0 { return .q4_1 }
        return .f16
    }

    /// llama.cpp's `general.file_type` for a file mostly of `type`.
    public static func fileType(_ type: GGMLType) -> UInt64 {
        switch type {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q4_K: 14   // LLAMA_FTYPE_MOSTLY_Q4_K_S
        case .q6_K: 18
        case .bf16: 32
        }
    }
}

/// Re-encodes a GGUF file's tensors under a policy, as `llama-quantize` does: metadata (the
/// tokenizer, the chat template, the hyperparameters) is copied, each tensor is dequantized
/// exactly and quantized with ggml's reference quantizers, or copied when its type stays.
public enum GGUFQuantize {
    public struct Summary: Sendable {
        public var tensors: [(name: String, from: GGMLType, to: GGMLType)] = []
        public var bytesBefore = 0
        public var bytesAfter = 0
    }

    /// `file` re-encoded under `policy`; tensors named in `replacing` take those values (GGUF row
    /// order) instead of the file's.
    public static func requantize(_ file: GGUFFile, policy: QuantizationPolicy,
                                  replacing: [String: [Float]] = [:]) throws -> (GGUFWriter, Summary) {
        var w = GGUFWriter()
        var summary = Summary()
        for (key, value) in file.metadata where key != "general.alignment" && key != "general.file_type" {
            w.add(key, value)
        }
        if let type = file["general.file_type"], policy.keepsTypes {
            w.add("general.file_type", type)
        } else if !policy.keepsTypes {
            w.add("general.file_type", .uint(QuantizationPolicy.fileType(policy.type)))
        }
        for info in file.tensors {
            let target = policy.target(for: info.name, shape: info.shape, current: info.type)
            let data: [UInt8]
            if let values = replacing[info.name] {
                precondition(values.count == info.elementCount, "\(info.name): replacement of another size")
                data = try values.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: target) }
            } else if target == info.type {
                data = file.withBytes(of: info) { Array($0) }
            } else {
                try MemoryBudget.check(floats: info.elementCount, what: "tensor \(info.name) of \(file.path)")
                var values = [Float](repeating: 0, count: info.elementCount)
                values.withUnsafeMutableBufferPointer { file.read(info, into: $0.baseAddress!) }
                if let bad = values.withUnsafeBufferPointer({ firstNonFinite($0.baseAddress!, count: $0.count) }) {
                    throw GGUFError.invalid(path: file.path, field: info.name, reason: "holds \(values[bad]) at index \(bad): weights must be finite")
                }
                data = try values.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: target) }
            }
            w.add(tensor: info.name, dimensions: info.dimensions, type: target, data: data)
            summary.tensors.append((info.name, info.type, target))
            summary.bytesBefore += info.byteCount
            summary.bytesAfter += data.count
        }
        return (w, summary)
    }
}

/// Owns encoded blocks for matrices quantized in memory.
final class BlockStore: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ bytes: [UInt8]) {
        pointer = .allocate(byteCount: max(1, bytes.count), alignment: 64)
        pointer.copyMemory(from: bytes, byteCount: bytes.count)
    }
    deinit { pointer.deallocate() }
}

extension TransformerModel {
    /// This model with its weight matrices encoded under `policy` and kept in blocks, as a
    /// quantized GGUF of it would load (any architecture, no file): for measuring what a type
    /// costs. Matrices whose target type the integer kernels do not read (F16, F32) stay fp32.
    public func quantized(_ policy: QuantizationPolicy) throws -> (model: TransformerModel, bytes: Int) {
        guard adapters == nil, !layout.isQuantized else {
            throw GGUFError.unsupported(path: "quantize", reason: "quantize a plain fp32 model (fuse adapters first)")
        }
        let p = parameters.pointer
        var external: [String: QuantizedMatrix] = [:]
        var bytes = 0
        for tensor in layout.tensors {
            let gguf = tensor.name == "model.embed_tokens.weight" ? "token_embd.weight" : tensor.name == "lm_head.weight" ? "output.weight" : tensor.name
            let isMatrix = tensor.shape.count == 2 && tensor.name != "model.embed_positions.weight"
            let type = isMatrix ? policy.target(for: gguf, shape: tensor.shape, current: .f32) : .f32
            guard QuantizedMatrix.supports(type, columns: tensor.shape.last!), isMatrix else {
                bytes += 4 * tensor.count
                continue
            }
            let encoded = try GGMLQuantize.encode(UnsafeBufferPointer(start: p + tensor.offset, count: tensor.count), as: type)
            let store = BlockStore(encoded)
            external[tensor.name] = QuantizedMatrix(format: type, rows: tensor.shape[0], columns: tensor.shape[1], bytes: store.pointer, owner: store)
            bytes += encoded.count
        }
        // Fused products are quantized whole or not at all: drop partial groups back to fp32.
        let plain = ParameterLayout(config)
        for linear in plain.linears {
            let names = plain.tensors.filter { $0.offset >= linear.weight && $0.offset < linear.weight + linear.inFeatures * linear.outFeatures && $0.shape.count == 2 }.map(\.name)
            if names.contains(where: { external[$0] == nil }) {
                for name in names where external[name] != nil {
                    external[name] = nil
                    bytes += 4 * plain.tensor(named: name)!.count
                }
            }
        }
        let layout = ParameterLayout(config, external: external)
        let buffer = FloatBuffer(count: layout.count)
        for tensor in layout.tensors where !tensor.external {
            (buffer.pointer + tensor.offset).update(from: p + self.layout.tensor(named: tensor.name)!.offset, count: tensor.count)
        }
        return (try TransformerModel(config: config, parameters: buffer, external: external), bytes)
    }
}
