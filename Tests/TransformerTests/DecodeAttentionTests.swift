import Foundation
import Kernels
import Testing
@testable import Transformer

/// One token's attention over an fp32 cache (decoding), split into chunks of keys whose partial
/// softmaxes are merged: against a float64 reference, at lengths around the chunk and the
/// sixteen-key steps, head sizes with and without whole 16-float vectors, and thread counts.
@Suite("decode attention")
struct DecodeAttentionTests {
    @Test("one token's attention equals a float64 reference; 1 and 3 threads bit-equal",
          arguments: [(1, 4, 2, 64), (15, 4, 4, 64), (37, 6, 3, 64), (64, 2, 1, 64), (65, 2, 1, 64),
                      (130, 9, 3, 64), (257, 3, 1, 40), (70, 4, 2, 8)])
    func againstReference(_ shape: (keys: Int, heads: Int, kvHeads: Int, headDim: Int)) {
        let (total, heads, kvHeads, hd) = shape, kvDim = kvHeads * hd
        var rng = SplitMix64(seed: UInt64(total * 131 + heads * 7 + hd))
        let q = (0..<(heads * hd)).map { _ in (rng.nextFloat() - 0.5) * 4 }
        // Large, spread scores: chunks with very different maxima must still merge exactly.
        let keys = (0..<(total * kvDim)).map { i in (rng.nextFloat() - 0.5) * (i / kvDim % 3 == 0 ? 8 : 2) }
        let values = (0..<(total * kvDim)).map { _ in (rng.nextFloat() - 0.5) * 3 }
        var expected = [Double](repeating: 0, count: heads * hd)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            var scores = (0..<total).map { j in
                (0..<hd).reduce(0.0) { $0 + Double(q[h * hd + $1]) * Double(keys[j * kvDim + g * hd + $1]) } / Double(hd).squareRoot()
            }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let sum = scores.reduce(0, +)
            for d in 0..<hd {
                expected[h * hd + d] = (0..<total).reduce(0.0) { $0 + scores[$1] / sum * Double(values[$1 * kvDim + g * hd + d]) }
            }
        }
        // The same cache head-major, as sessions hold it (room for 5 positions more per head).
        let capacity = total + 5
        func headMajor(_ rows: [Float]) -> [Float] {
            var out = [Float](repeating: .nan, count: kvHeads * capacity * hd)
            for j in 0..<total { for g in 0..<kvHeads { for d in 0..<hd { out[(g * capacity + j) * hd + d] = rows[j * kvDim + g * hd + d] } } }
            return out
        }
        let keysByHead = headMajor(keys), valuesByHead = headMajor(values)
        var outputs: [[Float]] = []
        for (threads, byHead) in [(1, false), (3, false), (1, true), (3, true)] {
            let pool = ThreadPool(threadCount: threads)
            let out = FloatBuffer(count: heads * hd)
            q.withUnsafeBufferPointer { qp in
                (byHead ? keysByHead : keys).withUnsafeBufferPointer { kp in
                    (byHead ? valuesByHead : values).withUnsafeBufferPointer { vp in
                        let cache = DecodeCache.fp32(keys: kp.baseAddress!, values: vp.baseAddress!, rowStride: byHead ? hd : kvDim,
                                                     headStride: byHead ? capacity * hd : hd)
                        decodeAttention(q: qp.baseAddress!, cache: cache, kvDim: kvDim, keys: total, heads: heads, kvHeads: kvHeads,
                                        headDim: hd, out: out.pointer, pool: pool)
                    }
                }
            }
            outputs.append(out.array)
        }
        #expect(outputs.allSatisfy { $0 == outputs[0] }, "the thread count or the cache layout changed the result")
        let worst = zip(outputs[0], expected).map { abs(Double($0) - $1) }.max()!
        #expect(worst <= 2e-6 * max(1, expected.map(abs).max()!), "worst difference \(worst)")
    }

    @Test("sixteen lane sums reduced across registers equal each vector's own sum")
    func sixteenLaneSums() {
        var rng = SplitMix64(seed: 77)
        let rows = (0..<16).map { _ in SIMD16<Float>((0..<16).map { _ in Float(Int(rng.next() % 2001) - 1000) / 8 }) }
        let sums = sixteenSums { rows[$0] }
        // Small integers over 8: every partial sum is exact, so any order gives the same floats,
        // and a lane mixed up with another vector's shows.
        for k in 0..<16 { #expect(sums[k] == rows[k].sum(), "vector \(k)") }
    }
}
