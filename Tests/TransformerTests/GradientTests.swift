import Kernels
import Testing
@testable import Transformer

/// A tiny model per option mix; together they cover every value of every option.
struct Variant: CustomTestStringConvertible, Sendable {
    var name: String
    var config: ModelConfig
    var testDescription: String { name }

    static func make(_ name: String, norm: ModelConfig.Norm, positions: ModelConfig.Positions,
                     activation: ModelConfig.Activation, kvHeads: Int, tied: Bool, bias: Bool,
                     dropout: Double = 0) -> Variant {
        var c = ModelConfig(vocabularySize: 13, contextLength: 8, dModel: 8, layers: 2, heads: 2, kvHeads: kvHeads, dFF: 12)
        c.norm = norm
        c.positions = positions
        c.activation = activation
        c.tiedEmbeddings = tied
        c.bias = bias
        c.dropout = dropout
        c.initStd = 0.4
        return Variant(name: name, config: c)
    }

    static let all: [Variant] = [
        make("gpt2: layernorm, learned, gelu, MHA, tied, biases", norm: .layernorm, positions: .learned, activation: .gelu, kvHeads: 2, tied: true, bias: true),
        make("llama: rmsnorm, rope, swiglu, GQA, untied, no biases", norm: .rmsnorm, positions: .rope, activation: .swiglu, kvHeads: 1, tied: false, bias: false),
        make("layernorm, rope, gelu, GQA, untied, biases, dropout", norm: .layernorm, positions: .rope, activation: .gelu, kvHeads: 1, tied: false, bias: true, dropout: 0.2),
        make("rmsnorm, learned, swiglu, MHA, tied, biases", norm: .rmsnorm, positions: .learned, activation: .swiglu, kvHeads: 2, tied: true, bias: true),
        make("layernorm, learned, swiglu, GQA, tied, no biases", norm: .layernorm, positions: .learned, activation: .swiglu, kvHeads: 1, tied: true, bias: false),
        make("rmsnorm, rope, gelu, MHA, untied, biases", norm: .rmsnorm, positions: .rope, activation: .gelu, kvHeads: 2, tied: false, bias: true),
    ]
}

@Suite("transformer gradients against central finite differences")
struct GradientTests {
    @Test("every parameter tensor's gradient", arguments: Variant.all)
    func gradients(_ variant: Variant) throws {
        let model = try TransformerModel(config: variant.config, seed: 3)
        let batch = 2, length = 6
        let w = try TrainingWorkspace(model: model, batch: batch, length: length)
        var rng = SplitMix64(seed: 5)
        let ids = (0..<(batch * length)).map { _ in Int32(rng.next() % 13) }
        // Two positions do not count, as a chat loss mask would do.
        var targets = (0..<(batch * length)).map { _ in Int32(rng.next() % 13) }
        targets[2] = -1
        targets[9] = -1
        let dropoutSeed: UInt64? = variant.config.dropout > 0 ? 77 : nil
        let loss = { () throws -> Double in
            Double(try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: dropoutSeed))
        }
        // The training path: the forward pass leaves the loss gradient in the logits.
        _ = try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: dropoutSeed, forBackward: true)
        w.gradients.zero()
        model.backward(workspace: w)
        let analytic = w.gradients.array

        let p = model.parameters.pointer
        let h: Float = 1e-2
        for tensor in model.layout.tensors {
            // Up to 12 entries per tensor, spread over it.
            let picks = Set((0..<12).map { _ in Int(rng.next() % UInt64(tensor.count)) })
            var errorNorm = 0.0, gradientNorm = 0.0
            for k in picks {
                let i = tensor.offset + k
                let saved = p[i]
                p[i] = saved + h
                let up = try loss()
                p[i] = saved - h
                let down = try loss()
                p[i] = saved
                let numeric = (up - down) / Double(2 * h)
                let a = Double(analytic[i])
                #expect(abs(numeric - a) <= 2e-3 + 3e-2 * abs(a), "\(tensor.name)[\(k)]: numeric \(numeric), analytic \(a)")
                errorNorm += (numeric - a) * (numeric - a)
                gradientNorm += a * a
            }
            if gradientNorm > 1e-8 {
                #expect((errorNorm / gradientNorm).squareRoot() < 2e-2, "\(tensor.name): relative error \((errorNorm / gradientNorm).squareRoot())")
            }
        }
        // Accumulation: a second backward with scale 0.5 adds half the gradient again; this one
        // takes the separate loss-backward path (a plain forward leaves the logits).
        _ = try loss()
        model.backward(workspace: w, scale: 0.5)
        let twice = w.gradients.array
        for i in stride(from: 0, to: analytic.count, by: 7) {
            #expect(abs(twice[i] - 1.5 * analytic[i]) <= 1e-5 + 1e-4 * abs(analytic[i]))
        }
    }

    @Test("the loss at initialisation is close to log(vocabulary)")
    func initialLoss() throws {
        var c = ModelConfig(vocabularySize: 64, contextLength: 16, dModel: 32, layers: 2, heads: 4)
        c.initStd = 0.02
        let model = try TransformerModel(config: c, seed: 1)
        let w = try TrainingWorkspace(model: model, batch: 2, length: 16)
        var rng = SplitMix64(seed: 2)
        let ids = (0..<32).map { _ in Int32(rng.next() % 64) }
        let loss = try model.forward(ids: ids, targets: ids.reversed(), workspace: w)
        #expect(abs(Double(loss) - Foundation.log(64.0)) < 0.05)
    }
}

import Foundation
