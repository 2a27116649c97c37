import Kernels

/// Every parameter of a model in one flat buffer, indexed by a table of named tensors (llm.c's
/// layout). Names are Hugging Face Llama's and shapes PyTorch's `[out, in]`, so a checkpoint is
/// the table written out. Tensors that one GEMM uses together are adjacent: q, k and v
/// projections form one `[qkvDim, d]` matrix, SwiGLU's gate and up one `[2 d_ff, d]`.
public struct ParameterLayout: Sendable {
    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        public var offset: Int
        public var count: Int { shape.reduce(1, *) }
        /// AdamW's default: no weight decay on norms, biases and embeddings.
        public var decays: Bool
    }

    /// Offsets of one layer's tensors.
    public struct Layer: Sendable {
        public var norm1Weight = 0, norm1Bias = 0
        public var qkvWeight = 0, qkvBias = 0
        public var outWeight = 0, outBias = 0
        public var norm2Weight = 0, norm2Bias = 0
        public var upWeight = 0, upBias = 0
        public var downWeight = 0, downBias = 0
    }

    public private(set) var tensors: [Tensor] = []
    public private(set) var count = 0
    public var tokenEmbedding = 0, positionEmbedding = 0
    public var layers: [Layer] = []
    public var finalNormWeight = 0, finalNormBias = 0
    /// The output matrix: the token embedding when tied.
    public var lmHead = 0

    public init(_ c: ModelConfig) {
        let d = c.dModel, hd = c.headDim
        tokenEmbedding = add("model.embed_tokens.weight", [c.vocabularySize, d], decays: false)
        if c.positions == .learned {
            positionEmbedding = add("model.embed_positions.weight", [c.contextLength, d], decays: false)
        }
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            var layer = Layer()
            layer.norm1Weight = add(p + "input_layernorm.weight", [d], decays: false)
            if c.normHasBias { layer.norm1Bias = add(p + "input_layernorm.bias", [d], decays: false) }
            layer.qkvWeight = add(p + "self_attn.q_proj.weight", [c.heads * hd, d])
            _ = add(p + "self_attn.k_proj.weight", [c.kvHeads * hd, d])
            _ = add(p + "self_attn.v_proj.weight", [c.kvHeads * hd, d])
            if c.bias {
                layer.qkvBias = add(p + "self_attn.q_proj.bias", [c.heads * hd], decays: false)
                _ = add(p + "self_attn.k_proj.bias", [c.kvHeads * hd], decays: false)
                _ = add(p + "self_attn.v_proj.bias", [c.kvHeads * hd], decays: false)
            }
            layer.outWeight = add(p + "self_attn.o_proj.weight", [d, c.heads * hd])
            if c.bias { layer.outBias = add(p + "self_attn.o_proj.bias", [d], decays: false) }
            layer.norm2Weight = add(p + "post_attention_layernorm.weight", [d], decays: false)
            if c.normHasBias { layer.norm2Bias = add(p + "post_attention_layernorm.bias", [d], decays: false) }
            if c.activation == .swiglu {
                layer.upWeight = add(p + "mlp.gate_proj.weight", [c.dFF, d])
                _ = add(p + "mlp.up_proj.weight", [c.dFF, d])
                if c.bias {
                    layer.upBias = add(p + "mlp.gate_proj.bias", [c.dFF], decays: false)
                    _ = add(p + "mlp.up_proj.bias", [c.dFF], decays: false)
                }
            } else {
                layer.upWeight = add(p + "mlp.up_proj.weight", [c.dFF, d])
                if c.bias { layer.upBias = add(p + "mlp.up_proj.bias", [c.dFF], decays: false) }
            }
            layer.downWeight = add(p + "mlp.down_proj.weight", [d, c.dFF])
            if c.bias { layer.downBias = add(p + "mlp.down_proj.bias", [d], decays: false) }
            layers.append(layer)
        }
        finalNormWeight = add("model.norm.weight", [d], decays: false)
        if c.normHasBias { finalNormBias = add("model.norm.bias", [d], decays: false) }
        lmHead = c.tiedEmbeddings ? tokenEmbedding : add("lm_head.weight", [c.vocabularySize, d])
    }

    private mutating func add(_ name: String, _ shape: [Int], decays: Bool = true) -> Int {
        let tensor = Tensor(name: name, shape: shape, offset: count, decays: decays)
        tensors.append(tensor)
        count += tensor.count
        return tensor.offset
    }

    /// The tensor called `name`.
    public func tensor(named name: String) -> Tensor? { tensors.first { $0.name == name } }
}
