import Foundation
import Kernels
import Support
import Tokenizer
import Transformer

/// TinyLM checkpoints as GGUF files llama.cpp runs: Llama-style models (RMSNorm, RoPE, SwiGLU,
/// no biases) as the `llama` architecture, with q/k rows permuted to llama.cpp's pairwise
/// rotation; GPT-2-style models (LayerNorm, learned positions, GELU, biases) as `gpt2`, with
/// q, k and v fused as `attn_qkv`. A SentencePiece tokenizer goes in as `tokenizer.ggml.model =
/// llama` (pieces, scores, token types, special ids).
public enum GGUFExport {
    /// Which architecture `config` exports to; an error names the option that fits neither.
    public static func architecture(of c: ModelConfig) throws -> String {
        if c.experts > 0 {
            // llama.cpp's `llama` runs Mixtral: SwiGLU experts in every block, renormalized top-k.
            if c.isMixtralCompatible { return "llama" }
            throw GGUFError.unsupported(path: "export", reason: """
                llama.cpp runs a mixture of experts as Mixtral: rmsnorm, rope, swiglu experts without biases in every block                 (moe_every 1) and renormalized top-k weights (norm_topk_prob true)
                """)
        }
        if c.norm == .rmsnorm && c.positions == .rope && c.activation == .swiglu && !c.bias { return "llama" }
        if c.norm == .layernorm && c.positions == .learned && c.activation == .gelu && c.bias && c.kvHeads == c.heads { return "gpt2" }
        throw GGUFError.unsupported(path: "export", reason: """
            this option mix has no llama.cpp architecture: llama needs rmsnorm, rope, swiglu and no biases; gpt2 needs \
            layernorm, learned positions, gelu, biases and no grouped-query attention (this model: \(c.norm.rawValue), \
            \(c.positions.rawValue), \(c.activation.rawValue), bias \(c.bias), \(c.kvHeads) of \(c.heads) kv heads)
            """)
    }

    /// The GGUF of `model` (matrices as `type`; norms, biases and position tables stay F32, as
    /// llama.cpp's converter keeps them).
    public static func gguf(_ model: TransformerModel, tokenizer: SentencePieceTokenizer?, type: GGMLType, name: String) throws -> GGUFWriter {
        try gguf(model, tokenizer: tokenizer, policy: QuantizationPolicy(type: type), name: name)
    }

    /// The GGUF of `model`, each matrix typed by `policy`; norms, biases and position tables stay F32.
    public static func gguf(_ model: TransformerModel, tokenizer: SentencePieceTokenizer?, policy: QuantizationPolicy,
                            name: String) throws -> GGUFWriter {
        guard !model.layout.isQuantized else {
            throw GGUFError.unsupported(path: "export", reason: "the model's weights are in quantized blocks; quantize its GGUF file instead")
        }
        let type = policy.type
        let c = model.config, arch = try architecture(of: c)
        var w = GGUFWriter()
        w.add("general.architecture", .string(arch))
        w.add("general.name", .string(name))
        w.add("general.file_type", .uint(QuantizationPolicy.fileType(type)))
        func u(_ key: String, _ v: Int) { w.add("\(arch).\(key)", .uint(UInt64(v))) }
        u("context_length", c.contextLength)
        u("embedding_length", c.dModel)
        u("block_count", c.layers)
        u("feed_forward_length", c.experts > 0 ? c.expertWidth : c.dFF)
        if c.experts > 0 {
            u("expert_count", c.experts)
            u("expert_used_count", c.expertsPerToken)
        }
        u("attention.head_count", c.heads)
        if arch == "llama" {
            u("attention.head_count_kv", c.kvHeads)
            w.add("llama.rope.freq_base", .float(c.ropeTheta))
            w.add("llama.attention.layer_norm_rms_epsilon", .float(c.normEps))
            u("rope.dimension_count", c.headDim)
            u("vocab_size", c.vocabularySize)
        } else {
            w.add("gpt2.attention.layer_norm_epsilon", .float(c.normEps))
        }
        if let tokenizer { try addTokenizer(tokenizer, vocabularySize: c.vocabularySize, to: &w) }

        let p = model.parameters.pointer, layout = model.layout, hd = c.headDim
        func values(_ name: String) -> UnsafeBufferPointer<Float> {
            let t = layout.tensor(named: name)!
            return UnsafeBufferPointer(start: p + t.offset, count: t.count)
        }
        func add(_ ggufName: String, _ data: UnsafeBufferPointer<Float>, shape: [Int], quantized: Bool) throws {
            let t: GGMLType = quantized ? policy.target(for: ggufName, shape: shape, current: .f32) : .f32
            w.add(tensor: ggufName, dimensions: shape.reversed(), type: t, data: try GGMLQuantize.encode(data, as: t))
        }
        func add(_ ggufName: String, _ name: String, quantized: Bool = true) throws {
            try add(ggufName, values(name), shape: layout.tensor(named: name)!.shape, quantized: quantized)
        }
        /// q or k rows from rotate-half order to llama.cpp's pairwise order.
        func permuted(_ name: String) -> [Float] {
            let t = layout.tensor(named: name)!
            return GGUFModel.llamaOrder(UnsafeBufferPointer(start: p + t.offset, count: t.count), rows: t.shape[0],
                                        columns: t.shape[1], headDim: hd)
        }
        try add("token_embd.weight", "model.embed_tokens.weight")
        if arch == "gpt2" {
            try add("position_embd.weight", "model.embed_positions.weight", quantized: false)
        }
        for i in 0..<c.layers {
            let m = "model.layers.\(i).", b = "blk.\(i)."
            try add(b + "attn_norm.weight", m + "input_layernorm.weight", quantized: false)
            try add(b + "ffn_norm.weight", m + "post_attention_layernorm.weight", quantized: false)
            if arch == "llama" {
                for (short, proj) in [("q", "q_proj"), ("k", "k_proj")] {
                    let shape = layout.tensor(named: m + "self_attn.\(proj).weight")!.shape
                    try permuted(m + "self_attn.\(proj).weight").withUnsafeBufferPointer { try add(b + "attn_\(short).weight", $0, shape: shape, quantized: true) }
                }
                try add(b + "attn_v.weight", m + "self_attn.v_proj.weight")
                try add(b + "attn_output.weight", m + "self_attn.o_proj.weight")
                if c.experts > 0 {
                    // The router, then each kind of expert matrix stacked over the experts ([E, out, in]).
                    let x = m + "block_sparse_moe."
                    try add(b + "ffn_gate_inp.weight", x + "gate.weight", quantized: false)
                    for (gguf, matrix) in [("ffn_gate_exps", "w1"), ("ffn_up_exps", "w3"), ("ffn_down_exps", "w2")] {
                        let shape = layout.tensor(named: x + "experts.0.\(matrix).weight")!.shape
                        let stacked = (0..<c.experts).flatMap { Array(values(x + "experts.\($0).\(matrix).weight")) }
                        try stacked.withUnsafeBufferPointer { data in
                            let t = policy.target(for: b + gguf + ".weight", shape: [c.experts * shape[0], shape[1]], current: .f32)
                            w.add(tensor: b + gguf + ".weight", dimensions: [shape[1], shape[0], c.experts], type: t,
                                  data: try GGMLQuantize.encode(data, as: t))
                        }
                    }
                } else {
                    try add(b + "ffn_gate.weight", m + "mlp.gate_proj.weight")
                    try add(b + "ffn_up.weight", m + "mlp.up_proj.weight")
                    try add(b + "ffn_down.weight", m + "mlp.down_proj.weight")
                }
            } else {
                try add(b + "attn_norm.bias", m + "input_layernorm.bias", quantized: false)
                try add(b + "ffn_norm.bias", m + "post_attention_layernorm.bias", quantized: false)
                // q, k, v are adjacent in the buffer: one [3d, d] matrix and one [3d] bias.
                let q = layout.tensor(named: m + "self_attn.q_proj.weight")!, qb = layout.tensor(named: m + "self_attn.q_proj.bias")!
                try add(b + "attn_qkv.weight", UnsafeBufferPointer(start: p + q.offset, count: 3 * q.count), shape: [3 * q.shape[0], q.shape[1]], quantized: true)
                try add(b + "attn_qkv.bias", UnsafeBufferPointer(start: p + qb.offset, count: 3 * qb.count), shape: [3 * qb.count], quantized: false)
                try add(b + "attn_output.weight", m + "self_attn.o_proj.weight")
                try add(b + "attn_output.bias", m + "self_attn.o_proj.bias", quantized: false)
                try add(b + "ffn_up.weight", m + "mlp.up_proj.weight")
                try add(b + "ffn_up.bias", m + "mlp.up_proj.bias", quantized: false)
                try add(b + "ffn_down.weight", m + "mlp.down_proj.weight")
                try add(b + "ffn_down.bias", m + "mlp.down_proj.bias", quantized: false)
            }
        }
        try add("output_norm.weight", "model.norm.weight", quantized: false)
        if arch == "gpt2" { try add("output_norm.bias", "model.norm.bias", quantized: false) }
        if !c.tiedEmbeddings { try add("output.weight", "lm_head.weight") }
        return w
    }

    /// The SentencePiece model as llama.cpp's `llama` vocabulary.
    static func addTokenizer(_ t: SentencePieceTokenizer, vocabularySize: Int, to w: inout GGUFWriter) throws {
        var tokens: [GGUFValue] = [], scores: [GGUFValue] = [], types: [GGUFValue] = []
        for id in 0..<vocabularySize {
            if id < t.vocabularySize {
                tokens.append(.string(try t.piece(for: Int32(id))))
                scores.append(.float(Double(t.score(of: Int32(id)))))
                let type: Int = switch t.type(of: Int32(id)) {
                case .unknown?: 2
                case .control?: 3
                case .userDefined?: 4
                case .unused?: 5
                case .byte?: 6
                default: 1
                }
                types.append(.int(Int64(type)))
            } else {
                // Rows past the tokenizer's pieces: placeholders llama.cpp never produces.
                tokens.append(.string("<unused\(id)>"))
                scores.append(.float(-1e9))
                types.append(.int(5))
            }
        }
        w.add("tokenizer.ggml.model", .string("llama"))
        w.add("tokenizer.ggml.tokens", .array(tokens))
        w.add("tokenizer.ggml.scores", .array(scores))
        w.add("tokenizer.ggml.token_type", .array(types))
        if t.bosID >= 0 { w.add("tokenizer.ggml.bos_token_id", .uint(UInt64(t.bosID))) }
        if t.eosID >= 0 { w.add("tokenizer.ggml.eos_token_id", .uint(UInt64(t.eosID))) }
        if t.unkID >= 0 { w.add("tokenizer.ggml.unknown_token_id", .uint(UInt64(t.unkID))) }
        w.add("tokenizer.ggml.add_bos_token", .bool(false))
        w.add("tokenizer.ggml.add_space_prefix", .bool(t.proto.addDummyPrefix))
    }
}
