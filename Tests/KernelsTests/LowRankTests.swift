@testable import Kernels
import Testing

/// The adapter-rank products against float64 references: ranks around the eight-accumulator
/// group, widths with and without a 16-column tail, strided operands, 1 and 3 threads bit-equal.
@Suite("low-rank products")
struct LowRankTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var rows: Int, rank: Int, width: Int
        var testDescription: String { "\(rows)x\(rank)x\(width)" }
    }

    static let shapes = [
        Shape(rows: 1, rank: 1, width: 1), Shape(rows: 5, rank: 3, width: 16), Shape(rows: 37, rank: 8, width: 576),
        Shape(rows: 70, rank: 9, width: 45), Shape(rows: 33, rank: 16, width: 200), Shape(rows: 130, rank: 17, width: 31),
    ]

    @Test("out = x·wᵀ", arguments: shapes)
    func timesTransposed(_ s: Shape) {
        let ldx = s.width + 3, ldo = s.rank + 2
        let x = randomFloats(s.rows * ldx, seed: 1), w = randomFloats(s.rank * s.width, seed: 2)
        var expected = [Double](repeating: 0, count: s.rows * ldo)
        for i in 0..<s.rows {
            for q in 0..<s.rank {
                expected[i * ldo + q] = (0..<s.width).reduce(0.0) { $0 + Double(x[i * ldx + $1]) * Double(w[q * s.width + $1]) }
            }
        }
        var results: [[Float]] = []
        for pool in [singleThread, threeThreads] {
            var out = [Float](repeating: 0, count: s.rows * ldo)
            out.withUnsafeMutableBufferPointer { o in
                LowRank.timesTransposed(x, rows: s.rows, width: s.width, ldx: ldx, w, rank: s.rank, into: o.baseAddress!, ldo: ldo, pool: pool)
            }
            expectClose(out, expected, tolerance: 1e-6 * Double(max(8, s.width)), "out")
            results.append(out)
        }
        #expect(results[0] == results[1])
    }

    @Test("out += alpha u·w", arguments: shapes)
    func accumulateProduct(_ s: Shape) {
        let ldu = s.rank + 1, ldw = s.width + 5, ldo = s.width + 2, alpha: Float = -0.75
        let u = randomFloats(s.rows * ldu, seed: 3), w = randomFloats(s.rank * ldw, seed: 4), out0 = randomFloats(s.rows * ldo, seed: 5)
        var expected = out0.map(Double.init)
        for i in 0..<s.rows {
            for j in 0..<s.width {
                let sum = (0..<s.rank).reduce(0.0) { $0 + Double(u[i * ldu + $1]) * Double(w[$1 * ldw + j]) }
                expected[i * ldo + j] += Double(alpha) * sum
            }
        }
        var results: [[Float]] = []
        for pool in [singleThread, threeThreads] {
            var out = out0
            out.withUnsafeMutableBufferPointer { o in
                LowRank.accumulateProduct(u, rows: s.rows, rank: s.rank, ldu: ldu, w, width: s.width, ldw: ldw, alpha: alpha,
                                          into: o.baseAddress!, ldo: ldo, pool: pool)
            }
            expectClose(out, expected, tolerance: 1e-6 * Double(max(8, s.rank)), "out")
            results.append(out)
        }
        #expect(results[0] == results[1])
    }

    @Test("g += alpha aᵀ·b", arguments: shapes)
    func accumulateTransposedProduct(_ s: Shape) {
        let lda = s.rank + 2, ldb = s.width + 1, ldg = s.width + 4, alpha: Float = 0.5
        let a = randomFloats(s.rows * lda, seed: 6), b = randomFloats(s.rows * ldb, seed: 7), g0 = randomFloats(s.rank * ldg, seed: 8)
        var expected = g0.map(Double.init)
        for q in 0..<s.rank {
            for j in 0..<s.width {
                let sum = (0..<s.rows).reduce(0.0) { $0 + Double(a[$1 * lda + q]) * Double(b[$1 * ldb + j]) }
                expected[q * ldg + j] += Double(alpha) * sum
            }
        }
        var results: [[Float]] = []
        for pool in [singleThread, threeThreads] {
            var g = g0
            g.withUnsafeMutableBufferPointer { o in
                LowRank.accumulateTransposedProduct(a, rank: s.rank, lda: lda, b, rows: s.rows, width: s.width, ldb: ldb,
                                                    alpha: alpha, into: o.baseAddress!, ldg: ldg, pool: pool)
            }
            expectClose(g, expected, tolerance: 1e-6 * Double(max(8, s.rows)), "g")
            results.append(g)
        }
        #expect(results[0] == results[1])
    }
}
