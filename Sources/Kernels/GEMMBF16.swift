import CAMX

/// The precision of a model's matrix products.
///
/// `.bf16` is mixed precision as PyTorch's `torch.autocast(dtype: bfloat16)` does it for linear
/// layers: both operands are rounded to bfloat16 (round to nearest even) and the products are
/// summed in fp32. Everything else (weights, activations between products, norms, softmax, the
/// optimizer) stays fp32.
public enum MatmulPrecision: String, Sendable, CaseIterable, Codable {
    case fp32
    case bf16
}

/// Whether `gemmBF16` runs on AMX tiles here (otherwise it rounds the operands and uses the fp32
/// kernel: the same products, several times slower).
public var amxAvailable: Bool { camx_available() != 0 }

/// `C = alpha * op(A) * op(B) + beta * C (+ bias)` with `op(A)` and `op(B)` rounded to bfloat16 and
/// fp32 accumulation; the arguments mean what they mean for `sgemm`.
///
/// On a CPU with AMX-BF16 the operands are packed into bf16 tile panels (the rounding happens
/// while packing) and a C micro-kernel multiplies 32 x 32 blocks on the tiles. With alpha 1 and
/// beta 0 or 1 the tiles start from C or the bias and store into C; otherwise, and on ragged
/// edges, alpha, beta and the bias are applied here as each block is stored.
public func gemmBF16(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    bias: UnsafePointer<Float>? = nil,
    pool: ThreadPool = .shared
) {
    guard m > 0, n > 0 else { return }
    guard amxAvailable, k > 0, alpha != 0 else {
        BF16.emulated(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: c, ldc: ldc, bias: bias, pool: pool)
        return
    }
    BF16.tiles(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
               beta: beta, c: c, ldc: ldc, bias: bias, pool: pool)
}

/// A constant right operand `op(B)` (`k x n`) of `gemmBF16`, rounded to bfloat16 and packed into
/// tile panels once: a frozen weight multiplied at every step (LoRA's base) then costs no packing
/// per product. Holds `n * k` bf16 values (half an fp32 copy), padded to whole 32 x 32 blocks.
public final class BF16PackedMatrix: @unchecked Sendable, Equatable {
    /// The product's output columns and depth: `op(B)` is `k x n`.
    public let n: Int, k: Int
    let values: UnsafeMutablePointer<UInt16>
    let count: Int

    /// Packs `op(B)` as `gemmBF16(_, transB, …, b:, ldb:)` would for each product.
    /// Only on a CPU with AMX-BF16 (`amxAvailable`): elsewhere products take the fp32 operand.
    public init(_ transB: Transpose, b: UnsafePointer<Float>, ldb: Int, n: Int, k: Int, pool: ThreadPool = .shared) {
        precondition(n > 0 && k > 0, "an empty operand is not packed")
        self.n = n
        self.k = k
        let blocks = (k + BF16.block - 1) / BF16.block, panels = (n + BF16.block - 1) / BF16.block
        let panelValues = blocks * BF16.blockValues
        count = panels * panelValues
        values = .allocate(capacity: count)
        let values = values
        pool.parallelFor(panels) { q, _ in
            BF16.packB(transB, b: b, ldb: ldb, n: n, k: k, c0: q * BF16.block, blocks: blocks, into: values + q * panelValues)
        }
    }

    deinit { values.deallocate() }

    /// Bytes held.
    public var bytes: Int { count * 2 }

    public static func == (l: BF16PackedMatrix, r: BF16PackedMatrix) -> Bool { l === r }
}

/// `C = alpha * op(A) * B + beta * C (+ bias)` with `B` packed beforehand (`b.n` columns, depth
/// `b.k`): the same products and sums, in the same order, as `gemmBF16` on the unpacked operand.
public func gemmBF16(
    _ transA: Transpose, m: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, packed b: BF16PackedMatrix,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
    pool: ThreadPool = .shared
) {
    guard m > 0 else { return }
    precondition(amxAvailable, "packed bf16 operands are for AMX tiles")
    if alpha == 0 {
        // The product adds nothing: C = beta C (+ bias), as the unpacked call does.
        for r in 0..<m {
            let row = c + r * ldc
            for j in 0..<b.n { row[j] = (beta == 0 ? 0 : beta * row[j]) + (bias?[j] ?? 0) }
        }
        return
    }
    BF16.tiles(transA, .none, m: m, n: b.n, k: b.k, alpha: alpha, a: a, lda: lda, b: nil, ldb: 0,
               beta: beta, c: c, ldc: ldc, bias: bias, pool: pool, prepacked: UnsafePointer(b.values))
}

/// A linear layer's product at a given precision: `sgemm` or `gemmBF16`.
@inline(__always)
public func gemm(
    _ precision: MatmulPrecision, _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    bias: UnsafePointer<Float>? = nil, pool: ThreadPool = .shared
) {
    switch precision {
    case .fp32:
        sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
              beta: beta, c: c, ldc: ldc, bias: bias, pool: pool)
    case .bf16:
        gemmBF16(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                 beta: beta, c: c, ldc: ldc, bias: bias, pool: pool)
    }
}

/// Rounding to bfloat16, tile packing and the tile driver.
public enum BF16 {
    /// Rows and columns of one micro-kernel block, and the depth of one tile step.
    static let block = 32
    /// Values (UInt16) of one packed 32 x 32 block of an operand.
    static let blockValues = block * block
    /// Column panels per micro-kernel call: the 32 x 256 fp32 result is 32 KiB.
    static let panelsPerCall = 8

    /// The bfloat16 bits of `x` (in the low 16 bits of each lane), rounded to nearest even; NaNs
    /// stay (quiet) NaNs.
    @inline(__always)
    public static func bits(_ x: SIMD16<Float>) -> SIMD16<UInt32> {
        let u = unsafeBitCast(x, to: SIMD16<UInt32>.self)
        var r = (u &+ (0x7FFF &+ ((u &>> 16) & 1))) &>> 16
        r.replace(with: (u &>> 16) | 0x40, where: x .!= x)
        return r
    }

    /// `x` rounded to the nearest bfloat16, as a Float.
    @inline(__always)
    public static func round(_ x: Float) -> Float {
        Float(bitPattern: bits(SIMD16(repeating: x))[0] << 16)
    }

    /// Two rows of 16 values as VNNI words: `bf16(even) | bf16(odd) << 16` per lane.
    @inline(__always)
    static func pairs(_ even: SIMD16<Float>, _ odd: SIMD16<Float>) -> SIMD16<UInt32> {
        bits(even) | (bits(odd) &<< 16)
    }

    /// 32 consecutive values (the first `count` read, zeros after) as 32 bf16 values in order,
    /// stored at `dst` (64 bytes). In memory that is 16 VNNI words of consecutive depth pairs.
    @inline(__always)
    static func storeRun(_ p: UnsafePointer<Float>, count: Int, to dst: UnsafeMutableRawPointer) {
        let lo = row16(p, count: count), hi = row16(p + 16, count: count - 16)
        // The shift leaves values below 2^16, so the narrowing is one `vpackusdw`.
        dst.storeBytes(of: SIMD16<UInt16>(truncatingIfNeeded: bits(lo)), as: SIMD16<UInt16>.self)
        dst.storeBytes(of: SIMD16<UInt16>(truncatingIfNeeded: bits(hi)), toByteOffset: 32, as: SIMD16<UInt16>.self)
    }

    /// 16 floats at `p`, the first `count` read, zeros after.
    @inline(__always)
    static func row16(_ p: UnsafePointer<Float>, count: Int) -> SIMD16<Float> {
        count >= 16 ? load16(p) : count <= 0 ? .zero : loadPartial16(p, count: count, fill: 0, wide: false)
    }

    /// Rows `2p` and `2p + 1` (of at most `depth`) of 16 columns at `p` (row stride `ld`, `cols`
    /// valid), as VNNI words.
    @inline(__always)
    static func rowPair(_ p: UnsafePointer<Float>, ld: Int, pair: Int, depth: Int, cols: Int) -> SIMD16<UInt32> {
        let e = 2 * pair < depth ? row16(p + 2 * pair * ld, count: cols) : .zero
        let o = 2 * pair + 1 < depth ? row16(p + (2 * pair + 1) * ld, count: cols) : .zero
        return pairs(e, o)
    }

    /// Packs depth blocks `blocks` of rows `r0 ..< r0 + 32` of `op(A)` (`m x k`) into the A panel
    /// at `dst`: [block][row][32 depth].
    static func packA(
        _ transA: Transpose, a: UnsafePointer<Float>, lda: Int, m: Int, k: Int, r0: Int, blocks: Range<Int>,
        into dst: UnsafeMutablePointer<UInt16>
    ) {
        let rows = min(block, m - r0)
        let bytes = UnsafeMutableRawPointer(dst)
        if transA == .none {
            for kb in blocks {
                let k0 = kb * block, depth = min(block, k - k0)
                let out = bytes + kb * blockValues * 2
                for r in 0..<block {
                    if r < rows {
                        storeRun(a + (r0 + r) * lda + k0, count: depth, to: out + r * 64)
                    } else {
                        (out + r * 64).storeBytes(of: SIMD16<UInt32>(), as: SIMD16<UInt32>.self)
                    }
                }
            }
            return
        }
        // A is stored k x m: two depth rows give 16 rows' words at once; a transpose makes them rows.
        withUnsafeTemporaryAllocation(of: SIMD16<UInt32>.self, capacity: 16) { stage in
            for kb in blocks {
                let k0 = kb * block, depth = min(block, k - k0)
                let out = bytes + kb * blockValues * 2
                for half in 0..<2 {
                    let c0 = r0 + half * 16, cols = min(16, m - c0)
                    for p in 0..<16 {
                        stage[p] = cols > 0 ? rowPair(a + k0 * lda + c0, ld: lda, pair: p, depth: depth, cols: cols) : .zero
                    }
                    transposeWords(UnsafeRawPointer(stage.baseAddress!), to: out + half * 16 * 64)
                }
            }
        }
    }

    /// Packs columns `c0 ..< c0 + 32` of `op(B)` (`k x n`) into one VNNI B panel:
    /// [block][half][depth pair][16 columns] words.
    static func packB(
        _ transB: Transpose, b: UnsafePointer<Float>, ldb: Int, n: Int, k: Int, c0: Int, blocks: Int,
        into dst: UnsafeMutablePointer<UInt16>
    ) {
        let bytes = UnsafeMutableRawPointer(dst)
        withUnsafeTemporaryAllocation(of: SIMD16<UInt32>.self, capacity: 16) { stage in
            let staged = UnsafeMutableRawPointer(stage.baseAddress!)
            for kb in 0..<blocks {
                let k0 = kb * block, depth = min(block, k - k0)
                let out = bytes + kb * blockValues * 2
                for half in 0..<2 {
                    let j0 = c0 + half * 16, cols = min(16, n - j0)
                    let tile = out + half * 16 * 64
                    if transB == .none {
                        for p in 0..<16 {
                            let v = cols > 0 ? rowPair(b + k0 * ldb + j0, ld: ldb, pair: p, depth: depth, cols: cols) : .zero
                            tile.storeBytes(of: v, toByteOffset: p * 64, as: SIMD16<UInt32>.self)
                        }
                    } else {
                        // B is stored n x k: each column's depth run is contiguous.
                        for j in 0..<16 {
                            if j < cols {
                                storeRun(b + (j0 + j) * ldb + k0, count: depth, to: staged + j * 64)
                            } else {
                                stage[j] = .zero
                            }
                        }
                        transposeWords(UnsafeRawPointer(staged), to: tile)
                    }
                }
            }
        }
    }

    /// Transposes 16 x 16 32-bit words from `src` (rows of 64 bytes) to `dst` (rows of 64 bytes)
    /// by four perfect unshuffles: each sends element `i` of the 256 to `i` rotated right by one
    /// bit, so four of them swap the row and column halves of the index.
    @inline(never)
    static func transposeWords(_ src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) {
        @inline(__always) func row(_ i: Int) -> SIMD16<UInt32> { src.load(fromByteOffset: i * 64, as: SIMD16<UInt32>.self) }
        @inline(__always) func unzip(_ a: SIMD16<UInt32>, _ b: SIMD16<UInt32>) -> (SIMD16<UInt32>, SIMD16<UInt32>) {
            (SIMD16(lowHalf: a.evenHalf, highHalf: b.evenHalf), SIMD16(lowHalf: a.oddHalf, highHalf: b.oddHalf))
        }
        var v0 = row(0), v1 = row(1), v2 = row(2), v3 = row(3), v4 = row(4), v5 = row(5), v6 = row(6), v7 = row(7)
        var v8 = row(8), v9 = row(9), v10 = row(10), v11 = row(11), v12 = row(12), v13 = row(13), v14 = row(14), v15 = row(15)
        for _ in 0..<4 {
            let (w0, w8) = unzip(v0, v1), (w1, w9) = unzip(v2, v3), (w2, w10) = unzip(v4, v5), (w3, w11) = unzip(v6, v7)
            let (w4, w12) = unzip(v8, v9), (w5, w13) = unzip(v10, v11), (w6, w14) = unzip(v12, v13), (w7, w15) = unzip(v14, v15)
            v0 = w0; v1 = w1; v2 = w2; v3 = w3; v4 = w4; v5 = w5; v6 = w6; v7 = w7
            v8 = w8; v9 = w9; v10 = w10; v11 = w11; v12 = w12; v13 = w13; v14 = w14; v15 = w15
        }
        @inline(__always) func put(_ i: Int, _ v: SIMD16<UInt32>) { dst.storeBytes(of: v, toByteOffset: i * 64, as: SIMD16<UInt32>.self) }
        put(0, v0); put(1, v1); put(2, v2); put(3, v3); put(4, v4); put(5, v5); put(6, v6); put(7, v7)
        put(8, v8); put(9, v9); put(10, v10); put(11, v11); put(12, v12); put(13, v13); put(14, v14); put(15, v15)
    }

    /// The AMX path: pack both operands in parallel, then multiply blocks of 32 rows by up to
    /// `panelsPerCall` column panels.
    static func tiles(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>?, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, pool: ThreadPool,
        prepacked: UnsafePointer<UInt16>? = nil
    ) {
        let blocks = (k + block - 1) / block
        let mPanels = (m + block - 1) / block, nPanels = (n + block - 1) / block
        let panelValues = blocks * blockValues
        let aValues = mPanels * panelValues, bValues = prepacked == nil ? nPanels * panelValues : 0
        // UInt16 scratch, counted in floats.
        Scratch.withFloats((aValues + bValues + 1) / 2) { raw in
            let packedA = UnsafeMutableRawPointer(raw).assumingMemoryBound(to: UInt16.self)
            let packedB = prepacked.map { UnsafeMutablePointer(mutating: $0) } ?? packedA + aValues
            let work = 2 * m * n * k
            let parallel = work >= ThreadPool.parallelWorkThreshold && pool.threadCount > 1
            // A stored k x m is packed a depth block at a time across all panels, so that each
            // task reads whole rows instead of a narrow strip of every row (pages and cache sets).
            let aTasks = transA == .none ? mPanels : blocks
            let packTasks = aTasks + (prepacked == nil ? nPanels : 0)
            let pack: (Int) -> Void = { task in
                if task < aTasks {
                    if transA == .none {
                        packA(transA, a: a, lda: lda, m: m, k: k, r0: task * block, blocks: 0..<blocks,
                              into: packedA + task * panelValues)
                    } else {
                        for p in 0..<mPanels {
                            packA(transA, a: a, lda: lda, m: m, k: k, r0: p * block, blocks: task..<task + 1,
                                  into: packedA + p * panelValues)
                        }
                    }
                } else {
                    let q = task - aTasks
                    packB(transB, b: b!, ldb: ldb, n: n, k: k, c0: q * block, blocks: blocks,
                          into: packedB + q * panelValues)
                }
            }
            if parallel { pool.parallelFor(packTasks) { task, _ in pack(task) } } else { for t in 0..<packTasks { pack(t) } }

            // Tasks: column chunks of `panelsPerCall` panels by row groups, a few per thread.
            let chunks = (nPanels + panelsPerCall - 1) / panelsPerCall
            let wanted = parallel ? pool.threadCount * 4 : 1
            let rowGroups = max(1, min(mPanels, (wanted + chunks - 1) / chunks))
            // With alpha 1 and beta 0 or 1 (and no bias when accumulating) the tiles need no epilogue.
            let direct = alpha == 1 && (beta == 0 || (beta == 1 && bias == nil))
            let multiply: (Int) -> Void = { task in
                let chunk = task % chunks, group = task / chunks
                let q0 = chunk * panelsPerCall, panels = min(panelsPerCall, nPanels - q0)
                let p0 = mPanels * group / rowGroups, p1 = mPanels * (group + 1) / rowGroups
                // Panels whose 32 columns all exist; a ragged last panel goes through scratch.
                let whole = min(panels, (n - q0 * block) / block)
                Scratch.withFloats(block * block * panelsPerCall) { out in
                    for p in p0..<p1 {
                        let aPanel = packedA + p * panelValues, cBlock = c + p * block * ldc + q0 * block
                        var done = 0
                        if direct && whole > 0 && m - p * block >= block {
                            // The tiles start from C or the bias and store straight into C.
                            let (initial, stride): (UnsafePointer<Float>?, Int) =
                                beta == 1 ? (UnsafePointer(cBlock), ldc) : (bias.map { $0 + q0 * block }, 0)
                            camx_panel(aPanel, packedB + q0 * panelValues, whole, blocks, cBlock, ldc, initial, stride)
                            done = whole
                        }
                        guard done < panels else { continue }
                        let q = q0 + done
                        camx_panel(aPanel, packedB + q * panelValues, panels - done, blocks, out, (panels - done) * block, nil, 0)
                        store(out, stride: (panels - done) * block, rows: min(block, m - p * block),
                              cols: min((panels - done) * block, n - q * block), alpha: alpha, beta: beta,
                              c: c + p * block * ldc + q * block, ldc: ldc, bias: bias.map { $0 + q * block })
                    }
                }
            }
            let tasks = chunks * rowGroups
            if parallel { pool.parallelFor(tasks) { task, _ in multiply(task) } } else { for t in 0..<tasks { multiply(t) } }
        }
    }

    /// `C = alpha * out + beta * C + bias` over a `rows x cols` block.
    @inline(__always)
    static func store(
        _ out: UnsafeMutablePointer<Float>, stride: Int, rows: Int, cols: Int, alpha: Float, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?
    ) {
        let va = SIMD16<Float>(repeating: alpha), vb = SIMD16<Float>(repeating: beta)
        for r in 0..<rows {
            let src = out + r * stride, dst = c + r * ldc
            var j = 0
            while j + 16 <= cols {
                var v = va * load16(src + j)
                if beta != 0 { v.addProduct(vb, load16(dst + j)) }
                if let bias { v += load16(bias + j) }
                store16(v, dst + j)
                j += 16
            }
            while j < cols {
                var v = alpha * src[j]
                if beta != 0 { v += beta * dst[j] }
                if let bias { v += bias[j] }
                dst[j] = v
                j += 1
            }
        }
    }

    /// Without AMX: the operands rounded to bf16 in fp32 copies, then `sgemm`. Same products and
    /// fp32 sums; only the order of the sums differs from the tile path.
    static func emulated(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, pool: ThreadPool
    ) {
        let aRows = transA == .none ? m : k, aCols = transA == .none ? k : m
        let bRows = transB == .none ? k : n, bCols = transB == .none ? n : k
        Scratch.withFloats(aRows * aCols + bRows * bCols) { copy in
            let ra = copy, rb = copy + aRows * aCols
            for r in 0..<aRows { for j in 0..<aCols { ra[r * aCols + j] = round(a[r * lda + j]) } }
            for r in 0..<bRows { for j in 0..<bCols { rb[r * bCols + j] = round(b[r * ldb + j]) } }
            sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: ra, lda: aCols, b: rb, ldb: bCols,
                  beta: beta, c: c, ldc: ldc, bias: bias, pool: pool)
        }
    }
}
