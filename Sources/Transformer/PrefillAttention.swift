import Kernels

/// Where a multi-token call finds one layer's cached keys: key/value head `g` at `g·headStride`.
enum PrefillKeys {
    /// fp32 in `KeyBlocks` (the fp32 cache).
    case blocks(UnsafePointer<Float>)
    /// Halves in `KeyBlocks` (the half cache).
    case halfBlocks(UnsafePointer<UInt16>)
    /// fp32 rows of `hd` values (the 8-bit cache, widened).
    case rows(UnsafePointer<Float>)
}

/// Positions `0..<total` of every key/value head's keys, transposed for the score tiles: head
/// `g`'s `[hd][ld]` at `g·hd·ld`, position `j` in column `j`, columns `total..<ld` zeroed. A key
/// block is already dimension-major, so each of its `hd` rows of 16 is one copy (or widening).
func transposeKeys(
    _ keys: PrefillKeys, headStride: Int, kvHeads: Int, headDim hd: Int, total: Int, ld: Int,
    into kt: UnsafeMutablePointer<Float>
) {
    let width = KeyBlocks.width, blocks = KeyBlocks.padded(total) / width
    for g in 0..<kvHeads {
        let head = kt + g * hd * ld
        switch keys {
        case let .blocks(source):
            for b in 0..<blocks {
                let block = source + g * headStride + b * width * hd
                for d in 0..<hd { (head + d * ld + b * width).update(from: block + d * width, count: width) }
            }
        case let .halfBlocks(source):
            for b in 0..<blocks {
                let block = source + g * headStride + b * width * hd
                for d in 0..<hd { Half.widen(block + d * width, count: width, into: head + d * ld + b * width) }
            }
        case let .rows(source):
            transpose(source + g * headStride, rows: total, cols: hd, ld: hd, into: head, ld: ld)
        }
        // A last block's positions past `total` hold whatever the cache had there.
        for d in 0..<hd { (head + d * ld + total).update(repeating: 0, count: ld - total) }
    }
}

/// Attention of `rows` new tokens, at positions `start..<start + rows`, against every cached
/// position up to each one's own (prefill and other multi-token inference calls).
///
/// Queries are the heads' `hd` values in rows of `qStride` (from `q`); values are rows of `hd`,
/// key/value head `g` at `g·headStride`, as the keys (`keys`); head `h` reads key/value head
/// `h / (heads / kvHeads)`. Output row `i`, head `h`, goes to `out + i·outStride + h·hd`.
///
/// Each task is one tile of `GEMM.mr` query rows of one head: scores against the keys the tile
/// sees, their exponentials (`causalExponentials`), the weighted sum of the values, and each
/// row divided by its sum last. Nothing is kept for a backward pass, so a task's scores live in
/// its thread's scratch (`GEMM.mr` rows), not in a `heads × rows × keys` array; the keys are
/// transposed once per key/value head, not once per query head. Tiles that see the most keys
/// are handed out first, so that the last tasks taken are the short ones and the threads finish
/// together. Every task's floats are the same whichever thread runs it.
func prefillAttention(
    q: UnsafePointer<Float>, qStride: Int, keys: PrefillKeys, values: UnsafePointer<Float>, headStride: Int,
    start: Int, rows n: Int, heads: Int, kvHeads: Int, headDim hd: Int,
    out: UnsafeMutablePointer<Float>, outStride: Int, pool: ThreadPool
) {
    guard n > 0 else { return }
    let total = start + n, ld = roundedUp(total), mr = GEMM.mr, group = heads / kvHeads
    let tiles = (n + mr - 1) / mr, scoreScale = 1 / Float(hd).squareRoot()
    // Per thread: a tile's scores (mr × ld), its rows' sums, and the tile kernel's packing room.
    let perThread = mr * ld + mr + GEMMTile.scratchCount(depth: max(total, hd))
    Scratch.withFloats(kvHeads * hd * ld + pool.threadCount * perThread) { scratch in
        let kt = scratch, threadScratch = scratch + kvHeads * hd * ld
        transposeKeys(keys, headStride: headStride, kvHeads: kvHeads, headDim: hd, total: total, ld: ld, into: kt)
        pool.parallelFor(tiles * heads) { task, worker in
            let tile = tiles - 1 - task / heads, h = task % heads, g = h / group
            let i0 = tile * mr, m = min(mr, n - i0), visible = start + i0 + m  // keys the tile's last row sees
            let scores = threadScratch + worker * perThread, sums = scores + mr * ld, tileScratch = sums + mr
            // scores[tile, :visible] = q[tile] · kᵀ[:, :visible]
            gemmRowPanel(rows: m, cols: visible, depth: hd, a: q + i0 * qStride + h * hd, aRow: qStride, aColumn: 1,
                         b: kt + g * hd * ld, bRow: ld, bPadded: true, beta: 0, c: scores, ldc: ld, cPadded: true,
                         scratch: tileScratch)
            causalExponentials(scores, rows: m, cols: visible, ld: ld, offset: start + i0, scale: scoreScale, sums: sums)
            // out[tile] = e[tile, :visible] · v[:visible], then each row over its sum.
            let o = out + i0 * outStride + h * hd
            gemmRowPanel(rows: m, cols: hd, depth: visible, a: scores, aRow: ld, aColumn: 1, b: values + g * headStride,
                         bRow: hd, beta: 0, c: o, ldc: outStride, scratch: tileScratch)
            for r in 0..<m { scale(o + r * outStride, by: 1 / sums[r], count: hd) }
        }
    }
}
