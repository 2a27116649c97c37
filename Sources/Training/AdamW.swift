import Foundation
import Kernels
import Transformer

/// AdamW (decoupled weight decay) over the trainable tensors of a parameter layout, with
/// PyTorch's update order and bias correction. Moments exist for trainable tensors only (an
/// adapter-only run keeps none for the frozen base); they are laid out as the gradient buffer.
/// Tensors in the `decay` group get weight decay, the others (norms, biases, embeddings,
/// adapters) none, unless `decayEmbeddingsAndNorms`.
public final class AdamW: @unchecked Sendable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.1
    /// First and second moments, `layout.gradientCount` floats each.
    public let m: FloatBuffer
    public let v: FloatBuffer
    /// Updates taken so far (the bias-correction step).
    public var step = 0
    /// Each trainable tensor: where it sits in the parameters, where its gradient and moments sit,
    /// its size and whether it decays.
    private let segments: [(parameter: Int, gradient: Int, count: Int, decays: Bool)]

    public init(layout: ParameterLayout, decayEmbeddingsAndNorms: Bool = false) {
        m = FloatBuffer(count: layout.gradientCount)
        v = FloatBuffer(count: layout.gradientCount)
        segments = layout.tensors.compactMap { t in
            t.gradientOffset.map { (t.offset, $0, t.count, t.decays || decayEmbeddingsAndNorms) }
        }
    }

    /// One update of `parameters` from `gradients` (laid out as `layout.gradientCount`) with
    /// learning rate `lr`.
    public func update(parameters: FloatBuffer, gradients: FloatBuffer, lr: Float, pool: ThreadPool = .shared) {
        step += 1
        let b1 = beta1, b2 = beta2, eps = epsilon
        let correction1 = 1 - Float(pow(Double(b1), Double(step)))
        let correction2Root = Float((1 - pow(Double(b2), Double(step))).squareRoot())
        let stepSize = lr / correction1
        for (parameterOffset, gradientOffset, count, decays) in segments {
            let p = parameters.pointer + parameterOffset, g = gradients.pointer + gradientOffset
            let mp = m.pointer + gradientOffset, vp = v.pointer + gradientOffset
            let range = 0..<count
            let shrink = decays ? 1 - lr * weightDecay : 1
            let blocks = (range.count + 1023) / 1024
            pool.parallelRanges(blocks, costPerItem: 1024 * 10) { chunk, _ in
                let start = range.lowerBound + chunk.lowerBound * 1024
                let end = min(range.upperBound, range.lowerBound + chunk.upperBound * 1024)
                var i = start
                let vb1 = SIMD16<Float>(repeating: b1), vb2 = SIMD16<Float>(repeating: b2)
                while i + 16 <= end {
                    let gi = load(g + i)
                    let mi = vb1 * load(mp + i) + (1 - b1) * gi
                    let vi = vb2 * load(vp + i) + (1 - b2) * gi * gi
                    store(mi, mp + i)
                    store(vi, vp + i)
                    let denom = vi.squareRoot() / correction2Root + eps
                    store(load(p + i) * shrink - stepSize * mi / denom, p + i)
                    i += 16
                }
                while i < end {
                    let gi = g[i]
                    mp[i] = b1 * mp[i] + (1 - b1) * gi
                    vp[i] = b2 * vp[i] + (1 - b2) * gi * gi
                    let denom = vp[i].squareRoot() / correction2Root + eps
                    p[i] = p[i] * shrink - stepSize * mp[i] / denom
                    i += 1
                }
            }
        }
    }

    @inline(__always) private func load(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    @inline(__always) private func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
}

/// The L2 norm of a buffer, summed in double precision over fixed chunks (the same on any
/// thread count).
public func globalNorm(_ buffer: FloatBuffer, pool: ThreadPool = .shared) -> Double {
    let chunks = 64
    var partial = [Double](repeating: 0, count: chunks)
    let n = buffer.count, p = buffer.pointer
    partial.withUnsafeMutableBufferPointer { out in
        let base = out.baseAddress!
        pool.parallelFor(chunks) { chunk, _ in
            let start = n * chunk / chunks, end = n * (chunk + 1) / chunks
            base[chunk] = Double(sumOfSquares(p + start, count: end - start))
        }
    }
    return partial.reduce(0, +).squareRoot()
}

/// Linear warmup to `maxLR` over `warmup` steps, then cosine decay to `minLR` at `total` steps.
public struct LearningRateSchedule: Codable, Sendable, Equatable {
    public var maxLR: Double
    public var minLR: Double
    public var warmup: Int
    public var total: Int

    public init(maxLR: Double, minLR: Double, warmup: Int, total: Int) {
        self.maxLR = maxLR
        self.minLR = minLR
        self.warmup = warmup
        self.total = total
    }

    /// The rate for 0-based `step`.
    public func rate(at step: Int) -> Double {
        if step < warmup { return maxLR * Double(step + 1) / Double(warmup) }
        if step >= total { return minLR }
        let progress = Double(step - warmup) / Double(max(1, total - warmup))
        return minLR + 0.5 * (1 + cos(Double.pi * progress)) * (maxLR - minLR)
    }
}
