import CQuant

/// IEEE half-precision storage for activations kept a while (the key/value cache's `--kv-bits
/// 16`): two bytes a value, converted sixteen at a time.
public enum Half {
    /// `y[i]` = `x[i]` rounded to the nearest half (ties to even; beyond ±65504 it is ±∞), as its
    /// bit pattern.
    public static func narrow(_ x: UnsafePointer<Float>, count n: Int, into y: UnsafeMutablePointer<UInt16>) {
        var i = 0
        while i + 16 <= n {
            let v = SIMD16<Float16>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self))
            UnsafeMutableRawPointer(y + i).storeBytes(of: v, as: SIMD16<Float16>.self)
            i += 16
        }
        while i < n {
            y[i] = Float16(x[i]).bitPattern
            i += 1
        }
    }

    /// `y[i]` = the half whose bit pattern is `x[i]`, as a float (exact). Sixteen at a time by
    /// `cq_load_halves16` (`vcvtph2ps`): Swift's `SIMD16<Float>(SIMD16<Float16>)` is a call per
    /// vector.
    public static func widen(_ x: UnsafePointer<UInt16>, count n: Int, into y: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 16 <= n {
            UnsafeMutableRawPointer(y + i).storeBytes(of: cq_load_halves16(x + i), as: SIMD16<Float>.self)
            i += 16
        }
        while i < n {
            y[i] = cq_half_bits_to_float(x[i])
            i += 1
        }
    }
}
