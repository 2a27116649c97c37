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
        c.norm = .rmsnorm
        c.normEps = file["llama.attention.layer_norm_rms_epsilon"]?.number ?? 1e-5
        c.positions = .rope
        c.ropeTheta = file["llama.rope.freq_base"]?.number ?? 10_000
        c.activation = .swiglu
        c.bias = false
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

    /// Loads a `llama` GGUF as an fp32 model.
    public static func load(_ file: GGUFFile) throws -> TransformerModel {
        let config = try config(of: file)
        let layout = ParameterLayout(config)
        // Every tensor by name and shape before the buffer exists.
        var sources: [(ParameterLayout.Tensor, GGUFTensorInfo)] = []
        for tensor in layout.tensors {
            guard let name = ggufName(tensor.name), let info = file.tensor(named: name) else {
                throw GGUFError.invalid(path: file.path, field: ggufName(tensor.name) ?? tensor.name, reason: "the tensor is missing")
            }
            guard info.shape == tensor.shape || (tensor.shape.count == 1 && info.elementCount == tensor.count) else {
                throw GGUFError.invalid(path: file.path, field: info.name, reason: "shape \(info.shape), the model needs \(tensor.shape)")
            }
            sources.append((tensor, info))
        }
        try MemoryBudget.check(floats: layout.count, what: "the \(layout.count) parameters of \(file.path)")
        let buffer = FloatBuffer(count: layout.count)
        let hd = config.headDim
        for (tensor, info) in sources {
            let p = buffer.pointer + tensor.offset
            if tensor.name.hasSuffix("q_proj.weight") || tensor.name.hasSuffix("k_proj.weight") {
                let columns = tensor.shape[1], heads = tensor.shape[0] / hd
                Scratch.withFloats(tensor.count) { raw in
                    file.read(info, into: raw)
                    for h in 0..<heads {
                        for j in 0..<(hd / 2) {
                            for half in 0..<2 {
                                (p + (h * hd + half * hd / 2 + j) * columns).update(from: raw + (h * hd + 2 * j + half) * columns, count: columns)
                            }
                        }
                    }
                }
            } else {
                file.read(info, into: p)
            }
            if let bad = firstNonFinite(p, count: tensor.count) {
                throw GGUFError.invalid(path: file.path, field: info.name, reason: "holds \(p[bad]) at index \(bad): weights must be finite")
            }
        }
        return try TransformerModel(config: config, parameters: buffer)
    }
}
