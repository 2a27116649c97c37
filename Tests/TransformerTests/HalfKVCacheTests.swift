import Foundation
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

    @Test("decode attention on halves equals a float64 reference on the rounded cache",
          arguments: [(1, 4, 2), (37, 4, 2), (130, 6, 3), (257, 3, 1)])
    func decodeAgainstReference(_ shape: (keys: Int, heads: Int, kvHeads: Int)) throws {
        let (total, heads, kvHeads) = shape, hd = 64, kvDim = kvHeads * hd, capacity = total + 5
        var rng = SplitMix64(seed: UInt64(total * 17 + heads))
        let q = (0..<(heads * hd)).map { _ in (rng.nextFloat() - 0.5) * 2 }
        // Head-major [kvHeads][capacity][hd], as the session keeps it.
        let keys = IntegerBuffer<UInt16>(count: kvHeads * capacity * hd), values = IntegerBuffer<UInt16>(count: kvHeads * capacity * hd)
        for i in 0..<(kvHeads * capacity * hd) {
            keys.pointer[i] = Float16((rng.nextFloat() - 0.5) * 3).bitPattern
            values.pointer[i] = Float16((rng.nextFloat() - 0.5) * 3).bitPattern
        }
        func at(_ b: IntegerBuffer<UInt16>, _ g: Int, _ j: Int, _ d: Int) -> Double {
            Double(Float16(bitPattern: b.pointer[(g * capacity + j) * hd + d]))
        }
        var expected = [Double](repeating: 0, count: heads * hd)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            var scores = (0..<total).map { j in
                (0..<hd).reduce(0.0) { $0 + Double(q[h * hd + $1]) * at(keys, g, j, $1) } / Double(hd).squareRoot()
            }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let sum = scores.reduce(0, +)
            for d in 0..<hd { expected[h * hd + d] = (0..<total).reduce(0.0) { $0 + scores[$1] / sum * at(values, g, $1, d) } }
        }
        var outputs: [[Float]] = []
        for threads in [1, 3] {
            let pool = ThreadPool(threadCount: threads)
            let out = FloatBuffer(count: heads * hd)
            q.withUnsafeBufferPointer {
                decodeAttention(q: $0.baseAddress!, cache: .fp16(keys: keys.pointer, values: values.pointer, headStride: capacity * hd),
                                kvDim: kvDim, keys: total, heads: heads, kvHeads: kvHeads, headDim: hd, out: out.pointer, pool: pool)
            }
            outputs.append(out.array)
        }
        #expect(outputs[0] == outputs[1], "the thread count changed the result")
        let worst = zip(outputs[0], expected).map { abs(Double($0) - $1) }.max()!
        #expect(worst <= 1e-5 * max(1, expected.map(abs).max()!), "worst difference \(worst)")
    }

    @Test("a half session: prefill and one-token decoding agree; growing the cache keeps it; closer to fp32 than 8 bits")
    func session() throws {
        let model = try KVCacheTests.model()
        var rng = SplitMix64(seed: 8)
        let ids = (0..<270).map { _ in Int32(rng.next() % 29) }
        let stepwise = try InferenceSession(model: model, kvBits: .fp16)
        try stepwise.feed(Array(ids[0..<200]))
        var last: [Float] = []
        for id in ids[200...] { last = try stepwise.feed([id]) }
        #expect(stepwise.capacity >= 270)
        let reserved = try InferenceSession(model: model, reserve: 300, kvBits: .fp16)
        try reserved.feed(Array(ids[0..<200]))
        var lastReserved: [Float] = []
        for id in ids[200...] { lastReserved = try reserved.feed([id]) }
        #expect(last == lastReserved, "growing the half cache changed what it holds")
        let prefilled = try InferenceSession(model: model, kvBits: .fp16)
        try prefilled.feed(Array(ids[0..<260]))
        let allAtOnce = try prefilled.feed(Array(ids[260...]))
        let scale = allAtOnce.map(abs).max()!
        #expect(zip(allAtOnce, last).map { abs($0 - $1) }.max()! <= 1e-4 * scale)
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
