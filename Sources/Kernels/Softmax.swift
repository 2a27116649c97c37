/// Numerically stable softmax over rows, and the masked, scaled form causal attention uses.

/// `y[r] = softmax(x[r])` for each of `rows` rows of length `cols`; `y` may alias `x`.
/// The row maximum is subtracted first, so no input overflows.
public func softmaxForward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
    pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 24 * cols) { range, _ in
        for r in range {
            softmaxRow(x + r * cols, into: y + r * cols, count: cols, scale: 1, capacity: cols)
        }
    }
}

/// `dx = y * (dy - sum(dy * y))` per row, from the softmax output `y`; `dx` may alias `dy`.
public func softmaxBackward(
    _ dy: UnsafePointer<Float>, y: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
    rows: Int, cols: Int, pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 4 * cols) { range, _ in
        for r in range {
            softmaxBackwardRow(dy + r * cols, y: y + r * cols, into: dx + r * cols,
                               count: cols, scale: 1, capacity: cols)
        }
    }
}

/// Causal attention's softmax, in place on a `[rows, cols]` score matrix with row stride `ld`:
/// row `i` becomes `softmax(scale * s[i, 0...i+offset])` and its columns past `i + offset` become
/// 0. `offset = cols - rows` when the rows are the last queries of a `cols`-long sequence (the
/// KV-cache case); 0 for a full sequence.
public func causalSoftmaxForward(
    _ scores: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, offset: Int,
    scale: Float
) {
    for i in 0..<rows {
        let row = scores + i * ld
        let valid = min(cols, max(0, i + offset + 1))
        softmaxRow(row, into: row, count: valid, scale: scale, capacity: cols)
        zeroPast(valid: valid, in: row, cols: cols)
    }
}

/// The numerators of `causalSoftmaxForward`, in place: row `i` becomes
/// `e^(scale·s[i, j] − max)` for `j <= i + offset` and 0 past it, and `sums[i]` gets the row's
/// sum. Dividing a product of these rows by the sums afterwards (attention's output, `hd` values
/// a row) gives the softmax's result without a pass over every weight.
public func causalExponentials(
    _ scores: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, offset: Int, scale: Float,
    sums: UnsafeMutablePointer<Float>
) {
    for i in 0..<rows {
        let row = scores + i * ld
        let valid = min(cols, max(0, i + offset + 1))
        sums[i] = valid > 0 ? exponentialsRow(row, into: row, count: valid, scale: scale, capacity: cols) : 0
        zeroPast(valid: valid, in: row, cols: cols)
    }
}

/// Backward of `causalSoftmaxForward`, in place: `dscores = scale * p * (dp - sum(dp * p))` on
/// the unmasked part of each row and 0 past it. `probs` is the forward output.
public func causalSoftmaxBackward(
    _ dprobs: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>, rows: Int, cols: Int,
    ld: Int, offset: Int, scale: Float
) {
    for i in 0..<rows {
        let valid = min(cols, max(0, i + offset + 1))
        let row = dprobs + i * ld
        softmaxBackwardRow(row, y: probs + i * ld, into: row, count: valid, scale: scale, capacity: cols)
        zeroPast(valid: valid, in: row, cols: cols)
    }
}

/// Zeros columns `valid..<cols` of a row that a row kernel with `capacity: cols` wrote up to
/// `valid`: its last, partial vector already zeroed the columns up to the next multiple of 16
/// when that fitted.
@inline(__always)
func zeroPast(valid: Int, in row: UnsafeMutablePointer<Float>, cols: Int) {
    let full = valid / 16 * 16
    let written = valid > full && full + 16 <= cols ? full + 16 : valid
    if written < cols { (row + written).update(repeating: 0, count: cols - written) }
}

/// `y = softmax(scale * x)` over one row; `y` may alias `x`.
///
/// `capacity` (at least `n`) is how many floats from the row's start may be read and written:
/// where a last partial vector fits in it, it is one load with the extra lanes masked and one
/// store that writes zeros past `n`, instead of a lane-by-lane loop.
@inline(__always)
func softmaxRow(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int, scale: Float, capacity: Int
) {
    guard n > 0 else { return }
    let inverse = 1 / exponentialsRow(x, into: y, count: n, scale: scale, capacity: capacity)
    let full = n / 16 * 16, rest = n - full
    var i = 0
    while i < full {
        store16(load16(y + i) * inverse, y + i)
        i += 16
    }
    if rest > 0 {
        if full + 16 <= capacity {
            store16(load16(y + full) * inverse, y + full)
        } else {
            for j in full..<n { y[j] *= inverse }
        }
    }
}

/// The softmax's numerators over one row, `y = e^(scale·x − max(scale·x))`, and their sum; `y`
/// may alias `x`, and `capacity` is as in `softmaxRow` (past `n` the wide path writes zeros).
@inline(__always)
func exponentialsRow(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int, scale: Float, capacity: Int
) -> Float {
    let full = n / 16 * 16, rest = n - full, wide = full + 16 <= capacity
    var best = SIMD16<Float>(repeating: -.infinity)
    var i = 0
    while i < full {
        let v = load16(x + i)
        best.replace(with: v, where: v .> best)
        i += 16
    }
    if rest > 0 {
        let v = loadPartial16(x + full, count: rest, fill: -.infinity, wide: wide)
        best.replace(with: v, where: v .> best)
    }
    // With a negative scale the maximum of scale * x is at the minimum of x; the kernels only
    // use positive scales, and a non-maximal shift is still exact, only less overflow-proof.
    let m = SIMD16<Float>(repeating: horizontalMax(best) * scale)
    var total = SIMD16<Float>()
    i = 0
    while i < full {
        let e = exp16(load16(x + i) * scale - m)
        total += e
        store16(e, y + i)
        i += 16
    }
    if rest > 0 {
        // exp16 clamps -inf to the smallest normal, so masked lanes are zeroed explicitly.
        var last = exp16(loadPartial16(x + full, count: rest, fill: -.infinity, wide: wide) * scale - m)
        last.replace(with: 0, where: laneIndices .>= SIMD16<Int32>(repeating: Int32(rest)))
        total += last
        if wide {
            store16(last, y + full)
        } else {
            for j in 0..<rest { y[full + j] = last[j] }
        }
    }
    return horizontalSum(total)
}

/// `dx = scale * y * (dy - sum(dy * y))` over one row; `dx` may alias `dy`. `capacity` as in
/// `softmaxRow`; past `n` the wide path writes zeros.
@inline(__always)
func softmaxBackwardRow(
    _ dy: UnsafePointer<Float>, y: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
    count n: Int, scale: Float, capacity: Int
) {
    let full = n / 16 * 16, rest = n - full, wide = full + 16 <= capacity
    var s0 = SIMD16<Float>(), s1 = SIMD16<Float>()
    var i = 0
    while i + 32 <= full {
        s0 = s0.addingProduct(load16(dy + i), load16(y + i))
        s1 = s1.addingProduct(load16(dy + i + 16), load16(y + i + 16))
        i += 32
    }
    if i < full { s0 = s0.addingProduct(load16(dy + i), load16(y + i)) }
    var lastDY = SIMD16<Float>(), lastY = SIMD16<Float>()
    if rest > 0 {
        lastDY = loadPartial16(dy + full, count: rest, fill: 0, wide: wide)
        lastY = loadPartial16(y + full, count: rest, fill: 0, wide: wide)
        s1 = s1.addingProduct(lastDY, lastY)
    }
    let dot = SIMD16<Float>(repeating: horizontalSum(s0 + s1))
    i = 0
    while i < full {
        store16(scale * load16(y + i) * (load16(dy + i) - dot), dx + i)
        i += 16
    }
    if rest > 0 {
        let last = scale * lastY * (lastDY - dot) // 0 past `n`: lastY is 0 there
        if wide {
            store16(last, dx + full)
        } else {
            for j in 0..<rest { dx[full + j] = last[j] }
        }
    }
}
