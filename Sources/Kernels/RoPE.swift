/// Rotary position embedding in Hugging Face Llama's rotate-half convention: within each head,
/// element `i < half` pairs with `i + half` and the pair at position `p` rotates by angle
/// `p * theta^(-2i / headDim)`.
public struct RotaryTable: Sendable {
    public let headDim: Int
    public let positions: Int
    private let cosines: [Float]
    private let sines: [Float]

    public init(headDim: Int, positions: Int, theta: Double) {
        self.headDim = headDim
        self.positions = positions
        let half = headDim / 2
        var c = [Float](repeating: 0, count: positions * half), s = c
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Double(p) * pow(theta, -2 * Double(i) / Double(headDim))
                c[p * half + i] = Float(cos(angle))
                s[p * half + i] = Float(sin(angle))
            }
        }
        cosines = c
        sines = s
    }

    /// Rotates `heads` heads of each of `rows` rows in place; row `r` is at position
    /// `firstPosition + r % period` (`period` is the sequence length in a batch of sequences).
    /// `inverse` applies the transpose rotation, which is the backward pass. With a `pool`, the
    /// rows are split over its threads (a prompt's hundreds of rows); each value is rotated alone,
    /// so the result is the same on any number of threads.
    public func apply(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int,
        firstPosition: Int, period: Int, inverse: Bool = false, pool: ThreadPool? = nil
    ) {
        guard let pool else {
            apply(x, rows: 0..<rows, rowStride: rowStride, heads: heads, firstPosition: firstPosition, period: period,
                  inverse: inverse)
            return
        }
        // Six floating-point operations a pair.
        pool.parallelRanges(rows, costPerItem: 3 * heads * headDim) { range, _ in
            apply(x, rows: range, rowStride: rowStride, heads: heads, firstPosition: firstPosition, period: period,
                  inverse: inverse)
        }
    }

    private func apply(
        _ x: UnsafeMutablePointer<Float>, rows: Range<Int>, rowStride: Int, heads: Int,
        firstPosition: Int, period: Int, inverse: Bool
    ) {
        let half = headDim / 2
        cosines.withUnsafeBufferPointer { cp in
            sines.withUnsafeBufferPointer { sp in
                for r in rows {
                    let p = firstPosition + r % period
                    let cosRow = cp.baseAddress! + p * half
                    let sinRow = sp.baseAddress! + p * half
                    for h in 0..<heads {
                        let v = x + r * rowStride + h * headDim
                        for i in 0..<half {
                            let a = v[i], b = v[i + half]
                            let c = cosRow[i], s = inverse ? -sinRow[i] : sinRow[i]
                            v[i] = a * c - b * s
                            v[i + half] = b * c + a * s
                        }
                    }
                }
            }
        }
    }
}

import Foundation
