import Foundation
import Kernels
import Testing
@testable import Transformer

/// The model seam: linear layers, the parameter table, frozen tensors, the shared block forward
/// and inference memory.
@Suite("model seam")
struct SeamTests {
    /// Ids and targets of one batch (two positions not counted).
    func batch(_ config: ModelConfig, batch: Int = 2, length: Int = 6, seed: UInt64 = 5) -> ([Int32], [Int32]) {
        var rng = SplitMix64(seed: seed)
        let v = UInt64(config.vocabularySize)
        let ids = (0..<(batch * length)).map { _ in Int32(rng.next() % v) }
        var targets = (0..<(batch * length)).map { _ in Int32(rng.next() % v) }
        targets[2] = -1
        targets[batch * length - 3] = -1
        return (ids, targets)
    }

    @Test("the parameter table: every tensor once, in order, no sentinel places; groups as AdamW needs them",
          arguments: Variant.all)
    func layout(_ variant: Variant) throws {
        let c = variant.config
        let layout = ParameterLayout(c)
        var next = 0
        for t in layout.tensors {
            #expect(t.offset == next && t.gradientOffset == t.offset)
            next += t.count
            let isMatrix = t.name.hasSuffix("proj.weight") || t.name == "lm_head.weight"
            #expect(t.group == (isMatrix ? .decay : .noDecay), "\(t.name)")
        }
        #expect(next == layout.count && layout.gradientCount == layout.count)
        #expect((layout.positionEmbedding != nil) == (c.positions == .learned))
        #expect((layout.finalNorm.bias != nil) == c.normHasBias)
        #expect(layout.lmHead.weight == (c.tiedEmbeddings ? layout.tokenEmbedding : layout.tensor(named: "lm_head.weight")!.offset))
        for (i, layer) in layout.layers.enumerated() {
            #expect(layer.qkv.weight == layout.tensor(named: "model.layers.\(i).self_attn.q_proj.weight")!.offset)
            #expect(layer.qkv.outFeatures == c.qkvDim && layer.up.outFeatures == c.mlpInDim && layer.down.inFeatures == c.dFF)
            #expect((layer.qkv.bias != nil) == c.bias && (layer.norm1.bias != nil) == c.normHasBias)
        }
        #expect(layout.linears.count == 4 * c.layers + 1)
    }

    @Test("frozen tensors get no gradient; the trainable ones get exactly the full model's", arguments: Variant.all)
    func frozen(_ variant: Variant) throws {
        var config = variant.config
        config.dropout = 0
        let full = try TransformerModel(config: config, seed: 3)
        // Train only the second block's MLP and attention output, and the token embedding: every
        // input gradient must flow through the frozen layers to reach them.
        let trains = { (name: String) in
            name.hasPrefix("model.layers.1.mlp.") || name.hasPrefix("model.layers.1.self_attn.o_proj") || name == "model.embed_tokens.weight"
        }
        let partial = try TransformerModel(config: config, parameters: FloatBuffer(full.parameters.array), trainable: trains)
        #expect(partial.layout.gradientCount < partial.layout.count)
        #expect(partial.layout.layers[0].qkv.trainable == false && partial.layout.layers[1].down.trainable)
        let (ids, targets) = batch(config)
        let wFull = try TrainingWorkspace(model: full, batch: 2, length: 6)
        let wPartial = try TrainingWorkspace(model: partial, batch: 2, length: 6)
        #expect(wPartial.gradients.count == partial.layout.gradientCount)
        let lossFull = try full.forward(ids: ids, targets: targets, workspace: wFull, forBackward: true)
        full.backward(workspace: wFull)
        let lossPartial = try partial.forward(ids: ids, targets: targets, workspace: wPartial, forBackward: true)
        partial.backward(workspace: wPartial)
        #expect(lossFull == lossPartial)
        var seen = 0
        for t in partial.layout.tensors {
            guard let g = t.gradientOffset else {
                #expect(!trains(t.name) || (config.tiedEmbeddings && t.name == "model.embed_tokens.weight"))
                continue
            }
            seen += 1
            let a = Array(UnsafeBufferPointer(start: wFull.gradients.pointer + t.offset, count: t.count))
            let b = Array(UnsafeBufferPointer(start: wPartial.gradients.pointer + g, count: t.count))
            #expect(a == b, "\(t.name)")
            #expect(b.contains { $0 != 0 }, "\(t.name) has a gradient")
        }
        #expect(seen > 1)
    }

    @Test("without a dropout seed, forward and backward both run without dropout (gradients equal the dropout-free model's)")
    func gradientsWithoutDropoutSeed() throws {
        var config = Variant.all[0].config
        config.dropout = 0.1
        let withDropout = try TransformerModel(config: config, seed: 8)
        config.dropout = 0
        let without = try TransformerModel(config: config, parameters: FloatBuffer(withDropout.parameters.array))
        let (ids, targets) = batch(config)
        var gradients: [[Float]] = []
        for model in [withDropout, without] {
            let w = try TrainingWorkspace(model: model, batch: 2, length: 6)
            try model.forward(ids: ids, targets: targets, workspace: w)
            model.backward(workspace: w)
            gradients.append(w.gradients.array)
        }
        #expect(gradients[0] == gradients[1])
        #expect(gradients[0].contains { $0 != 0 })
    }

    @Test("a long context runs a short prompt in a small cache, which grows as tokens arrive and keeps the logits exact")
    func inferenceMemoryFollowsTheWork() throws {
        var config = ModelConfig(vocabularySize: 50, contextLength: 8192, dModel: 32, layers: 2, heads: 4, kvHeads: 2, dFF: 48)
        config.useLlamaLayout()
        config.initStd = 0.2
        let model = try TransformerModel(config: config, seed: 2)
        var rng = SplitMix64(seed: 9)
        let prompt = (0..<20).map { _ in Int32(rng.next() % 50) }
        let session = try InferenceSession(model: model, reserve: 21)
        try session.feed(prompt)
        // Old sizing: heads × context² scores alone were 4 × 8192² floats (1 GiB).
        #expect(session.residentBytes < 1 << 20, "\(session.residentBytes) bytes")

        // Decode one token at a time past the first growth; the logits stay those of a single
        // pass over the whole sequence.
        let total = InferenceSession.cacheChunk + 40
        let ids = prompt + (0..<(total - prompt.count)).map { _ in Int32(rng.next() % 50) }
        var stepwise: [Float] = []
        for id in ids[prompt.count...] { stepwise = try session.feed([id]) }
        #expect(session.capacity >= total && session.capacity < 2 * total)
        let whole = try InferenceSession(model: model).feed(ids)
        let scale = whole.map(abs).max()!
        #expect(zip(stepwise, whole).map { abs($0 - $1) }.max()! <= 1e-5 * scale)
    }

    @Test("training FLOPs and step products come from the layout (nanoGPT's count for the peer's presets)")
    func flops() throws {
        for name in ["tiny", "small"] {
            let c = ModelConfig.presets[name]!
            let n = ParameterLayout(c).count - c.contextLength * c.dModel
            #expect(c.trainingFlopsPerToken(length: c.contextLength) == 6 * Double(n) + 12 * Double(c.layers * c.dModel * c.contextLength))
            let products = c.trainingStepProducts(tokens: 100)
            let weights = ParameterLayout(c).linears.reduce(0) { $0 + $1.multiplyAdds }
            #expect(products.reduce(0) { $0 + $1.flops } == 6 * 100 * Double(weights))
        }
    }
}
