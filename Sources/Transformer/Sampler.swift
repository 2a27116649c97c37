import Foundation
import Kernels

/// Chooses the next token from logits: repetition penalty, temperature, then top-k, top-p and
/// min-p filtering, then a draw from the seeded generator. Temperature 0 is greedy.
public struct Sampler: Sendable {
    public var temperature: Float = 0.8
    /// Keep the `topK` most likely tokens (0: all).
    public var topK = 0
    /// Keep the smallest set of tokens whose probability sums to at least `topP` (1: all).
    public var topP: Float = 1
    /// Drop tokens less likely than `minP` times the most likely one (0: none).
    public var minP: Float = 0
    /// Divide positive logits (multiply negative ones) of tokens already seen by this (1: off).
    public var repetitionPenalty: Float = 1
    public var rng: SplitMix64

    public init(seed: UInt64 = 0) { rng = SplitMix64(seed: seed) }

    /// Checks the settings; the error names the option.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ reason: String) throws {
            if !ok { throw TransformerError.invalidConfig(source: "sampling", field: field, reason: reason) }
        }
        try check(temperature >= 0 && temperature.isFinite, "temperature", "must be a finite number ≥ 0")
        try check(topK >= 0, "top-k", "must be ≥ 0")
        try check(topP > 0 && topP <= 1, "top-p", "must be in (0, 1]")
        try check(minP >= 0 && minP < 1, "min-p", "must be in [0, 1)")
        try check(repetitionPenalty > 0 && repetitionPenalty.isFinite, "repeat-penalty", "must be > 0")
    }

    /// The probabilities the draw uses (after every filter), for inspection and tests.
    public func distribution(_ logits: [Float], history: [Int32] = []) -> [Float] {
        var l = logits
        if repetitionPenalty != 1 {
            for id in Set(history) where id >= 0 && Int(id) < l.count {
                l[Int(id)] = l[Int(id)] > 0 ? l[Int(id)] / repetitionPenalty : l[Int(id)] * repetitionPenalty
            }
        }
        if temperature == 0 {
            var p = [Float](repeating: 0, count: l.count)
            if let best = argmax(l) { p[best] = 1 }
            return p
        }
        let m = l.max() ?? 0
        var p = l.map { Foundation.exp(Double(($0 - m) / temperature)) }
        var order = Array(p.indices)
        if topK > 0 || topP < 1 {
            order.sort { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
        }
        var keep = [Bool](repeating: true, count: p.count)
        if topK > 0 && topK < order.count {
            for i in order[topK...] { keep[i] = false }
        }
        if topP < 1 {
            let total = order.reduce(0.0) { $0 + (keep[$1] ? p[$1] : 0) }
            var cumulative = 0.0
            for i in order where keep[i] {
                if cumulative >= Double(topP) * total { keep[i] = false } else { cumulative += p[i] }
            }
        }
        if minP > 0, let top = p.max() {
            for i in p.indices where p[i] < Double(minP) * top { keep[i] = false }
        }
        for i in p.indices where !keep[i] { p[i] = 0 }
        let total = p.reduce(0, +)
        return p.map { Float($0 / total) }
    }

    /// Draws the next token.
    public mutating func sample(_ logits: [Float], history: [Int32] = []) -> Int32 {
        let p = distribution(logits, history: history)
        if temperature == 0 { return Int32(argmax(p) ?? 0) }
        var u = Float(Double(rng.next() >> 11) * 0x1p-53)
        for (i, q) in p.enumerated() where q > 0 {
            u -= q
            if u < 0 { return Int32(i) }
        }
        return Int32(p.lastIndex { $0 > 0 } ?? 0)
    }

    private func argmax(_ values: [Float]) -> Int? {
        var best: Int?
        for i in values.indices where best == nil || values[i] > values[best!] { best = i }
        return best
    }
}
