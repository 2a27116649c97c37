/// The `m == 1` case of `sgemm`: `c[1 x n] = alpha * op(a)[1 x k] * op(B) + beta * c`.
///
/// One row of output reads all of B once, so this path is bound by memory bandwidth, not
/// arithmetic: it streams B exactly once, split by columns across the pool.
func gemv(
    _ transA: Transpose, _ transB: Transpose, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, pool: ThreadPool
) {
    // A 1 x k row: contiguous unless A is transposed (then a column of a k x 1 matrix).
    if transA == .transposed && lda != 1 {
        Scratch.withFloats(k) { x in
            for p in 0..<k { x[p] = a[p * lda] }
            gemv(.none, transB, n: n, k: k, alpha: alpha, a: x, lda: k, b: b, ldb: ldb,
                 beta: beta, c: c, pool: pool)
        }
        return
    }
    switch transB {
    case .transposed:
        // c[j] = dot(a, B[j, :]) over contiguous rows of B.
        pool.parallelRanges(n, costPerItem: 2 * k) { range, _ in
            for j in range {
                let dot = dotProduct(a, b + j * ldb, count: k)
                c[j] = beta == 0 ? alpha * dot : alpha * dot + beta * c[j]
            }
        }
    case .none:
        // c[j0..<j0+64] accumulates a[p] * B[p, j0..<j0+64] in four registers over all p.
        let blocks = (n + 63) / 64
        pool.parallelRanges(blocks, costPerItem: 128 * k) { range, _ in
            for block in range {
                let j0 = block * 64
                if j0 + 64 <= n {
                    var s0 = SIMD16<Float>(), s1 = SIMD16<Float>()
                    var s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
                    for p in 0..<k {
                        let x = SIMD16<Float>(repeating: a[p])
                        let row = b + p * ldb + j0
                        s0 = s0.addingProduct(x, load16(row))
                        s1 = s1.addingProduct(x, load16(row + 16))
                        s2 = s2.addingProduct(x, load16(row + 32))
                        s3 = s3.addingProduct(x, load16(row + 48))
                    }
                    let out = c + j0
                    if beta == 0 {
                        store16(s0 * alpha, out); store16(s1 * alpha, out + 16)
                        store16(s2 * alpha, out + 32); store16(s3 * alpha, out + 48)
                    } else {
                        store16((s0 * alpha).addingProduct(beta, load16(out)), out)
                        store16((s1 * alpha).addingProduct(beta, load16(out + 16)), out + 16)
                        store16((s2 * alpha).addingProduct(beta, load16(out + 32)), out + 32)
                        store16((s3 * alpha).addingProduct(beta, load16(out + 48)), out + 48)
                    }
                } else {
                    for j in j0..<n {
                        var sum: Float = 0
                        for p in 0..<k { sum += a[p] * b[p * ldb + j] }
                        c[j] = beta == 0 ? alpha * sum : alpha * sum + beta * c[j]
                    }
                }
            }
        }
    }
}
