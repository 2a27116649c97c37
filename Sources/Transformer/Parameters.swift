import Kernels
import Quantization

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
        /// Kept outside the parameter buffer in quantized blocks (`ParameterLayout.external`);
        /// such a tensor takes no room in the buffer, and is frozen.
        public var external = false
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
        /// In a mixture-of-experts block, its router and experts (`up` and `down` then have no outputs).
        public var mixture: Mixture? = nil
    }

    /// A mixture-of-experts MLP (Hugging Face Mixtral's `block_sparse_moe`).
    public struct Mixture: Sendable {
        /// The router: `[experts, d]`, no bias (`gate.weight`).
        public var router: Linear
        public var experts: [Expert]
    }

    /// One expert: an MLP like the dense one (`w1`/`w3` gate and up side by side, `w2` down).
    public struct Expert: Sendable {
        public var up: Linear
        public var down: Linear
    }

    public private(set) var tensors: [Tensor] = []
    /// Floats in the parameter buffer.
    public private(set) var count = 0
    /// Floats in the gradient buffer (the trainable tensors).
    public private(set) var gradientCount = 0
    public private(set) var tokenEmbedding: Int = 0
    /// The token embedding's quantized blocks, when it is kept outside the buffer.
    public private(set) var tokenEmbeddingBlocks: QuantizedMatrix?
    public private(set) var tokenEmbeddingGradient: Int?
    public private(set) var positionEmbedding: Int?
    public private(set) var positionEmbeddingGradient: Int?
    public private(set) var layers: [Layer] = []
    public private(set) var finalNorm = Norm(weight: 0)
    /// The output layer: the token embedding when tied.
    public private(set) var lmHead: Linear

    /// Weight matrices kept in quantized blocks by tensor name (none: every tensor is in the buffer).
    public private(set) var external: [String: QuantizedMatrix] = [:]

    /// The layout of `c` (and low-rank adapters on it, after the base tensors, so that a base
    /// checkpoint fills the front of the buffer), with every tensor trainable unless `trainable`
    /// says otherwise per tensor name. Tensors named in `external` (weight matrices: all the
    /// parts of a fused product or none) stay in their quantized blocks, frozen, outside the buffer.
    public init(_ c: ModelConfig, adapters: AdapterConfig? = nil, trainable: (String) -> Bool = { _ in true },
                external: [String: QuantizedMatrix] = [:]) {
        self.external = external
        let d = c.dModel, hd = c.headDim
        lmHead = Linear(inFeatures: d, outFeatures: c.vocabularySize, weight: 0)
        var isTrainable = trainable
        func tensor(_ name: String, _ shape: [Int], _ group: Group) -> (Int, Int?) {
            let offset = count
            if let blocks = external[name] {
                precondition(blocks.rows == shape[0] && blocks.columns == shape.dropFirst().reduce(1, *), "\(name): blocks of another shape")
                var t = Tensor(name: name, shape: shape, offset: offset, group: group, gradientOffset: nil)
                t.external = true
                tensors.append(t)
                return (offset, nil)
            }
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
        func linear(_ names: [String], _ rows: [Int], inFeatures: Int, bias: Bool = c.bias) -> Linear {
            let weights = names.map { $0 + ".weight" }
            let (w, gw) = fused(weights, rows, columns: inFeatures, .decay)
            var layer = Linear(inFeatures: inFeatures, outFeatures: rows.reduce(0, +), weight: w, weightGradient: gw)
            let blocks = weights.compactMap { external[$0] }
            precondition(blocks.isEmpty || blocks.count == weights.count, "a fused product is quantized whole or not at all")
            if !blocks.isEmpty { layer.blocks = blocks.count == 1 ? blocks[0] : QuantizedMatrix.stacking(blocks) }
            if bias {
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
        tokenEmbeddingBlocks = external["model.embed_tokens.weight"]
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
            if c.isMixture(i) {
                let m = p + "block_sparse_moe."
                let router = linear([m + "gate"], [c.experts], inFeatures: d, bias: false)
                let experts = (0..<c.experts).map { e in
                    let x = m + "experts.\(e)."
                    let up = c.activation == .swiglu
                        ? linear([x + "w1", x + "w3"], [c.expertWidth, c.expertWidth], inFeatures: d)
                        : linear([x + "w1"], [c.expertWidth], inFeatures: d)
                    return Expert(up: up, down: linear([x + "w2"], [d], inFeatures: c.expertWidth))
                }
                let none = Linear(inFeatures: d, outFeatures: 0, weight: 0)
                layers.append(Layer(norm1: norm1, qkv: qkv, out: out, norm2: norm2, up: none, down: none,
                                    mixture: Mixture(router: router, experts: experts)))
                continue
            }
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
            lmHead.blocks = tokenEmbeddingBlocks
        } else {
            let (w, gw) = tensor("lm_head.weight", [c.vocabularySize, d], .decay)
            lmHead = Linear(inFeatures: d, outFeatures: c.vocabularySize, weight: w, weightGradient: gw)
            lmHead.blocks = external["lm_head.weight"]
        }
        guard let adapters else { return }
        // Adapters: per adapted projection, lora_A [r, in] and lora_B [out, r] (PEFT's names).
        for i in adapters.layers(of: c) {
            let p = "model.layers.\(i)."
            func adapt(_ linear: inout Linear, _ parts: [(target: String, name: String, rows: Int)]) {
                var start = 0
                for part in parts {
                    defer { start += part.rows }
                    guard adapters.targets.contains(part.target) else { continue }
                    let (a, ga) = tensor(p + part.name + ".lora_A.weight", [adapters.rank, linear.inFeatures], .adapter)
                    let (b, gb) = tensor(p + part.name + ".lora_B.weight", [part.rows, adapters.rank], .adapter)
                    var adapter = LowRankAdapter(outputs: start..<(start + part.rows), rank: adapters.rank,
                                                 scale: adapters.scale, a: a, b: b, aGradient: ga, bGradient: gb)
                    adapter.dropout = Float(adapters.dropout)
                    linear.adapters.append(adapter)
                }
            }
            adapt(&layers[i].qkv, [("q", "self_attn.q_proj", c.heads * hd), ("k", "self_attn.k_proj", c.kvHeads * hd),
                                   ("v", "self_attn.v_proj", c.kvHeads * hd)])
            adapt(&layers[i].out, [("o", "self_attn.o_proj", d)])
            // Mixture blocks: every expert's matrices, when asked for (`experts`).
            if var mixture = layers[i].mixture {
                guard adapters.targets.contains("experts") else { continue }
                for e in mixture.experts.indices {
                    let x = "block_sparse_moe.experts.\(e)."
                    if c.activation == .swiglu {
                        adapt(&mixture.experts[e].up, [("experts", x + "w1", c.expertWidth), ("experts", x + "w3", c.expertWidth)])
                    } else {
                        adapt(&mixture.experts[e].up, [("experts", x + "w1", c.expertWidth)])
                    }
                    adapt(&mixture.experts[e].down, [("experts", x + "w2", d)])
                }
                layers[i].mixture = mixture
                continue
            }
            if c.activation == .swiglu {
                adapt(&layers[i].up, [("gate", "mlp.gate_proj", c.dFF), ("up", "mlp.up_proj", c.dFF)])
            } else {
                adapt(&layers[i].up, [("up", "mlp.up_proj", c.dFF)])
            }
            adapt(&layers[i].down, [("down", "mlp.down_proj", d)])
        }
    }

    /// Whether some tensors are kept in quantized blocks outside the buffer.
    public var isQuantized: Bool { !external.isEmpty }

    /// Floats of the base model (the adapters come after them).
    public var baseCount: Int { tensors.first { $0.group == .adapter }?.offset ?? count }

    /// The tensor called `name`.
    public func tensor(named name: String) -> Tensor? { tensors.first { $0.name == name } }

    /// Packs every frozen weight matrix held in `parameters` (not in quantized blocks) into bf16
    /// tile panels, so that `.bf16` products stop rounding and packing the same constant at every
    /// step: LoRA on an fp32 base. Trainable matrices change every step and are left alone; so is
    /// everything on a CPU without AMX-BF16. Returns the bytes the packed copies take.
    @discardableResult
    public mutating func packFrozenProducts(parameters p: UnsafePointer<Float>, pool: ThreadPool = .shared) -> Int {
        guard amxAvailable else { return 0 }
        var bytes = 0
        func pack(_ linear: inout Linear) {
            guard !linear.trainable, linear.blocks == nil, linear.packed == nil,
                  linear.inFeatures > 0, linear.outFeatures > 0 else { return }
            linear.packed = PackedWeight(p + linear.weight, outFeatures: linear.outFeatures, inFeatures: linear.inFeatures, pool: pool)
            bytes += linear.packed!.bytes
        }
        for i in layers.indices {
            pack(&layers[i].qkv)
            pack(&layers[i].out)
            pack(&layers[i].up)
            pack(&layers[i].down)
            if layers[i].mixture != nil {
                for e in layers[i].mixture!.experts.indices {
                    pack(&layers[i].mixture!.experts[e].up)
                    pack(&layers[i].mixture!.experts[e].down)
                }
            }
        }
        pack(&lmHead)
        return bytes
    }

    /// Every linear product of one token's forward pass, in the order the model runs them: per
    /// block qkv, attention out, MLP up, MLP down; then the output layer.
    /// A mixture block lists its router and every expert's products.
    public var linears: [Linear] {
        layers.flatMap { layer in
            [layer.qkv, layer.out] + (layer.mixture.map { [$0.router] + $0.experts.flatMap { [$0.up, $0.down] } } ?? [layer.up, layer.down])
        } + [lmHead]
    }
}

/// Low-rank adapters (LoRA) on a model's projections: which ones, their rank and scale.
public struct AdapterConfig: Codable, Sendable, Equatable {
    /// The projections that can be adapted, in Hugging Face's short names: the default targets.
    public static let allTargets = ["q", "k", "v", "o", "gate", "up", "down"]
    /// Every target: also `experts`, a mixture of experts' expert matrices (w1, w3, w2).
    public static let validTargets = allTargets + ["experts"]

    public var rank: Int
    public var alpha: Double
    /// Projections adapted (a subset of `allTargets`).
    public var targets: [String]
    /// Adapt only the last this many blocks (nil: all).
    public var lastLayers: Int?
    /// rsLoRA: scale by `alpha / √rank` instead of `alpha / rank`.
    public var rankStabilized = false
    /// Dropout on the adapters' input in training (PEFT's `lora_dropout`).
    public var dropout = 0.0

    public init(rank: Int, alpha: Double, targets: [String] = AdapterConfig.allTargets, lastLayers: Int? = nil,
                rankStabilized: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
        self.lastLayers = lastLayers
        self.rankStabilized = rankStabilized
    }

    /// The factor on the adapter's product.
    public var scale: Float { Float(rankStabilized ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }

    /// The blocks adapted in a model of config `c`.
    public func layers(of c: ModelConfig) -> Range<Int> {
        let n = min(c.layers, lastLayers ?? c.layers)
        return (c.layers - n)..<c.layers
    }

    /// Checks the fields; the error names the first bad one.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ reason: String) throws {
            if !ok { throw TransformerError.invalidConfig(source: "adapter", field: field, reason: reason) }
        }
        try check(rank > 0 && rank <= 4096, "rank", "must be in 1...4096, got \(rank)")
        try check(alpha.isFinite && alpha > 0, "alpha", "must be a positive number, got \(alpha)")
        try check(!targets.isEmpty, "targets", "must name at least one projection")
        for t in targets { try check(AdapterConfig.validTargets.contains(t), "targets", "'\(t)' is not one of \(AdapterConfig.validTargets.joined(separator: ", "))") }
        try check((lastLayers ?? 1) > 0, "num_layers", "must be positive")
        try check(dropout >= 0 && dropout < 1, "dropout", "must be in [0, 1), got \(dropout)")
    }
}
