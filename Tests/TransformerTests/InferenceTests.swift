import Foundation
import Kernels
import Testing
@testable import Transformer

@Suite("cached inference")
struct InferenceTests {
    @Test("prefill then one-token decoding gives the logits of the full forward", arguments: Variant.all)
    func cacheMatchesFullForward(_ variant: Variant) throws {
        var config = variant.config
        config.dropout = 0
        let model = try TransformerModel(config: config, seed: 11)
        let length = 8
        var rng = SplitMix64(seed: 4)
        let ids = (0..<length).map { _ in Int32(rng.next() % 13) }
        let w = try TrainingWorkspace(model: model, batch: 1, length: length)
        _ = try model.forward(ids: ids, targets: ids, workspace: w)
        let v = config.vocabularySize
        let full = Array(UnsafeBufferPointer(start: w.logits.pointer, count: length * v))
        let maxLogit = full.map(abs).max() ?? 1

        // Prefill 3 tokens (all rows), then 2, then decode one at a time.
        let session = try InferenceSession(model: model)
        var cached = try session.feed(Array(ids[0..<3]), allRows: true)
        cached += try session.feed(Array(ids[3..<5]), allRows: true)
        for i in 5..<length { cached += try session.feed([ids[i]]) }
        #expect(session.position == length)
        let worst = zip(full, cached).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5 * max(1, maxLogit), "worst difference \(worst)")
    }

    @Test("a sequence past the context and an unknown id are refused without changing the cache")
    func errors() throws {
        let model = try TransformerModel(config: Variant.all[0].config, seed: 1)
        let session = try InferenceSession(model: model)
        try session.feed([1, 2, 3])
        #expect(throws: TransformerError.sequenceTooLong(tokens: 9, contextLength: 8)) { try session.feed([1, 2, 3, 4, 5, 6]) }
        #expect(throws: TransformerError.tokenOutOfRange(id: 13, vocabularySize: 13)) { try session.feed([13]) }
        #expect(throws: TransformerError.tokenOutOfRange(id: -1, vocabularySize: 13)) { try session.feed([-1]) }
        #expect(throws: TransformerError.emptyInput(what: "the token sequence")) { try session.feed([]) }
        #expect(session.position == 3)
        let w = try TrainingWorkspace(model: model, batch: 1, length: 4)
        #expect(throws: TransformerError.tokenOutOfRange(id: 99, vocabularySize: 13)) {
            try model.forward(ids: [1, 2, 99, 3], targets: [1, 2, 3, 4], workspace: w)
        }
        #expect(throws: TransformerError.sequenceTooLong(tokens: 9, contextLength: 8)) {
            try TrainingWorkspace(model: model, batch: 1, length: 9)
        }
    }
}

@Suite("sampling")
struct SamplerTests {
    let logits: [Float] = [1.0, 3.0, 2.0, -1.0, 2.5, 0.0]

    @Test("temperature 0 is greedy; top-k 1 is greedy at any temperature")
    func greedy() {
        var s = Sampler(seed: 1)
        s.temperature = 0
        #expect(s.sample(logits) == 1)
        s.temperature = 5
        s.topK = 1
        for _ in 0..<20 { #expect(s.sample(logits) == 1) }
    }

    @Test("draws follow softmax(logits / T): empirical frequencies within 4 sigma")
    func frequencies() {
        var s = Sampler(seed: 42)
        s.temperature = 0.7
        let expected = s.distribution(logits)
        let reference = logits.map { Foundation.exp(Double($0) / 0.7) }
        let total = reference.reduce(0, +)
        for (p, r) in zip(expected, reference) { #expect(abs(Double(p) - r / total) < 1e-6) }
        var counts = [Int](repeating: 0, count: logits.count)
        let draws = 20_000
        for _ in 0..<draws { counts[Int(s.sample(logits))] += 1 }
        for (count, p) in zip(counts, expected) {
            let sigma = (Double(draws) * Double(p) * (1 - Double(p))).squareRoot()
            #expect(abs(Double(count) - Double(draws) * Double(p)) <= 4 * sigma + 1)
        }
    }

    @Test("top-k, top-p and min-p keep exactly the intended tokens; the repetition penalty lowers seen tokens")
    func filters() {
        var s = Sampler(seed: 0)
        s.temperature = 1
        s.topK = 3
        #expect(s.distribution(logits).enumerated().filter { $0.element > 0 }.map(\.offset) == [1, 2, 4])
        s.topK = 0
        s.topP = 0.5 // p(1) ≈ 0.43, p(4) ≈ 0.26: the two together pass 0.5
        #expect(s.distribution(logits).enumerated().filter { $0.element > 0 }.map(\.offset) == [1, 4])
        s.topP = 1
        s.minP = 0.5 // keeps tokens with p ≥ 0.5 p(1): ids 1 and 4 (e^-0.5 ≈ 0.61), not 2 (e^-1)
        #expect(s.distribution(logits).enumerated().filter { $0.element > 0 }.map(\.offset) == [1, 4])
        s.minP = 0
        // The penalty divides a seen positive logit (id 1: 3 → 1.5) and multiplies a seen
        // negative one (id 3: -1 → -2), at the same temperature; unseen ids keep theirs.
        s.repetitionPenalty = 2
        let after = s.distribution(logits, history: [1, 3, 1])
        var penalized = logits.map(Double.init)
        penalized[1] = 1.5
        penalized[3] = -2
        let weights = penalized.map { Foundation.exp($0) }, total = weights.reduce(0, +)
        for (p, w) in zip(after, weights) { #expect(abs(Double(p) - w / total) < 1e-6) }
        s.repetitionPenalty = 1
        #expect(s.distribution(logits, history: [1, 3])[1] > after[1] * 2)
    }

    @Test("the repetition penalty changes each seen id once, however often and in whatever order it was seen")
    func penaltyOncePerId() {
        var rng = SplitMix64(seed: 9)
        for trial in 0..<40 {
            let n = [6, 37, 4096][trial % 3]
            var logits = (0..<n).map { _ in rng.nextGaussian() * 4 }
            // Logits the penalty leaves as they are, or nearly: zeros and the smallest subnormals.
            logits[0] = 0
            logits[n - 1] = Float.leastNonzeroMagnitude
            logits[n / 2] = -Float.leastNonzeroMagnitude
            // Ids seen up to five times, shuffled, with ids outside the vocabulary among them.
            var history: [Int32] = []
            for id in 0..<n where rng.next() % 3 == 0 {
                history += [Int32](repeating: Int32(id), count: 1 + Int(rng.next() % 5))
            }
            history += [-1, Int32(n), Int32(n) + 7]
            history.shuffle(using: &rng)
            var s = Sampler(seed: 0)
            s.temperature = 1
            s.repetitionPenalty = trial % 2 == 0 ? 1.3 : 0.7
            var once = logits
            for id in Set(history) where id >= 0 && Int(id) < n {
                let i = Int(id)
                once[i] = once[i] > 0 ? once[i] / s.repetitionPenalty : once[i] * s.repetitionPenalty
            }
            let weights = once.map { Foundation.exp(Double($0)) }, total = weights.reduce(0, +)
            for (p, w) in zip(s.distribution(logits, history: history), weights) {
                #expect(abs(Double(p) - w / total) <= 2e-5 * w / total + 1e-12, "trial \(trial)")
            }
        }
    }

    @Test("invalid settings are refused")
    func invalid() {
        var s = Sampler()
        s.topP = 0
        #expect(throws: TransformerError.self) { try s.validate() }
        s = Sampler()
        s.temperature = -1
        #expect(throws: TransformerError.self) { try s.validate() }
    }
}

@Suite("sampling: the linear-time filters against a full sort")
struct SamplerReferenceTests {
    /// The filters as a full sort defines them: top-k, then top-p over the kept mass, then min-p.
    static func reference(_ logits: [Float], _ s: Sampler) -> [Double] {
        let m = logits.max()!
        let w = logits.map { Foundation.exp(Double(($0 - m) / s.temperature)) }
        let order = w.indices.sorted { w[$0] > w[$1] || (w[$0] == w[$1] && $0 < $1) }
        var keep = [Bool](repeating: true, count: w.count)
        if s.topK > 0 && s.topK < order.count { for i in order[s.topK...] { keep[i] = false } }
        if s.topP < 1 {
            let total = order.reduce(0.0) { $0 + (keep[$1] ? w[$1] : 0) }
            var cumulative = 0.0
            for i in order where keep[i] {
                if cumulative >= Double(s.topP) * total { keep[i] = false } else { cumulative += w[i] }
            }
        }
        if s.minP > 0 { for i in w.indices where w[i] < Double(s.minP) { keep[i] = false } }
        let kept = w.indices.map { keep[$0] ? w[$0] : 0 }
        let sum = kept.reduce(0, +)
        return kept.map { $0 / sum }
    }

    @Test("kept tokens and probabilities equal the full-sort reference over random logits and settings")
    func againstReference() {
        var rng = SplitMix64(seed: 77)
        for trial in 0..<60 {
            let n = [7, 100, 5000][trial % 3]
            let spread = Float([0.5, 3, 12][trial % 3])
            let logits = (0..<n).map { _ in rng.nextGaussian() * spread }
            var s = Sampler(seed: 1)
            s.temperature = [0.3, 0.8, 1.5][trial % 3]
            s.topK = trial % 4 == 0 ? 40 : 0
            s.topP = [1, 0.9, 0.5, 0.95][(trial / 2) % 4]
            s.minP = [0, 0.05, 0.2][(trial / 3) % 3]
            let ours = s.distribution(logits), reference = Self.reference(logits, s)
            for (i, (a, b)) in zip(ours, reference).enumerated() {
                #expect((a > 0) == (b > 0), "trial \(trial): token \(i) kept differently")
                #expect(abs(Double(a) - b) < 1e-5, "trial \(trial): token \(i)")
            }
        }
    }
}
