import Foundation
import Kernels
import Testing
@testable import Transformer

/// The blocked causal attention (several query blocks at 150 tokens) against a naive
/// double-precision reference, forward and backward.
@Suite("blocked causal attention")
struct AttentionTests {
    static let t = 150, hd = 8

    static func reference(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: t * hd)
        for i in 0..<t {
            var scores = (0...i).map { j in (0..<hd).reduce(0.0) { $0 + q[i * hd + $1] * k[j * hd + $1] } / Double(hd).squareRoot() }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let s = scores.reduce(0, +)
            for j in 0...i { for d in 0..<hd { out[i * hd + d] += scores[j] / s * v[j * hd + d] } }
        }
        return out
    }

    @Test("forward and backward match the reference across query blocks")
    func blocked() {
        var rng = SplitMix64(seed: 12)
        let n = Self.t * Self.hd
        let q = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }, k = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }
        let v = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }, dOut = (0..<n).map { _ in rng.nextFloat() * 2 - 1 }
        var out = [Float](repeating: 0, count: n), probs = [Float](repeating: .nan, count: Self.t * Self.t)
        out.withUnsafeMutableBufferPointer { o in
            probs.withUnsafeMutableBufferPointer { p in
                attentionHeadForward(q: q, qStride: Self.hd, k: k, v: v, kvStride: Self.hd, out: o.baseAddress!, outStride: Self.hd,
                                     probs: p.baseAddress!, rows: Self.t, keys: Self.t, headDim: Self.hd, pool: .shared)
            }
        }
        let qd = q.map(Double.init), kd = k.map(Double.init), vd = v.map(Double.init)
        let expected = Self.reference(qd, kd, vd)
        #expect(zip(out, expected).allSatisfy { abs(Double($0) - $1) < 1e-5 })
        #expect(probs.allSatisfy { $0.isFinite }, "masked probabilities are 0, not left over")

        var dq = [Float](repeating: 0, count: n), dk = dq, dv = dq, scratch = [Float](repeating: 0, count: Self.t * Self.t)
        dq.withUnsafeMutableBufferPointer { dqp in dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
            scratch.withUnsafeMutableBufferPointer { sp in
                attentionHeadBackward(dOut: dOut, dOutStride: Self.hd, probs: probs, q: q, k: k, v: v, stride: Self.hd,
                                      dq: dqp.baseAddress!, dk: dkp.baseAddress!, dv: dvp.baseAddress!,
                                      scratch: sp.baseAddress!, rows: Self.t, headDim: Self.hd, pool: .shared)
            }
        } } }
        let dOutD = dOut.map(Double.init)
        func loss(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            zip(Self.reference(q, k, v), dOutD).reduce(0) { $0 + $1.0 * $1.1 }
        }
        for _ in 0..<25 {
            let i = Int(rng.next() % UInt64(n)), h = 1e-6
            var a = qd, b = qd
            a[i] += h; b[i] -= h
            #expect(abs((loss(a, kd, vd) - loss(b, kd, vd)) / (2 * h) - Double(dq[i])) < 1e-4, "dq[\(i)]")
            a = kd; b = kd
            a[i] += h; b[i] -= h
            #expect(abs((loss(qd, a, vd) - loss(qd, b, vd)) / (2 * h) - Double(dk[i])) < 1e-4, "dk[\(i)]")
            a = vd; b = vd
            a[i] += h; b[i] -= h
            #expect(abs((loss(qd, kd, a) - loss(qd, kd, b)) / (2 * h) - Double(dv[i])) < 1e-4, "dv[\(i)]")
        }
    }
}
