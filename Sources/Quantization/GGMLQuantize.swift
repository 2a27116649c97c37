/// Why values could not be encoded.
public enum QuantizationError: Error, CustomStringConvertible, Equatable {
    case unsupported(GGMLType)
    case partialBlock(count: Int, type: GGMLType)

    public var description: String {
        switch self {
        case let .unsupported(t): "writing \(t) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K)"
        case let .partialBlock(count, t): "\(count) values do not fill whole \(t) blocks of \(t.blockSize)"
        }
    }
}

/// ggml's reference quantizers, written from its `quantize_row_*_ref` arithmetic so that the
/// blocks are byte-identical to ggml's and the `gguf` Python package's:
/// - Q8_0: `d = max|x| / 127`, `q = x / d` rounded half away from zero;
/// - Q4_0: `d = m / -8` for the value `m` of largest magnitude (the first on ties),
///   `q = min(15, trunc(x / d + 8.5))`;
/// - Q4_1: `d = (max - min) / 15`, `q = min(15, trunc((x - min) / d + 0.5))`, `min` stored;
/// - Q4_K: super-blocks of 256 with eight sub-blocks of 32, each fitted by ggml's weighted
///   least-squares search over scales and minimums (`make_qkx2_quants`), the sub-block scales
///   and minimums quantized to 6 bits against the super-block's fp16 `d` and `dmin`;
/// - F16 and BF16 round to nearest even.
/// A non-finite product (a denormal block maximum makes `1/d` infinite) becomes code 0, as the
/// C cast does on x86.
public enum GGMLQuantize {
    /// `values` (a multiple of the block size) encoded as `type`.
    public static func encode(_ values: UnsafeBufferPointer<Float>, as type: GGMLType) throws -> [UInt8] {
        guard values.count % type.blockSize == 0 else { throw QuantizationError.partialBlock(count: values.count, type: type) }
        var out: [UInt8] = []
        out.reserveCapacity(values.count / type.blockSize * type.blockBytes)
        func half(_ x: Float) { withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { out += $0 } }
        let blocks = values.count / type.blockSize
        switch type {
        case .f32:
            for x in values { withUnsafeBytes(of: x.bitPattern.littleEndian) { out += $0 } }
        case .f16:
            for x in values { half(x) }
        case .bf16:
            for x in values {
                let u = x.bitPattern
                let r = x.isNaN ? (u >> 16) | 0x40 : (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16
                withUnsafeBytes(of: UInt16(truncatingIfNeeded: r).littleEndian) { out += $0 }
            }
        case .q8_0:
            for b in 0..<blocks {
                let x = values.baseAddress! + b * 32
                var amax: Float = 0
                for j in 0..<32 { amax = max(amax, abs(x[j])) }
                let d = amax / 127
                let id: Float = d != 0 ? 1 / d : 0
                half(d)
                for j in 0..<32 { out.append(byte((x[j] * id).rounded(.toNearestOrAwayFromZero))) }
            }
        case .q4_0:
            for b in 0..<blocks {
                let x = values.baseAddress! + b * 32
                var amax: Float = 0, m: Float = 0
                for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); m = x[j] }
                let d = m / -8
                let id: Float = d != 0 ? 1 / d : 0
                half(d)
                for j in 0..<16 { out.append(nibble(x[j] * id + 8.5) | nibble(x[j + 16] * id + 8.5) << 4) }
            }
        case .q4_1:
            for b in 0..<blocks {
                let x = values.baseAddress! + b * 32
                var lo = x[0], hi = x[0]
                for j in 1..<32 { lo = min(lo, x[j]); hi = max(hi, x[j]) }
                let d = (hi - lo) / 15
                let id: Float = d != 0 ? 1 / d : 0
                half(d)
                half(lo)
                for j in 0..<16 { out.append(nibble((x[j] - lo) * id + 0.5) | nibble((x[j + 16] - lo) * id + 0.5) << 4) }
            }
        case .q4_K:
            for b in 0..<blocks { out += Q4K.quantize(values.baseAddress! + b * 256) }
        case .q6_K:
            throw QuantizationError.unsupported(type)
        }
        return out
    }

    /// A rounded Q8_0 code as a byte; a non-finite product (a denormal block maximum) becomes 0,
    /// as the C cast gives it on x86.
    @inline(__always)
    static func byte(_ v: Float) -> UInt8 {
        guard v.isFinite, abs(v) < 2_147_483_648 else { return 0 }
        return UInt8(truncatingIfNeeded: Int32(v))
    }

    /// `min(15, (uint8) trunc(v))` as ggml's and NumPy's casts give it on x86: a value outside
    /// the integers (only a non-finite one reaches here) becomes 0.
    @inline(__always)
    static func nibble(_ v: Float) -> UInt8 {
        let t = v.rounded(.towardZero)
        guard t.isFinite, abs(t) < 2_147_483_648 else { return 0 }
        return min(15, UInt8(truncatingIfNeeded: Int32(t)))
    }
}

/// Q4_K's reference quantizer (ggml's `quantize_row_q4_K_ref` with `make_qkx2_quants`).
enum Q4K {
    /// ggml's `nearest_int`: round half to even through the float's mantissa.
    @inline(__always)
    static func nearestInt(_ f: Float) -> Int {
        guard f.isFinite, abs(f) <= 4_194_303 else { return 0 }
        let bits = Int((f + 12_582_912).bitPattern)
        return (bits & 0x007F_FFFF) - 0x0040_0000
    }

    /// The scale and (negated) minimum fitting 32 values to 0...15 (`L` receives the codes).
    static func fit(_ x: UnsafePointer<Float>, _ weights: [Float], _ L: inout [UInt8], at base: Int) -> (scale: Float, min: Float) {
        let n = 32, nmax: Float = 15, rmin: Float = -1, rdelta: Float = 0.1, steps = 20
        var lo = x[0], hi = x[0]
        var sumW = weights[0], sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < lo { lo = x[i] }
            if x[i] > hi { hi = x[i] }
            sumW += weights[i]
            sumX += weights[i] * x[i]
        }
        if lo > 0 { lo = 0 }
        if hi == lo {
            for i in 0..<n { L[base + i] = 0 }
            return (0, -lo)
        }
        var iscale = nmax / (hi - lo)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = max(0, min(15, nearestInt(iscale * (x[i] - lo))))
            L[base + i] = UInt8(l)
            let diff = scale * Float(l) + lo - x[i]
            bestError += weights[i] * (diff * diff)
        }
        var aux = [UInt8](repeating: 0, count: n)
        for step in 0...steps {
            iscale = (rmin + rdelta * Float(step) + nmax) / (hi - lo)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(15, nearestInt(iscale * (x[i] - lo))))
                aux[i] = UInt8(l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            guard D > 0 else { continue }
            var thisScale = (sumW * sumXL - sumX * sumL) / D
            var thisMin = (sumL2 * sumX - sumL * sumXL) / D
            if thisMin > 0 {
                thisMin = 0
                thisScale = sumXL / sumL2
            }
            var error: Float = 0
            for i in 0..<n {
                let diff = thisScale * Float(aux[i]) + thisMin - x[i]
                error += weights[i] * (diff * diff)
            }
            if error < bestError {
                for i in 0..<n { L[base + i] = aux[i] }
                bestError = error
                scale = thisScale
                lo = thisMin
            }
        }
        return (scale, -lo)
    }

    /// One 144-byte super-block of 256 values.
    static func quantize(_ x: UnsafePointer<Float>) -> [UInt8] {
        var L = [UInt8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
        var maxScale: Float = 0, maxMin: Float = 0
        var weights = [Float](repeating: 0, count: 32)
        for j in 0..<8 {
            let s = x + 32 * j
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += s[l] * s[l] }
            let average = (sumX2 / 32).squareRoot()
            for l in 0..<32 { weights[l] = average + abs(s[l]) }
            (scales[j], mins[j]) = fit(s, weights, &L, at: 32 * j)
            if scales[j] > maxScale { maxScale = scales[j] }
            if mins[j] > maxMin { maxMin = mins[j] }
        }
        let inverseScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let inverseMin: Float = maxMin > 0 ? 63 / maxMin : 0
        var packed = [UInt8](repeating: 0, count: 12)
        for j in 0..<8 {
            let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(inverseScale * scales[j])))
            let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(inverseMin * mins[j])))
            if j < 4 {
                packed[j] = ls
                packed[j + 4] = lm
            } else {
                packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4)
                packed[j - 4] |= (ls >> 4) << 6
                packed[j] |= (lm >> 4) << 6
            }
        }
        let d = Float16(maxScale / 63), dmin = Float16(maxMin / 63)
        packed.withUnsafeBytes { p in
            for j in 0..<8 {
                let (sc, m) = GGMLBlocks.scaleMin(j, p.baseAddress!)
                let dj = Float(d) * Float(sc)
                if dj == 0 { continue }
                let dm = Float(dmin) * Float(m)
                for i in 0..<32 { L[32 * j + i] = UInt8(max(0, min(15, nearestInt((x[32 * j + i] + dm) / dj)))) }
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(144)
        withUnsafeBytes(of: d.bitPattern.littleEndian) { out += $0 }
        withUnsafeBytes(of: dmin.bitPattern.littleEndian) { out += $0 }
        out += packed
        for j in stride(from: 0, to: 256, by: 64) {
            for l in 0..<32 { out.append(L[j + l] | (L[j + l + 32] << 4)) }
        }
        return out
    }
}
