/// Token-embedding lookup and its gradient. Ids must be in `0..<rows of the table`; the model
/// validates them where they enter (a kernel cannot report an error without a cost per token).

/// `out[t] = table[ids[t]]` for `count` tokens of width `dim`.
public func embeddingForward(
    table: UnsafePointer<Float>, ids: UnsafePointer<Int32>, into out: UnsafeMutablePointer<Float>,
    count: Int, dim: Int
) {
    for t in 0..<count {
        (out + t * dim).update(from: table + Int(ids[t]) * dim, count: dim)
    }
}

/// `dtable[ids[t]] += dout[t]` for `count` tokens. Repeated ids accumulate. Parallel over
/// column slices, so no two threads touch the same float and the sum order is fixed.
public func embeddingBackward(
    _ dout: UnsafePointer<Float>, ids: UnsafePointer<Int32>, into dtable: UnsafeMutablePointer<Float>,
    count: Int, dim: Int, pool: ThreadPool = .shared
) {
    let slices = (dim + 15) / 16
    pool.parallelRanges(slices, costPerItem: 16 * count) { range, _ in
        let c0 = range.lowerBound * 16, c1 = min(dim, range.upperBound * 16)
        for t in 0..<count {
            axpy(1, dout + t * dim + c0, dtable + Int(ids[t]) * dim + c0, count: c1 - c0)
        }
    }
}

/// `dbias += sum over rows of dy[r]`: the gradient of a bias broadcast over rows.
public func accumulateColumnSums(
    _ dy: UnsafePointer<Float>, rows: Int, cols: Int, into dbias: UnsafeMutablePointer<Float>,
    scale: Float = 1, pool: ThreadPool = .shared
) {
    let slices = (cols + 15) / 16
    pool.parallelRanges(slices, costPerItem: 16 * rows) { range, _ in
        let c0 = range.lowerBound * 16, c1 = min(cols, range.upperBound * 16)
        for r in 0..<rows { axpy(scale, dy + r * cols + c0, dbias + c0, count: c1 - c0) }
    }
}
