import Foundation
import Kernels
import Testing
import Transformer
@testable import Training

@Suite("optimizer and schedule")
struct OptimizerTests {
    @Test("warmup is linear, then cosine reaches the minimum at the last step")
    func schedule() {
        let s = LearningRateSchedule(maxLR: 1e-3, minLR: 1e-4, warmup: 10, total: 110)
        #expect(abs(s.rate(at: 0) - 1e-4) < 1e-12)
        #expect(abs(s.rate(at: 9) - 1e-3) < 1e-12)
        #expect(abs(s.rate(at: 10) - 1e-3) < 1e-12)
        #expect(abs(s.rate(at: 60) - 5.5e-4) < 1e-12)
        #expect(abs(s.rate(at: 110) - 1e-4) < 1e-12)
        for step in 10..<110 { #expect(s.rate(at: step + 1) <= s.rate(at: step)) }
    }

    @Test("AdamW matches the textbook update in double precision, with and without weight decay")
    func adamw() throws {
        var c = ModelConfig(vocabularySize: 7, contextLength: 4, dModel: 4, layers: 1, heads: 1, dFF: 4)
        c.bias = true
        let layout = ParameterLayout(c)
        let adam = AdamW(layout: layout)
        adam.weightDecay = 0.1
        let params = FloatBuffer(count: layout.count), grads = FloatBuffer(count: layout.count)
        var rng = SplitMix64(seed: 3)
        for i in 0..<layout.count { params.pointer[i] = rng.nextFloat() - 0.5 }
        var p = params.array.map(Double.init), m = [Double](repeating: 0, count: p.count), v = m
        let decays = layout.tensors.flatMap { [Bool](repeating: $0.decays, count: $0.count) }
        for step in 1...5 {
            for i in 0..<layout.count { grads.pointer[i] = rng.nextFloat() - 0.5 }
            let lr = 0.01 * Double(step)
            adam.update(parameters: params, gradients: grads, lr: Float(lr))
            for i in 0..<p.count {
                let g = Double(grads.pointer[i])
                if decays[i] { p[i] *= 1 - lr * 0.1 }
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.95 * v[i] + 0.05 * g * g
                let mhat = m[i] / (1 - pow(0.9, Double(step))), vhat = v[i] / (1 - pow(0.95, Double(step)))
                p[i] -= lr * mhat / (vhat.squareRoot() + 1e-8)
            }
        }
        for i in 0..<p.count { #expect(abs(Double(params.pointer[i]) - p[i]) < 1e-5, "parameter \(i)") }
        #expect(decays.contains(true) && decays.contains(false))
    }

    @Test("the global norm is the L2 norm, the same on any thread count")
    func norm() {
        let b = FloatBuffer((0..<1000).map { Float($0 % 7) - 3 })
        let expected = b.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(globalNorm(b, pool: ThreadPool(threadCount: 1)) - expected) < 1e-9)
        #expect(globalNorm(b, pool: ThreadPool(threadCount: 1)) == globalNorm(b, pool: ThreadPool(threadCount: 3)))
    }
}
