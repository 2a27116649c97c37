/// GELU (tanh form, as GPT-2) and SiLU, forward and backward, elementwise over `count` floats.
///
/// Forward writes `y` (which may alias `x`); backward writes `dx = dy * f'(x)` (which may alias
/// `dy`).

private let geluC: Float = 0.797_884_56 // sqrt(2 / pi)
private let geluA: Float = 0.044_715

/// `y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))`.
public func geluForward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int,
    pool: ThreadPool = .shared
) {
    elementwise(n, cost: 24, pool: pool) { start, end in
        var i = start
        while i < end {
            let v = load16(x + i)
            let t = tanh16(geluC * v.addingProduct(geluA * v * v, v))
            store16(0.5 * v * (1 + t), y + i)
            i += 16
        }
    } scalar: { i in
        let v = x[i]
        let t = tanh16(SIMD16(repeating: geluC * (v + geluA * v * v * v)))[0]
        y[i] = 0.5 * v * (1 + t)
    }
}

/// `dx = dy * gelu'(x)`.
public func geluBackward(
    _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
    count n: Int, pool: ThreadPool = .shared
) {
    @inline(__always) func derivative(_ v: SIMD16<Float>) -> SIMD16<Float> {
        let v2 = v * v
        let t = tanh16(geluC * v.addingProduct(geluA * v2, v))
        let du = geluC * (1 + 3 * geluA * v2)
        return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du
    }
    elementwise(n, cost: 30, pool: pool) { start, end in
        var i = start
        while i < end {
            store16(load16(dy + i) * derivative(load16(x + i)), dx + i)
            i += 16
        }
    } scalar: { i in
        dx[i] = dy[i] * derivative(SIMD16(repeating: x[i]))[0]
    }
}

/// `y = x * sigmoid(x)`.
public func siluForward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int,
    pool: ThreadPool = .shared
) {
    elementwise(n, cost: 20, pool: pool) { start, end in
        var i = start
        while i < end {
            let v = load16(x + i)
            store16(v / (1 + exp16(-v)), y + i)
            i += 16
        }
    } scalar: { i in
        let v = x[i]
        y[i] = v / (1 + exp16(SIMD16(repeating: -v))[0])
    }
}

/// `dx = dy * silu'(x)` with `silu'(x) = s (1 + x (1 - s))`, `s = sigmoid(x)`.
public func siluBackward(
    _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
    count n: Int, pool: ThreadPool = .shared
) {
    @inline(__always) func derivative(_ v: SIMD16<Float>) -> SIMD16<Float> {
        let s = 1 / (1 + exp16(-v))
        return s * (1 + v * (1 - s))
    }
    elementwise(n, cost: 24, pool: pool) { start, end in
        var i = start
        while i < end {
            store16(load16(dy + i) * derivative(load16(x + i)), dx + i)
            i += 16
        }
    } scalar: { i in
        dx[i] = dy[i] * derivative(SIMD16(repeating: x[i]))[0]
    }
}

/// Runs `vector(start, end)` on 16-aligned element ranges covering the whole blocks of 16 and
/// `scalar(i)` for the tail, split over the pool when `count * cost` is worth it. The vector
/// body loops itself: called once per block, it was an out-of-line call (with `vzeroupper`) per
/// 16 floats and ran 2-3 times slower.
@inline(__always)
func elementwise(
    _ n: Int, cost: Int, pool: ThreadPool,
    vector: (_ start: Int, _ end: Int) -> Void, scalar: (Int) -> Void
) {
    let blocks = n / 16
    pool.parallelRanges(blocks, costPerItem: 16 * cost) { range, _ in
        vector(range.lowerBound * 16, range.upperBound * 16)
    }
    for i in (blocks * 16)..<n { scalar(i) }
}

/// SwiGLU over rows of `[gate | up]` (each `dim` wide): `y = silu(gate) * up`, `rows x dim`.
public func swigluForward(
    _ gateUp: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, dim: Int,
    pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 24 * dim) { range, _ in
        for r in range {
            let gate = gateUp + r * 2 * dim, up = gate + dim, out = y + r * dim
            var i = 0
            while i + 16 <= dim {
                let g = load16(gate + i)
                store16(g / (1 + exp16(-g)) * load16(up + i), out + i)
                i += 16
            }
            while i < dim {
                let g = gate[i]
                out[i] = g / (1 + exp16(SIMD16(repeating: -g))[0]) * up[i]
                i += 1
            }
        }
    }
}

/// Backward of `swigluForward`: writes `[dgate | dup]` rows from `dy`:
/// `dgate = dy * up * silu'(gate)`, `dup = dy * silu(gate)`.
public func swigluBackward(
    _ dy: UnsafePointer<Float>, gateUp: UnsafePointer<Float>, into dGateUp: UnsafeMutablePointer<Float>,
    rows: Int, dim: Int, pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 30 * dim) { range, _ in
        for r in range {
            let gate = gateUp + r * 2 * dim, up = gate + dim, d = dy + r * dim
            let dGate = dGateUp + r * 2 * dim, dUp = dGate + dim
            var i = 0
            while i + 16 <= dim {
                let g = load16(gate + i), s = 1 / (1 + exp16(-g)), dv = load16(d + i)
                store16(dv * load16(up + i) * s * (1 + g * (1 - s)), dGate + i)
                store16(dv * g * s, dUp + i)
                i += 16
            }
            while i < dim {
                let g = gate[i], s = 1 / (1 + exp16(SIMD16(repeating: -g))[0])
                dGate[i] = d[i] * up[i] * s * (1 + g * (1 - s))
                dUp[i] = d[i] * g * s
                i += 1
            }
        }
    }
}

/// `x[i] *= mask[i]` (dropout with a mask of 0 and 1/(1-p)).
public func multiply(_ x: UnsafeMutablePointer<Float>, by mask: UnsafePointer<Float>, count n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(load16(x + i) * load16(mask + i), x + i)
        i += 16
    }
    while i < n {
        x[i] *= mask[i]
        i += 1
    }
}
