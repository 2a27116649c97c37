/// LayerNorm and RMSNorm over the last dimension of a `[rows, dim]` matrix, forward and
/// backward.
///
/// Forward saves per-row statistics (`mean`, `rstd`) for the backward pass. Backward
/// *accumulates* into `dx` (it is a residual-stream gradient in a pre-norm block) and into the
/// parameter gradients. Parameter gradients are reduced over a fixed number of row chunks, so
/// the result does not depend on the thread count.

/// Row chunks for parameter-gradient reductions: fixed, so results are the same on any pool.
let reductionChunks = 16

/// `y = (x - mean) * rstd * weight + bias` per row; `bias` may be nil. Writes `mean` and `rstd`
/// (`rows` values each) when given.
public func layerNormForward(
    _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    into y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>?,
    rstd: UnsafeMutablePointer<Float>?, rows: Int, dim: Int, eps: Float,
    pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 8 * dim) { range, _ in
        for r in range {
            let xr = x + r * dim, yr = y + r * dim
            let mu = sum(xr, count: dim) / Float(dim)
            // Two passes: the variance about the mean, not E[x²] - mean², which cancels badly.
            var acc = SIMD16<Float>()
            var i = 0
            while i + 16 <= dim {
                let d = load16(xr + i) - mu
                acc = acc.addingProduct(d, d)
                i += 16
            }
            var variance = acc.sum()
            while i < dim {
                let d = xr[i] - mu
                variance += d * d
                i += 1
            }
            variance /= Float(dim)
            let s = 1 / (variance + eps).squareRoot()
            i = 0
            while i + 16 <= dim {
                var v = (load16(xr + i) - mu) * s * load16(weight + i)
                if let bias { v += load16(bias + i) }
                store16(v, yr + i)
                i += 16
            }
            while i < dim {
                yr[i] = (xr[i] - mu) * s * weight[i] + (bias?[i] ?? 0)
                i += 1
            }
            mean?[r] = mu
            rstd?[r] = s
        }
    }
}

/// Backward of `layerNormForward`: `dx += ∂L/∂x`, `dweight += ∂L/∂weight`,
/// `dbias += ∂L/∂bias` (when given), from `dy`, the input `x` and the saved `mean` and `rstd`.
public func layerNormBackward(
    _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
    dbias: UnsafeMutablePointer<Float>?, rows: Int, dim: Int, pool: ThreadPool = .shared
) {
    normBackward(dy, x: x, weight: weight, mean: mean, rstd: rstd, dx: dx, dweight: dweight,
                 dbias: dbias, rows: rows, dim: dim, pool: pool)
}

/// `y = x * rstd * weight` per row with `rstd = 1 / sqrt(mean(x²) + eps)`. Writes `rstd` when
/// given.
public func rmsNormForward(
    _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
    rstd: UnsafeMutablePointer<Float>?, rows: Int, dim: Int, eps: Float,
    pool: ThreadPool = .shared
) {
    pool.parallelRanges(rows, costPerItem: 4 * dim) { range, _ in
        for r in range {
            let xr = x + r * dim, yr = y + r * dim
            let s = 1 / (sumOfSquares(xr, count: dim) / Float(dim) + eps).squareRoot()
            var i = 0
            while i + 16 <= dim {
                store16(load16(xr + i) * s * load16(weight + i), yr + i)
                i += 16
            }
            while i < dim {
                yr[i] = xr[i] * s * weight[i]
                i += 1
            }
            rstd?[r] = s
        }
    }
}

/// Backward of `rmsNormForward`: `dx += ∂L/∂x`, `dweight += ∂L/∂weight`.
public func rmsNormBackward(
    _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
    dweight: UnsafeMutablePointer<Float>?, rows: Int, dim: Int, pool: ThreadPool = .shared
) {
    normBackward(dy, x: x, weight: weight, mean: nil, rstd: rstd, dx: dx, dweight: dweight,
                 dbias: nil, rows: rows, dim: dim, pool: pool)
}

/// Shared backward of both norms. With `xhat = (x - mean) * rstd` (mean 0 for RMSNorm) and
/// `g = dy * weight`:
/// `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`, where RMSNorm drops the `mean(g)` term
/// because its output does not subtract the mean.
private func normBackward(
    _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    mean: UnsafePointer<Float>?, rstd: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
    dbias: UnsafeMutablePointer<Float>?, rows: Int, dim: Int, pool: ThreadPool
) {
    let chunks = min(rows, reductionChunks)
    let centered = mean != nil
    // Per-chunk partial parameter gradients: [chunks][2][dim].
    Scratch.withFloats(chunks * 2 * dim) { partial in
        partial.update(repeating: 0, count: chunks * 2 * dim)
        let work = rows * dim * 12
        let body = { (chunk: Int, _: Int) in
            let dw = partial + chunk * 2 * dim, db = dw + dim
            for r in (rows * chunk / chunks)..<(rows * (chunk + 1) / chunks) {
                let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
                let mu = mean?[r] ?? 0, s = rstd[r]
                // Row means of g and g * xhat.
                var sg = SIMD16<Float>(), sgx = SIMD16<Float>()
                var tg: Float = 0, tgx: Float = 0
                var i = 0
                while i + 16 <= dim {
                    let xhat = (load16(xr + i) - mu) * s
                    let d = load16(dyr + i)
                    let g = d * load16(weight + i)
                    sg += g
                    sgx = sgx.addingProduct(g, xhat)
                    store16(load16(dw + i).addingProduct(d, xhat), dw + i)
                    store16(load16(db + i) + d, db + i)
                    i += 16
                }
                while i < dim {
                    let xhat = (xr[i] - mu) * s
                    let g = dyr[i] * weight[i]
                    tg += g
                    tgx += g * xhat
                    dw[i] += dyr[i] * xhat
                    db[i] += dyr[i]
                    i += 1
                }
                let meanG = centered ? (sg.sum() + tg) / Float(dim) : 0
                let meanGX = (sgx.sum() + tgx) / Float(dim)
                i = 0
                while i + 16 <= dim {
                    let xhat = (load16(xr + i) - mu) * s
                    let g = load16(dyr + i) * load16(weight + i)
                    let grad = (g - meanG - xhat * meanGX) * s
                    store16(load16(dxr + i) + grad, dxr + i)
                    i += 16
                }
                while i < dim {
                    let xhat = (xr[i] - mu) * s
                    let g = dyr[i] * weight[i]
                    dxr[i] += (g - meanG - xhat * meanGX) * s
                    i += 1
                }
            }
        }
        if work >= ThreadPool.parallelWorkThreshold {
            pool.parallelFor(chunks, body)
        } else {
            for chunk in 0..<chunks { body(chunk, 0) }
        }
        for chunk in 0..<chunks {
            let dw = partial + chunk * 2 * dim
            if let dweight { axpy(1, dw, dweight, count: dim) }
            if let dbias { axpy(1, dw + dim, dbias, count: dim) }
        }
    }
}
