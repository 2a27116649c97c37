import Foundation
import Kernels

/// Query rows per block of causal attention: a block needs only the keys up to its last row,
/// which skips the masked upper triangle (about 40% of the attention work at 256 tokens) while
/// each GEMM stays large enough to run at speed.
let attentionBlockRows = 64

/// `n` rounded up to whole 32-column tiles.
@inline(__always)
func roundedUp(_ n: Int) -> Int { (n + GEMM.nr - 1) / GEMM.nr * GEMM.nr }

/// Keys or values (`rows x headDim`, row stride `stride`) transposed into `dst` (`headDim x ld`)
/// with the columns past `rows` zeroed, so that score tiles read whole 32-column tiles in place.
@inline(__always)
func transposePadded(
    _ x: UnsafePointer<Float>, rows: Int, headDim: Int, stride: Int, into dst: UnsafeMutablePointer<Float>, ld: Int
) {
    transpose(x, rows: rows, cols: headDim, ld: stride, into: dst, ld: ld)
    if ld > rows { for d in 0..<headDim { (dst + d * ld + rows).update(repeating: 0, count: ld - rows) } }
}

/// Causal self-attention for one head of one sequence, shared by training and cached inference.
///
/// Queries are `rows x headDim` (row stride `qStride`), keys and values `keys x headDim` (row
/// stride `kvStride`); query row `i` sits at position `keys - rows + i` and sees keys up to its
/// own. `probs` (`rows x keys`) receives the attention weights, which backward needs: 0 where
/// masked inside each query tile's visible keys, unspecified past them (nothing reads there).
///
/// From a full query tile up (`GEMM.mr` rows), the head runs as register tiles straight on the
/// operands (`attentionHeadForwardTiled`); fewer rows (decoding) take the GEMM path.
@inline(__always)
func attentionHeadForward(
    q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
    out: UnsafeMutablePointer<Float>, outStride: Int, probs: UnsafeMutablePointer<Float>,
    rows: Int, keys: Int, headDim: Int, pool: ThreadPool
) {
    if rows >= GEMM.mr {
        attentionHeadForwardTiled(q: q, qStride: qStride, k: k, v: v, kvStride: kvStride, out: out, outStride: outStride,
                                  probs: probs, rows: rows, keys: keys, headDim: headDim)
    } else {
        attentionHeadForwardBlocked(q: q, qStride: qStride, k: k, v: v, kvStride: kvStride, out: out, outStride: outStride,
                                    probs: probs, rows: rows, keys: keys, headDim: headDim, pool: pool)
    }
}

/// The forward pass as micro-kernel tiles: for each tile of `GEMM.mr` query rows, scores
/// against exactly the keys the tile sees (32 at a time, from a transposed copy of K), the
/// masked softmax, then the tile's output from V read in place. No packing, no pool: a head is
/// one pool task, and its operands (a few hundred KiB at most) stay in L1/L2.
func attentionHeadForwardTiled(
    q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
    out: UnsafeMutablePointer<Float>, outStride: Int, probs: UnsafeMutablePointer<Float>,
    rows: Int, keys: Int, headDim: Int
) {
    let mr = GEMM.mr
    let offset = keys - rows, scale = 1 / Float(headDim).squareRoot()
    let ktLd = roundedUp(keys)
    Scratch.withFloats(headDim * ktLd + GEMMTile.scratchCount(depth: max(keys, headDim))) { kt in
        let tileScratch = kt + headDim * ktLd
        transposePadded(k, rows: keys, headDim: headDim, stride: kvStride, into: kt, ld: ktLd)
        var i0 = 0
        while i0 < rows {
            let i1 = min(rows, i0 + mr), m = i1 - i0
            let visible = i1 + offset // keys the tile's last row sees
            let p = probs + i0 * keys
            // p[tile, :visible] = q[tile] · kᵀ[:, :visible]
            gemmRowPanel(rows: m, cols: visible, depth: headDim, a: q + i0 * qStride, aRow: qStride, aColumn: 1,
                         b: kt, bRow: ktLd, bPadded: true, beta: 0, c: p, ldc: keys, cPadded: roundedUp(visible) <= keys,
                         scratch: tileScratch)
            causalSoftmaxForward(p, rows: m, cols: visible, ld: keys, offset: i0 + offset, scale: scale)
            // out[tile] = p[tile, :visible] · v[:visible]
            gemmRowPanel(rows: m, cols: headDim, depth: visible, a: p, aRow: keys, aColumn: 1,
                         b: v, bRow: kvStride, beta: 0, c: out + i0 * outStride, ldc: outStride, scratch: tileScratch)
            i0 = i1
        }
    }
}

/// The forward pass as blocked GEMMs, for a few query rows against a long cache.
@inline(__always)
func attentionHeadForwardBlocked(
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
    if t >= GEMM.mr {
        attentionHeadBackwardTiled(dOut: dOut, dOutStride: dOutStride, probs: probs, q: q, k: k, v: v, stride: stride,
                                   dq: dq, dk: dk, dv: dv, scratch: scratch, rows: t, headDim: headDim)
    } else {
        attentionHeadBackwardBlocked(dOut: dOut, dOutStride: dOutStride, probs: probs, q: q, k: k, v: v, stride: stride,
                                     dq: dq, dk: dk, dv: dv, scratch: scratch, rows: t, headDim: headDim, pool: pool)
    }
}

/// Backward as micro-kernel tiles, on the forward's query tiles. Per query tile:
/// dprobs = dOut · vᵀ, dscores (the softmax backward, into `scratch`), dq = dscores · k. Then per
/// tile of keys: dv += probsᵀ · dOut and dk += dscoresᵀ · q over the query rows at or below the
/// tile, the only rows whose weights on these keys are not 0. Those rows' tiles wrote their
/// weights up to at least the key tile's end (tiles are aligned), so every entry read was
/// written.
func attentionHeadBackwardTiled(
    dOut: UnsafePointer<Float>, dOutStride: Int, probs: UnsafePointer<Float>,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, stride: Int,
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    scratch: UnsafeMutablePointer<Float>, rows t: Int, headDim: Int
) {
    let mr = GEMM.mr
    let scale = 1 / Float(headDim).squareRoot()
    let vtLd = roundedUp(t)
    Scratch.withFloats(headDim * vtLd + GEMMTile.scratchCount(depth: max(t, headDim))) { vt in
        let tileScratch = vt + headDim * vtLd
        transposePadded(v, rows: t, headDim: headDim, stride: stride, into: vt, ld: vtLd)
        var i0 = 0
        while i0 < t {
            let i1 = min(t, i0 + mr), m = i1 - i0, visible = i1
            let dp = scratch + i0 * t
            // dprobs[tile, :visible] = dOut[tile] · vᵀ[:, :visible]
            gemmRowPanel(rows: m, cols: visible, depth: headDim, a: dOut + i0 * dOutStride, aRow: dOutStride, aColumn: 1,
                         b: vt, bRow: vtLd, bPadded: true, beta: 0, c: dp, ldc: t, cPadded: roundedUp(visible) <= t,
                         scratch: tileScratch)
            // dscores = scale * probs * (dprobs - rowsum(dprobs * probs)), 0 where masked
            causalSoftmaxBackward(dp, probs: probs + i0 * t, rows: m, cols: visible, ld: t, offset: i0, scale: scale)
            // dq[tile] = dscores[tile, :visible] · k[:visible]
            gemmRowPanel(rows: m, cols: headDim, depth: visible, a: dp, aRow: t, aColumn: 1,
                         b: k, bRow: stride, beta: 0, c: dq + i0 * stride, ldc: stride, scratch: tileScratch)
            i0 = i1
        }
        var j0 = 0
        while j0 < t {
            let m = min(mr, t - j0), depth = t - j0
            // dv[keys] += probs[j0..., keys]ᵀ · dOut[j0...]
            gemmRowPanel(rows: m, cols: headDim, depth: depth, a: probs + j0 * t + j0, aRow: 1, aColumn: t,
                         b: dOut + j0 * dOutStride, bRow: dOutStride, beta: 1, c: dv + j0 * stride, ldc: stride,
                         scratch: tileScratch)
            // dk[keys] += dscores[j0..., keys]ᵀ · q[j0...]
            gemmRowPanel(rows: m, cols: headDim, depth: depth, a: scratch + j0 * t + j0, aRow: 1, aColumn: t,
                         b: q + j0 * stride, bRow: stride, beta: 1, c: dk + j0 * stride, ldc: stride, scratch: tileScratch)
            j0 += m
        }
    }
}

/// Backward as blocked GEMMs, for sequences shorter than one query tile.
@inline(__always)
func attentionHeadBackwardBlocked(
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
