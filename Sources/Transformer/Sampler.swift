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
        var p = [Float](repeating: 0, count: logits.count)
        if temperature == 0 {
            let l = penalized(logits, history)
            if !l.isEmpty { p[greedy(l)] = 1 }
            return p
        }
        let (ids, weights) = candidates(logits, history: history)
        let total = weights.reduce(0, +)
        for (i, w) in zip(ids, weights) { p[i] = w / total }
        return p
    }

    /// Draws the next token.
    public mutating func sample(_ logits: [Float], history: [Int32] = []) -> Int32 {
        guard !logits.isEmpty else { return 0 }
        if temperature == 0 { return Int32(greedy(penalized(logits, history))) }
        let (ids, weights) = candidates(logits, history: history)
        let total = weights.reduce(0, +)
        var u = Float(Double(rng.next() >> 11) * 0x1p-53) * total
        for (i, w) in zip(ids, weights) {
            u -= w
            if u < 0 { return Int32(i) }
        }
        return Int32(ids.last ?? 0)
    }

    /// The logits with the repetition penalty applied to the ids in `history` (each once). Only
    /// the seen ids are touched, with no table the size of the vocabulary: an id whose logit
    /// already differs from the original has been penalized. One whose logit the penalty leaves
    /// unchanged (0, ±infinity, the smallest subnormals) is penalized again to the same value.
    private func penalized(_ logits: [Float], _ history: [Int32]) -> [Float] {
        var l = logits
        guard repetitionPenalty != 1 else { return l }
        for id in history where id >= 0 && Int(id) < l.count {
            let i = Int(id)
            if l[i] == logits[i] { l[i] = l[i] > 0 ? l[i] / repetitionPenalty : l[i] * repetitionPenalty }
        }
        return l
    }

    /// The first index of the largest logit.
    private func greedy(_ l: [Float]) -> Int {
        l.withUnsafeBufferPointer { b in
            let m = maximum(b.baseAddress!, count: b.count)
            return b.firstIndex(of: m) ?? 0
        }
    }

    /// The tokens the filters keep, with unnormalized weights `exp((l - max) / T)`, in linear time
    /// on the vocabulary: no full sort. Top-k keeps a heap of k; top-p sorts only the tokens that
    /// can matter (those above 1e-4 of the top weight when they hold the needed mass, as they
    /// nearly always do); min-p is a cut-off on the weight.
    private func candidates(_ logits: [Float], history: [Int32]) -> (ids: [Int], weights: [Float]) {
        let l = penalized(logits, history)
        let n = l.count
        guard n > 0 else { return ([], []) }
        // Only tokens above a floor can be in top-p's nucleus when those above it hold the mass;
        // with min-p the floor is min-p's own cut-off, and if the tokens above it do not hold the
        // mass, the nucleus contains all of them and min-p decides alone. Without top-p (or with
        // top-k first) nothing is collected: no weight reaches an infinite floor.
        let nucleus = topP < 1 && !(topK > 0 && topK < n)
        let floor: Float = nucleus ? (minP > 0 ? minP : 1e-4) : .infinity
        // One pass after the maximum: each weight, their sum (added as `sum(_:count:)` adds,
        // so the same float) and the tokens at or above the floor with their mass, in id order.
        var likely: [Int] = [], mass: Float = 0, total: Float = 0
        let w = [Float](unsafeUninitializedCapacity: n) { w, count in
            l.withUnsafeBufferPointer { l in
                let m = maximum(l.baseAddress!, count: n), t = 1 / temperature
                var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), i = 0
                while i + 16 <= n {
                    let e = exp16((UnsafeRawPointer(l.baseAddress! + i).loadUnaligned(as: SIMD16<Float>.self) - m) * t)
                    UnsafeMutableRawPointer(w.baseAddress! + i).storeBytes(of: e, as: SIMD16<Float>.self)
                    if i & 16 == 0 { s0 += e } else { s1 += e }
                    if any(e .>= floor) {
                        for j in 0..<16 where e[j] >= floor {
                            likely.append(i + j)
                            mass += e[j]
                        }
                    }
                    i += 16
                }
                total = (s0 + s1).sum()
                while i < n {
                    w[i] = Foundation.exp((l[i] - m) * t)
                    total += w[i]
                    if w[i] >= floor {
                        likely.append(i)
                        mass += w[i]
                    }
                    i += 1
                }
            }
            count = n
        }
        // Higher weight first, lower id first among equals: the order top-k and top-p count in.
        func before(_ a: Int, _ b: Int) -> Bool { w[a] > w[b] || (w[a] == w[b] && a < b) }
        var ids: [Int]
        if topK > 0 && topK < n {
            var heap = Heap(capacity: topK, before: before)
            for i in 0..<n { heap.offer(i) }
            ids = heap.items.sorted(by: before)
            total = ids.reduce(0) { $0 + w[$1] }
        } else if topP < 1 {
            if mass >= topP * total {
                ids = likely.sorted(by: before)
            } else if minP > 0 {
                return (likely, likely.map { w[$0] })
            } else {
                ids = Array(0..<n).sorted(by: before)
            }
        } else {
            ids = Array(0..<n)
        }
        if topP < 1 {
            var cumulative: Float = 0, kept = 0
            for i in ids {
                if cumulative >= topP * total { break }
                cumulative += w[i]
                kept += 1
            }
            ids.removeSubrange(kept...)
        }
        if minP > 0 {
            ids.removeAll { w[$0] < minP }  // the top weight is 1
        }
        return (ids, ids.map { w[$0] })
    }
}

/// The `capacity` items first in `before` order, kept as a heap whose root is the last of them.
private struct Heap {
    var items: [Int] = []
    let capacity: Int
    let before: (Int, Int) -> Bool

    init(capacity: Int, before: @escaping (Int, Int) -> Bool) {
        self.capacity = capacity
        self.before = before
        items.reserveCapacity(capacity)
    }

    mutating func offer(_ x: Int) {
        if items.count < capacity {
            items.append(x)
            var c = items.count - 1
            while c > 0 {
                let parent = (c - 1) / 2
                guard before(items[parent], items[c]) else { break }
                items.swapAt(parent, c)
                c = parent
            }
        } else if before(x, items[0]) {
            items[0] = x
            var c = 0
            while true {
                let l = 2 * c + 1, r = l + 1
                var worst = c
                if l < items.count && before(items[worst], items[l]) { worst = l }
                if r < items.count && before(items[worst], items[r]) { worst = r }
                if worst == c { break }
                items.swapAt(worst, c)
                c = worst
            }
        }
    }
}
