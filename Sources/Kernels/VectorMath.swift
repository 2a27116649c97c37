/// Vectorized transcendental functions for the activation, softmax and loss kernels.
///
/// The standard library has no SIMD `exp`; calling `expf` per lane costs ~20x more.

/// `e^x` per lane, within 2 ulp of the correctly rounded result on [-87, 88]. Inputs are clamped
/// to that range, so the result saturates at `e^88` and at the smallest normal float (softmax
/// callers subtract the row maximum first, so only the lower end occurs there).
///
/// Cody-Waite range reduction `x = n ln2 + r` with `|r| <= ln2/2`, a degree-7 polynomial for
/// `e^r` (Cephes' `expf` coefficients), and `2^n` built in the exponent bits.
@inlinable @inline(__always)
public func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    // Clamp with compare-and-blend: the standard library's `clamped` is a scalar loop here.
    var clamped = x
    let low = SIMD16<Float>(repeating: -87.336_54), high = SIMD16<Float>(repeating: 88.0)
    clamped.replace(with: low, where: clamped .< low)
    clamped.replace(with: high, where: clamped .> high)
    // Round to the nearest integer with the 1.5·2^23 trick: adding it pushes the fraction out
    // of the mantissa, so the sum's low mantissa bits hold n. (The standard library's generic
    // `rounded` and Float→Int32 conversions are scalar loops; these are single vector ops.)
    let magic = SIMD16<Float>(repeating: 12_582_912)
    let shifted = magic.addingProduct(clamped, SIMD16(repeating: 1.442_695_04))
    let n = shifted - magic
    var r = clamped.addingProduct(n, SIMD16(repeating: -0.693_359_375))
    r = r.addingProduct(n, SIMD16(repeating: 2.121_944_4e-4))
    // Horner steps as explicit FMAs: Swift does not contract `a * b + c`.
    var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
    p = SIMD16(repeating: 1.398_199_95e-3).addingProduct(p, r)
    p = SIMD16(repeating: 8.333_451_9e-3).addingProduct(p, r)
    p = SIMD16(repeating: 4.166_579_59e-2).addingProduct(p, r)
    p = SIMD16(repeating: 1.666_666_55e-1).addingProduct(p, r)
    p = SIMD16(repeating: 5.000_000_1e-1).addingProduct(p, r)
    let er = (r + 1).addingProduct(p, r * r)
    // 2^n: n + 127 in the exponent field.
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
    let scale = unsafeBitCast((integer &+ 127) &<< 23, to: SIMD16<Float>.self)
    return er * scale
}

/// `tanh(x)` per lane as `1 - 2 / (e^{2x} + 1)`: absolute error below 2e-7.
@inlinable @inline(__always)
public func tanh16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let e = exp16(x + x)
    return 1 - 2 / (e + 1)
}
