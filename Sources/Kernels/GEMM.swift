import CAMX

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none
    case transposed
}

/// Single-precision general matrix multiply on row-major matrices:
/// `C = alpha * op(A) * op(B) + beta * C`, with `op(A)` of shape `m x k` and `op(B)` of shape
/// `k x n`.
///
/// - `transA == .none`: `A` is `m x k` with row stride `lda`; `.transposed`: `A` is `k x m`.
/// - `transB == .none`: `B` is `k x n` with row stride `ldb`; `.transposed`: `B` is `n x k`
///   (the layout of a PyTorch `[out, in]` weight, so `X·Wᵀ` needs no copy).
/// - `beta == 0` never reads `C`, so `C` may hold garbage; `beta == 1` accumulates.
/// - `bias` (`n` values), when given, is added to every row of the result: a linear layer's bias
///   costs no pass of its own over `C`.
///
/// The algorithm is the classic packed one: B (and a transposed A) is packed into panels the
/// register micro-kernel (`GEMM.mr x GEMM.nr`) streams through, a row-major A is read in place,
/// blocked so a panel of A stays in L1 and a chunk of B in L2, and the tile grid is spread over
/// the pool; each thread packs the B chunk it works on into its own buffer. `m == 1` takes a
/// memory-bound GEMV path.
public func sgemm(
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
    if k == 0 || alpha == 0 || m == 1 || (bias != nil && alpha != 1) {
        if k == 0 || alpha == 0 {
            scaleRows(c, rows: m, cols: n, ld: ldc, by: beta)
        } else if m == 1 {
            gemv(transA, transB, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                 beta: beta, c: c, pool: pool)
        } else {
            GEMM.packed(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                        beta: beta, c: c, ldc: ldc, bias: nil, pool: pool)
        }
        if let bias {
            for r in 0..<m { add(c + r * ldc, bias, into: c + r * ldc, count: n) }
        }
        return
    }
    GEMM.packed(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                beta: beta, c: c, ldc: ldc, bias: bias, pool: pool)
}

/// Blocking parameters and the packed driver.
public enum GEMM {
    /// Rows of the register tile: 14 rows x 2 vectors = 28 accumulators of the 32 zmm registers.
    public static let mr = 14
    /// Columns of the register tile: two 16-float vectors.
    public static let nr = 32
    /// Whether the CPU has 32 registers of 16 floats (AVX-512) for the tile; otherwise the
    /// micro-kernel makes six passes of 16 columns by 5, 5 or 4 rows (`microKernel14x32Narrow`).
    public static let wideVectors = camx_wide_vectors() != 0
    /// Largest depth of a packed block: a 14 x 512 panel of A is 28 KiB and stays in the 48 KiB
    /// L1.
    static let kc = 512
    /// Columns of B one task streams: 512 x 512 floats is 1 MiB, resident in the 2 MiB L2.
    static let panelsPerChunk = 16

    static func packed(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, pool: ThreadPool
    ) {
        if transA == .transposed && m <= splitRows && k >= 2 * kc {
            splitDepth(transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc,
                       bias: bias, pool: pool)
            return
        }
        let mPanels = (m + mr - 1) / mr
        let nPanels = (n + nr - 1) / nr
        // Equal passes over k of at most `kc`: each pass re-reads and re-writes C.
        let passes = (k + kc - 1) / kc
        let depth = (k + passes - 1) / passes
        let threads = 2 * m * n * k >= 4 * ThreadPool.parallelWorkThreshold ? pool.threadCount : 1
        // A as stored needs no packing: its full panels are read in place (the micro-kernel takes
        // A's strides). A transposed panel is packed by the thread that uses it, into L1. The
        // narrow micro-kernel always reads a packed panel, its rows at fixed offsets from one
        // address: rows `lda` apart take an address register each (in the first narrow kernel
        // tried, with 14 accumulators, they spilled).
        let directA = transA == .none && wideVectors
        // The tile grid: column chunks of about `panelsPerChunk` panels times row groups, both cut
        // evenly, with a task count that is a multiple of the thread count where the rows allow,
        // so that no thread waits for a last odd task.
        let nChunks = (nPanels + panelsPerChunk - 1) / panelsPerChunk
        var rowGroups = min(mPanels, max(1, (4 * threads + nChunks - 1) / nChunks))
        while (rowGroups * nChunks) % threads != 0 && rowGroups < mPanels { rowGroups += 1 }
        let groups = rowGroups // constants, so the task functions below capture them by value

        // Each thread packs the B chunk of its task itself, into its own buffer, right before
        // using it: the panels are then in its own L2, not in the other core's (a cross-core
        // transfer per line, and again when the next pass repacks), and a pass needs no separate
        // packing phase and barrier. A chunk two threads both work on is packed twice; packing is
        // about 2% of the work. (Shared packing measured 10-45% slower on the weight-gradient
        // shapes of `bench kernels`.)
        let chunkFloats = panelsPerChunk * nr * depth
        Scratch.withFloats(pool.threadCount * (threadScratch + chunkFloats)) { perThread in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: pool.threadCount) { held in
                held.initialize(repeating: -1) // the (pass, chunk) each thread's buffer holds
                var depthDone = 0
                while depthDone < k {
                    let p0 = depthDone
                    let kcNow = min(depth, k - p0)
                    let betaNow = p0 == 0 ? beta : 1
                    let biasNow = p0 == 0 ? bias : nil // added once, with the first pass
                    // A local function, not a closure value: its captures stay on the stack.
                    func compute(_ task: Int, _ worker: Int) {
                        let scratch = perThread + worker * threadScratch
                        let block = UnsafeMutableRawPointer(scratch).assumingMemoryBound(to: SIMD16<Float>.self)
                        let panelA = scratch + 512 + mr * nr
                        let group = task % groups, chunk = task / groups
                        let ip0 = mPanels * group / groups, ip1 = mPanels * (group + 1) / groups
                        let jp0 = nPanels * chunk / nChunks, jp1 = nPanels * (chunk + 1) / nChunks
                        let chunkB = perThread + pool.threadCount * threadScratch + worker * chunkFloats
                        let key = p0 * nChunks + chunk
                        if held[worker] != key {
                            // Groups of panels: where B's rows are strided, a group reads a longer
                            // contiguous run per row.
                            var first = jp0
                            while first < jp1 {
                                let last = min(jp1, first + packGroup)
                                packBGroup(transB, b, ldb, n: n, panels: first..<last, p0: p0, kc: kcNow,
                                           into: chunkB + (first - jp0) * nr * kcNow, block: block)
                                first = last
                            }
                            held[worker] = key
                        }
                        for ip in ip0..<ip1 {
                            // A full panel of A as stored is read in place; a transposed or partial
                            // one is packed here, into L1, right before its row of tiles.
                            let inPlace = directA && (ip + 1) * mr <= m
                            var packed = false
                            if !inPlace {
                                packA(transA, a, lda, m: m, row: ip * mr, p0: p0, kc: kcNow, into: panelA, block: block)
                                packed = true
                            }
                            for jp in jp0..<jp1 {
                                let panelB = chunkB + (jp - jp0) * nr * kcNow
                                if inPlace && (jp + 1) * nr <= n {
                                    microKernel14x32(kcNow, a: a + ip * mr * lda + p0, aRow: lda, aColumn: 1, b: panelB,
                                                     bRow: nr, c: c + ip * mr * ldc + jp * nr, ldc: ldc, alpha: alpha, beta: betaNow,
                                                     bias: biasNow.map { $0 + jp * nr })
                                    continue
                                }
                                if !packed {
                                    // An edge column tile of a panel read in place: the edge path
                                    // takes a packed panel.
                                    packA(transA, a, lda, m: m, row: ip * mr, p0: p0, kc: kcNow, into: panelA, block: block)
                                    packed = true
                                }
                                tile(row: ip * mr, col: jp * nr, m: m, n: n, kc: kcNow, a: panelA, b: panelB,
                                     c: c, ldc: ldc, alpha: alpha, beta: betaNow, bias: biasNow, buffer: scratch + 512)
                            }
                        }
                    }
                    if threads > 1 {
                        pool.parallelFor(groups * nChunks, compute)
                    } else {
                        for t in 0..<(groups * nChunks) { compute(t, 0) }
                    }
                    depthDone += kcNow
                }
            }
        }
    }

    /// Up to this many rows of C, a weight gradient `Aᵀ·B` is split over its depth.
    static let splitRows = 512

    /// `C = alpha Aᵀ·B + beta C` as a sum over parts of the depth (the rows of a batch), computed
    /// in parallel, each part by one thread, then added up in a fixed order. For a weight gradient
    /// with few output rows each thread would otherwise pack all of B (the layer's input) for
    /// a product that uses each packed value only `m` times, which costs as much as the product.
    /// The parts do not depend on the thread count, so neither do the results.
    static func splitDepth(
        _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, pool: ThreadPool
    ) {
        let parts = min(4, k / kc)
        Scratch.withFloats((parts - 1) * m * n) { partial in
            pool.parallelFor(parts) { part, _ in
                let k0 = k * part / parts, k1 = k * (part + 1) / parts
                // Inside a pool task the nested GEMM runs on this thread alone.
                packed(.transposed, transB, m: m, n: n, k: k1 - k0, alpha: alpha, a: a + k0 * lda, lda: lda,
                       b: transB == .none ? b + k0 * ldb : b + k0, ldb: ldb,
                       beta: part == 0 ? beta : 0, c: part == 0 ? c : partial + (part - 1) * m * n,
                       ldc: part == 0 ? ldc : n, bias: part == 0 ? bias : nil, pool: pool)
            }
            pool.parallelRanges(m, costPerItem: parts * n) { rows, _ in
                for r in rows {
                    for part in 1..<parts { add(c + r * ldc, partial + (part - 1) * m * n + r * n, into: c + r * ldc, count: n) }
                }
            }
        }
    }

    /// One register tile of C (plus `bias[col...]` per row); edge tiles go through a small buffer.
    @inline(__always)
    static func tile(
        row: Int, col: Int, m: Int, n: Int, kc: Int,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
        buffer: UnsafeMutablePointer<Float>
    ) {
        let rows = min(mr, m - row), cols = min(nr, n - col)
        let target = c + row * ldc + col
        if rows == mr && cols == nr {
            microKernel14x32(kc, a: a, aRow: 1, aColumn: mr, b: b, bRow: nr, c: target, ldc: ldc, alpha: alpha, beta: beta,
                             bias: bias.map { $0 + col })
            return
        }
        microKernel14x32(kc, a: a, aRow: 1, aColumn: mr, b: b, bRow: nr, c: buffer, ldc: nr, alpha: alpha, beta: 0)
        for r in 0..<rows {
            let dst = target + r * ldc, src = buffer + r * nr
            // The same order of additions as the micro-kernel's: (product + bias), then + beta·C.
            if let bias {
                for j in 0..<cols { src[j] += bias[col + j] }
            }
            if beta == 0 {
                for j in 0..<cols { dst[j] = src[j] }
            } else {
                for j in 0..<cols { dst[j] = beta * dst[j] + src[j] }
            }
        }
    }

    /// Panels packed by one task.
    static let packGroup = 8

    /// Per-thread scratch, in floats: a 16 x 16 transpose block and its partner (512), an edge
    /// tile of C (`mr * nr`), and one packed A panel (`mr * kc`). Taken once per
    /// GEMM from `Scratch`, so no call allocates (stack temporaries of this size would be heap).
    static let threadScratch = 512 + mr * nr + mr * kc

    /// Packs the B panels `panels` (each `nr` columns) one after another from `packed` on.
    static func packBGroup(
        _ trans: Transpose, _ b: UnsafePointer<Float>, _ ldb: Int,
        n: Int, panels: Range<Int>, p0: Int, kc: Int, into packed: UnsafeMutablePointer<Float>,
        block: UnsafeMutablePointer<SIMD16<Float>>
    ) {
        if trans == .none && panels.upperBound * nr <= n {
            // Walk k once; each row of B gives every panel of the group its 32 values.
            for p in 0..<kc {
                let src = b + (p0 + p) * ldb + panels.lowerBound * nr
                for index in 0..<panels.count {
                    let dst = packed + index * nr * kc + p * nr
                    store16(load16(src + index * nr), dst)
                    store16(load16(src + index * nr + 16), dst + 16)
                }
            }
            return
        }
        for (index, panel) in panels.enumerated() {
            packB(trans, b, ldb, n: n, col: panel * nr, p0: p0, kc: kc, into: packed + index * nr * kc, block: block)
        }
    }

    /// Packs rows `row..<row+mr` of op(A), depth `p0..<p0+kc`, as `kc` groups of `mr` values.
    /// Rows past `m` are zero.
    static func packA(
        _ trans: Transpose, _ a: UnsafePointer<Float>, _ lda: Int,
        m: Int, row: Int, p0: Int, kc: Int, into dst: UnsafeMutablePointer<Float>,
        block: UnsafeMutablePointer<SIMD16<Float>>
    ) {
        let rows = min(mr, m - row)
        switch trans {
        case .none:
            // 16 x 16 blocks through registers: rows past `rows` (and rows 14, 15) are zero,
            // and each 16-wide store spills two floats into the next k's slot, which the next
            // store overwrites; the panel's last k is stored element by element.
            var p = 0
            do {
                for r in rows..<16 { block[r] = SIMD16() }
                while p + 16 <= kc {
                    for r in 0..<rows { block[r] = load16(a + (row + r) * lda + p0 + p) }
                    for r in rows..<16 { block[r] = SIMD16() }
                    transpose16x16(block, scratch: block + 16)
                    let last = p + 16 == kc ? 15 : 16
                    for q in 0..<last { store16(block[q], dst + (p + q) * mr) }
                    if last == 15 {
                        for r in 0..<mr { dst[(p + 15) * mr + r] = block[15][r] }
                    }
                    p += 16
                }
            }
            if p < kc {
                for r in 0..<rows {
                    let src = a + (row + r) * lda + p0
                    for q in p..<kc { dst[q * mr + r] = src[q] }
                }
                for q in p..<kc {
                    for r in rows..<mr { dst[q * mr + r] = 0 }
                }
            }
            return
        case .transposed:
            // Rows are contiguous here. A 16-wide load stays inside A when two more columns
            // exist; its store spills into the next k's slot, overwritten next, except at the
            // panel's last k.
            if rows == mr && row + 16 <= m {
                for p in 0..<(kc - 1) { store16(load16(a + (p0 + p) * lda + row), dst + p * mr) }
                let src = a + (p0 + kc - 1) * lda + row
                for r in 0..<mr { dst[(kc - 1) * mr + r] = src[r] }
                return
            }
            for p in 0..<kc {
                let src = a + (p0 + p) * lda + row
                for r in 0..<rows { dst[p * mr + r] = src[r] }
            }
        }
        if rows < mr {
            for p in 0..<kc {
                for r in rows..<mr { dst[p * mr + r] = 0 }
            }
        }
    }

    /// Packs columns `col..<col+nr` of op(B), depth `p0..<p0+kc`, as `kc` groups of `nr`
    /// values. Columns past `n` are zero.
    static func packB(
        _ trans: Transpose, _ b: UnsafePointer<Float>, _ ldb: Int,
        n: Int, col: Int, p0: Int, kc: Int, into dst: UnsafeMutablePointer<Float>,
        block: UnsafeMutablePointer<SIMD16<Float>>
    ) {
        let cols = min(nr, n - col)
        switch trans {
        case .none:
            if cols == nr {
                for p in 0..<kc {
                    let src = b + (p0 + p) * ldb + col
                    store16(load16(src), dst + p * nr)
                    store16(load16(src + 16), dst + p * nr + 16)
                }
                return
            }
            for p in 0..<kc {
                let src = b + (p0 + p) * ldb + col
                for j in 0..<cols { dst[p * nr + j] = src[j] }
            }
        case .transposed:
            var p = 0
            if cols == nr {
                do {
                    while p + 16 <= kc {
                        for half in 0..<2 {
                            for j in 0..<16 { block[j] = load16(b + (col + 16 * half + j) * ldb + p0 + p) }
                            transpose16x16(block, scratch: block + 16)
                            for q in 0..<16 { store16(block[q], dst + (p + q) * nr + 16 * half) }
                        }
                        p += 16
                    }
                }
            }
            if p < kc {
                for j in 0..<cols {
                    let src = b + (col + j) * ldb + p0
                    for q in p..<kc { dst[q * nr + j] = src[q] }
                }
            }
        }
        if cols < nr {
            for p in 0..<kc {
                for j in cols..<nr { dst[p * nr + j] = 0 }
            }
        }
    }
}

/// Transposes a 16 x 16 block held as 16 row vectors, in place (`scratch` holds 16 more).
///
/// Four perfect unshuffles: each moves even-indexed elements of the 256-element block to the
/// front and odd ones to the back, which rotates an element's 8-bit index right by one bit;
/// four rotations turn row-major `(r, c)` into `(c, r)`. Each output vector is one two-source
/// permute (`vpermt2ps`) on AVX-512.
@inline(__always)
func transpose16x16(
    _ block: UnsafeMutablePointer<SIMD16<Float>>, scratch: UnsafeMutablePointer<SIMD16<Float>>
) {
    var source = block, target = scratch
    for _ in 0..<4 {
        for k in 0..<8 {
            let x = source[2 * k], y = source[2 * k + 1]
            target[k] = SIMD16(lowHalf: x.evenHalf, highHalf: y.evenHalf)
            target[k + 8] = SIMD16(lowHalf: x.oddHalf, highHalf: y.oddHalf)
        }
        swap(&source, &target)
    }
}

/// `C = beta * C` over a strided block; `beta == 0` writes zeros without reading.
func scaleRows(_ c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, by beta: Float) {
    if beta == 1 { return }
    for r in 0..<rows {
        let row = c + r * ld
        if beta == 0 {
            row.update(repeating: 0, count: cols)
        } else {
            for j in 0..<cols { row[j] *= beta }
        }
    }
}
