import Foundation
import Kernels
import Testing
@testable import Transformer

/// Multi-token attention against the cache (prefill): every query row against a float64
/// reference, for keys in fp32 blocks, half blocks and rows; query tiles that are whole and
/// partial, caches with and without earlier positions, grouped heads; the same floats on 1, 2
/// and 3 threads.
@Suite("prefill attention")
struct PrefillAttentionTests {
    @Test("each new row's attention equals a float64 reference; 1, 2 and 3 threads bit-equal",
          arguments: [(0, 40, 9, 3, 64), (0, 14, 2, 1, 64), (17, 29, 4, 2, 32), (33, 15, 6, 3, 48), (5, 3, 2, 2, 16),
                      (0, 1, 3, 1, 64), (100, 70, 3, 1, 24), (0, 65, 4, 4, 8)])
    func againstReference(_ shape: (start: Int, rows: Int, heads: Int, kvHeads: Int, headDim: Int)) {
        let (start, n, heads, kvHeads, hd) = shape, total = start + n, group = heads / kvHeads
        var rng = SplitMix64(seed: UInt64(start * 7919 + n * 131 + heads * 7 + hd))
        // Query rows padded past the heads (as in a fused q|k|v row), output rows padded too.
        let qStride = heads * hd + 3, outStride = heads * hd + 5
        let q = (0..<(n * qStride)).map { _ in (rng.nextFloat() - 0.5) * 4 }
        var keys = (0..<(kvHeads * total * hd)).map { i in (rng.nextFloat() - 0.5) * (i / hd % 3 == 0 ? 8 : 2) }
        let values = (0..<(kvHeads * total * hd)).map { _ in (rng.nextFloat() - 0.5) * 3 }
        for source in ["blocks", "halves", "rows"] {
            // The half cache's keys are what the reference must see there.
            if source == "halves" { keys = keys.map { Float(Float16($0)) } }
            var expected = [Double](repeating: 0, count: n * heads * hd)
            for i in 0..<n {
                for h in 0..<heads {
                    let g = h / group, seen = start + i + 1
                    var scores = (0..<seen).map { j in
                        (0..<hd).reduce(0.0) { $0 + Double(q[i * qStride + h * hd + $1]) * Double(keys[(g * total + j) * hd + $1]) }
                            / Double(hd).squareRoot()
                    }
                    let m = scores.max()!
                    scores = scores.map { Foundation.exp($0 - m) }
                    let sum = scores.reduce(0, +)
                    for d in 0..<hd {
                        expected[(i * heads + h) * hd + d] = (0..<seen).reduce(0.0) { $0 + scores[$1] / sum * Double(values[(g * total + $1) * hd + d]) }
                    }
                }
            }
            // The cache as sessions hold it: head-major, whole key blocks and a few positions more
            // per head, NaN where nothing was stored, so that a read past the last position shows.
            let capacity = KeyBlocks.padded(total + 5), headStride = capacity * hd
            var blocks = [Float](repeating: .nan, count: kvHeads * headStride), rows = blocks, valueRows = blocks
            var halves = [UInt16](repeating: Float16.nan.bitPattern, count: kvHeads * headStride)
            for g in 0..<kvHeads {
                for j in 0..<total {
                    let key = Array(keys[((g * total + j) * hd)..<((g * total + j + 1) * hd)])
                    let half = key.map { Float16($0).bitPattern }
                    blocks.withUnsafeMutableBufferPointer { KeyBlocks.store(key, headDim: hd, position: j, into: $0.baseAddress! + g * headStride) }
                    halves.withUnsafeMutableBufferPointer { KeyBlocks.store(half, headDim: hd, position: j, into: $0.baseAddress! + g * headStride) }
                    for d in 0..<hd {
                        rows[g * headStride + j * hd + d] = key[d]
                        valueRows[g * headStride + j * hd + d] = values[(g * total + j) * hd + d]
                    }
                }
            }
            var outputs: [[Float]] = []
            for threads in [1, 2, 3] {
                var out = [Float](repeating: 7, count: n * outStride)
                blocks.withUnsafeBufferPointer { b in
                    halves.withUnsafeBufferPointer { hb in
                        rows.withUnsafeBufferPointer { r in
                            let keys: PrefillKeys = switch source {
                            case "blocks": .blocks(b.baseAddress!)
                            case "halves": .halfBlocks(hb.baseAddress!)
                            default: .rows(r.baseAddress!)
                            }
                            out.withUnsafeMutableBufferPointer { o in
                                prefillAttention(q: q, qStride: qStride, keys: keys, values: valueRows, headStride: headStride,
                                                 start: start, rows: n, heads: heads, kvHeads: kvHeads, headDim: hd,
                                                 out: o.baseAddress!, outStride: outStride, pool: ThreadPool(threadCount: threads))
                            }
                        }
                    }
                }
                outputs.append(out)
            }
            #expect(outputs[1] == outputs[0] && outputs[2] == outputs[0], "\(source): the thread count changed the result")
            var worst = 0.0
            for i in 0..<n {
                for c in 0..<(heads * hd) { worst = max(worst, abs(Double(outputs[0][i * outStride + c]) - expected[i * heads * hd + c])) }
                for c in (heads * hd)..<outStride { #expect(outputs[0][i * outStride + c] == 7, "\(source): row \(i) written past its heads") }
            }
            #expect(worst <= 2e-6 * max(1, expected.map(abs).max()!), "\(source): worst difference \(worst)")
        }
    }

    @Test("the keys transposed from blocks, halves and rows: every position in its column, zeros past the last")
    func transposedKeys() {
        let kvHeads = 2, hd = 24, total = 37, ld = 64, capacity = KeyBlocks.padded(total + 9), headStride = capacity * hd
        var rng = SplitMix64(seed: 5)
        let keys = (0..<(kvHeads * total * hd)).map { _ in Float(Float16(rng.nextFloat() * 2 - 1)) }
        var blocks = [Float](repeating: .nan, count: kvHeads * headStride), rows = blocks
        var halves = [UInt16](repeating: Float16.nan.bitPattern, count: kvHeads * headStride)
        for g in 0..<kvHeads {
            for j in 0..<total {
                let key = Array(keys[((g * total + j) * hd)..<((g * total + j + 1) * hd)])
                blocks.withUnsafeMutableBufferPointer { KeyBlocks.store(key, headDim: hd, position: j, into: $0.baseAddress! + g * headStride) }
                halves.withUnsafeMutableBufferPointer {
                    KeyBlocks.store(key.map { Float16($0).bitPattern }, headDim: hd, position: j, into: $0.baseAddress! + g * headStride)
                }
                for d in 0..<hd { rows[g * headStride + j * hd + d] = key[d] }
            }
        }
        var expected = [Float](repeating: 0, count: kvHeads * hd * ld)
        for g in 0..<kvHeads { for d in 0..<hd { for j in 0..<total { expected[(g * hd + d) * ld + j] = keys[(g * total + j) * hd + d] } } }
        for source in 0..<3 {
            var kt = [Float](repeating: .nan, count: kvHeads * hd * ld)
            blocks.withUnsafeBufferPointer { b in
                halves.withUnsafeBufferPointer { h in
                    rows.withUnsafeBufferPointer { r in
                        let keys: PrefillKeys = source == 0 ? .blocks(b.baseAddress!) : source == 1 ? .halfBlocks(h.baseAddress!) : .rows(r.baseAddress!)
                        kt.withUnsafeMutableBufferPointer {
                            transposeKeys(keys, headStride: headStride, kvHeads: kvHeads, headDim: hd, total: total, ld: ld, into: $0.baseAddress!)
                        }
                    }
                }
            }
            #expect(kt == expected, "source \(source)")
        }
    }
}
