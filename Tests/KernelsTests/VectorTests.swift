import Foundation
import Kernels
import Testing

@Suite("vector kernels and vector math")
struct VectorTests {
    static let lengths = [0, 1, 3, 15, 16, 17, 64, 257, 1000]

    @Test("dot, sum, sum of squares, max, add, scale, axpy", arguments: lengths)
    func reductionsAndUpdates(_ n: Int) {
        let x = randomFloats(n, seed: 11), y = randomFloats(n, seed: 12)
        let tol = 1e-6 * Double(max(n, 1))
        #expect(abs(Double(dotProduct(x, y, count: n)) - zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }) <= tol)
        #expect(abs(Double(sum(x, count: n)) - x.reduce(0.0) { $0 + Double($1) }) <= tol)
        #expect(abs(Double(sumOfSquares(x, count: n)) - x.reduce(0.0) { $0 + Double($1) * Double($1) }) <= tol)
        #expect(maximum(x, count: n) == (x.max() ?? -.infinity))
        var out = [Float](repeating: 0, count: n)
        withPointers(&out) { add(x, y, into: $0, count: n) }
        #expect(out == zip(x, y).map { $0 + $1 })
        var scaled = x
        withPointers(&scaled) { scale($0, by: -2.5, count: n) }
        #expect(scaled == x.map { $0 * -2.5 })
        var acc = y
        withPointers(&acc) { axpy(0.5, x, $0, count: n) }
        expectClose(acc, zip(x, y).map { 0.5 * Double($0) + Double($1) }, tolerance: 1e-7, "axpy")
    }

    @Test("max finds its element at every position, past NaN elements")
    func maximumEveryPosition() {
        let n = 200 // three 64-float blocks, a 16-float vector and a scalar tail
        for position in 0..<n {
            var x = [Float](repeating: -1, count: n)
            x[position] = 5
            x[(position + 37) % n] = .nan
            #expect(x.withUnsafeBufferPointer { maximum($0.baseAddress!, count: n) } == 5, "max at \(position)")
        }
    }

    @Test("exp16 is within 2 ulp of exp over the whole finite range")
    func expAccuracy() {
        var worst = 0.0
        var x: Float = -87
        while x < 88 {
            var lanes = SIMD16<Float>()
            for l in 0..<16 { lanes[l] = x + Float(l) * 0.000_37 }
            let got = exp16(lanes)
            for l in 0..<16 {
                let want = Foundation.exp(Double(lanes[l]))
                let ulp = Double(Float(want).ulp)
                worst = max(worst, abs(Double(got[l]) - want) / ulp)
            }
            x += 0.0137
        }
        #expect(worst <= 2.0, "worst error \(worst) ulp")
        let edges = exp16(SIMD16(repeating: -1000)), big = exp16(SIMD16(repeating: 1000))
        #expect(edges[0] >= 0 && edges[0] < 1e-37)
        #expect(big[0].isFinite)
    }

    @Test("tanh16 matches tanh to 2e-7 absolute")
    func tanhAccuracy() {
        var worst = 0.0
        var x: Float = -12
        while x < 12 {
            let got = tanh16(SIMD16(repeating: x))[0]
            worst = max(worst, abs(Double(got) - Foundation.tanh(Double(x))))
            x += 0.001_3
        }
        #expect(worst <= 2e-7, "worst \(worst)")
    }
}
