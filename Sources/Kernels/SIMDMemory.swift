/// Unaligned SIMD loads and stores: the only way the kernels touch memory in vector form.

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
func load16(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

@inline(__always)
func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// The sum of a vector's lanes by halving (shuffles and adds; the standard library's `sum()` is
/// an out-of-line call with a scalar loop).
@inline(__always)
func horizontalSum(_ v: SIMD16<Float>) -> Float {
    let h8 = v.lowHalf + v.highHalf
    let h4 = h8.lowHalf + h8.highHalf
    let h2 = h4.lowHalf + h4.highHalf
    return h2.x + h2.y
}

/// The largest lane, by halving.
@inline(__always)
func horizontalMax(_ v: SIMD16<Float>) -> Float {
    // Compare and blend: `pointwiseMax` compiles to a scalar loop.
    var h8 = v.lowHalf
    h8.replace(with: v.highHalf, where: v.highHalf .> h8)
    var h4 = h8.lowHalf
    h4.replace(with: h8.highHalf, where: h8.highHalf .> h4)
    var h2 = h4.lowHalf
    h2.replace(with: h4.highHalf, where: h4.highHalf .> h2)
    return Swift.max(h2.x, h2.y)
}

/// Lane indices 0...15, for tail masks.
@inline(__always)
var laneIndices: SIMD16<Int32> { SIMD16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) }

/// Loads the first `count` (< 16) floats at `p` into lanes 0..<count and `fill` elsewhere. With
/// `wide`, 16 floats at `p` are readable and one vector load plus a blend does it; otherwise the
/// lanes are gathered one by one.
@inline(__always)
func loadPartial16(_ p: UnsafePointer<Float>, count: Int, fill: Float, wide: Bool) -> SIMD16<Float> {
    if wide {
        var v = load16(p)
        v.replace(with: fill, where: laneIndices .>= SIMD16<Int32>(repeating: Int32(count)))
        return v
    }
    var v = SIMD16<Float>(repeating: fill)
    for j in 0..<count { v[j] = p[j] }
    return v
}
