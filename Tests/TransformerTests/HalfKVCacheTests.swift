import Foundation
import CQuant
import Kernels
import Testing
@testable import Transformer

/// The half-precision key/value cache (`--kv-bits 16`): the conversions, decode attention against
/// a float64 reference on the rounded cache, and sessions that use it.
@Suite("half-precision key/value cache")
struct HalfKVCacheTests {
    @Test("narrow rounds each value as Float16(x) does (ties to even, overflow to ∞, subnormals); widen is exact")
    func conversions() {
        var rng = SplitMix64(seed: 4)
        var x = (0..<37).map { _ in (rng.nextFloat() - 0.5) * 200 }
        x[3] = 65520; x[4] = -1e9; x[5] = 1e-6; x[6] = 3e-8; x[7] = 0; x[8] = -0.0
        x[9] = 1 + 1.0 / 2048          // halfway between two halves: to the even one, 1
        x[20] = 2049; x[36] = 1e-5     // in the 16-wide pass and in the tail
        var h = [UInt16](repeating: 0, count: x.count), back = [Float](repeating: 0, count: x.count)
        Half.narrow(x, count: x.count, into: &h)
        Half.widen(h, count: h.count, into: &back)
        for i in x.indices {
            #expect(h[i] == Float16(x[i]).bitPattern, "value \(i): \(x[i])")
            #expect(back[i] == Float(Float16(bitPattern: h[i])) || (back[i].isNaN && Float16(bitPattern: h[i]).isNaN))
        }
        #expect(back[3] == .infinity && back[4] == -.infinity && back[9] == 1 && back[20] == 2048)
        #expect(back[8].sign == .minus && back[6] > 0)
    }

    /// 1100 keys are 18 chunks: the chunks' merge factors take two passes of sixteen.
    @Test("decode attention on halves equals a float64 reference on the rounded cache",
          arguments: [(1, 4, 2), (37, 4, 2), (130, 6, 3), (257, 3, 1), (1100, 3, 1), (150, 9, 3), (70, 6, 1)])
    func decodeAgainstReference(_ shape: (keys: Int, heads: Int, kvHeads: Int)) throws {
        let (total, heads, kvHeads) = shape, hd = 64, capacity = KeyBlocks.padded(total + 5)
        var rng = SplitMix64(seed: UInt64(total * 17 + heads))
        let q = (0..<(heads * hd)).map { _ in (rng.nextFloat() - 0.5) * 2 }
        // Head-major [kvHeads][capacity][hd], the keys in `KeyBlocks`, as the session keeps them.
        let keys = IntegerBuffer<UInt16>(count: kvHeads * capacity * hd), values = IntegerBuffer<UInt16>(count: kvHeads * capacity * hd)
        for i in 0..<(kvHeads * capacity * hd) {
            keys.pointer[i] = Float16((rng.nextFloat() - 0.5) * 3).bitPattern
            values.pointer[i] = Float16((rng.nextFloat() - 0.5) * 3).bitPattern
        }
        func value(_ g: Int, _ j: Int, _ d: Int) -> Double {
            Double(Float16(bitPattern: values.pointer[(g * capacity + j) * hd + d]))
        }
        func key(_ g: Int, _ j: Int, _ d: Int) -> Double {
            Double(Float16(bitPattern: keys.pointer[g * capacity * hd + (j / 16) * 16 * hd + d * 16 + j % 16]))
        }
        let expected = KVCacheTests.referenceAttention(q: q, heads: heads, kvHeads: kvHeads, keys: total, headDim: hd,
                                                       key: key, value: value)
        let outputs = KVCacheTests.decodeOutputs(q: q, cache: .fp16(keys: keys.pointer, values: values.pointer, headStride: capacity * hd),
                                                 keys: total, heads: heads, kvHeads: kvHeads, headDim: hd)
        #expect(outputs[0] == outputs[1] && outputs[2] == outputs[3], "the thread count changed the result")
        for output in [outputs[0], outputs[2]] {
            let worst = zip(output, expected).map { abs(Double($0) - $1) }.max()!
            #expect(worst <= 1e-5 * max(1, expected.map(abs).max()!), "worst difference \(worst)")
        }
        // The halves are widened in registers as they are read: the same floats, summed in the same
        // order, as an fp32 cache holding the widened values.
        let wideKeys = FloatBuffer(count: keys.count), wideValues = FloatBuffer(count: values.count)
        Half.widen(keys.pointer, count: keys.count, into: wideKeys.pointer)
        Half.widen(values.pointer, count: values.count, into: wideValues.pointer)
        let fp32 = KVCacheTests.decodeOutputs(q: q, cache: .fp32(keys: wideKeys.pointer, values: wideValues.pointer, headStride: capacity * hd),
                                              keys: total, heads: heads, kvHeads: kvHeads, headDim: hd)
        #expect(outputs[0] == fp32[0] && outputs[2] == fp32[2], "halves read in registers differ from the same values in an fp32 cache")
    }

    @Test("the C half loads (16 at a time and one by one) give Float(Float16(bits)) for every bit pattern")
    func everyHalf() {
        let patterns = (0...UInt16.max).map { $0 }
        var wrong: [UInt16] = []
        patterns.withUnsafeBufferPointer { p in
            for start in stride(from: 0, to: patterns.count, by: 16) {
                let v = cq_load_halves16(p.baseAddress! + start)
                for l in 0..<16 {
                    let bits = UInt16(start + l), want = Float(Float16(bitPattern: bits))
                    for got in [v[l], cq_half_bits_to_float(bits)] where !(got.bitPattern == want.bitPattern || (got.isNaN && want.isNaN)) {
                        wrong.append(bits)
                    }
                }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.count) wrong, first 0x\(String(wrong.first ?? 0, radix: 16))")
    }

    @Test("a half session: prefill and one-token decoding agree; growing the cache keeps it; closer to fp32 than 8 bits")
    func session() throws {
        let (ids, last, scale) = try KVCacheTests.checkSession(.fp16)
        let model = try KVCacheTests.model()
        let reference = try InferenceSession(model: model).feed(ids)
        let eightBit = try InferenceSession(model: model, kvBits: .int8).feed(ids)
        let drift = zip(reference, last).map { abs($0 - $1) }.max()!, drift8 = zip(reference, eightBit).map { abs($0 - $1) }.max()!
        #expect(drift > 0 && drift <= 5e-3 * scale && drift < drift8, "half drift \(drift), 8-bit \(drift8), of \(scale)")
        // A head dimension that is no multiple of 16 (4 here) runs on the scalar tails.
        let small = try TransformerModel(config: Variant.all[0].config, seed: 1)
        let few = (0..<6).map { Int32($0 % 7) }
        let half = try InferenceSession(model: small, kvBits: .fp16).feed(few), full = try InferenceSession(model: small).feed(few)
        #expect(zip(half, full).map { abs($0 - $1) }.max()! <= 1e-2 * full.map(abs).max()!)
    }
}
