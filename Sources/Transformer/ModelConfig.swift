import Foundation

/// The shape and options of a decoder-only transformer; also the checkpoint's `config.json`.
public struct ModelConfig: Codable, Equatable, Sendable {
    public enum Norm: String, Codable, Sendable { case layernorm, rmsnorm }
    public enum Positions: String, Codable, Sendable { case learned, rope }
    public enum Activation: String, Codable, Sendable { case gelu, swiglu }

    public var vocabularySize: Int
    public var contextLength: Int
    public var dModel: Int
    public var layers: Int
    public var heads: Int
    /// Key/value heads; fewer than `heads` is grouped-query attention.
    public var kvHeads: Int
    public var dFF: Int
    public var norm: Norm = .layernorm
    public var normEps: Double = 1e-5
    public var positions: Positions = .learned
    public var ropeTheta: Double = 10_000
    public var activation: Activation = .gelu
    /// Biases on the linear layers (and on LayerNorm).
    public var bias = true
    /// The output layer reuses the token embedding.
    public var tiedEmbeddings = true
    /// Dropout probability on the embeddings and on each residual branch, in training only.
    public var dropout: Double = 0
    /// Standard deviation of the initial weights; residual output projections get
    /// `initStd / sqrt(2 * layers)` (GPT-2).
    public var initStd: Double = 0.02

    // Mixture of experts (Mixtral's sparse MLP): with `experts > 0`, the MLP of every
    // `moeEvery`-th block is `experts` SwiGLU/GELU MLPs of width `expertDFF`, and a router sends
    // each token to its top `expertsPerToken`.
    /// Experts per mixture layer (0: every block is dense).
    public var experts = 0
    public var expertsPerToken = 2
    /// Blocks `moeEvery - 1, 2·moeEvery - 1, …` are mixtures (Qwen2-MoE's `decoder_sparse_step`); the rest dense.
    public var moeEvery = 1
    /// Each expert's MLP width (default `d_ff`).
    public var expertDFF: Int?
    /// Weight of the load-balancing loss (Hugging Face's `load_balancing_loss_func`) in training.
    public var routerAuxLossCoef: Double = 0.01
    /// The load-balancing loss per mixture block, averaged over blocks (Switch Transformer), instead
    /// of Hugging Face's over every block's tokens pooled (the default). Pooled, an expert idle in one
    /// block is hidden by the same-numbered expert busy in another, so only the per-block loss keeps
    /// every block balanced. Training only: the model and its files are the same either way.
    public var routerAuxLossPerLayer = false
    /// Weight of the router z-loss (ST-MoE: mean of logsumexp(router logits)²) in training.
    public var routerZLossCoef: Double = 0.001
    /// Training only: the mixture's input is multiplied by noise uniform in [1 - jitter, 1 + jitter] (Mixtral).
    public var routerJitter: Double = 0
    /// Renormalize the top-k routing weights to sum to 1 (Mixtral); false keeps the raw softmax
    /// probabilities (Qwen2-MoE, OLMoE).
    public var normalizeTopK = true

    /// Whether block `layer` is a mixture of experts.
    public func isMixture(_ layer: Int) -> Bool { experts > 0 && (layer + 1) % moeEvery == 0 }
    /// The width of each expert's MLP.
    public var expertWidth: Int { expertDFF ?? dFF }
    /// Width of an expert's first product (gate and up side by side for SwiGLU).
    public var expertInDim: Int { activation == .swiglu ? 2 * expertWidth : expertWidth }
    /// Whether some blocks have the dense MLP.
    var hasDenseMLP: Bool { experts == 0 || moeEvery > 1 }
    /// MLP activations per token, before and after the activation function: the dense MLP's, or
    /// `expertsPerToken` experts' in a mixture, whichever is wider.
    var mlpInPerToken: Int { max(hasDenseMLP ? mlpInDim : 0, experts > 0 ? expertsPerToken * expertInDim : 0) }
    var mlpActPerToken: Int { max(hasDenseMLP ? dFF : 0, experts > 0 ? expertsPerToken * expertWidth : 0) }
    /// Block `layer`'s index among the mixture blocks.
    func mixtureIndex(_ layer: Int) -> Int { (layer + 1) / moeEvery - 1 }
    /// Mixture layers in the model.
    public var mixtureLayers: Int { (0..<layers).filter(isMixture).count }

    public var headDim: Int { dModel / heads }
    /// Width of the fused q, k, v projection output.
    public var qkvDim: Int { (heads + 2 * kvHeads) * headDim }
    /// Width of the first MLP projection output (gate and up side by side for SwiGLU).
    public var mlpInDim: Int { activation == .swiglu ? 2 * dFF : dFF }
    public var normHasBias: Bool { norm == .layernorm && bias }

    /// The layer options of Llama-family models: RMSNorm, rotary positions, SwiGLU, no biases.
    public mutating func useLlamaLayout() {
        norm = .rmsnorm
        positions = .rope
        activation = .swiglu
        bias = false
    }

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", contextLength = "context_length", dModel = "d_model"
        case layers = "n_layers", heads = "n_heads", kvHeads = "n_kv_heads", dFF = "d_ff"
        case norm, normEps = "norm_eps", positions, ropeTheta = "rope_theta", activation, bias
        case tiedEmbeddings = "tied_embeddings", dropout, initStd = "init_std"
        // Mixture of experts, with Hugging Face Mixtral's names where it has one.
        case experts = "num_local_experts", expertsPerToken = "num_experts_per_tok", moeEvery = "moe_every"
        case expertDFF = "d_ff_expert", routerAuxLossCoef = "router_aux_loss_coef", routerZLossCoef = "router_z_loss_coef"
        case routerJitter = "router_jitter", normalizeTopK = "norm_topk_prob"
        case routerAuxLossPerLayer = "router_aux_loss_per_layer"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabularySize, forKey: .vocabularySize)
        try c.encode(contextLength, forKey: .contextLength)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(layers, forKey: .layers)
        try c.encode(heads, forKey: .heads)
        try c.encode(kvHeads, forKey: .kvHeads)
        try c.encode(dFF, forKey: .dFF)
        try c.encode(norm, forKey: .norm)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(positions, forKey: .positions)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(activation, forKey: .activation)
        try c.encode(bias, forKey: .bias)
        try c.encode(tiedEmbeddings, forKey: .tiedEmbeddings)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(initStd, forKey: .initStd)
        if experts > 0 {
            try c.encode(experts, forKey: .experts)
            try c.encode(expertsPerToken, forKey: .expertsPerToken)
            try c.encode(moeEvery, forKey: .moeEvery)
            try c.encode(expertWidth, forKey: .expertDFF)
            try c.encode(routerAuxLossCoef, forKey: .routerAuxLossCoef)
            try c.encode(routerAuxLossPerLayer, forKey: .routerAuxLossPerLayer)
            try c.encode(routerZLossCoef, forKey: .routerZLossCoef)
            try c.encode(routerJitter, forKey: .routerJitter)
            try c.encode(normalizeTopK, forKey: .normalizeTopK)
        }
        // A Llama- or Mixtral-shaped model also describes itself as Hugging Face's config does,
        // so that `LlamaForCausalLM` / `MixtralForCausalLM.from_pretrained` load the checkpoint
        // directory as it is.
        guard isLlamaCompatible || isMixtralCompatible else { return }
        var hf = encoder.container(keyedBy: HuggingFaceKeys.self)
        try hf.encode(experts > 0 ? "mixtral" : "llama", forKey: .modelType)
        try hf.encode([experts > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM"], forKey: .architectures)
        try hf.encode(dModel, forKey: .hiddenSize)
        try hf.encode(experts > 0 ? expertWidth : dFF, forKey: .intermediateSize)
        try hf.encode(layers, forKey: .hiddenLayers)
        try hf.encode(heads, forKey: .attentionHeads)
        try hf.encode(kvHeads, forKey: .keyValueHeads)
        try hf.encode(contextLength, forKey: .maxPositions)
        try hf.encode(normEps, forKey: .rmsNormEps)
        try hf.encode(tiedEmbeddings, forKey: .tieWordEmbeddings)
        try hf.encode("silu", forKey: .hiddenAct)
        if experts > 0 {
            try hf.encode(true, forKey: .outputRouterLogits)
        } else {
            try hf.encode(false, forKey: .attentionBias)
            try hf.encode(false, forKey: .mlpBias)
        }
    }

    /// Hugging Face `LlamaConfig`/`MixtralConfig` fields TinyLM writes but does not read (its own names carry them).
    private enum HuggingFaceKeys: String, CodingKey {
        case modelType = "model_type", architectures, hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case hiddenLayers = "num_hidden_layers", attentionHeads = "num_attention_heads", keyValueHeads = "num_key_value_heads"
        case maxPositions = "max_position_embeddings", rmsNormEps = "rms_norm_eps", tieWordEmbeddings = "tie_word_embeddings"
        case hiddenAct = "hidden_act", outputRouterLogits = "output_router_logits"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias"
    }

    /// Whether the model is what Hugging Face's Llama computes: RMSNorm, RoPE, SwiGLU, no biases.
    public var isLlamaCompatible: Bool {
        experts == 0 && norm == .rmsnorm && positions == .rope && activation == .swiglu && !bias
    }

    /// Whether the model is what Hugging Face's Mixtral computes: RMSNorm, RoPE, SwiGLU experts
    /// without biases in every block, renormalized top-k weights.
    public var isMixtralCompatible: Bool {
        experts > 0 && moeEvery == 1 && normalizeTopK && norm == .rmsnorm && positions == .rope && activation == .swiglu && !bias
    }

    public init(vocabularySize: Int, contextLength: Int, dModel: Int, layers: Int, heads: Int,
                kvHeads: Int? = nil, dFF: Int? = nil) {
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.dModel = dModel
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        self.dFF = dFF ?? 4 * dModel
    }

    /// Missing optional keys take their defaults, so a config file can name just the shape.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabularySize = try c.decode(Int.self, forKey: .vocabularySize)
        contextLength = try c.decode(Int.self, forKey: .contextLength)
        dModel = try c.decode(Int.self, forKey: .dModel)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? heads
        // An absurd d_model must reach validate() (which names it), not overflow here.
        let defaultFF = dModel.multipliedReportingOverflow(by: 4)
        dFF = try c.decodeIfPresent(Int.self, forKey: .dFF) ?? (defaultFF.overflow ? Int.max : defaultFF.partialValue)
        norm = try c.decodeIfPresent(Norm.self, forKey: .norm) ?? .layernorm
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? 1e-5
        positions = try c.decodeIfPresent(Positions.self, forKey: .positions) ?? .learned
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10_000
        activation = try c.decodeIfPresent(Activation.self, forKey: .activation) ?? .gelu
        bias = try c.decodeIfPresent(Bool.self, forKey: .bias) ?? true
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? true
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout) ?? 0
        initStd = try c.decodeIfPresent(Double.self, forKey: .initStd) ?? 0.02
        experts = try c.decodeIfPresent(Int.self, forKey: .experts) ?? 0
        expertsPerToken = try c.decodeIfPresent(Int.self, forKey: .expertsPerToken) ?? 2
        moeEvery = try c.decodeIfPresent(Int.self, forKey: .moeEvery) ?? 1
        expertDFF = try c.decodeIfPresent(Int.self, forKey: .expertDFF)
        routerAuxLossCoef = try c.decodeIfPresent(Double.self, forKey: .routerAuxLossCoef) ?? 0.01
        routerAuxLossPerLayer = try c.decodeIfPresent(Bool.self, forKey: .routerAuxLossPerLayer) ?? false
        routerZLossCoef = try c.decodeIfPresent(Double.self, forKey: .routerZLossCoef) ?? 0.001
        routerJitter = try c.decodeIfPresent(Double.self, forKey: .routerJitter) ?? 0
        normalizeTopK = try c.decodeIfPresent(Bool.self, forKey: .normalizeTopK) ?? true
    }

    /// The Llama-style `small` of the mixture-of-experts benchmark: RMSNorm, RoPE, SwiGLU, no
    /// biases, tied embeddings (the shapes of `hf_moe_train_bench.py`).
    private static func llamaSmall(dFF: Int, experts: Int = 0) -> ModelConfig {
        var c = ModelConfig(vocabularySize: 8192, contextLength: 256, dModel: 384, layers: 6, heads: 6, dFF: dFF)
        c.useLlamaLayout()
        c.experts = experts
        return c
    }

    private static func tinyMoE() -> ModelConfig {
        var c = ModelConfig(vocabularySize: 4096, contextLength: 128, dModel: 128, layers: 4, heads: 4, dFF: 256)
        c.useLlamaLayout()
        c.experts = 4
        return c
    }

    /// The presets. `tiny` and `small` are the peer benchmark's shapes; `small-moe` (8 experts of
    /// width 512, top 2, in every block) and `small-dense` (one SwiGLU MLP of width 1024: the same
    /// active width) those of the mixture-of-experts benchmark.
    public static let presets: [String: ModelConfig] = [
        "tiny-moe": tinyMoE(),
        "small-moe": llamaSmall(dFF: 512, experts: 8),
        "small-dense": llamaSmall(dFF: 1024),
        // 1.3M parameters.
        "tiny": ModelConfig(vocabularySize: 4096, contextLength: 128, dModel: 128, layers: 4, heads: 4),
        // 13.9M parameters: vocab 8192, ctx 256, d 384, 6 layers, 6 heads.
        "small": ModelConfig(vocabularySize: 8192, contextLength: 256, dModel: 384, layers: 6, heads: 6),
        // 29.7M parameters.
        "base": ModelConfig(vocabularySize: 8192, contextLength: 512, dModel: 512, layers: 9, heads: 8),
    ]

    /// A preset by name, or a JSON file.
    public static func load(_ nameOrPath: String) throws -> ModelConfig {
        if let preset = presets[nameOrPath] { return preset }
        guard FileManager.default.fileExists(atPath: nameOrPath) else {
            throw TransformerError.invalidConfig(source: nameOrPath, field: "config",
                reason: "neither a preset (\(presets.keys.sorted().joined(separator: ", "))) nor an existing file")
        }
        return try decode(Data(contentsOf: URL(fileURLWithPath: nameOrPath)), source: nameOrPath)
    }

    /// Decodes and validates JSON; errors name the source and the field.
    public static func decode(_ data: Data, source: String) throws -> ModelConfig {
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw TransformerError.invalidConfig(source: source, field: key.stringValue, reason: "is missing")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw TransformerError.invalidConfig(source: source, field: context.codingPath.map(\.stringValue).joined(separator: "."),
                                                 reason: "has the wrong type")
        } catch let DecodingError.dataCorrupted(context) {
            var field = context.codingPath.map(\.stringValue).joined(separator: ".")
            var reason = field.isEmpty ? "is not valid JSON" : "has an invalid value"
            // Some decoders report a number that does not fit its field (12.5 for an integer)
            // with no field named; valid JSON then has a field to blame.
            if field.isEmpty, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                let integers: [CodingKeys] = [.vocabularySize, .contextLength, .dModel, .layers, .heads, .kvHeads, .dFF]
                if let key = integers.first(where: { key in
                    guard let value = object[key.rawValue] as? NSNumber else { return false }
                    return value.doubleValue != value.doubleValue.rounded() || abs(value.doubleValue) > 9e15
                }) {
                    field = key.rawValue
                    reason = "must be a whole number, got \(object[key.rawValue]!)"
                } else {
                    reason = "has a value of the wrong kind: \(context.debugDescription)"
                    field = "(file)"
                }
            }
            throw TransformerError.invalidConfig(source: source, field: field.isEmpty ? "(file)" : field, reason: reason)
        }
        try config.validate(source: source)
        return config
    }

    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(self) else { return Data() }
        guard isLlamaCompatible || isMixtralCompatible, var text = String(data: data, encoding: .utf8) else { return data }
        // Hugging Face's config classes reject a whole number where they declare a float, and
        // JSONEncoder writes 0.0 as 0: give those fields their decimal point.
        for key in ["router_aux_loss_coef", "rms_norm_eps", "norm_eps", "rope_theta"] {
            text = text.replacingOccurrences(of: "(\"\(key)\" : -?[0-9]+)(,?\n)", with: "$1.0$2", options: .regularExpression)
        }
        return Data(text.utf8)
    }

    /// Checks every field; the error names the first bad one.
    public func validate(source: String = "config") throws {
        func check(_ ok: Bool, _ field: String, _ reason: String) throws {
            if !ok { throw TransformerError.invalidConfig(source: source, field: field, reason: reason) }
        }
        try check(vocabularySize > 0 && vocabularySize <= 1 << 24, "vocab_size", "must be in 1...16777216, got \(vocabularySize)")
        try check(contextLength > 0 && contextLength <= 1 << 16, "context_length", "must be in 1...65536, got \(contextLength)")
        try check(dModel > 0 && dModel <= 1 << 14, "d_model", "must be in 1...16384, got \(dModel)")
        try check(layers > 0 && layers <= 256, "n_layers", "must be in 1...256, got \(layers)")
        try check(heads > 0 && dModel % heads == 0, "n_heads", "must be positive and divide d_model (\(dModel)), got \(heads)")
        try check(kvHeads > 0 && heads % kvHeads == 0, "n_kv_heads", "must be positive and divide n_heads (\(heads)), got \(kvHeads)")
        try check(dFF > 0 && dFF <= 1 << 16, "d_ff", "must be in 1...65536, got \(dFF)")
        try check(normEps > 0 && normEps < 1, "norm_eps", "must be in (0, 1), got \(normEps)")
        try check(positions == .learned || headDim % 2 == 0, "n_heads", "rope needs an even head dimension, got \(headDim)")
        try check(ropeTheta > 1, "rope_theta", "must be greater than 1, got \(ropeTheta)")
        try check(dropout >= 0 && dropout < 1, "dropout", "must be in [0, 1), got \(dropout)")
        try check(initStd > 0 && initStd < 10, "init_std", "must be in (0, 10), got \(initStd)")
        try check(experts >= 0 && experts <= 256, "num_local_experts", "must be in 0...256, got \(experts)")
        guard experts > 0 else { return }
        try check(expertsPerToken >= 1 && expertsPerToken <= experts, "num_experts_per_tok", "must be in 1...\(experts), got \(expertsPerToken)")
        try check(moeEvery >= 1 && moeEvery <= layers, "moe_every", "must be in 1...\(layers), got \(moeEvery)")
        try check(expertWidth > 0 && expertWidth <= 1 << 16, "d_ff_expert", "must be in 1...65536, got \(expertWidth)")
        try check(routerAuxLossCoef.isFinite && routerAuxLossCoef >= 0, "router_aux_loss_coef", "must be a non-negative number, got \(routerAuxLossCoef)")
        try check(routerZLossCoef.isFinite && routerZLossCoef >= 0, "router_z_loss_coef", "must be a non-negative number, got \(routerZLossCoef)")
        try check(routerJitter >= 0 && routerJitter < 1, "router_jitter", "must be in [0, 1), got \(routerJitter)")
    }
}
