/// Numerically stable softmax over rows, and the masked, scaled form causal attention uses.

/// `y[r] = softmax(x[r])` for each of `rows` rows of length `cols`; `y` may alias `x`.
/// The row maximum is subtracted first, so no input overflows.
public func softmaxForward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
    pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 24 * cols) { range, _ in
        for r in range {
            softmaxRow(x + r * cols, into: y + r * cols, count: cols, scale: 1)
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
                               count: cols, scale: 1)
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
        softmaxRow(row, into: row, count: valid, scale: scale)
        if valid < cols { (row + valid).update(repeating: 0, count: cols - valid) }
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
        softmaxBackwardRow(row, y: probs + i * ld, into: row, count: valid, scale: scale)
        if valid < cols { (row + valid).update(repeating: 0, count: cols - valid) }
    }
}

/// `y = softmax(scale * x)` over one row; `y` may alias `x`.
@inline(__always)
func softmaxRow(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int, scale: Float
) {
    guard n > 0 else { return }
    let m = maximum(x, count: n) * scale
    // With a negative scale the maximum of scale * x is at the minimum of x; the kernels only
    // use positive scales, and a non-maximal shift is still exact, only less overflow-proof.
    var total = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        let e = exp16(load16(x + i) * scale - m)
        total += e
        store16(e, y + i)
        i += 16
    }
    var tail: Float = 0
    if i < n {
        var v = SIMD16<Float>(repeating: -.infinity)
        for j in i..<n { v[j - i] = x[j] * scale - m }
        let e = exp16(v)
        for j in i..<n {
            // exp16 clamps -inf to the smallest normal; masked lanes never reach the sum.
            y[j] = e[j - i]
            tail += e[j - i]
        }
    }
    Kernels.scale(y, by: 1 / (total.sum() + tail), count: n)
}

/// `dx = scale * y * (dy - sum(dy * y))` over one row; `dx` may alias `dy`.
@inline(__always)
func softmaxBackwardRow(
    _ dy: UnsafePointer<Float>, y: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
    count n: Int, scale: Float
) {
    let dot = dotProduct(dy, y, count: n)
    var i = 0
    while i + 16 <= n {
        store16(scale * load16(y + i) * (load16(dy + i) - dot), dx + i)
        i += 16
    }
    while i < n {
        dx[i] = scale * y[i] * (dy[i] - dot)
        i += 1
    }
}
