import Foundation

/// Whether a reply opens with a tool call, decided on the event rather than on one token.
///
/// Greedy decoding compares the likeliest token that starts a call (`<`, `<tool`, …) with the
/// likeliest single token of text; but the model's probability of answering in text is spread
/// over every way a sentence can start. A model that gives a call 45% and puts the other 55% on
/// "The", "I" and "Sorry" is more likely to answer than to call, yet greedy decoding calls.
/// `greedyChoice` first decides the event — a call when the tokens that can start the call marker
/// hold at least half the probability — and then takes the likeliest token of that side. It has
/// no parameter to tune: one half is where the more probable event changes. Sampling needs no
/// such step: a draw from the distribution opens a call with exactly that probability.
public struct CallOpening: Sendable {
    /// Whether each token's bytes could start the marker: a prefix of it, or it a prefix of them.
    private let opens: [Bool]

    /// The opening decision for `marker` (e.g. `<tool_call>`) over a vocabulary given as each
    /// token's bytes; tokens without bytes (control tokens) never open a call.
    public init(marker: [UInt8], tokenBytes: [[UInt8]]) {
        opens = tokenBytes.map { b in !b.isEmpty && !marker.isEmpty && (b.starts(with: marker) || marker.starts(with: b)) }
    }

    /// The ids of the tokens that can start a call.
    public var openingTokens: [Int32] { opens.indices.filter { opens[$0] }.map(Int32.init) }

    /// The probability `logits` give to opening a call: the softmax mass of the opening tokens
    /// (logits past the vocabulary are ignored; NaN counts as impossible).
    public func probability(_ logits: [Float]) -> Double {
        let n = min(logits.count, opens.count)
        var m = -Float.infinity
        for i in 0..<n where logits[i] > m { m = logits[i] }
        guard m.isFinite else { return 0 }
        var total = 0.0, call = 0.0
        for i in 0..<n where logits[i] >= -Float.greatestFiniteMagnitude {   // skips -inf and NaN
            let e = exp(Double(logits[i] - m))
            total += e
            if opens[i] { call += e }
        }
        return call / total
    }

    /// The greedy token by event: the likeliest opening token when `probability(logits) >= 0.5`,
    /// else the likeliest other token (the first of equal logits, as greedy decoding takes). When
    /// the likeliest token is on the side chosen, it is that token.
    public func greedyChoice(_ logits: [Float]) -> Int32 { greedyChoice(logits, callProbability: probability(logits)) }

    /// `greedyChoice(logits)` when `probability(logits)` is already known.
    public func greedyChoice(_ logits: [Float], callProbability: Double) -> Int32 {
        let call = callProbability >= 0.5
        let n = min(logits.count, opens.count)
        var best = -1
        for i in 0..<n where opens[i] == call && !logits[i].isNaN && (best < 0 || logits[i] > logits[best]) { best = i }
        if best < 0 {   // no token of that side has a logit (all NaN, or a `callProbability` from other logits): the plain arg max
            for i in 0..<logits.count where !logits[i].isNaN && (best < 0 || logits[i] > logits[best]) { best = i }
        }
        return Int32(max(best, 0))
    }
}
