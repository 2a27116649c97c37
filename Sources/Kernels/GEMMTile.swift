/// One register tile of `C = alpha·A·B + beta·C` with both operands read where they are, for
/// products too small to repay packing (attention heads: 14-row query tiles, 32 to 256 keys,
/// head dimensions of 32 to 128). Single-threaded: callers run whole heads as pool tasks.
///
/// `C` is `rows x cols` (`rows <= GEMM.mr`, `cols <= GEMM.nr`) with row stride `ldc`. Element
/// `(r, p)` of A is `a[r * aRow + p * aColumn]`, row `p` of B starts at `b + p * bRow`, and `p`
/// runs over `0..<depth`. With `bPadded`, B's rows have `GEMM.nr` readable columns even where
/// `cols` is smaller (the extra columns only feed the discarded part of the tile); with
/// `cPadded`, C's rows have `GEMM.nr` writable columns whose extra values nobody reads, so a
/// tile with all its rows is written in place.
///
/// A full tile goes straight to the micro-kernel. A partial one packs what the micro-kernel
/// would over-read (A's missing rows as zeros, B's missing columns unless padded) into
/// `scratch`, which holds `GEMMTile.scratchCount(depth:)` floats, and writes C through it.
@inline(__always)
public func gemmTile(
    rows: Int, cols: Int, depth: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, aRow: Int, aColumn: Int,
    b: UnsafePointer<Float>, bRow: Int, bPadded: Bool = false,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, cPadded: Bool = false,
    scratch: UnsafeMutablePointer<Float>
) {
    let mr = GEMM.mr, nr = GEMM.nr
    guard rows > 0, cols > 0 else { return }
    if depth == 0 {
        scaleRows(c, rows: rows, cols: cols, ld: ldc, by: beta)
        return
    }
    if rows == mr && (cols == nr || (cPadded && bPadded)) {
        tileKernel(depth, a: a, aRow: aRow, aColumn: aColumn, b: b, bRow: bRow, c: c, ldc: ldc, alpha: alpha, beta: beta)
        return
    }
    let tile = scratch, panelA = scratch + mr * nr, panelB = panelA + mr * depth
    var a = a, aRow = aRow, aColumn = aColumn
    if rows < mr {
        for p in 0..<depth {
            let dst = panelA + p * mr
            for r in 0..<rows { dst[r] = a[r * aRow + p * aColumn] }
            for r in rows..<mr { dst[r] = 0 }
        }
        a = UnsafePointer(panelA); aRow = 1; aColumn = mr
    }
    var b = b, bRow = bRow
    if cols < nr && !bPadded {
        for p in 0..<depth {
            let src = b + p * bRow, dst = panelB + p * nr
            for j in 0..<cols { dst[j] = src[j] }
            for j in cols..<nr { dst[j] = 0 }
        }
        b = UnsafePointer(panelB); bRow = nr
    }
    tileKernel(depth, a: a, aRow: aRow, aColumn: aColumn, b: b, bRow: bRow, c: tile, ldc: nr, alpha: alpha, beta: 0)
    for r in 0..<rows {
        let dst = c + r * ldc, src = tile + r * nr
        if beta == 0 {
            for j in 0..<cols { dst[j] = src[j] }
        } else {
            for j in 0..<cols { dst[j] = beta * dst[j] + src[j] }
        }
    }
}

/// `gemmTile` across a row panel: `C[rows x cols] = alpha·A·B + beta·C` for `rows <= GEMM.mr`
/// and any `cols`, 32 columns at a time. With `bPadded`/`cPadded`, B's and C's rows have room up
/// to the next multiple of 32 columns (the last tile then runs in place).
@inline(__always)
public func gemmRowPanel(
    rows: Int, cols: Int, depth: Int,
    a: UnsafePointer<Float>, aRow: Int, aColumn: Int,
    b: UnsafePointer<Float>, bRow: Int, bPadded: Bool = false,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, cPadded: Bool = false,
    scratch: UnsafeMutablePointer<Float>
) {
    var j0 = 0
    while j0 < cols {
        gemmTile(rows: rows, cols: min(GEMM.nr, cols - j0), depth: depth, a: a, aRow: aRow, aColumn: aColumn,
                 b: b + j0, bRow: bRow, bPadded: bPadded, beta: beta, c: c + j0, ldc: ldc, cPadded: cPadded,
                 scratch: scratch)
        j0 += GEMM.nr
    }
}

/// The micro-kernel compiled once on its own: inlined into `gemmTile` twice, next to the packing
/// loops, it ran out of registers and spilled accumulators inside its loop.
@inline(never)
func tileKernel(
    _ kc: Int, a: UnsafePointer<Float>, aRow: Int, aColumn: Int, b: UnsafePointer<Float>, bRow: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float
) {
    microKernel14x32(kc, a: a, aRow: aRow, aColumn: aColumn, b: b, bRow: bRow, c: c, ldc: ldc, alpha: alpha, beta: beta)
}

/// Scratch sizes for `gemmTile`.
public enum GEMMTile {
    /// Floats of scratch a tile of depth up to `depth` needs: a C tile and packed A and B panels.
    public static func scratchCount(depth: Int) -> Int {
        GEMM.mr * GEMM.nr + GEMM.mr * depth + depth * GEMM.nr
    }
}

/// `dst[c * ldd + r] = src[r * lds + c]` for a `rows x cols` block: 16 x 16 sub-blocks go
/// through registers, the edges element by element.
public func transpose(
    _ src: UnsafePointer<Float>, rows: Int, cols: Int, ld lds: Int,
    into dst: UnsafeMutablePointer<Float>, ld ldd: Int
) {
    var block = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(),
                 SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(),
                 SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(),
                 SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
    withUnsafeMutableBytes(of: &block) { raw in
        let vectors = raw.baseAddress!.assumingMemoryBound(to: SIMD16<Float>.self)
        let fullRows = rows / 16 * 16, fullCols = cols / 16 * 16
        var r = 0
        while r < fullRows {
            var c = 0
            while c < fullCols {
                for i in 0..<16 { vectors[i] = load16(src + (r + i) * lds + c) }
                transpose16x16(vectors, scratch: vectors + 16)
                for i in 0..<16 { store16(vectors[i], dst + (c + i) * ldd + r) }
                c += 16
            }
            for i in r..<(r + 16) {
                for j in fullCols..<cols { dst[j * ldd + i] = src[i * lds + j] }
            }
            r += 16
        }
        for i in fullRows..<rows {
            for j in 0..<cols { dst[j * ldd + i] = src[i * lds + j] }
        }
    }
}
