import Foundation
import Kernels

/// Prefill and decode speed of one model: a prompt of random ids in one call, then tokens one
/// at a time, each chosen from the logits (greedy, or by a sampler: what a user's decode costs).
public enum DecodeBenchmark {
    public struct Measurement: Sendable {
        public var prefillTokensPerSecond: Double
        public var decodeTokensPerSecond: Double
    }

    /// Runs `promptTokens` then `genTokens` decode steps in a fresh session (its cache stored as
    /// `kvBits` says); `sampler` nil is greedy. The prompt ids come from `seed`, so every run and every peer sees the same work.
    /// `afterPrefill` runs between the prompt and the first decoded token, outside both timings.
    public static func run(model: TransformerModel, promptTokens: Int, genTokens: Int, sampler: Sampler?,
                           seed: UInt64 = 0, kvBits: KVCacheBits = .fp32, pool: ThreadPool = .shared,
                           afterPrefill: () -> Void = {}) throws -> Measurement {
        let v = model.config.vocabularySize
        var rng = SplitMix64(seed: seed)
        let prompt = (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(v)) }
        let session = try InferenceSession(model: model, reserve: promptTokens + genTokens, kvBits: kvBits)
        var sampler = sampler
        let start = DispatchTime.now().uptimeNanoseconds
        var logits = try session.feed(prompt, pool: pool)
        afterPrefill()
        let prefilled = DispatchTime.now().uptimeNanoseconds
        var history = prompt
        for _ in 0..<genTokens {
            // The choice of the next token is a phase of its own: greedy's arg max, or the
            // sampler's chain over the whole vocabulary.
            let next: Int32 = Profiler.measure("sampling") {
                if sampler != nil { return sampler!.sample(logits, history: history) }
                return logits.withUnsafeBufferPointer { b in
                    let m = maximum(b.baseAddress!, count: b.count)
                    return Int32(b.firstIndex(of: m) ?? 0)
                }
            }
            history.append(next)
            logits = try session.feed([next], pool: pool)
        }
        let done = DispatchTime.now().uptimeNanoseconds
        return Measurement(prefillTokensPerSecond: Double(promptTokens) / (Double(prefilled - start) * 1e-9),
                           decodeTokensPerSecond: Double(genTokens) / (Double(done - prefilled) * 1e-9))
    }
}
