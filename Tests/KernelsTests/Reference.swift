import Kernels
import Testing

/// Helpers shared by the kernel tests: seeded random data, naive double-precision references and
/// tolerant comparisons.

func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in (rng.nextFloat() * 2 - 1) * scale }
}

/// Asserts `actual ≈ expected` elementwise: |a - e| <= tolerance * max(1, |e|).
func expectClose(
    _ actual: [Float], _ expected: [Double], tolerance: Double,
    _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.count == expected.count, "\(what): count", sourceLocation: sourceLocation)
    var worst = 0.0, worstIndex = 0
    for i in 0..<min(actual.count, expected.count) {
        let error = abs(Double(actual[i]) - expected[i]) / max(1, abs(expected[i]))
        if !(error <= worst) { worst = error; worstIndex = i }
    }
    #expect(worst <= tolerance,
            "\(what): worst relative error \(worst) at \(worstIndex) (got \(actual.isEmpty ? 0 : actual[worstIndex]), want \(expected.isEmpty ? 0 : expected[worstIndex]))",
            sourceLocation: sourceLocation)
}

/// Central finite differences of a scalar function of `x`, in double precision.
func numericalGradient(_ x: [Double], step: Double = 1e-6, _ f: ([Double]) -> Double) -> [Double] {
    var probe = x
    return (0..<x.count).map { i in
        probe[i] = x[i] + step
        let up = f(probe)
        probe[i] = x[i] - step
        let down = f(probe)
        probe[i] = x[i]
        return (up - down) / (2 * step)
    }
}

extension Array where Element == Float {
    var doubles: [Double] { map(Double.init) }
}

/// Runs `body` with mutable pointers to copies of the arrays and returns the copies.
func withPointers(
    _ a: inout [Float], _ body: (UnsafeMutablePointer<Float>) -> Void
) {
    a.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

let singleThread = ThreadPool(threadCount: 1)
let threeThreads = ThreadPool(threadCount: 3)
