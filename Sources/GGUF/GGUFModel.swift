import Foundation
import Kernels
import Support
import Transformer

/// Llama-architecture GGUF files as TinyLM models: tensor names mapped to Hugging Face's, the
/// q/k row permutation of llama.cpp's converter undone, weights dequantized to fp32.
///
/// llama.cpp rotates pairs of adjacent values (2i, 2i+1) of each head; Hugging Face (and TinyLM)
/// rotate the two halves (i, i + hd/2). Its converter therefore reorders the rows of q and k in
/// each head from `[half, i]` to `[i, half]`; loading puts them back.
public enum GGUFModel {
    /// The GGUF tensor holding each TinyLM tensor of layer-free names, and per layer.
    static func ggufName(_ name: String) -> String? {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let n = fixed[name] { return n }
        let parts = name.split(separator: ".")
        guard parts.count >= 4, parts[0] == "model", parts[1] == "layers", let i = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        let map = ["input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                   "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                   "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                   "mlp.down_proj.weight": "ffn_down.weight"]
        return map[rest].map { "blk.\(i).\($0)" }
    }

    /// The model config a `llama` GGUF describes.
    public static func config(of file: GGUFFile) throws -> ModelConfig {
        let arch = try file.required("general.architecture", \.string, "a string")
        guard arch == "llama" else {
            throw GGUFError.unsupported(path: file.path, reason: "architecture '\(arch)' is not supported (llama is)")
        }
        func int(_ key: String) throws -> Int { try file.required(key, \.integer, "an integer") }
        let d = try int("llama.embedding_length")
        guard let embedding = file.tensor(named: "token_embd.weight"), embedding.dimensions.count == 2 else {
            throw GGUFError.invalid(path: file.path, field: "token_embd.weight", reason: "is missing or not a matrix")
        }
        let heads = try int("llama.attention.head_count")
        var c = ModelConfig(vocabularySize: embedding.dimensions[1], contextLength: min(try int("llama.context_length"), 1 << 16),
                            dModel: d, layers: try int("llama.block_count"), heads: heads,
                            kvHeads: file["llama.attention.head_count_kv"]?.integer ?? heads,
                            dFF: try int("llama.feed_forward_length"))
        c.useLlamaLayout()
        c.normEps = file["llama.attention.layer_norm_rms_epsilon"]?.number ?? 1e-5
        c.ropeTheta = file["llama.rope.freq_base"]?.number ?? 10_000
        c.tiedEmbeddings = file.tensor(named: "output.weight") == nil
        do {
            try c.validate(source: file.path)
        } catch {
            throw GGUFError.invalid(path: file.path, field: "llama.*", reason: "the hyperparameters do not make a valid model: \(error)")
        }
        if let rotary = file["llama.rope.dimension_count"]?.integer, rotary != c.headDim {
            throw GGUFError.unsupported(path: file.path, reason: "partial rotary embeddings (\(rotary) of \(c.headDim) dimensions) are not supported")
        }
        if let scaling = file["llama.rope.scaling.type"]?.string, scaling != "none" {
            throw GGUFError.unsupported(path: file.path, reason: "rope scaling '\(scaling)' is not supported")
        }
        return c
    }

    /// The weight matrices of `model` that `adapted` changes, under their GGUF names and in GGUF
    /// row order (q and k rows permuted back to llama.cpp's layout): what a fused model writes
    /// over its base file.
    public static func changedMatrices(of model: TransformerModel, adapted: AdapterConfig) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        let p = model.parameters.pointer, hd = model.config.headDim
        let short = ["q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                     "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"]
        for i in adapted.layers(of: model.config) {
            for target in adapted.targets {
                guard let module = short[target], let t = model.layout.tensor(named: "model.layers.\(i).\(module).weight"),
                      let name = ggufName(t.name) else { continue }
                let values = UnsafeBufferPointer(start: p + t.offset, count: t.count)
                out[name] = target == "q" || target == "k"
                    ? llamaOrder(values, rows: t.shape[0], columns: t.shape[1], headDim: hd) : Array(values)
            }
        }
        return out
    }

    /// How a GGUF's weight matrices are held in memory.
    public enum WeightStorage: String, Sendable, CaseIterable {
        /// Quantized matrices stay in their blocks in the mapped file (the integer kernels read
        /// them); other tensors are converted to fp32. Training's choice (QLoRA): its products
        /// take many rows at once and dequantize panels of rows.
        case quantized
        /// As `quantized`, but each run of 16 rows is copied out of the file interleaved
        /// (`QuantizedMatrix.packed()`: the same blocks, rearranged) and the file's pages
        /// released, so resident memory stays about the file's size: decoding's layout, where one
        /// vector instruction serves sixteen rows.
        case packed
        /// Every tensor is dequantized to fp32 (exact ggml dequantization): training of the
        /// whole model, and comparisons with references that dequantize.
        case fp32
    }

    /// The products whose weights are read together (q, k, v; gate and up), each kept quantized
    /// only when all of its parts can be.
    static func productGroups(_ c: ModelConfig) -> [[String]] {
        var groups: [[String]] = [["model.embed_tokens.weight"]]
        if !c.tiedEmbeddings { groups.append(["lm_head.weight"]) }
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            groups.append(["q_proj", "k_proj", "v_proj"].map { p + "self_attn.\($0).weight" })
            groups.append([p + "self_attn.o_proj.weight"])
            groups.append(c.activation == .swiglu ? [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"] : [p + "mlp.up_proj.weight"])
            groups.append([p + "mlp.down_proj.weight"])
        }
        return groups
    }

    /// llama.cpp's q/k row order: Hugging Face row `h·hd + half·hd/2 + j` is stored row
    /// `h·hd + 2j + half`.
    static func unpermutedOrder(rows: Int, headDim hd: Int) -> [Int] {
        (0..<rows).map { r in
            let h = r / hd, within = r % hd, half = within / (hd / 2), j = within % (hd / 2)
            return h * hd + 2 * j + half
        }
    }

    /// `values` (`rows` rows of `columns`, Hugging Face's q/k row order) in llama.cpp's order:
    /// the inverse of `unpermutedOrder`, for writing q and k (or their adapters' B) to GGUF.
    static func llamaOrder(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int, headDim: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        for (row, stored) in unpermutedOrder(rows: rows, headDim: headDim).enumerated() {
            for c in 0..<columns { out[stored * columns + c] = values[row * columns + c] }
        }
        return out
    }

    /// Loads a `llama` GGUF as a model whose weights are held as `storage` says.
    public static func load(_ file: GGUFFile, storage: WeightStorage = .fp32) throws -> TransformerModel {
        let config = try config(of: file)
        let plain = ParameterLayout(config)
        // Every tensor by name and shape before any buffer exists.
        var sources: [String: GGUFTensorInfo] = [:]
        for tensor in plain.tensors {
            guard let name = ggufName(tensor.name), let info = file.tensor(named: name) else {
                throw GGUFError.invalid(path: file.path, field: ggufName(tensor.name) ?? tensor.name, reason: "the tensor is missing")
            }
            guard info.shape == tensor.shape || (tensor.shape.count == 1 && info.elementCount == tensor.count) else {
                throw GGUFError.invalid(path: file.path, field: info.name, reason: "shape \(info.shape), the model needs \(tensor.shape)")
            }
            sources[tensor.name] = info
        }
        let hd = config.headDim
        func isPermuted(_ name: String) -> Bool { name.hasSuffix("q_proj.weight") || name.hasSuffix("k_proj.weight") }
        var external: [String: QuantizedMatrix] = [:]
        let arena = LargePageArena()  // the packed copies, in huge pages
        if storage != .fp32 {
            for group in productGroups(config) {
                let infos = group.map { sources[$0]! }
                guard infos.allSatisfy({ QuantizedMatrix.supports($0.type, columns: $0.dimensions[0]) }) else { continue }
                for (name, info) in zip(group, infos) {
                    let order = isPermuted(name) ? unpermutedOrder(rows: info.dimensions[1], headDim: hd) : nil
                    let matrix = file.withBytes(of: info) {
                        QuantizedMatrix(format: info.type, rows: info.dimensions[1], columns: info.dimensions[0],
                                        bytes: $0.baseAddress!, order: order, owner: file)
                    }
                    if let block = matrix.firstNonFiniteScale() {
                        throw GGUFError.invalid(path: file.path, field: info.name, reason: "block \(block) has a non-finite scale: weights must be finite")
                    }
                    if storage == .packed {
                        // Rows in file order are released as they are copied (the embedding alone
                        // is a third of SmolLM2); permuted q/k rows, small, at the end.
                        let rowBytes = info.byteCount / info.dimensions[1]
                        external[name] = matrix.packed(into: arena) { rows in
                            if order == nil { file.release(info, bytes: (rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)) }
                        }
                        file.release(info)
                    } else {
                        external[name] = matrix
                    }
                }
            }
        }
        let layout = ParameterLayout(config, external: external)
        try MemoryBudget.check(floats: layout.count, what: "the \(layout.count) parameters of \(file.path)")
        let buffer = FloatBuffer(count: layout.count)
        for tensor in layout.tensors where !tensor.external {
            let info = sources[tensor.name]!
            let p = buffer.pointer + tensor.offset
            if isPermuted(tensor.name) {
                let columns = tensor.shape[1], order = unpermutedOrder(rows: tensor.shape[0], headDim: hd)
                Scratch.withFloats(tensor.count) { raw in
                    file.read(info, into: raw)
                    for (row, stored) in order.enumerated() { (p + row * columns).update(from: raw + stored * columns, count: columns) }
                }
            } else {
                file.read(info, into: p)
            }
            if let bad = firstNonFinite(p, count: tensor.count) {
                throw GGUFError.invalid(path: file.path, field: info.name, reason: "holds \(p[bad]) at index \(bad): weights must be finite")
            }
        }
        // Every tensor has been copied out (packed blocks, fp32 norms): drop whatever pages of
        // the tensor data reading them faulted in around small tensors, which their own
        // releases (whole pages only) cannot.
        if storage != .quantized { file.releaseTensorData() }
        return try TransformerModel(config: config, parameters: buffer, external: external)
    }
}
