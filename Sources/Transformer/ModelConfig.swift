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

    public var headDim: Int { dModel / heads }
    /// Width of the fused q, k, v projection output.
    public var qkvDim: Int { (heads + 2 * kvHeads) * headDim }
    /// Width of the first MLP projection output (gate and up side by side for SwiGLU).
    public var mlpInDim: Int { activation == .swiglu ? 2 * dFF : dFF }
    public var normHasBias: Bool { norm == .layernorm && bias }

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", contextLength = "context_length", dModel = "d_model"
        case layers = "n_layers", heads = "n_heads", kvHeads = "n_kv_heads", dFF = "d_ff"
        case norm, normEps = "norm_eps", positions, ropeTheta = "rope_theta", activation, bias
        case tiedEmbeddings = "tied_embeddings", dropout, initStd = "init_std"
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
    }

    /// The presets. `tiny` and `small` are the peer benchmark's shapes.
    public static let presets: [String: ModelConfig] = [
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
        return (try? encoder.encode(self)) ?? Data()
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
    }
}
