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
                      (130, 9, 3, 64), (257, 3, 1, 40), (70, 4, 2, 8),
                      // Groups of six (two sets of three), four (three and one) and five (three,
                      // one, one); an odd head size; sizes between whole spans.
                      (45, 12, 2, 13), (33, 8, 2, 24), (81, 5, 1, 64), (100, 6, 2, 48), (20, 3, 1, 96),
                      // Three chunks, the last one partial (chunks of at most 1,024 positions).
                      (2100, 3, 1, 64)])
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
        // The cache as sessions hold it: head-major, room for a few positions more per head (whole
        // key blocks), the keys in `KeyBlocks`; NaN where nothing was stored, so a read past the
        // last position shows.
        let capacity = KeyBlocks.padded(total + 5)
        var keysByHead = [Float](repeating: .nan, count: kvHeads * capacity * hd), valuesByHead = keysByHead
        for j in 0..<total {
            for g in 0..<kvHeads {
                let row = Array(keys[(j * kvDim + g * hd)..<(j * kvDim + g * hd + hd)])
                row.withUnsafeBufferPointer { r in
                    keysByHead.withUnsafeMutableBufferPointer { KeyBlocks.store(r.baseAddress!, headDim: hd, position: j, into: $0.baseAddress! + g * capacity * hd) }
                }
                for d in 0..<hd { valuesByHead[(g * capacity + j) * hd + d] = values[j * kvDim + g * hd + d] }
            }
        }
        // Both widths of the weighted values' pass (the machine uses one), each on 1 and 3 threads.
        for span in [32, 64] {
            var outputs: [[Float]] = []
            for threads in [1, 3] {
                let pool = ThreadPool(threadCount: threads)
                let out = FloatBuffer(count: heads * hd)
                q.withUnsafeBufferPointer { qp in
                    keysByHead.withUnsafeBufferPointer { kp in
                        valuesByHead.withUnsafeBufferPointer { vp in
                            let cache = DecodeCache.fp32(keys: kp.baseAddress!, values: vp.baseAddress!, headStride: capacity * hd)
                            decodeAttention(q: qp.baseAddress!, cache: cache, keys: total, heads: heads,
                                            kvHeads: kvHeads, headDim: hd, out: out.pointer, pool: pool, valueSpan: span)
                        }
                    }
                }
                outputs.append(out.array)
            }
            #expect(outputs[1] == outputs[0], "span \(span): the thread count changed the result")
            #expect(outputs[0].allSatisfy { $0.isFinite })
            let worst = zip(outputs[0], expected).map { abs(Double($0) - $1) }.max()!
            #expect(worst <= 2e-6 * max(1, expected.map(abs).max()!), "span \(span): worst difference \(worst)")
        }
    }

    @Test("chunks: whole key blocks, 64 to 1,024 positions, two a head until the cap, covering every position")
    func chunking() {
        for total in [1, 15, 64, 65, 128, 129, 130, 511, 512, 640, 767, 2047, 2048, 2049, 2100, 8192, 100_000] {
            let chunk = decodeKeyChunk(positions: total), chunks = (total + chunk - 1) / chunk
            #expect(chunk % KeyBlocks.width == 0 && (64...1024).contains(chunk), "\(total): \(chunk)")
            #expect(chunks * chunk >= total && (chunks - 1) * chunk < total, "\(total)")
            #expect(chunks == max(1, min(2, (total + 63) / 64)) || chunk == 1024, "\(total): \(chunks) chunks of \(chunk)")
        }
    }

    @Test("key blocks: a key stored at any position is in its block's lane; whole blocks per head")
    func keyBlocks() {
        let hd = 5, count = 37
        let rows = (0..<(count * hd)).map { Float($0) }
        var blocked = [Float](repeating: .nan, count: KeyBlocks.padded(count) * hd)
        #expect(KeyBlocks.padded(count) == 48 && KeyBlocks.padded(48) == 48 && KeyBlocks.padded(0) == 0)
        rows.withUnsafeBufferPointer { r in
            blocked.withUnsafeMutableBufferPointer { b in
                for j in 0..<count { KeyBlocks.store(r.baseAddress! + j * hd, headDim: hd, position: j, into: b.baseAddress!) }
            }
        }
        // Position 17, dimension 3: block 1, row 3 of it, lane 1.
        #expect(blocked[16 * hd + 3 * 16 + 1] == rows[17 * hd + 3])
        // Every position j, dimension d: block j / 16, row d, lane j % 16.
        let back = (0..<count).flatMap { j in (0..<hd).map { d in blocked[j / 16 * 16 * hd + d * 16 + j % 16] } }
        #expect(back == rows)
    }
}
