import Foundation

/// Cross-entropy of softmax(logits) against integer targets, per row of a `[rows, vocab]`
/// matrix. A negative target marks a row that does not count (a masked position): its loss and
/// gradient are 0.

/// `losses[r] = logsumexp(logits[r]) - logits[r, targets[r]]`.
/// With `logSumExps`, also stores each row's `logsumexp`, which lets the backward pass make the
/// gradient in one pass over the logits instead of three.
/// With `gradients`, also writes each row's gradient for a row loss weight of 1,
/// `softmax(logits[r]) - onehot(targets[r])` (0 for rows that do not count), while the row is
/// still in cache: training then scales it inside the output layer's GEMMs instead of making
/// another two passes over the `[rows, vocab]` matrix. `gradients` may alias `logits`.
public func crossEntropyForward(
    logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    losses: UnsafeMutablePointer<Float>, logSumExps: UnsafeMutablePointer<Float>? = nil,
    gradients: UnsafeMutablePointer<Float>? = nil,
    rows: Int, vocab: Int, pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 20 * vocab) { range, _ in
        for r in range {
            let target = Int(targets[r])
            guard target >= 0 else {
                losses[r] = 0
                logSumExps?[r] = 0
                gradients?.advanced(by: r * vocab).update(repeating: 0, count: vocab)
                continue
            }
            let row = logits + r * vocab
            let targetLogit = row[target]
            let lse: Float
            if let gradients {
                lse = softmaxAndLogSumExp(row, into: gradients + r * vocab, count: vocab)
                gradients[r * vocab + target] -= 1
            } else {
                lse = logSumExp(row, count: vocab)
            }
            logSumExps?[r] = lse
            losses[r] = lse - targetLogit
        }
    }
}

/// `out = scale * (exp(row - lse) - onehot(target))`; `out` may alias `row`.
@inline(__always)
func softmaxGradientRow(
    _ row: UnsafePointer<Float>, lse: Float, target: Int, scale g: Float, into out: UnsafeMutablePointer<Float>, vocab: Int
) {
    let shift = SIMD16<Float>(repeating: lse), gv = SIMD16<Float>(repeating: g)
    var i = 0
    while i + 16 <= vocab {
        store16(exp16(load16(row + i) - shift) * gv, out + i)
        i += 16
    }
    if i < vocab {
        let e = exp16(loadPartial16(row + i, count: vocab - i, fill: 0, wide: false) - shift) * gv
        for j in i..<vocab { out[j] = e[j - i] }
    }
    out[target] -= g
}

/// `dlogits[r] = dloss[r] * (softmax(logits[r]) - onehot(targets[r]))`; `dlogits` may alias
/// `logits` (training overwrites the logits with their gradient to save a `[rows, vocab]`
/// buffer). `dloss` is the gradient of the total loss with respect to each row's loss, e.g.
/// `1 / count` for a mean.
/// `logSumExps`, from `crossEntropyForward` on the same logits, saves recomputing them.
public func crossEntropyBackward(
    logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, dloss: UnsafePointer<Float>,
    logSumExps: UnsafePointer<Float>? = nil,
    into dlogits: UnsafeMutablePointer<Float>, rows: Int, vocab: Int, pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 24 * vocab) { range, _ in
        for r in range {
            let target = Int(targets[r])
            let out = dlogits + r * vocab
            guard target >= 0 else {
                out.update(repeating: 0, count: vocab)
                continue
            }
            let row = logits + r * vocab
            let lse = logSumExps?[r] ?? logSumExp(row, count: vocab)
            softmaxGradientRow(row, lse: lse, target: target, scale: dloss[r], into: out, vocab: vocab)
        }
    }
}

/// `y = softmax(x)` (`y` may alias `x`), returning `logsumexp(x)`: each exponential is computed
/// once, stored, and scaled by the inverse sum in a last pass over the (cached) row.
@inline(__always)
func softmaxAndLogSumExp(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) -> Float {
    let m = maximum(x, count: n)
    guard m.isFinite else {
        y.update(repeating: .nan, count: n)
        return m
    }
    let shift = SIMD16<Float>(repeating: m)
    var total = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        let e = exp16(load16(x + i) - shift)
        total += e
        store16(e, y + i)
        i += 16
    }
    var last = SIMD16<Float>()
    if i < n {
        last = exp16(loadPartial16(x + i, count: n - i, fill: 0, wide: false) - shift)
        last.replace(with: 0, where: laneIndices .>= SIMD16<Int32>(repeating: Int32(n - i)))
        total += last
    }
    let sum = horizontalSum(total), inverse = SIMD16<Float>(repeating: 1 / sum)
    var j = 0
    while j + 16 <= n {
        store16(load16(y + j) * inverse, y + j)
        j += 16
    }
    if j < n {
        let tail = last * inverse
        for q in j..<n { y[q] = tail[q - j] }
    }
    return m + log(sum)
}

/// `log(sum(exp(x)))`, shifted by the maximum so it never overflows.
public func logSumExp(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    let m = maximum(x, count: n)
    guard m.isFinite else { return m }
    var total = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        total += exp16(load16(x + i) - m)
        i += 16
    }
    if i < n {
        var e = exp16(loadPartial16(x + i, count: n - i, fill: 0, wide: false) - m)
        e.replace(with: 0, where: laneIndices .>= SIMD16<Int32>(repeating: Int32(n - i)))
        total += e
    }
    return m + log(horizontalSum(total))
}
