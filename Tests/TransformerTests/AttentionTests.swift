import Foundation
import Kernels
import Testing
@testable import Transformer

/// Causal attention for one head against a naive double-precision reference, forward and
/// backward: the tiled path (full query tiles; edge tiles of rows and of head dimensions that are
/// not a multiple of 32), the blocked GEMM path (fewer rows than a tile), strided operands, a
/// KV-cache offset, and gradients that accumulate into dk and dv.
@Suite("causal attention")
struct AttentionTests {
    /// Attention output for queries at positions `keys - rows ..< keys`.
    static func reference(_ q: [Double], _ k: [Double], _ v: [Double], rows: Int, keys: Int, hd: Int) -> (out: [Double], probs: [[Double]]) {
        var out = [Double](repeating: 0, count: rows * hd), probs: [[Double]] = []
        let offset = keys - rows
        for i in 0..<rows {
            var scores = (0...(i + offset)).map { j in (0..<hd).reduce(0.0) { $0 + q[i * hd + $1] * k[j * hd + $1] } / Double(hd).squareRoot() }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let s = scores.reduce(0, +)
            scores = scores.map { $0 / s }
            probs.append(scores)
            for j in 0...(i + offset) { for d in 0..<hd { out[i * hd + d] += scores[j] * v[j * hd + d] } }
        }
        return (out, probs)
    }

    /// Packs `count` rows of `width` values into rows of `stride` (the rest filled with 7s, which
    /// a kernel reading past its columns would pick up).
    static func strided(_ values: [Float], rows: Int, width: Int, stride: Int) -> [Float] {
        var result = [Float](repeating: 7, count: rows * stride)
        for r in 0..<rows { for c in 0..<width { result[r * stride + c] = values[r * width + c] } }
        return result
    }

    @Test("forward matches the reference", arguments: [(150, 150, 8), (128, 128, 32), (70, 70, 48), (64, 64, 64), (29, 29, 96), (13, 13, 32), (20, 57, 32), (3, 40, 64)])
    func forward(rows: Int, keys: Int, hd: Int) {
        var rng = SplitMix64(seed: UInt64(rows * 1000 + keys * 10 + hd))
        let stride = hd + 5
        let q = (0..<(rows * hd)).map { _ in rng.nextFloat() * 4 - 2 }
        let k = (0..<(keys * hd)).map { _ in rng.nextFloat() * 4 - 2 }, v = (0..<(keys * hd)).map { _ in rng.nextFloat() * 2 - 1 }
        let qs = Self.strided(q, rows: rows, width: hd, stride: stride)
        let ks = Self.strided(k, rows: keys, width: hd, stride: stride), vs = Self.strided(v, rows: keys, width: hd, stride: stride)
        var out = [Float](repeating: 7, count: rows * stride), probs = [Float](repeating: .nan, count: rows * keys)
        out.withUnsafeMutableBufferPointer { o in
            probs.withUnsafeMutableBufferPointer { p in
                attentionHeadForward(q: qs, qStride: stride, k: ks, v: vs, kvStride: stride, out: o.baseAddress!, outStride: stride,
                                     probs: p.baseAddress!, rows: rows, keys: keys, headDim: hd, pool: .shared)
            }
        }
        let expected = Self.reference(q.map(Double.init), k.map(Double.init), v.map(Double.init), rows: rows, keys: keys, hd: hd)
        var worst = 0.0
        for i in 0..<rows {
            for d in 0..<hd { worst = max(worst, abs(Double(out[i * stride + d]) - expected.out[i * hd + d])) }
            for d in hd..<stride { #expect(out[i * stride + d] == 7, "column \(d) of row \(i) is outside the output") }
            for (j, p) in expected.probs[i].enumerated() { worst = max(worst, abs(Double(probs[i * keys + j]) - p)) }
        }
        #expect(worst < 2e-6, "max error \(worst)")
    }

    @Test("backward matches finite differences of the reference", arguments: [(150, 8), (128, 32), (70, 48), (33, 64), (13, 32)])
    func backward(t: Int, hd: Int) {
        var rng = SplitMix64(seed: UInt64(t * 100 + hd))
        let stride = 2 * hd + 3, n = t * hd
        let q = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }, k = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }
        let v = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }, dOut = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }
        let qs = Self.strided(q, rows: t, width: hd, stride: stride), ks = Self.strided(k, rows: t, width: hd, stride: stride)
        let vs = Self.strided(v, rows: t, width: hd, stride: stride)
        var out = [Float](repeating: 0, count: t * stride), probs = [Float](repeating: .nan, count: t * t)
        out.withUnsafeMutableBufferPointer { o in
            probs.withUnsafeMutableBufferPointer { p in
                attentionHeadForward(q: qs, qStride: stride, k: ks, v: vs, kvStride: stride, out: o.baseAddress!, outStride: stride,
                                     probs: p.baseAddress!, rows: t, keys: t, headDim: hd, pool: .shared)
            }
        }
        // dk and dv start non-zero: backward adds to them (heads sharing a key/value head).
        let start = (0..<(t * stride)).map { _ in rng.nextFloat() }
        var dq = [Float](repeating: 7, count: t * stride), dk = start, dv = start, scratch = [Float](repeating: .nan, count: t * t)
        dq.withUnsafeMutableBufferPointer { dqp in dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
            scratch.withUnsafeMutableBufferPointer { sp in
                attentionHeadBackward(dOut: Self.strided(dOut, rows: t, width: hd, stride: stride), dOutStride: stride, probs: probs,
                                      q: qs, k: ks, v: vs, stride: stride, dq: dqp.baseAddress!, dk: dkp.baseAddress!, dv: dvp.baseAddress!,
                                      scratch: sp.baseAddress!, rows: t, headDim: hd, pool: .shared)
            }
        } } }
        let qd = q.map(Double.init), kd = k.map(Double.init), vd = v.map(Double.init), dOutD = dOut.map(Double.init)
        func loss(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            zip(Self.reference(q, k, v, rows: t, keys: t, hd: hd).out, dOutD).reduce(0) { $0 + $1.0 * $1.1 }
        }
        for _ in 0..<20 {
            let i = Int(rng.next() % UInt64(n)), h = 1e-6, at = i / hd * stride + i % hd
            var a = qd, b = qd
            a[i] += h; b[i] -= h
            #expect(abs((loss(a, kd, vd) - loss(b, kd, vd)) / (2 * h) - Double(dq[at])) < 1e-4, "dq[\(i)]")
            a = kd; b = kd
            a[i] += h; b[i] -= h
            #expect(abs((loss(qd, a, vd) - loss(qd, b, vd)) / (2 * h) - Double(dk[at] - start[at])) < 1e-4, "dk[\(i)]")
            a = vd; b = vd
            a[i] += h; b[i] -= h
            #expect(abs((loss(qd, kd, a) - loss(qd, kd, b)) / (2 * h) - Double(dv[at] - start[at])) < 1e-4, "dv[\(i)]")
        }
        for r in 0..<t {
            for c in hd..<stride {
                #expect(dq[r * stride + c] == 7 && dk[r * stride + c] == start[r * stride + c] && dv[r * stride + c] == start[r * stride + c],
                        "row \(r) column \(c) is outside the gradients")
            }
        }
    }
}
