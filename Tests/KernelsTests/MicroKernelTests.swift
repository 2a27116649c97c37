@testable import Kernels
import Testing

/// The GEMM's register tile has two bodies: 28 sixteen-float accumulators where the CPU has
/// AVX-512, six passes of at most 10 eight-float accumulators elsewhere (AVX2). Both are called
/// here directly, so each is tested on either kind of CPU.
@Suite("GEMM micro-kernels")
struct MicroKernelTests {
    @Test("the narrow (AVX2) tile gives the wide tile's floats bit for bit, and the double-precision product: packed and strided A, bias, beta 0 and 0.5",
          arguments: [1, 7, 64, 513])
    func narrowEqualsWide(_ kc: Int) {
        let mr = GEMM.mr, nr = GEMM.nr, lda = kc + 3, ldc = nr + 5
        let packedA = randomFloats(mr * kc, seed: UInt64(kc)), b = randomFloats(kc * nr, seed: UInt64(kc) + 1)
        let bias = randomFloats(nr, seed: 9), start = randomFloats(mr * ldc, seed: 10)
        // The same A read in place: row r at r·lda.
        var stridedA = [Float](repeating: .nan, count: mr * lda)
        for r in 0..<mr { for p in 0..<kc { stridedA[r * lda + p] = packedA[p * mr + r] } }
        for (alpha, beta, withBias) in [(Float(1), Float(0), true), (-0.75, 0.5, false), (1, 0.5, true)] {
            for inPlace in [false, true] {
                var wide = start, narrow = start
                let a = inPlace ? stridedA : packedA, aRow = inPlace ? lda : 1, aColumn = inPlace ? 1 : mr
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        bias.withUnsafeBufferPointer { bias in
                            microKernel14x32Wide(kc, a: a.baseAddress!, aRow: aRow, aColumn: aColumn, b: b.baseAddress!, bRow: nr,
                                                 c: &wide, ldc: ldc, alpha: alpha, beta: beta, bias: withBias ? bias.baseAddress : nil)
                            microKernel14x32Narrow(kc, a: a.baseAddress!, aRow: aRow, aColumn: aColumn, b: b.baseAddress!, bRow: nr,
                                                   c: &narrow, ldc: ldc, alpha: alpha, beta: beta, bias: withBias ? bias.baseAddress : nil)
                        }
                    }
                }
                #expect(wide.map(\.bitPattern) == narrow.map(\.bitPattern), "kc \(kc) alpha \(alpha) beta \(beta) in place \(inPlace)")
                for r in 0..<mr {
                    for j in 0..<ldc {
                        let i = r * ldc + j
                        guard j < nr else {
                            #expect(narrow[i].bitPattern == start[i].bitPattern, "column \(j) past the tile is untouched")
                            continue
                        }
                        var sum = 0.0
                        for p in 0..<kc { sum += Double(packedA[p * mr + r]) * Double(b[p * nr + j]) }
                        let expected = Double(alpha) * (sum + (withBias ? Double(bias[j]) : 0)) + Double(beta) * Double(start[i])
                        #expect(abs(Double(narrow[i]) - expected) <= 2e-6 * Double(max(8, kc)), "(\(r), \(j)) kc \(kc)")
                    }
                }
            }
        }
    }
}
