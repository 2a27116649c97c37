import Kernels
import Testing

@Suite("sgemm against a double-precision reference")
struct GEMMTests {
    /// C = alpha op(A) op(B) + beta C in doubles, on the same strided storage.
    static func reference(
        _ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Double,
        a: [Float], lda: Int, b: [Float], ldb: Int, beta: Double, c: [Float], ldc: Int
    ) -> [Double] {
        var out = c.doubles
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = ta == .none ? a[i * lda + p] : a[p * lda + i]
                    let bv = tb == .none ? b[p * ldb + j] : b[j * ldb + p]
                    s += Double(av) * Double(bv)
                }
                out[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * Double(c[i * ldc + j]))
            }
        }
        return out
    }

    /// One entry of op(A)·op(B) in doubles, with the operands passed through `round` first.
    static func entry(
        _ i: Int, _ j: Int, _ ta: Transpose, _ tb: Transpose, k: Int, a: [Float], lda: Int, b: [Float], ldb: Int,
        round: (Float) -> Float = { $0 }
    ) -> Double {
        var s = 0.0
        for p in 0..<k {
            let av = ta == .none ? a[i * lda + p] : a[p * lda + i]
            let bv = tb == .none ? b[p * ldb + j] : b[j * ldb + p]
            s += Double(round(av)) * Double(round(bv))
        }
        return s
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var ta: Transpose, tb: Transpose, m: Int, n: Int, k: Int, pad: Int, alpha: Float, beta: Float, bias: Bool
        /// Strides and random contents of A, B and the starting C.
        func operands() -> (lda: Int, ldb: Int, ldc: Int, a: [Float], b: [Float], c: [Float]) {
            let lda = (ta == .none ? k : m) + pad, ldb = (tb == .none ? n : k) + pad, ldc = n + pad
            return (lda, ldb, ldc, randomFloats((ta == .none ? m : k) * lda, seed: 1),
                    randomFloats((tb == .none ? k : n) * ldb, seed: 2), randomFloats(m * ldc, seed: 3))
        }

        var testDescription: String { "\(ta)/\(tb) \(m)x\(n)x\(k) pad \(pad) α \(alpha) β \(beta)\(bias ? " bias" : "")" }
    }

    static let edge = [1, 3, 17, 64, 257]
    static var cases: [Case] {
        var list: [Case] = []
        var seed: UInt64 = 7
        for ta in [Transpose.none, .transposed] {
            for tb in [Transpose.none, .transposed] {
                for m in edge {
                    for n in edge {
                        // Every (m, n) pair, cycling k, padding and alpha/beta so that each
                        // combination is covered without a 500-case cube.
                        seed = seed &* 6364136223846793005 &+ 1442695040888963407
                        let k = edge[Int(seed >> 33) % edge.count]
                        let pad = Int(seed >> 40) % 3 == 0 ? 0 : 5
                        let betas: [Float] = [0, 1, 0.5]
                        let beta = betas[Int(seed >> 45) % 3]
                        list.append(Case(ta: ta, tb: tb, m: m, n: n, k: k, pad: pad,
                                         alpha: Int(seed >> 50) % 2 == 0 ? 1 : -0.75, beta: beta,
                                         bias: Int(seed >> 55) % 2 == 0))
                    }
                }
            }
        }
        return list
    }

    @Test("every layout and edge shape, strided, accumulating", arguments: cases)
    func matchesReference(_ t: Case) {
        let (lda, ldb, ldc, a, b, c0) = t.operands()
        var expected = Self.reference(t.ta, t.tb, m: t.m, n: t.n, k: t.k, alpha: Double(t.alpha),
                                      a: a, lda: lda, b: b, ldb: ldb, beta: Double(t.beta),
                                      c: c0, ldc: ldc)
        let bias = t.bias ? randomFloats(t.n, seed: 4) : nil
        if let bias {
            for i in 0..<t.m { for j in 0..<t.n { expected[i * ldc + j] += Double(bias[j]) } }
        }
        var results: [[Float]] = []
        for pool in [singleThread, threeThreads] {
            var c = c0
            c.withUnsafeMutableBufferPointer { cp in
                sgemm(t.ta, t.tb, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda,
                      b: b, ldb: ldb, beta: t.beta, c: cp.baseAddress!, ldc: ldc, bias: bias, pool: pool)
            }
            // Tolerance scales with the depth of the sum (each term is below 1 in magnitude).
            expectClose(c, expected, tolerance: 2e-6 * Double(max(8, t.k)), "C")
            results.append(c)
        }
        #expect(results[0] == results[1], "1 and 3 threads give bit-identical results")
    }

    @Test("beta = 0 ignores NaN already in C; k = 0 only scales C")
    func betaZeroAndEmptyDepth() {
        let a = randomFloats(40 * 30, seed: 4), b = randomFloats(30 * 50, seed: 5)
        var c = [Float](repeating: .nan, count: 40 * 50)
        c.withUnsafeMutableBufferPointer { cp in
            sgemm(.none, .none, m: 40, n: 50, k: 30, a: a, lda: 30, b: b, ldb: 50,
                  beta: 0, c: cp.baseAddress!, ldc: 50)
        }
        #expect(c.allSatisfy { $0.isFinite })
        var d: [Float] = [1, 2, 3, 4]
        d.withUnsafeMutableBufferPointer { dp in
            sgemm(.none, .none, m: 2, n: 2, k: 0, a: a, lda: 1, b: b, ldb: 2,
                  beta: 0.5, c: dp.baseAddress!, ldc: 2)
        }
        #expect(d == [0.5, 1, 1.5, 2])
    }

    /// Deep enough for several k-passes and wide enough for several column chunks; with a
    /// transposed A of few rows this is a weight gradient, which is split over its depth.
    @Test("large training shapes agree with the reference on sampled entries, alike on 1 and 3 threads",
          arguments: [(Transpose.none, Transpose.transposed), (.none, .none), (.transposed, .none), (.transposed, .transposed)])
    func largeShape(_ layout: (Transpose, Transpose)) {
        let m = 300, n = 1100, k = 1300, alpha: Float = -0.75, beta: Float = 0.5
        let (ta, tb) = layout
        let lda = ta == .none ? k : m, ldb = tb == .none ? n : k
        let a = randomFloats(m * k, seed: 8), b = randomFloats(k * n, seed: 9)
        let c0 = randomFloats(m * n, seed: 11), bias = randomFloats(n, seed: 12)
        var results: [[Float]] = []
        for pool in [singleThread, threeThreads] {
            var c = c0
            c.withUnsafeMutableBufferPointer { cp in
                sgemm(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: cp.baseAddress!, ldc: n, bias: bias, pool: pool)
            }
            results.append(c)
        }
        #expect(results[0] == results[1], "1 and 3 threads give bit-identical results")
        let c = results[1]
        var rng = SplitMix64(seed: 10)
        for _ in 0..<400 {
            let i = Int(rng.next() % UInt64(m)), j = Int(rng.next() % UInt64(n))
            let s = Self.entry(i, j, ta, tb, k: k, a: a, lda: lda, b: b, ldb: ldb)
            let expected = Double(alpha) * s + Double(beta) * Double(c0[i * n + j]) + Double(bias[j])
            #expect(abs(Double(c[i * n + j]) - expected) <= 2e-6 * Double(k), "C[\(i), \(j)]")
        }
    }
}
