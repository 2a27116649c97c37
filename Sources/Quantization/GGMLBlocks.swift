/// Block formats decoded exactly as ggml's reference `dequantize_row_*` functions do: the same
/// float operations in the same order, so the values are bit-identical.
public enum GGMLBlocks {
    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian))
    }

    /// Decodes `count` values of type `type` from `bytes` into `out`.
    public static func dequantize(_ type: GGMLType, _ bytes: UnsafeRawBufferPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        guard count > 0, let base = bytes.baseAddress else { return }
        let blocks = count / type.blockSize
        precondition(blocks * type.blockBytes <= bytes.count, "a tensor's bytes were checked against its shape")
        switch type {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: base, byteCount: 4 * count)
        case .f16:
            for i in 0..<count { out[i] = half(base, 2 * i) }
        case .bf16:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
        case .q8_0:
            for b in 0..<blocks {
                let block = base + b * 34, y = out + b * 32
                let d = half(block, 0)
                for j in 0..<32 { y[j] = Float(Int8(bitPattern: block.load(fromByteOffset: 2 + j, as: UInt8.self))) * d }
            }
        case .q4_0:
            for b in 0..<blocks {
                let block = base + b * 18, y = out + b * 32
                let d = half(block, 0)
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                    y[j] = Float(Int(q & 0x0F) - 8) * d
                    y[j + 16] = Float(Int(q >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<blocks {
                let block = base + b * 20, y = out + b * 32
                let d = half(block, 0), m = half(block, 2)
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                    y[j] = Float(q & 0x0F) * d + m
                    y[j + 16] = Float(q >> 4) * d + m
                }
            }
        case .q4_K:
            for b in 0..<blocks {
                let block = base + b * 144
                let d = half(block, 0), dmin = half(block, 2)
                let scales = block + 4, qs = block + 16
                var y = out + b * 256
                var q = qs
                var scale = 0
                for _ in stride(from: 0, to: 256, by: 64) {
                    let (sc1, m1) = scaleMin(scale, scales), (sc2, m2) = scaleMin(scale + 1, scales)
                    let d1 = d * Float(sc1), mm1 = dmin * Float(m1)
                    let d2 = d * Float(sc2), mm2 = dmin * Float(m2)
                    for l in 0..<32 { y[l] = d1 * Float(q.load(fromByteOffset: l, as: UInt8.self) & 0x0F) - mm1 }
                    for l in 0..<32 { y[32 + l] = d2 * Float(q.load(fromByteOffset: l, as: UInt8.self) >> 4) - mm2 }
                    y += 64
                    q += 32
                    scale += 2
                }
            }
        case .q6_K:
            for b in 0..<blocks {
                let block = base + b * 210
                var ql = block, qh = block + 128, sc = block + 192
                let d = half(block, 208)
                var y = out + b * 256
                for _ in 0..<2 {
                    for l in 0..<32 {
                        let s = l / 16
                        let h = Int(qh.load(fromByteOffset: l, as: UInt8.self))
                        let lo0 = Int(ql.load(fromByteOffset: l, as: UInt8.self)), lo1 = Int(ql.load(fromByteOffset: l + 32, as: UInt8.self))
                        let q1 = (lo0 & 0xF) | (((h >> 0) & 3) << 4)
                        let q2 = (lo1 & 0xF) | (((h >> 2) & 3) << 4)
                        let q3 = (lo0 >> 4) | (((h >> 4) & 3) << 4)
                        let q4 = (lo1 >> 4) | (((h >> 6) & 3) << 4)
                        func scale(_ k: Int) -> Float { Float(Int8(bitPattern: sc.load(fromByteOffset: k, as: UInt8.self))) }
                        y[l] = d * scale(s) * Float(q1 - 32)
                        y[l + 32] = d * scale(s + 2) * Float(q2 - 32)
                        y[l + 64] = d * scale(s + 4) * Float(q3 - 32)
                        y[l + 96] = d * scale(s + 6) * Float(q4 - 32)
                    }
                    y += 128
                    ql += 64
                    qh += 32
                    sc += 8
                }
            }
        }
    }

    /// Q4_K's 6-bit scale and minimum of sub-block `j` (ggml's `get_scale_min_k4`).
    @inline(__always)
    static func scaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
        func byte(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0x0F) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
    }
}
