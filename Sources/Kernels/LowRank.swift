/// Products with one small dimension — a low-rank adapter's `rank` — in fp32, straight on the
/// strided operands. A general GEMM (fp32 or bf16 tiles) pads the rank to its panel width and
/// packs (bf16: rounds) the wide operand at every call; these read each wide row once, keep the
/// `rank x width` matrix in L1, and cost about as much as reading their input.
///
/// Every result is a fixed-order sum, independent of the thread count: rows are split across
/// threads where each row is its own result, and column strips where a sum runs over the rows.
public enum LowRank {
    /// Ranks handled per pass over a row (eight accumulators).
    static let group = 8

    /// `out[i][q] = Σ_j x[i][j] · w[q][j]` (`out = x · wᵀ`): `x` is `rows x width` (rows `ldx`
    /// apart), `w` is `rank x width` (rows `width` apart), `out` is `rows x rank` (rows `ldo` apart).
    public static func timesTransposed(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, ldx: Int, _ w: UnsafePointer<Float>, rank: Int,
        into out: UnsafeMutablePointer<Float>, ldo: Int, pool: ThreadPool = .shared
    ) {
        guard rows > 0, rank > 0 else { return }
        pool.parallelRanges(rows, costPerItem: 2 * width * rank) { range, _ in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: group) { sums in
                for i in range {
                    let row = x + i * ldx, o = out + i * ldo
                    var q0 = 0
                    while q0 < rank {
                        let count = min(group, rank - q0)
                        // Rows of `w` past `count` are read as row q0 (never stored): no branch in the loop.
                        func wRow(_ q: Int) -> UnsafePointer<Float> { w + (q0 + (q < count ? q : 0)) * width }
                        let w0 = wRow(0), w1 = wRow(1), w2 = wRow(2), w3 = wRow(3)
                        let w4 = wRow(4), w5 = wRow(5), w6 = wRow(6), w7 = wRow(7)
                        var a0 = SIMD16<Float>(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0
                        var j = 0
                        while j + 16 <= width {
                            let v = load16(row + j)
                            a0.addProduct(v, load16(w0 + j)); a1.addProduct(v, load16(w1 + j))
                            a2.addProduct(v, load16(w2 + j)); a3.addProduct(v, load16(w3 + j))
                            a4.addProduct(v, load16(w4 + j)); a5.addProduct(v, load16(w5 + j))
                            a6.addProduct(v, load16(w6 + j)); a7.addProduct(v, load16(w7 + j))
                            j += 16
                        }
                        sums[0] = a0.sum(); sums[1] = a1.sum(); sums[2] = a2.sum(); sums[3] = a3.sum()
                        sums[4] = a4.sum(); sums[5] = a5.sum(); sums[6] = a6.sum(); sums[7] = a7.sum()
                        for jt in j..<width {
                            for q in 0..<count { sums[q] += row[jt] * w[(q0 + q) * width + jt] }
                        }
                        for q in 0..<count { o[q0 + q] = sums[q] }
                        q0 += count
                    }
                }
            }
        }
    }

    /// `out[i][j] += alpha · Σ_q u[i][q] · w[q][j]` (`out += alpha · u · w`): `u` is `rows x rank`
    /// (rows `ldu` apart), `w` is `rank x width` (rows `ldw` apart), `out` is `rows x width`
    /// (rows `ldo` apart).
    public static func accumulateProduct(
        _ u: UnsafePointer<Float>, rows: Int, rank: Int, ldu: Int, _ w: UnsafePointer<Float>, width: Int, ldw: Int,
        alpha: Float, into out: UnsafeMutablePointer<Float>, ldo: Int, pool: ThreadPool = .shared
    ) {
        guard rows > 0, width > 0 else { return }
        pool.parallelRanges(rows, costPerItem: 2 * width * rank) { range, _ in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: rank) { scaled in
                for i in range {
                    let o = out + i * ldo
                    for q in 0..<rank { scaled[q] = alpha * u[i * ldu + q] }
                    var j = 0
                    while j + 16 <= width {
                        var acc = load16(o + j)
                        for q in 0..<rank { acc.addProduct(SIMD16(repeating: scaled[q]), load16(w + q * ldw + j)) }
                        store16(acc, o + j)
                        j += 16
                    }
                    while j < width {
                        var s = o[j]
                        for q in 0..<rank { s += scaled[q] * w[q * ldw + j] }
                        o[j] = s
                        j += 1
                    }
                }
            }
        }
    }

    /// `g[q][j] += alpha · Σ_i a[i][q] · b[i][j]` (`g += alpha · aᵀ · b`): `a` is `rows x rank`
    /// (rows `lda` apart), `b` is `rows x width` (rows `ldb` apart), `g` is `rank x width` (rows
    /// `ldg` apart). Each 16-column strip sums over the rows in order, on one thread.
    public static func accumulateTransposedProduct(
        _ a: UnsafePointer<Float>, rank: Int, lda: Int, _ b: UnsafePointer<Float>, rows: Int, width: Int, ldb: Int,
        alpha: Float, into g: UnsafeMutablePointer<Float>, ldg: Int, pool: ThreadPool = .shared
    ) {
        guard rows > 0, width > 0, rank > 0 else { return }
        let strips = (width + 15) / 16
        pool.parallelRanges(strips, costPerItem: 32 * rows * rank) { range, _ in
            withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: rank) { acc in
                for strip in range {
                    let j0 = strip * 16, cols = min(16, width - j0)
                    for q in 0..<rank { acc[q] = .zero }
                    for i in 0..<rows {
                        let bRow = b + i * ldb + j0
                        let v = cols == 16 ? load16(bRow) : loadPartial16(bRow, count: cols, fill: 0, wide: false)
                        let aRow = a + i * lda
                        for q in 0..<rank { acc[q].addProduct(SIMD16(repeating: aRow[q]), v) }
                    }
                    for q in 0..<rank {
                        let dst = g + q * ldg + j0
                        let total = alpha * acc[q]
                        for c in 0..<cols { dst[c] += total[c] }
                    }
                }
            }
        }
    }

    /// `dst = srcᵀ`: `src` is `rows x cols` (rows `lds` apart), `dst` is `cols x rows`.
    public static func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, lds: Int, into dst: UnsafeMutablePointer<Float>) {
        for i in 0..<rows { for j in 0..<cols { dst[j * rows + i] = src[i * lds + j] } }
    }
}
