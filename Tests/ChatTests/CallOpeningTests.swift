import Chat
import Foundation
import Kernels
import Testing

/// The call-opening decision against a float64 reference on random vocabularies and logits: the
/// opening tokens are exactly those that can start the marker, the probability is their softmax
/// mass, and the greedy choice is the likeliest token of the more probable event.
@Suite("call opening by event")
struct CallOpeningTests {
    static let marker = Array("<tool_call>".utf8)

    @Test("which tokens can start a call")
    func openingTokens() {
        let vocabulary = ["<", "<tool", "<tool_call>", "<tool_call>{\"", "<t", "tool", " <", "", "<tool_calls", "The", "<|im_end|>", ">"]
        let opening = CallOpening(marker: Self.marker, tokenBytes: vocabulary.map { Array($0.utf8) })
        #expect(opening.openingTokens == [0, 1, 2, 3, 4])
    }

    @Test("probability and greedy choice against a float64 reference (random logits, ties, -inf, NaN)")
    func againstReference() {
        var rng = SplitMix64(seed: 41)
        let pieces = ["<", "<tool", "<tool_call>", "<t", "The", "I", "Sorry", " <", "", "x", "<|im_start|>", "tool"]
        var decided = (call: 0, text: 0, overruled: 0)
        for trial in 0..<2_000 {
            let n = 2 + Int(rng.next() % 40)
            let bytes = (0..<n).map { _ in Array(pieces[Int(rng.next() % UInt64(pieces.count))].utf8) }
            var logits = (0..<n).map { _ in Float(Int(rng.next() % 13)) * 0.25 - 1.5 }   // a coarse grid: ties happen
            if trial % 7 == 0 { logits[Int(rng.next() % UInt64(n))] = -.infinity }
            if trial % 11 == 0 { logits[Int(rng.next() % UInt64(n))] = .nan }
            let opening = CallOpening(marker: Self.marker, tokenBytes: bytes)
            let opens = bytes.map { !$0.isEmpty && ($0.starts(with: Self.marker) || Self.marker.starts(with: $0)) }

            // Reference: float64 softmax over the finite logits.
            let finite = logits.indices.filter { logits[$0].isFinite }
            if finite.isEmpty { continue }
            let m = finite.map { Double(logits[$0]) }.max()!
            let total = finite.map { exp(Double(logits[$0]) - m) }.reduce(0, +)
            let call = finite.filter { opens[$0] }.map { exp(Double(logits[$0]) - m) }.reduce(0, +) / total
            #expect(abs(opening.probability(logits) - call) <= 1e-12, "trial \(trial)")

            let side = call >= 0.5
            let candidates = finite.filter { opens[$0] == side }
            let choice = Int(opening.greedyChoice(logits))
            if let best = candidates.max(by: { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }) {
                #expect(choice == best, "trial \(trial): \(logits) \(bytes.map { String(decoding: $0, as: UTF8.self) })")
            }
            // Greedy decoding's token whenever it is on the chosen side.
            let argmax = finite.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!
            if opens[argmax] == side { #expect(choice == argmax, "trial \(trial)") } else { decided.overruled += 1 }
            if side { decided.call += 1 } else { decided.text += 1 }
        }
        // The random cases cover both events and the ones where the event overrules the arg max.
        #expect(decided.call > 100 && decided.text > 100 && decided.overruled > 20, "\(decided)")
    }

    @Test("a split call beats a single likelier text token, and a lone call token loses to spread-out text")
    func splitMass() {
        let vocabulary = ["<", "<tool", "The", "I", "Sorry"].map { Array($0.utf8) }
        let opening = CallOpening(marker: Self.marker, tokenBytes: vocabulary)
        let l = { (p: [Double]) in p.map { Float(log($0)) } }
        // Call 0.3 + 0.3 against "The" 0.4: greedy would say "The"; the call is the likelier event.
        #expect(opening.greedyChoice(l([0.3, 0.3, 0.4, 1e-9, 1e-9])) == 0)
        // "<" 0.45 against 0.55 of text over three tokens: greedy would call; text is likelier.
        #expect(opening.greedyChoice(l([0.45, 1e-9, 0.2, 0.2, 0.15])) == 2)
        // Exactly one half opens the call; a third does not.
        #expect(opening.probability([0, 0, 0, 0, -.infinity]) == 0.5 && opening.greedyChoice([0, 0, 0, 0, -.infinity]) == 0)
        #expect(opening.greedyChoice([0, -.infinity, 0, 0, -.infinity]) == 2)
        #expect(opening.probability([-.infinity, -.infinity, 1, 2, 3]) == 0)
        #expect(opening.probability([.nan, 0, .nan, .nan, .nan]) == 1)
    }
}
