import Dispatch
import Kernels

/// Times one attention head (forward, backward) of a training step in both of its forms, for
/// `tinylm bench kernels`.
public enum AttentionBenchmark {
    public struct Result: Sendable {
        public var forwardSeconds: Double, backwardSeconds: Double, softmaxSeconds: Double
    }

    /// Best times over `repetitions` for a head of `length` tokens and `headDim` dimensions inside
    /// a fused q|k|v row of width `stride`; `tiled` picks the form.
    public static func run(length t: Int, headDim hd: Int, stride: Int, tiled: Bool, repetitions: Int = 200) -> Result {
        var rng = SplitMix64(seed: 1)
        let qkv = FloatBuffer(count: t * stride + 4 * hd)
        for i in 0..<qkv.count { qkv.pointer[i] = rng.nextFloat() * 2 - 1 }
        let out = FloatBuffer(count: t * stride), probs = FloatBuffer(count: t * t), scratch = FloatBuffer(count: t * t)
        let dq = FloatBuffer(count: t * stride), dk = FloatBuffer(count: t * stride), dv = FloatBuffer(count: t * stride)
        let q = UnsafePointer(qkv.pointer)
        var result = Result(forwardSeconds: .infinity, backwardSeconds: .infinity, softmaxSeconds: .infinity)
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        for _ in 0..<repetitions {
            let s0 = now()
            if tiled {
                attentionHeadForwardTiled(q: q, qStride: stride, k: q + hd, v: q + 2 * hd, kvStride: stride, out: out.pointer,
                                          outStride: stride, probs: probs.pointer, rows: t, keys: t, headDim: hd)
            } else {
                attentionHeadForwardBlocked(q: q, qStride: stride, k: q + hd, v: q + 2 * hd, kvStride: stride, out: out.pointer,
                                            outStride: stride, probs: probs.pointer, rows: t, keys: t, headDim: hd, pool: .shared)
            }
            let s1 = now()
            if tiled {
                attentionHeadBackwardTiled(dOut: q + 3 * hd, dOutStride: stride, probs: probs.pointer, q: q, k: q + hd, v: q + 2 * hd,
                                           stride: stride, dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, scratch: scratch.pointer,
                                           rows: t, headDim: hd)
            } else {
                attentionHeadBackwardBlocked(dOut: q + 3 * hd, dOutStride: stride, probs: probs.pointer, q: q, k: q + hd, v: q + 2 * hd,
                                             stride: stride, dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, scratch: scratch.pointer,
                                             rows: t, headDim: hd, pool: .shared)
            }
            let s2 = now()
            causalSoftmaxForward(scratch.pointer, rows: t, cols: t, ld: t, offset: 0, scale: 0.125)
            let s3 = now()
            result.forwardSeconds = min(result.forwardSeconds, Double(s1 - s0) / 1e9)
            result.backwardSeconds = min(result.backwardSeconds, Double(s2 - s1) / 1e9)
            result.softmaxSeconds = min(result.softmaxSeconds, Double(s3 - s2) / 1e9)
        }
        return result
    }
}
