/// The register micro-kernel: a 14x32 tile of C (28 zmm accumulators on AVX-512, six narrower
/// passes elsewhere), C = alpha·A·B + beta·C over depth `kc`. Element (r, p) of A is `a[r * aRow + p * aColumn]` — (1, 14) for a packed
/// panel, (lda, 1) for a row-major A read in place — and row p of B starts at `b + p * bRow`
/// (32 for a packed panel, ldb in place). Each step broadcasts one A value per row and issues
/// two FMAs per row; strides are runtime values, which costs nothing measurable. With `bias`
/// (32 values; only with `alpha == 1`), the tile also gets `bias` added to each row: acc + bias
/// is the same rounding as adding the bias to the stored product afterwards.
@inline(__always)
func microKernel14x32(
    _ kc: Int, a: UnsafePointer<Float>, aRow: Int, aColumn: Int, b: UnsafePointer<Float>, bRow: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>? = nil
) {
    if GEMM.wideVectors {
        microKernel14x32Wide(kc, a: a, aRow: aRow, aColumn: aColumn, b: b, bRow: bRow, c: c, ldc: ldc, alpha: alpha,
                             beta: beta, bias: bias)
    } else {
        microKernel14x32Narrow(kc, a: a, aRow: aRow, aColumn: aColumn, b: b, bRow: bRow, c: c, ldc: ldc, alpha: alpha,
                               beta: beta, bias: bias)
    }
}

/// The 14x32 tile in 28 sixteen-float accumulators (AVX-512's 32 zmm registers).
@inline(__always)
func microKernel14x32Wide(
    _ kc: Int, a: UnsafePointer<Float>, aRow: Int, aColumn: Int, b: UnsafePointer<Float>, bRow: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>? = nil
) {
    var c00 = SIMD16<Float>(), c01 = SIMD16<Float>()
    var c10 = SIMD16<Float>(), c11 = SIMD16<Float>()
    var c20 = SIMD16<Float>(), c21 = SIMD16<Float>()
    var c30 = SIMD16<Float>(), c31 = SIMD16<Float>()
    var c40 = SIMD16<Float>(), c41 = SIMD16<Float>()
    var c50 = SIMD16<Float>(), c51 = SIMD16<Float>()
    var c60 = SIMD16<Float>(), c61 = SIMD16<Float>()
    var c70 = SIMD16<Float>(), c71 = SIMD16<Float>()
    var c80 = SIMD16<Float>(), c81 = SIMD16<Float>()
    var c90 = SIMD16<Float>(), c91 = SIMD16<Float>()
    var c100 = SIMD16<Float>(), c101 = SIMD16<Float>()
    var c110 = SIMD16<Float>(), c111 = SIMD16<Float>()
    var c120 = SIMD16<Float>(), c121 = SIMD16<Float>()
    var c130 = SIMD16<Float>(), c131 = SIMD16<Float>()
    var column = a, pb = b
    for _ in 0..<kc {
        let b0 = UnsafeRawPointer(pb).loadUnaligned(as: SIMD16<Float>.self)
        let b1 = UnsafeRawPointer(pb + 16).loadUnaligned(as: SIMD16<Float>.self)
        let a0 = SIMD16<Float>(repeating: column[0 * aRow])
        c00 = c00.addingProduct(a0, b0); c01 = c01.addingProduct(a0, b1)
        let a1 = SIMD16<Float>(repeating: column[1 * aRow])
        c10 = c10.addingProduct(a1, b0); c11 = c11.addingProduct(a1, b1)
        let a2 = SIMD16<Float>(repeating: column[2 * aRow])
        c20 = c20.addingProduct(a2, b0); c21 = c21.addingProduct(a2, b1)
        let a3 = SIMD16<Float>(repeating: column[3 * aRow])
        c30 = c30.addingProduct(a3, b0); c31 = c31.addingProduct(a3, b1)
        let a4 = SIMD16<Float>(repeating: column[4 * aRow])
        c40 = c40.addingProduct(a4, b0); c41 = c41.addingProduct(a4, b1)
        let a5 = SIMD16<Float>(repeating: column[5 * aRow])
        c50 = c50.addingProduct(a5, b0); c51 = c51.addingProduct(a5, b1)
        let a6 = SIMD16<Float>(repeating: column[6 * aRow])
        c60 = c60.addingProduct(a6, b0); c61 = c61.addingProduct(a6, b1)
        let a7 = SIMD16<Float>(repeating: column[7 * aRow])
        c70 = c70.addingProduct(a7, b0); c71 = c71.addingProduct(a7, b1)
        let a8 = SIMD16<Float>(repeating: column[8 * aRow])
        c80 = c80.addingProduct(a8, b0); c81 = c81.addingProduct(a8, b1)
        let a9 = SIMD16<Float>(repeating: column[9 * aRow])
        c90 = c90.addingProduct(a9, b0); c91 = c91.addingProduct(a9, b1)
        let a10 = SIMD16<Float>(repeating: column[10 * aRow])
        c100 = c100.addingProduct(a10, b0); c101 = c101.addingProduct(a10, b1)
        let a11 = SIMD16<Float>(repeating: column[11 * aRow])
        c110 = c110.addingProduct(a11, b0); c111 = c111.addingProduct(a11, b1)
        let a12 = SIMD16<Float>(repeating: column[12 * aRow])
        c120 = c120.addingProduct(a12, b0); c121 = c121.addingProduct(a12, b1)
        let a13 = SIMD16<Float>(repeating: column[13 * aRow])
        c130 = c130.addingProduct(a13, b0); c131 = c131.addingProduct(a13, b1)
        column += aColumn; pb += bRow
    }
    if let bias {
        let b0 = load16(bias), b1 = load16(bias + 16)
        c00 += b0; c01 += b1; c10 += b0; c11 += b1; c20 += b0; c21 += b1; c30 += b0; c31 += b1
        c40 += b0; c41 += b1; c50 += b0; c51 += b1; c60 += b0; c61 += b1; c70 += b0; c71 += b1
        c80 += b0; c81 += b1; c90 += b0; c91 += b1; c100 += b0; c101 += b1; c110 += b0; c111 += b1
        c120 += b0; c121 += b1; c130 += b0; c131 += b1
    }
    let scale = SIMD16<Float>(repeating: alpha)
    if beta == 0 {
        store16(c00 * scale, c + 0 * ldc); store16(c01 * scale, c + 0 * ldc + 16)
        store16(c10 * scale, c + 1 * ldc); store16(c11 * scale, c + 1 * ldc + 16)
        store16(c20 * scale, c + 2 * ldc); store16(c21 * scale, c + 2 * ldc + 16)
        store16(c30 * scale, c + 3 * ldc); store16(c31 * scale, c + 3 * ldc + 16)
        store16(c40 * scale, c + 4 * ldc); store16(c41 * scale, c + 4 * ldc + 16)
        store16(c50 * scale, c + 5 * ldc); store16(c51 * scale, c + 5 * ldc + 16)
        store16(c60 * scale, c + 6 * ldc); store16(c61 * scale, c + 6 * ldc + 16)
        store16(c70 * scale, c + 7 * ldc); store16(c71 * scale, c + 7 * ldc + 16)
        store16(c80 * scale, c + 8 * ldc); store16(c81 * scale, c + 8 * ldc + 16)
        store16(c90 * scale, c + 9 * ldc); store16(c91 * scale, c + 9 * ldc + 16)
        store16(c100 * scale, c + 10 * ldc); store16(c101 * scale, c + 10 * ldc + 16)
        store16(c110 * scale, c + 11 * ldc); store16(c111 * scale, c + 11 * ldc + 16)
        store16(c120 * scale, c + 12 * ldc); store16(c121 * scale, c + 12 * ldc + 16)
        store16(c130 * scale, c + 13 * ldc); store16(c131 * scale, c + 13 * ldc + 16)
    } else {
        let keep = SIMD16<Float>(repeating: beta)
        store16((c00 * scale).addingProduct(keep, load16(c + 0 * ldc)), c + 0 * ldc)
        store16((c01 * scale).addingProduct(keep, load16(c + 0 * ldc + 16)), c + 0 * ldc + 16)
        store16((c10 * scale).addingProduct(keep, load16(c + 1 * ldc)), c + 1 * ldc)
        store16((c11 * scale).addingProduct(keep, load16(c + 1 * ldc + 16)), c + 1 * ldc + 16)
        store16((c20 * scale).addingProduct(keep, load16(c + 2 * ldc)), c + 2 * ldc)
        store16((c21 * scale).addingProduct(keep, load16(c + 2 * ldc + 16)), c + 2 * ldc + 16)
        store16((c30 * scale).addingProduct(keep, load16(c + 3 * ldc)), c + 3 * ldc)
        store16((c31 * scale).addingProduct(keep, load16(c + 3 * ldc + 16)), c + 3 * ldc + 16)
        store16((c40 * scale).addingProduct(keep, load16(c + 4 * ldc)), c + 4 * ldc)
        store16((c41 * scale).addingProduct(keep, load16(c + 4 * ldc + 16)), c + 4 * ldc + 16)
        store16((c50 * scale).addingProduct(keep, load16(c + 5 * ldc)), c + 5 * ldc)
        store16((c51 * scale).addingProduct(keep, load16(c + 5 * ldc + 16)), c + 5 * ldc + 16)
        store16((c60 * scale).addingProduct(keep, load16(c + 6 * ldc)), c + 6 * ldc)
        store16((c61 * scale).addingProduct(keep, load16(c + 6 * ldc + 16)), c + 6 * ldc + 16)
        store16((c70 * scale).addingProduct(keep, load16(c + 7 * ldc)), c + 7 * ldc)
        store16((c71 * scale).addingProduct(keep, load16(c + 7 * ldc + 16)), c + 7 * ldc + 16)
        store16((c80 * scale).addingProduct(keep, load16(c + 8 * ldc)), c + 8 * ldc)
        store16((c81 * scale).addingProduct(keep, load16(c + 8 * ldc + 16)), c + 8 * ldc + 16)
        store16((c90 * scale).addingProduct(keep, load16(c + 9 * ldc)), c + 9 * ldc)
        store16((c91 * scale).addingProduct(keep, load16(c + 9 * ldc + 16)), c + 9 * ldc + 16)
        store16((c100 * scale).addingProduct(keep, load16(c + 10 * ldc)), c + 10 * ldc)
        store16((c101 * scale).addingProduct(keep, load16(c + 10 * ldc + 16)), c + 10 * ldc + 16)
        store16((c110 * scale).addingProduct(keep, load16(c + 11 * ldc)), c + 11 * ldc)
        store16((c111 * scale).addingProduct(keep, load16(c + 11 * ldc + 16)), c + 11 * ldc + 16)
        store16((c120 * scale).addingProduct(keep, load16(c + 12 * ldc)), c + 12 * ldc)
        store16((c121 * scale).addingProduct(keep, load16(c + 12 * ldc + 16)), c + 12 * ldc + 16)
        store16((c130 * scale).addingProduct(keep, load16(c + 13 * ldc)), c + 13 * ldc)
        store16((c131 * scale).addingProduct(keep, load16(c + 13 * ldc + 16)), c + 13 * ldc + 16)
    }
}



/// The 14x32 tile on CPUs with sixteen 256-bit vector registers (AVX2), where the wide kernel's
/// 28 sixteen-float accumulators would live in memory: six passes over the depth, one per 16
/// columns and 5, 5 or 4 rows, each with two one-register accumulators per row, two loads of B
/// and a broadcast of A per row and step (at most 10 accumulators: with the loop unrolled, 14
/// spilled). Each element of C gets the same fused multiply-adds in the same order as in the
/// wide kernel, so the same floats; the panels are re-read from L1 per pass.
@inline(__always)
func microKernel14x32Narrow(
    _ kc: Int, a: UnsafePointer<Float>, aRow: Int, aColumn: Int, b: UnsafePointer<Float>, bRow: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>? = nil
) {
    for half in 0..<2 {
        let offset = 16 * half
        narrowPass(5, kc, a: a, aRow: aRow, aColumn: aColumn, b: b + offset, bRow: bRow, c: c + offset, ldc: ldc,
                   alpha: alpha, beta: beta, bias: bias.map { $0 + offset })
        narrowPass(5, kc, a: a + 5 * aRow, aRow: aRow, aColumn: aColumn, b: b + offset, bRow: bRow, c: c + 5 * ldc + offset,
                   ldc: ldc, alpha: alpha, beta: beta, bias: bias.map { $0 + offset })
        narrowPass(4, kc, a: a + 10 * aRow, aRow: aRow, aColumn: aColumn, b: b + offset, bRow: bRow, c: c + 10 * ldc + offset,
                   ldc: ldc, alpha: alpha, beta: beta, bias: bias.map { $0 + offset })
    }
}

/// `rows` (4 or 5, a constant after inlining) rows by 16 columns of the narrow kernel.
@inline(__always)
func narrowPass(
    _ rows: Int, _ kc: Int, a: UnsafePointer<Float>, aRow: Int, aColumn: Int, b: UnsafePointer<Float>, bRow: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?
) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(); var c10 = SIMD8<Float>(), c11 = SIMD8<Float>(); var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    var c30 = SIMD8<Float>(), c31 = SIMD8<Float>(); var c40 = SIMD8<Float>(), c41 = SIMD8<Float>()
    var column = a, pb = b
    for _ in 0..<kc {
        let b0 = UnsafeRawPointer(pb).loadUnaligned(as: SIMD8<Float>.self)
        let b1 = UnsafeRawPointer(pb + 8).loadUnaligned(as: SIMD8<Float>.self)
        let a0 = SIMD8<Float>(repeating: column[0 * aRow]); c00 = c00.addingProduct(a0, b0); c01 = c01.addingProduct(a0, b1)
        let a1 = SIMD8<Float>(repeating: column[1 * aRow]); c10 = c10.addingProduct(a1, b0); c11 = c11.addingProduct(a1, b1)
        let a2 = SIMD8<Float>(repeating: column[2 * aRow]); c20 = c20.addingProduct(a2, b0); c21 = c21.addingProduct(a2, b1)
        let a3 = SIMD8<Float>(repeating: column[3 * aRow]); c30 = c30.addingProduct(a3, b0); c31 = c31.addingProduct(a3, b1)
        if rows == 5 { let a4 = SIMD8<Float>(repeating: column[4 * aRow]); c40 = c40.addingProduct(a4, b0); c41 = c41.addingProduct(a4, b1) }
        column += aColumn; pb += bRow
    }
    if let bias {
        let b0 = UnsafeRawPointer(bias).loadUnaligned(as: SIMD8<Float>.self)
        let b1 = UnsafeRawPointer(bias + 8).loadUnaligned(as: SIMD8<Float>.self)
        c00 += b0; c01 += b1; c10 += b0; c11 += b1; c20 += b0; c21 += b1; c30 += b0; c31 += b1; c40 += b0; c41 += b1
    }
    let scale = SIMD8<Float>(repeating: alpha), keep = SIMD8<Float>(repeating: beta)
    // Inlined: Swift left the nested function out of line, and its ten calls a pass cost
    // attention's 64-deep score tiles 7-13% (`bench kernels`' attention heads, best of eight
    // alternating runs each, forward and backward at T 128-512; training's products unchanged).
    @inline(__always) func put(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        store8(beta == 0 ? v * scale : (v * scale).addingProduct(keep, load8(p)), p)
    }
    put(c00, c + 0 * ldc); put(c01, c + 0 * ldc + 8)
    put(c10, c + 1 * ldc); put(c11, c + 1 * ldc + 8)
    put(c20, c + 2 * ldc); put(c21, c + 2 * ldc + 8)
    put(c30, c + 3 * ldc); put(c31, c + 3 * ldc + 8)
    if rows == 5 { put(c40, c + 4 * ldc); put(c41, c + 4 * ldc + 8) }
}
