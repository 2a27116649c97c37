import Kernels

/// Every parameter of a model in one flat buffer, indexed by a table of named tensors (llm.c's
/// layout). Names are Hugging Face Llama's and shapes PyTorch's `[out, in]`, so a checkpoint is
/// the table written out. Tensors that one GEMM uses together are adjacent: q, k and v
/// projections form one `[qkvDim, d]` matrix, SwiGLU's gate and up one `[2 d_ff, d]`.
///
/// Each tensor has a group (what AdamW does with it) and a trainable flag. Gradients live in a
/// second flat buffer that holds only the trainable tensors, in the same order: when every
/// tensor trains, a tensor's gradient offset is its parameter offset.
public struct ParameterLayout: Sendable {
    /// What the optimizer does with a tensor.
    public enum Group: String, Sendable, Codable, CaseIterable {
        /// Weight matrices: AdamW with weight decay.
        case decay
        /// Norms, biases and embeddings: AdamW without weight decay.
        case noDecay = "no_decay"
        /// Low-rank adapter matrices (fine-tuning).
        case adapter
    }

    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        /// Where the tensor starts in the parameter buffer.
        public var offset: Int
        public var group: Group
        /// Where its gradient starts in the gradient buffer; nil when the tensor is frozen.
        public var gradientOffset: Int?
        public var count: Int { shape.reduce(1, *) }
        public var trainable: Bool { gradientOffset != nil }
        /// AdamW's default: no weight decay on norms, biases and embeddings.
        public var decays: Bool { group == .decay }
    }

    /// A norm's scale and, for LayerNorm with biases, its shift.
    public struct Norm: Sendable, Equatable {
        public var weight: Int
        public var bias: Int?
        public var weightGradient: Int?
        public var biasGradient: Int?
    }

    /// One block's tensors.
    public struct Layer: Sendable {
        public var norm1: Norm
        /// q, k and v projections as one product (`[qkvDim, d]`).
        public var qkv: Linear
        public var out: Linear
        public var norm2: Norm
        /// The MLP's first product: up, or SwiGLU's gate and up side by side (`[mlpInDim, d]`).
        public var up: Linear
        public var down: Linear
    }

    public private(set) var tensors: [Tensor] = []
    /// Floats in the parameter buffer.
    public private(set) var count = 0
    /// Floats in the gradient buffer (the trainable tensors).
    public private(set) var gradientCount = 0
    public private(set) var tokenEmbedding: Int = 0
    public private(set) var tokenEmbeddingGradient: Int?
    public private(set) var positionEmbedding: Int?
    public private(set) var positionEmbeddingGradient: Int?
    public private(set) var layers: [Layer] = []
    public private(set) var finalNorm = Norm(weight: 0)
    /// The output layer: the token embedding when tied.
    public private(set) var lmHead: Linear

    /// The layout of `c`, with every tensor trainable (`trainable` says otherwise per tensor name).
    public init(_ c: ModelConfig, trainable: (String) -> Bool = { _ in true }) {
        let d = c.dModel, hd = c.headDim
        lmHead = Linear(inFeatures: d, outFeatures: c.vocabularySize, weight: 0)
        var isTrainable = trainable
        func tensor(_ name: String, _ shape: [Int], _ group: Group) -> (Int, Int?) {
            let offset = count
            let gradient = isTrainable(name) ? gradientCount : nil
            tensors.append(Tensor(name: name, shape: shape, offset: offset, group: group, gradientOffset: gradient))
            let n = shape.reduce(1, *)
            count += n
            if gradient != nil { gradientCount += n }
            return (offset, gradient)
        }
        /// Tensors that one product uses together; all train or none do.
        func fused(_ names: [String], _ rows: [Int], columns: Int, _ group: Group) -> (Int, Int?) {
            let together = names.contains(where: isTrainable)
            let saved = isTrainable
            isTrainable = { _ in together }
            defer { isTrainable = saved }
            let first = tensor(names[0], columns == 0 ? [rows[0]] : [rows[0], columns], group)
            for (name, r) in zip(names.dropFirst(), rows.dropFirst()) {
                _ = tensor(name, columns == 0 ? [r] : [r, columns], group)
            }
            return first
        }
        func linear(_ names: [String], _ rows: [Int], inFeatures: Int) -> Linear {
            let (w, gw) = fused(names.map { $0 + ".weight" }, rows, columns: inFeatures, .decay)
            var layer = Linear(inFeatures: inFeatures, outFeatures: rows.reduce(0, +), weight: w, weightGradient: gw)
            if c.bias {
                (layer.bias, layer.biasGradient) = fused(names.map { $0 + ".bias" }, rows, columns: 0, .noDecay)
            }
            return layer
        }
        func norm(_ name: String) -> Norm {
            let (w, gw) = tensor(name + ".weight", [d], .noDecay)
            var n = Norm(weight: w, weightGradient: gw)
            if c.normHasBias { (n.bias, n.biasGradient) = tensor(name + ".bias", [d], .noDecay) }
            return n
        }

        (tokenEmbedding, tokenEmbeddingGradient) = tensor("model.embed_tokens.weight", [c.vocabularySize, d], .noDecay)
        if c.positions == .learned {
            (positionEmbedding, positionEmbeddingGradient) = tensor("model.embed_positions.weight", [c.contextLength, d], .noDecay)
        }
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            let norm1 = norm(p + "input_layernorm")
            let qkv = linear([p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"],
                             [c.heads * hd, c.kvHeads * hd, c.kvHeads * hd], inFeatures: d)
            let out = linear([p + "self_attn.o_proj"], [d], inFeatures: c.heads * hd)
            let norm2 = norm(p + "post_attention_layernorm")
            let up = c.activation == .swiglu
                ? linear([p + "mlp.gate_proj", p + "mlp.up_proj"], [c.dFF, c.dFF], inFeatures: d)
                : linear([p + "mlp.up_proj"], [c.dFF], inFeatures: d)
            let down = linear([p + "mlp.down_proj"], [d], inFeatures: c.dFF)
            layers.append(Layer(norm1: norm1, qkv: qkv, out: out, norm2: norm2, up: up, down: down))
        }
        finalNorm = norm("model.norm")
        if c.tiedEmbeddings {
            lmHead = Linear(inFeatures: d, outFeatures: c.vocabularySize, weight: tokenEmbedding,
                            weightGradient: tokenEmbeddingGradient)
        } else {
            let (w, gw) = tensor("lm_head.weight", [c.vocabularySize, d], .decay)
            lmHead = Linear(inFeatures: d, outFeatures: c.vocabularySize, weight: w, weightGradient: gw)
        }
    }

    /// The tensor called `name`.
    public func tensor(named name: String) -> Tensor? { tensors.first { $0.name == name } }

    /// Every linear product of one token's forward pass, in the order the model runs them: per
    /// block qkv, attention out, MLP up, MLP down; then the output layer.
    public var linears: [Linear] { layers.flatMap { [$0.qkv, $0.out, $0.up, $0.down] } + [lmHead] }
}
