import Testing
@testable import Transformer

@Suite("decode benchmark: bytes a decoded token reads")
struct DecodeBenchmarkTests {
    /// Every product of a dense model is some phase's, once: the phases' weights add up to the
    /// layout's list of products, each counted at four bytes a weight.
    @Test("the products' phases add up to every product's weights", arguments: Variant.all)
    func products(_ variant: Variant) throws {
        let model = try TransformerModel(config: variant.config, seed: 1)
        let read = DecodeBenchmark.bytesReadPerToken(model: model, promptTokens: 3, genTokens: 2, kvBits: .fp32)
        let phases = ["qkv", "attention out", "mlp up", "mlp down", "lm head"].map { read[$0] ?? 0 }.reduce(0, +)
        let expected = model.layout.linears.map { 4.0 * Double($0.inFeatures * $0.outFeatures) }.reduce(0, +)
        #expect(phases == expected)
        #expect(Set(read.keys) == ["qkv", "attention", "attention out", "mlp up", "mlp down", "lm head"])
    }

    /// A mixture block's experts depend on the routing, so no MLP phase is claimed for it; its
    /// attention products still are.
    @Test("a mixture block claims no MLP bytes")
    func mixture() throws {
        let config = MixtureVariant.all[2].config  // experts every second block
        let model = try TransformerModel(config: config, seed: 1)
        let read = DecodeBenchmark.bytesReadPerToken(model: model, promptTokens: 3, genTokens: 2, kvBits: .fp32)
        let dense = model.layout.layers.filter { $0.mixture == nil }
        #expect(!dense.isEmpty && dense.count < model.layout.layers.count)
        let up = dense.map { 4.0 * Double($0.up.inFeatures * $0.up.outFeatures) }.reduce(0, +)
        #expect(read["mlp up"] == up)
        let qkv = model.layout.layers.map { 4.0 * Double($0.qkv.inFeatures * $0.qkv.outFeatures) }.reduce(0, +)
        #expect(read["qkv"] == qkv)
    }

    /// Attention's bytes, counted token by token: decoded token t (1-based) reads the prompt and
    /// t positions, keys and values, in every layer, at the cache's bytes a value (8-bit blocks
    /// of 32 carry a four-byte scale).
    @Test("attention reads every cached position of every layer, at the cache's bytes", arguments: KVCacheBits.allCases)
    func attention(_ bits: KVCacheBits) throws {
        let config = ModelConfig(vocabularySize: 13, contextLength: 64, dModel: 64, layers: 3, heads: 2, kvHeads: 1, dFF: 48)
        let model = try TransformerModel(config: config, seed: 1)
        let prompt = 11, generated = 6
        let bytesPerValue: Double = switch bits {
        case .fp32: 4
        case .fp16: 2
        case .int8: Double(32 + 4) / 32
        }
        var total = 0.0
        for t in 1...generated {
            for _ in 0..<config.layers {
                total += Double(prompt + t) * 2 * Double(config.kvHeads * config.headDim) * bytesPerValue
            }
        }
        let read = DecodeBenchmark.bytesReadPerToken(model: model, promptTokens: prompt, genTokens: generated, kvBits: bits)
        let attention = try #require(read["attention"])
        #expect(abs(attention - total / Double(generated)) <= 1e-9 * attention)
    }
}
