import Dispatch
import Kernels

/// Times one token's attention over an fp32, a half or an 8-bit cache (decoding's
/// `decodeAttention`), for `tinylm bench kernels`: with one layer's cache read again and again
/// (it stays in cache), and with `layers` caches read in turn, as a decoded token reads them (from
/// memory once they exceed the last-level cache).
public enum DecodeAttentionBenchmark {
    public struct Result: Sendable {
        /// Best seconds of one call: the same cache each time, and caches in turn.
        public var cachedSeconds: Double, streamedSeconds: Double
        /// Floating-point operations (scores and weighted values) and cache bytes of one call.
        public var flops: Double, bytes: Double
    }

    /// `cache`: how the keys and values are stored, the same random values in each (halves and
    /// bytes round them), so the three differ in the bytes read and the widening.
    public static func run(positions: Int, heads: Int, kvHeads: Int, headDim hd: Int, layers: Int, cache kind: KVCacheBits = .fp32,
                           pool: ThreadPool, repetitions: Int = 20) -> Result {
        var rng = SplitMix64(seed: 1)
        let capacity = KeyBlocks.padded(positions), headStride = capacity * hd, perLayer = kvHeads * headStride
        let keys = FloatBuffer(count: layers * perLayer), values = FloatBuffer(count: layers * perLayer)
        for i in 0..<keys.count {
            keys.pointer[i] = rng.nextFloat() * 2 - 1
            values.pointer[i] = rng.nextFloat() * 2 - 1
        }
        // The half cache: the same floats narrowed, in the storage the half cache itself uses.
        let halfCount = kind == .fp16 ? layers * perLayer : 0
        let keyHalves = IntegerBuffer<UInt16>(count: halfCount), valueHalves = IntegerBuffer<UInt16>(count: halfCount)
        Half.narrow(keys.pointer, count: halfCount, into: keyHalves.pointer)
        Half.narrow(values.pointer, count: halfCount, into: valueHalves.pointer)
        // The 8-bit cache: each position's rows (value j of head g at `g·headStride + j·hd`) stored
        // by the cache's own `store`.
        let byteCount = kind == .int8 ? layers * perLayer : 0
        let keyBytes = Int8Buffer(count: byteCount), valueBytes = Int8Buffer(count: byteCount)
        let keyScales = FloatBuffer(count: byteCount / KVBlocks.size), valueScales = FloatBuffer(count: byteCount / KVBlocks.size)
        let unused = FloatBuffer(count: 0)
        func bytes(_ layer: Int) -> QuantizedKV {
            let offset = layer * perLayer
            return QuantizedKV(keys: keyBytes.pointer + offset, keyScales: keyScales.pointer + offset / KVBlocks.size,
                               values: valueBytes.pointer + offset, valueScales: valueScales.pointer + offset / KVBlocks.size,
                               capacity: capacity, keysScratch: unused.pointer, valuesScratch: unused.pointer)
        }
        for layer in 0..<(kind == .int8 ? layers : 0) {
            let kv = bytes(layer)
            for g in 0..<kvHeads {
                for j in 0..<positions {
                    let row = layer * perLayer + g * headStride + j * hd
                    kv.store(key: keys.pointer + row, value: values.pointer + row, head: g, position: j, headDim: hd)
                }
            }
        }
        let q = FloatBuffer(count: heads * hd), out = FloatBuffer(count: heads * hd)
        for i in 0..<q.count { q.pointer[i] = rng.nextFloat() * 2 - 1 }
        func call(_ layer: Int) {
            let offset = layer * perLayer
            let cache: DecodeCache = switch kind {
            case .fp32: .fp32(keys: keys.pointer + offset, values: values.pointer + offset, headStride: headStride)
            case .fp16: .fp16(keys: keyHalves.pointer + offset, values: valueHalves.pointer + offset, headStride: headStride)
            case .int8: .int8(bytes(layer))
            }
            decodeAttention(q: q.pointer, cache: cache, keys: positions, heads: heads, kvHeads: kvHeads, headDim: hd,
                            out: out.pointer, pool: pool)
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
        let bytesPerValue: Double = switch kind {
        case .fp32: 4
        case .fp16: 2
        case .int8: 1 + 4 / Double(KVBlocks.size)
        }
        return Result(cachedSeconds: cached, streamedSeconds: streamed, flops: Double(4 * heads * positions * hd),
                      bytes: 2 * Double(kvHeads * positions * hd) * bytesPerValue)
    }
}
