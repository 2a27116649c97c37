import Kernels

/// Causal self-attention for one head of one sequence, shared by training and cached inference.
///
/// Queries are `rows x headDim` (row stride `qStride`), keys and values `keys x headDim` (row
/// stride `kvStride`); query row `i` sits at position `offset + i` and sees keys `0...offset+i`.
/// `probs` (`rows x keys`) receives the attention weights, which backward needs.
@inline(__always)
func attentionHeadForward(
    q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
    out: UnsafeMutablePointer<Float>, outStride: Int, probs: UnsafeMutablePointer<Float>,
    rows: Int, keys: Int, headDim: Int, pool: ThreadPool
) {
    let offset = keys - rows
    // probs [rows x keys] = q · kᵀ, then softmax(scale * ·) under the causal mask.
    sgemm(.none, .transposed, m: rows, n: keys, k: headDim, a: q, lda: qStride, b: k, ldb: kvStride,
          beta: 0, c: probs, ldc: keys, pool: pool)
    causalSoftmaxForward(probs, rows: rows, cols: keys, ld: keys, offset: offset,
                         scale: 1 / Float(headDim).squareRoot())
    // out [rows x headDim] = probs · v
    sgemm(.none, .none, m: rows, n: headDim, k: keys, a: probs, lda: keys, b: v, ldb: kvStride,
          beta: 0, c: out, ldc: outStride, pool: pool)
}

/// Backward of `attentionHeadForward` for a full sequence (`keys == rows`): writes `dq`,
/// accumulates `dk` and `dv` (heads that share a key/value head add up). `scratch` holds
/// `rows x rows` floats.
@inline(__always)
func attentionHeadBackward(
    dOut: UnsafePointer<Float>, dOutStride: Int, probs: UnsafePointer<Float>,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, stride: Int,
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    scratch: UnsafeMutablePointer<Float>, rows: Int, headDim: Int, pool: ThreadPool
) {
    let t = rows
    // dprobs = dOut · vᵀ
    sgemm(.none, .transposed, m: t, n: t, k: headDim, a: dOut, lda: dOutStride, b: v, ldb: stride,
          beta: 0, c: scratch, ldc: t, pool: pool)
    // dv += probsᵀ · dOut
    sgemm(.transposed, .none, m: t, n: headDim, k: t, a: probs, lda: t, b: dOut, ldb: dOutStride,
          beta: 1, c: dv, ldc: stride, pool: pool)
    // dscores = scale * probs * (dprobs - rowsum(dprobs * probs)), 0 where masked
    causalSoftmaxBackward(scratch, probs: probs, rows: t, cols: t, ld: t, offset: 0,
                          scale: 1 / Float(headDim).squareRoot())
    // dq = dscores · k ; dk += dscoresᵀ · q
    sgemm(.none, .none, m: t, n: headDim, k: t, a: scratch, lda: t, b: k, ldb: stride,
          beta: 0, c: dq, ldc: stride, pool: pool)
    sgemm(.transposed, .none, m: t, n: headDim, k: t, a: scratch, lda: t, b: q, ldb: stride,
          beta: 1, c: dk, ldc: stride, pool: pool)
}
