/// Vectorized transcendental functions for the activation, softmax and loss kernels.
///
/// The standard library has no SIMD `exp`; calling `expf` per lane costs ~20x more.

/// `e^x` per lane, within 2 ulp of the correctly rounded result on [-87, 88]. Inputs are clamped
/// to that range, so the result saturates at `e^88` and at the smallest normal float (softmax
/// callers subtract the row maximum first, so only the lower end occurs there).
///
/// Cody-Waite range reduction `x = n ln2 + r` with `|r| <= ln2/2`, a degree-7 polynomial for
/// `e^r` (Cephes' `expf` coefficients), and `2^n` built in the exponent bits.
@inline(__always)
public func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let clamped = x.clamped(lowerBound: SIMD16(repeating: -87.336_54), upperBound: SIMD16(repeating: 88.0))
    let n = (clamped * 1.442_695_04).rounded(.toNearestOrEven)
    var r = clamped.addingProduct(n, SIMD16(repeating: -0.693_359_375))
    r = r.addingProduct(n, SIMD16(repeating: 2.121_944_4e-4))
    var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_1e-1
    let r2 = r * r
    let er = p * r2 + r + 1
    let bits = (SIMD16<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
    return er * unsafeBitCast(bits, to: SIMD16<Float>.self)
}

/// `tanh(x)` per lane as `1 - 2 / (e^{2x} + 1)`: absolute error below 2e-7.
@inline(__always)
public func tanh16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let e = exp16(x + x)
    return 1 - 2 / (e + 1)
}
