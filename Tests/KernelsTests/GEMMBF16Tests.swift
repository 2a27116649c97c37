@testable import Kernels
import Testing

@Suite("bf16 GEMM (AMX tiles) against a reference on bf16-rounded operands")
struct GEMMBF16Tests {
    /// Round to nearest even bfloat16, done the slow way: the two bf16 neighbours of `x` and the
    /// nearer one, ties to an even last bit.
    static func referenceRound(_ x: Float) -> Float {
        if x.isNaN || x.isInfinite { return x }
        let bits = x.bitPattern
        let down = Float(bitPattern: bits & 0xFFFF_0000)
        let up = Float(bitPattern: (bits & 0xFFFF_0000) &+ 0x1_0000)
        // Past the largest finite value the upper neighbour is infinity, standing for 2^128.
        let upValue = up.isInfinite ? (up > 0 ? 0x1p128 : -0x1p128) : Double(up)
        let dDown = abs(Double(x) - Double(down)), dUp = abs(upValue - Double(x))
        if dDown < dUp { return down }
        if dUp < dDown { return up }
        return (down.bitPattern >> 16) & 1 == 0 ? down : up
    }

    @Test("rounding: ties to even, NaN and infinities kept, overflow to infinity, 100k random patterns")
    func rounding() {
        #expect(BF16.round(1) == 1)
        #expect(BF16.round(Float(bitPattern: 0x3F80_8000)) == 1, "a tie rounds to the even neighbour")
        #expect(BF16.round(Float(bitPattern: 0x3F81_8000)) == Float(bitPattern: 0x3F82_0000), "a tie rounds up to even")
        #expect(BF16.round(Float(bitPattern: 0x3F80_8001)) == Float(bitPattern: 0x3F81_0000))
        #expect(BF16.round(.nan).isNaN)
        #expect(BF16.round(Float(bitPattern: 0x7F80_0001)).isNaN, "a NaN with a low payload stays NaN")
        #expect(BF16.round(.infinity) == .infinity && BF16.round(-.infinity) == -.infinity)
        #expect(BF16.round(.greatestFiniteMagnitude) == .infinity)
        var rng = SplitMix64(seed: 3)
        for _ in 0..<100_000 {
            let x = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            let r = BF16.round(x), e = Self.referenceRound(x)
            if x.isNaN { #expect(r.isNaN); continue }
            if r.bitPattern != e.bitPattern { #expect(r.bitPattern == e.bitPattern, "\(x.bitPattern)"); break }
        }
    }

    /// Like `GEMMTests.reference`, on operands rounded to bf16 first.
    static func reference(
        _ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Float,
        a: [Float], lda: Int, b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int, bias: [Float]?
    ) -> [Double] {
        var out = GEMMTests.reference(ta, tb, m: m, n: n, k: k, alpha: Double(alpha), a: a.map(Self.referenceRound), lda: lda,
                                      b: b.map(Self.referenceRound), ldb: ldb, beta: Double(beta), c: c, ldc: ldc)
        if let bias {
            for i in 0..<m { for j in 0..<n { out[i * ldc + j] += Double(bias[j]) } }
        }
        return out
    }

    static var cases: [GEMMTests.Case] {
        // The fp32 suite's cases plus depths that end inside a 32-block and shapes of several
        // column chunks.
        GEMMTests.cases + [
            GEMMTests.Case(ta: .none, tb: .transposed, m: 70, n: 300, k: 45, pad: 3, alpha: 1, beta: 0, bias: true),
            GEMMTests.Case(ta: .transposed, tb: .none, m: 33, n: 290, k: 100, pad: 0, alpha: 0.5, beta: 1, bias: false),
            GEMMTests.Case(ta: .none, tb: .none, m: 65, n: 257, k: 31, pad: 1, alpha: -1, beta: 0.5, bias: true),
            GEMMTests.Case(ta: .transposed, tb: .transposed, m: 47, n: 33, k: 64, pad: 2, alpha: 1, beta: 0, bias: true),
        ]
    }

    @Test("every layout and edge shape, strided, accumulating, alike on 1 and 3 threads", arguments: cases)
    func matchesReference(_ t: GEMMTests.Case) {
        let (lda, ldb, ldc, a, b, c0) = t.operands()
        let bias = t.bias ? randomFloats(t.n, seed: 4) : nil
        let expected = Self.reference(t.ta, t.tb, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda, b: b, ldb: ldb,
                                      beta: t.beta, c: c0, ldc: ldc, bias: bias)
        var results: [[Float]] = []
        for pool in [singleThread, threeThreads] {
            var c = c0
            c.withUnsafeMutableBufferPointer { cp in
                gemmBF16(t.ta, t.tb, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda, b: b, ldb: ldb,
                         beta: t.beta, c: cp.baseAddress!, ldc: ldc, bias: bias, pool: pool)
            }
            // Products of bf16 values are exact in fp32; only the fp32 sums round.
            expectClose(c, expected, tolerance: 2e-6 * Double(max(8, t.k)), "C")
            results.append(c)
        }
        #expect(results[0] == results[1], "1 and 3 threads give bit-identical results")
    }

    @Test("an operand packed once gives bit-identical products to the same operand packed per call",
          .enabled(if: amxAvailable, "this CPU has no AMX-BF16 (packed operands are for the tiles)"),
          arguments: cases.filter { $0.n > 0 && $0.k > 0 })
    func packedOperand(_ t: GEMMTests.Case) {
        let (lda, ldb, ldc, a, b, c0) = t.operands()
        let bias = t.bias ? randomFloats(t.n, seed: 4) : nil
        let packed = b.withUnsafeBufferPointer {
            BF16PackedMatrix(t.tb, b: $0.baseAddress!, ldb: ldb, n: t.n, k: t.k, pool: threeThreads)
        }
        #expect(packed.bytes >= t.n * t.k * 2)
        for alpha in [t.alpha, 0] {
            var expected = c0, got = c0
            expected.withUnsafeMutableBufferPointer { cp in
                gemmBF16(t.ta, t.tb, m: t.m, n: t.n, k: t.k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                         beta: t.beta, c: cp.baseAddress!, ldc: ldc, bias: bias, pool: threeThreads)
            }
            for pool in [singleThread, threeThreads] {
                got = c0
                got.withUnsafeMutableBufferPointer { cp in
                    gemmBF16(t.ta, m: t.m, alpha: alpha, a: a, lda: lda, packed: packed, beta: t.beta,
                             c: cp.baseAddress!, ldc: ldc, bias: bias, pool: pool)
                }
                #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "alpha \(alpha)")
            }
        }
    }

    @Test("a training-sized product: sampled entries against the reference",
          arguments: [(Transpose.none, Transpose.transposed), (.none, .none), (.transposed, .none)])
    func largeShape(_ layout: (Transpose, Transpose)) {
        let m = 300, n = 1100, k = 1300
        let (ta, tb) = layout
        let lda = ta == .none ? k : m, ldb = tb == .none ? n : k
        let a = randomFloats(m * k, seed: 8), b = randomFloats(k * n, seed: 9), bias = randomFloats(n, seed: 12)
        var c = [Float](repeating: .nan, count: m * n)
        c.withUnsafeMutableBufferPointer { cp in
            gemmBF16(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: cp.baseAddress!, ldc: n, bias: bias)
        }
        var rng = SplitMix64(seed: 10)
        for _ in 0..<300 {
            let i = Int(rng.next() % UInt64(m)), j = Int(rng.next() % UInt64(n))
            let s = GEMMTests.entry(i, j, ta, tb, k: k, a: a, lda: lda, b: b, ldb: ldb, round: Self.referenceRound)
            #expect(abs(Double(c[i * n + j]) - s - Double(bias[j])) <= 2e-6 * Double(k), "C[\(i), \(j)]")
        }
    }
}

@Suite("bf16 GEMM without AMX")
struct GEMMBF16EmulationTests {
    @Test("the fallback (rounded fp32 copies, then sgemm) agrees with the tile path", arguments: [
        (Transpose.none, Transpose.transposed, 70, 300, 45), (.transposed, .none, 33, 290, 100), (.none, .none, 65, 257, 31),
    ])
    func emulationMatches(_ shape: (Transpose, Transpose, Int, Int, Int)) {
        let (ta, tb, m, n, k) = shape
        let lda = ta == .none ? k : m, ldb = tb == .none ? n : k
        let a = randomFloats(m * k, seed: 21), b = randomFloats(k * n, seed: 22), c0 = randomFloats(m * n, seed: 23)
        var tiled = c0, emulated = c0
        tiled.withUnsafeMutableBufferPointer { cp in
            gemmBF16(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: cp.baseAddress!, ldc: n)
        }
        emulated.withUnsafeMutableBufferPointer { cp in
            BF16.emulated(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 1,
                          c: cp.baseAddress!, ldc: n, bias: nil, pool: .shared)
        }
        expectClose(tiled, emulated.doubles, tolerance: 2e-6 * Double(k), "C")
    }
}
