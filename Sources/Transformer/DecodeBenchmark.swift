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

    /// The bytes one decoded token reads, by the profiler phase that reads them: each product's
    /// weights (its quantized blocks, or fp32) and, for "attention", the key/value cache stored as
    /// `kvBits` says, averaged over `genTokens` tokens decoded after `promptTokens` (each token
    /// reads every cached position, its own included). A mixture block's router and experts are
    /// left out: which experts a token reads depends on its routing.
    public static func bytesReadPerToken(model: TransformerModel, promptTokens: Int, genTokens: Int,
                                         kvBits: KVCacheBits) -> [String: Double] {
        let c = model.config, layout = model.layout
        func bytes(_ l: Linear) -> Double { Double(l.weightByteCount) }
        var read: [String: Double] = ["lm head": bytes(layout.lmHead)]
        let kvDim = Double(c.kvHeads * c.headDim)
        // Bytes a cached position holds per layer, keys and values: 8-bit blocks of 32 carry an fp32 scale.
        let perPosition = switch kvBits {
        case .fp32: 2 * kvDim * 4
        case .fp16: 2 * kvDim * 2
        case .int8: 2 * kvDim * (1 + 4 / Double(KVBlocks.size))
        }
        let positions = Double(promptTokens) + Double(genTokens + 1) / 2
        for layer in layout.layers {
            read["qkv", default: 0] += bytes(layer.qkv)
            read["attention out", default: 0] += bytes(layer.out)
            read["attention", default: 0] += perPosition * positions
            if layer.mixture == nil {
                read["mlp up", default: 0] += bytes(layer.up)
                read["mlp down", default: 0] += bytes(layer.down)
            }
        }
        return read
    }
}
