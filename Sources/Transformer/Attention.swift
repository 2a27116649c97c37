import Kernels

/// Query rows per block of causal attention: a block needs only the keys up to its last row,
/// which skips the masked upper triangle (about 40% of the attention work at 256 tokens) while
/// each GEMM stays large enough to run at speed.
let attentionBlockRows = 64

/// Causal self-attention for one head of one sequence, shared by training and cached inference.
///
/// Queries are `rows x headDim` (row stride `qStride`), keys and values `keys x headDim` (row
/// stride `kvStride`); query row `i` sits at position `keys - rows + i` and sees keys up to its
/// own. `probs` (`rows x keys`) receives the attention weights, which backward needs (0 where
/// masked).
@inline(__always)
func attentionHeadForward(
    q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
    out: UnsafeMutablePointer<Float>, outStride: Int, probs: UnsafeMutablePointer<Float>,
    rows: Int, keys: Int, headDim: Int, pool: ThreadPool
) {
    let offset = keys - rows, scale = 1 / Float(headDim).squareRoot()
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + attentionBlockRows), m = r1 - r0
        let visible = r1 + offset // keys the block's last row sees
        let p = probs + r0 * keys
        // probs[block, :visible] = q[block] · k[:visible]ᵀ, then softmax(scale ·) under the mask.
        sgemm(.none, .transposed, m: m, n: visible, k: headDim, a: q + r0 * qStride, lda: qStride,
              b: k, ldb: kvStride, beta: 0, c: p, ldc: keys, pool: pool)
        causalSoftmaxForward(p, rows: m, cols: keys, ld: keys, offset: r0 + offset, scale: scale)
        // out[block] = probs[block, :visible] · v[:visible]
        sgemm(.none, .none, m: m, n: headDim, k: visible, a: p, lda: keys, b: v, ldb: kvStride,
              beta: 0, c: out + r0 * outStride, ldc: outStride, pool: pool)
        r0 = r1
    }
}

/// Backward of `attentionHeadForward` for a full sequence (`keys == rows`): writes `dq`,
/// accumulates `dk` and `dv` (heads that share a key/value head add up). `scratch` holds
/// `rows x rows` floats.
@inline(__always)
func attentionHeadBackward(
    dOut: UnsafePointer<Float>, dOutStride: Int, probs: UnsafePointer<Float>,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, stride: Int,
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    scratch: UnsafeMutablePointer<Float>, rows t: Int, headDim: Int, pool: ThreadPool
) {
    let scale = 1 / Float(headDim).squareRoot()
    var r0 = 0
    while r0 < t {
        let r1 = min(t, r0 + attentionBlockRows), m = r1 - r0, visible = r1
        let p = probs + r0 * t, dp = scratch + r0 * t, dO = dOut + r0 * dOutStride
        // dprobs[block, :visible] = dOut[block] · v[:visible]ᵀ
        sgemm(.none, .transposed, m: m, n: visible, k: headDim, a: dO, lda: dOutStride, b: v, ldb: stride,
              beta: 0, c: dp, ldc: t, pool: pool)
        // dv[:visible] += probs[block, :visible]ᵀ · dOut[block]
        sgemm(.transposed, .none, m: visible, n: headDim, k: m, a: p, lda: t, b: dO, ldb: dOutStride,
              beta: 1, c: dv, ldc: stride, pool: pool)
        // dscores = scale * probs * (dprobs - rowsum(dprobs * probs)), 0 where masked
        causalSoftmaxBackward(dp, probs: p, rows: m, cols: visible, ld: t, offset: r0, scale: scale)
        // dq[block] = dscores · k[:visible] ; dk[:visible] += dscoresᵀ · q[block]
        sgemm(.none, .none, m: m, n: headDim, k: visible, a: dp, lda: t, b: k, ldb: stride,
              beta: 0, c: dq + r0 * stride, ldc: stride, pool: pool)
        sgemm(.transposed, .none, m: visible, n: headDim, k: m, a: dp, lda: t, b: q + r0 * stride, ldb: stride,
              beta: 1, c: dk, ldc: stride, pool: pool)
        r0 = r1
    }
}
