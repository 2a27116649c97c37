import Foundation

/// Cross-entropy of softmax(logits) against integer targets, per row of a `[rows, vocab]`
/// matrix. A negative target marks a row that does not count (a masked position): its loss and
/// gradient are 0.

/// `losses[r] = logsumexp(logits[r]) - logits[r, targets[r]]`.
/// With `logSumExps`, also stores each row's `logsumexp`, which lets the backward pass make the
/// gradient in one pass over the logits instead of three.
public func crossEntropyForward(
    logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    losses: UnsafeMutablePointer<Float>, logSumExps: UnsafeMutablePointer<Float>? = nil,
    rows: Int, vocab: Int, pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 20 * vocab) { range, _ in
        for r in range {
            let target = Int(targets[r])
            guard target >= 0 else {
                losses[r] = 0
                logSumExps?[r] = 0
                continue
            }
            let row = logits + r * vocab
            let lse = logSumExp(row, count: vocab)
            logSumExps?[r] = lse
            losses[r] = lse - row[target]
        }
    }
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
            let g = dloss[r]
            var i = 0
            while i + 16 <= vocab {
                store16(exp16(load16(row + i) - lse) * g, out + i)
                i += 16
            }
            while i < vocab {
                out[i] = exp16(SIMD16(repeating: row[i] - lse))[0] * g
                i += 1
            }
            out[target] -= g
        }
    }
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
    var tail: Float = 0
    while i < n {
        tail += exp16(SIMD16(repeating: x[i] - m))[0]
        i += 1
    }
    return m + log(total.sum() + tail)
}
