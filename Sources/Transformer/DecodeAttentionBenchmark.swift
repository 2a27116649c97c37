import Dispatch
import Kernels

/// Times one token's attention over an fp32 or a half cache (decoding's `decodeAttention`), for
/// `tinylm bench kernels`: with one layer's cache read again and again (it stays in cache), and
/// with `layers` caches read in turn, as a decoded token reads them (from memory once they
/// exceed the last-level cache).
public enum DecodeAttentionBenchmark {
    public struct Result: Sendable {
        /// Best seconds of one call: the same cache each time, and caches in turn.
        public var cachedSeconds: Double, streamedSeconds: Double
        /// Floating-point operations (scores and weighted values) and cache bytes of one call.
        public var flops: Double, bytes: Double
    }

    /// `halves`: the cache in IEEE halves (`--kv-bits 16`) instead of fp32, the same values
    /// rounded, so the two differ only in the bytes read.
    public static func run(positions: Int, heads: Int, kvHeads: Int, headDim hd: Int, layers: Int, halves: Bool = false,
                           pool: ThreadPool, repetitions: Int = 20) -> Result {
        var rng = SplitMix64(seed: 1)
        let headStride = KeyBlocks.padded(positions) * hd, perLayer = kvHeads * headStride
        let keys = FloatBuffer(count: layers * perLayer), values = FloatBuffer(count: layers * perLayer)
        for i in 0..<keys.count {
            keys.pointer[i] = rng.nextFloat() * 2 - 1
            values.pointer[i] = rng.nextFloat() * 2 - 1
        }
        // The half cache: the same floats narrowed, in the storage the half cache itself uses.
        let halfCount = halves ? layers * perLayer : 0
        let keyHalves = IntegerBuffer<UInt16>(count: halfCount), valueHalves = IntegerBuffer<UInt16>(count: halfCount)
        Half.narrow(keys.pointer, count: halfCount, into: keyHalves.pointer)
        Half.narrow(values.pointer, count: halfCount, into: valueHalves.pointer)
        let q = FloatBuffer(count: heads * hd), out = FloatBuffer(count: heads * hd)
        for i in 0..<q.count { q.pointer[i] = rng.nextFloat() * 2 - 1 }
        func call(_ layer: Int) {
            let offset = layer * perLayer
            let cache: DecodeCache = halves
                ? .fp16(keys: keyHalves.pointer + offset, values: valueHalves.pointer + offset, headStride: headStride)
                : .fp32(keys: keys.pointer + offset, values: values.pointer + offset, headStride: headStride)
            decodeAttention(q: q.pointer, cache: cache,
                            kvDim: kvHeads * hd, keys: positions, heads: heads, kvHeads: kvHeads, headDim: hd, out: out.pointer,
                            pool: pool)
        }
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        var cached = Double.infinity, streamed = Double.infinity
        for _ in 0..<repetitions {
            call(0)
            var t = now()
            for _ in 0..<layers { call(0) }
            cached = min(cached, Double(now() - t) * 1e-9 / Double(layers))
            t = now()
            for layer in 0..<layers { call(layer) }
            streamed = min(streamed, Double(now() - t) * 1e-9 / Double(layers))
        }
        return Result(cachedSeconds: cached, streamedSeconds: streamed, flops: Double(4 * heads * positions * hd),
                      bytes: Double(2 * kvHeads * positions * hd * (halves ? 2 : 4)))
    }
}
