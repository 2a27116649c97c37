/// Elementwise and reduction kernels over contiguous float vectors.
///
/// Each processes 16 lanes at a time with a scalar tail. Reductions keep four independent
/// accumulators so the FMA latency is hidden.

/// `sum(x[i] * y[i])`.
@inline(__always)
public func dotProduct(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Float {
    var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
    var i = 0
    while i + 64 <= n {
        s0 = s0.addingProduct(load16(x + i), load16(y + i))
        s1 = s1.addingProduct(load16(x + i + 16), load16(y + i + 16))
        s2 = s2.addingProduct(load16(x + i + 32), load16(y + i + 32))
        s3 = s3.addingProduct(load16(x + i + 48), load16(y + i + 48))
        i += 64
    }
    while i + 16 <= n {
        s0 = s0.addingProduct(load16(x + i), load16(y + i))
        i += 16
    }
    var total = ((s0 + s1) + (s2 + s3)).sum()
    while i < n {
        total += x[i] * y[i]
        i += 1
    }
    return total
}

/// `sum(x[i])`.
public func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    var s0 = SIMD16<Float>(), s1 = SIMD16<Float>()
    var i = 0
    while i + 32 <= n {
        s0 += load16(x + i)
        s1 += load16(x + i + 16)
        i += 32
    }
    while i + 16 <= n {
        s0 += load16(x + i)
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < n {
        total += x[i]
        i += 1
    }
    return total
}

/// `sum(x[i] * x[i])`.
public func sumOfSquares(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    dotProduct(x, x, count: n)
}

/// The largest element; `-infinity` for an empty vector. NaN elements are ignored.
public func maximum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    // Four running maxima: one compare-and-blend chain would wait on its own latency every vector.
    var m0 = SIMD16<Float>(repeating: -.infinity), m1 = m0, m2 = m0, m3 = m0
    var i = 0
    while i + 64 <= n {
        let v0 = load16(x + i), v1 = load16(x + i + 16), v2 = load16(x + i + 32), v3 = load16(x + i + 48)
        m0.replace(with: v0, where: v0 .> m0)
        m1.replace(with: v1, where: v1 .> m1)
        m2.replace(with: v2, where: v2 .> m2)
        m3.replace(with: v3, where: v3 .> m3)
        i += 64
    }
    while i + 16 <= n {
        let v = load16(x + i)
        m0.replace(with: v, where: v .> m0)
        i += 16
    }
    m0.replace(with: m1, where: m1 .> m0)
    m2.replace(with: m3, where: m3 .> m2)
    m0.replace(with: m2, where: m2 .> m0)
    var best = horizontalMax(m0)
    while i < n {
        best = Swift.max(best, x[i])
        i += 1
    }
    return best
}

/// `out[i] = x[i] + y[i]`; `out` may alias `x` or `y`.
public func add(
    _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
    count n: Int
) {
    var i = 0
    while i + 16 <= n {
        store16(load16(x + i) + load16(y + i), out + i)
        i += 16
    }
    while i < n {
        out[i] = x[i] + y[i]
        i += 1
    }
}

/// `x[i] *= alpha`.
public func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(load16(x + i) * alpha, x + i)
        i += 16
    }
    while i < n {
        x[i] *= alpha
        i += 1
    }
}

/// `y[i] += alpha * x[i]`.
public func axpy(
    _ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int
) {
    var i = 0
    while i + 16 <= n {
        store16(load16(y + i).addingProduct(alpha, load16(x + i)), y + i)
        i += 16
    }
    while i < n {
        y[i] += alpha * x[i]
        i += 1
    }
}

/// The index of the first NaN or infinity in `x`, if any.
public func firstNonFinite(_ x: UnsafePointer<Float>, count n: Int) -> Int? {
    // x - x is 0 for finite x and NaN otherwise; a block's sum tells whether to look closer.
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let z = v - v
        if z.sum() != 0 {   // NaN compares unequal to everything
            for j in 0..<16 where !x[i + j].isFinite { return i + j }
        }
        i += 16
    }
    while i < n {
        if !x[i].isFinite { return i }
        i += 1
    }
    return nil
}
