import Foundation
import Kernels
import Testing
@testable import Transformer

/// The 8-bit key/value cache (`--kv-bits 8`): its blocks, its decode attention against a
/// float64 reference on the dequantized cache, and sessions that use it.
@Suite("8-bit key/value cache")
struct KVCacheTests {
    /// A model with heads of 32 dimensions (the block size), grouped-query attention and a
    /// context past one cache growth step (256 positions).
    static func model(kvHeads: Int = 2) throws -> TransformerModel {
        var c = ModelConfig(vocabularySize: 29, contextLength: 300, dModel: 128, layers: 2, heads: 4, kvHeads: kvHeads, dFF: 96)
        c.useLlamaLayout()
        c.initStd = 0.2
        return try TransformerModel(config: c, seed: 5)
    }

    /// One token's attention in float64 over `total` cached positions; `key(g, j, d)` and
    /// `value(g, j, d)` read dimension d of position j of key/value head g.
    static func referenceAttention(q: [Float], heads: Int, kvHeads: Int, keys total: Int, headDim hd: Int,
                                   key: (Int, Int, Int) -> Double, value: (Int, Int, Int) -> Double) -> [Double] {
        var expected = [Double](repeating: 0, count: heads * hd)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            var scores = (0..<total).map { j in (0..<hd).reduce(0.0) { $0 + Double(q[h * hd + $1]) * key(g, j, $1) } / Double(hd).squareRoot() }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let sum = scores.reduce(0, +)
            for d in 0..<hd { expected[h * hd + d] = (0..<total).reduce(0.0) { $0 + scores[$1] / sum * value(g, $1, d) } }
        }
        return expected
    }

    /// Decode attention's output on 1 and 3 threads with the weighted values 32 dimensions a pass,
    /// then the same with 64 (`cache` read by all four): the machine's own width is one of them.
    static func decodeOutputs(q: [Float], cache: DecodeCache, keys total: Int, heads: Int, kvHeads: Int,
                              headDim hd: Int) -> [[Float]] {
        [(1, 32), (3, 32), (1, 64), (3, 64)].map { threads, span in
            let pool = ThreadPool(threadCount: threads)
            let out = FloatBuffer(count: heads * hd)
            q.withUnsafeBufferPointer {
                decodeAttention(q: $0.baseAddress!, cache: cache, keys: total, heads: heads, kvHeads: kvHeads,
                                headDim: hd, out: out.pointer, pool: pool, valueSpan: span)
            }
            return out.array
        }
    }

    @Test("blocks: zeros stay zero, each value within half a step of its block's scale, the largest exact")
    func blocks() {
        var rng = SplitMix64(seed: 3)
        var x = (0..<128).map { _ in (rng.nextFloat() - 0.5) * 6 }
        for i in 32..<64 { x[i] = 0 }            // an all-zero block
        x[70] = -1e-30; x[71] = 1e30             // a block with a huge spike
        var q = [Int8](repeating: 0, count: 128), scales = [Float](repeating: 0, count: 4), back = [Float](repeating: 0, count: 128)
        KVBlocks.quantize(x, count: 128, into: &q, scales: &scales)
        KVBlocks.dequantize(q, scales: scales, count: 128, into: &back)
        #expect(scales[1] == 0 && back[32..<64].allSatisfy { $0 == 0 })
        for b in 0..<4 {
            let block = x[(b * 32)..<(b * 32 + 32)]
            #expect(scales[b] == block.map(abs).max()! / 127)
            for i in block.indices {
                #expect(abs(back[i] - x[i]) <= scales[b] / 2 * (1 + 1e-6), "value \(i)")
                #expect(abs(Int(q[i])) <= 127)
            }
        }
        let spike = 71
        #expect(abs(back[spike] - x[spike]) <= 1e30 * 1e-6)
    }

    @Test("decode attention on the blocks equals a float64 reference on the dequantized cache; widening for prefill is exact",
          arguments: [(1, 4, 2), (37, 4, 2), (130, 6, 3), (257, 3, 1), (150, 9, 3), (70, 6, 1), (40, 4, 1)])
    func decodeAgainstReference(_ shape: (keys: Int, heads: Int, kvHeads: Int)) throws {
        let (total, heads, kvHeads) = shape, hd = 64, kvDim = kvHeads * hd, blocks = kvDim / 32
        var rng = SplitMix64(seed: UInt64(total * 31 + heads))
        let q = (0..<(heads * hd)).map { _ in (rng.nextFloat() - 0.5) * 2 }
        let keysF = (0..<(total * kvDim)).map { _ in (rng.nextFloat() - 0.5) * 3 }
        let valuesF = (0..<(total * kvDim)).map { _ in (rng.nextFloat() - 0.5) * 3 }
        // The reference: each head's rows quantized in blocks of 32, dequantized, then attention in
        // float64.
        let keys = Int8Buffer(count: total * kvDim), values = Int8Buffer(count: total * kvDim)
        let keyScales = FloatBuffer(count: total * blocks), valueScales = FloatBuffer(count: total * blocks)
        KVBlocks.quantize(keysF, count: total * kvDim, into: keys.pointer, scales: keyScales.pointer)
        KVBlocks.quantize(valuesF, count: total * kvDim, into: values.pointer, scales: valueScales.pointer)
        func dq(_ b: Int8Buffer, _ s: FloatBuffer, _ i: Int) -> Double { Double(s.pointer[i / 32]) * Double(b.pointer[i]) }
        let expected = Self.referenceAttention(q: q, heads: heads, kvHeads: kvHeads, keys: total, headDim: hd,
                                               key: { g, j, d in dq(keys, keyScales, j * kvDim + g * hd + d) },
                                               value: { g, j, d in dq(values, valueScales, j * kvDim + g * hd + d) })
        // The cache as sessions hold it, filled by its own `store`: head-major, room for a few
        // positions more per head (whole key blocks); NaN scales where nothing was stored, so a
        // read past the last position shows.
        let capacity = KeyBlocks.padded(total + 5)
        let cacheKeys = Int8Buffer(count: kvHeads * capacity * hd), cacheValues = Int8Buffer(count: kvHeads * capacity * hd)
        let cacheKeyScales = FloatBuffer(count: kvHeads * capacity * hd / 32), cacheValueScales = FloatBuffer(count: kvHeads * capacity * hd / 32)
        for i in 0..<cacheKeyScales.count {
            cacheKeyScales.pointer[i] = .nan
            cacheValueScales.pointer[i] = .nan
        }
        let scratch = FloatBuffer(count: kvHeads * capacity * hd), valuesScratch = FloatBuffer(count: kvHeads * capacity * hd)
        let kv = QuantizedKV(keys: cacheKeys.pointer, keyScales: cacheKeyScales.pointer, values: cacheValues.pointer,
                             valueScales: cacheValueScales.pointer, capacity: capacity, keysScratch: scratch.pointer,
                             valuesScratch: valuesScratch.pointer)
        keysF.withUnsafeBufferPointer { k in
            valuesF.withUnsafeBufferPointer { v in
                for j in 0..<total {
                    for g in 0..<kvHeads {
                        kv.store(key: k.baseAddress! + j * kvDim + g * hd, value: v.baseAddress! + j * kvDim + g * hd,
                                 head: g, position: j, headDim: hd)
                    }
                }
            }
        }
        // Widened back for a multi-token call, each value is its scale times its byte, as the
        // reference's rows give them.
        var mismatches = 0
        for g in 0..<kvHeads {
            kv.widen(head: g, count: total, headDim: hd)
            for j in 0..<total {
                for d in 0..<hd {
                    let i = (g * capacity + j) * hd + d, r = j * kvDim + g * hd + d
                    if scratch.pointer[i] != keyScales.pointer[r / 32] * Float(keys.pointer[r]) { mismatches += 1 }
                    if valuesScratch.pointer[i] != valueScales.pointer[r / 32] * Float(values.pointer[r]) { mismatches += 1 }
                }
            }
        }
        #expect(mismatches == 0, "widened keys and values that differ from the reference's")
        let outputs = Self.decodeOutputs(q: q, cache: .int8(kv), keys: total, heads: heads, kvHeads: kvHeads, headDim: hd)
        #expect(outputs[0] == outputs[1] && outputs[2] == outputs[3], "the thread count changed the result")
        for output in [outputs[0], outputs[2]] {
            let worst = zip(output, expected).map { abs(Double($0) - $1) }.max()!
            #expect(worst <= 1e-5 * max(1, expected.map(abs).max()!), "worst difference \(worst)")
        }
    }

    /// A session with `bits` on `model()`: decoding 70 tokens one by one (crossing the cache's
    /// growth at 256) must equal decoding them in a cache reserved up front, and prefilling the
    /// last 10 (attention on the widened cache, GEMM path) must be close to decoding them (the
    /// same values, other roundings). Returns the ids and the last decoded logits.
    static func checkSession(_ bits: KVCacheBits) throws -> (ids: [Int32], last: [Float], scale: Float) {
        let model = try Self.model()
        var rng = SplitMix64(seed: 8)
        let ids = (0..<270).map { _ in Int32(rng.next() % 29) }
        let stepwise = try InferenceSession(model: model, kvBits: bits)
        try stepwise.feed(Array(ids[0..<200]))
        var last: [Float] = []
        for id in ids[200...] { last = try stepwise.feed([id]) }
        #expect(stepwise.capacity >= 270)
        let reserved = try InferenceSession(model: model, reserve: 300, kvBits: bits)
        try reserved.feed(Array(ids[0..<200]))
        var lastReserved: [Float] = []
        for id in ids[200...] { lastReserved = try reserved.feed([id]) }
        #expect(last == lastReserved, "growing the \(bits) cache changed what it holds")
        let prefilled = try InferenceSession(model: model, kvBits: bits)
        try prefilled.feed(Array(ids[0..<260]))
        let allAtOnce = try prefilled.feed(Array(ids[260...]))
        let scale = allAtOnce.map(abs).max()!
        #expect(zip(allAtOnce, last).map { abs($0 - $1) }.max()! <= 1e-4 * scale)
        return (ids, last, scale)
    }

    /// A long call runs in passes of at most `prefillRows` rows (bounded scratch). Each row's
    /// floats must not depend on the split: products are row by row, and a row's attention sees
    /// the same keys whichever pass wrote them.
    @Test("a call in passes: every row's logits, the last row's and the next token's are one pass's, bit for bit",
          arguments: [KVCacheBits.fp32, .fp16, .int8])
    func passes(_ bits: KVCacheBits) throws {
        let model = try Self.model()
        var rng = SplitMix64(seed: 12)
        let ids = (0..<101).map { _ in Int32(rng.next() % 29) }
        func run(_ rows: Int) throws -> (all: [Float], last: [Float], next: [Float], position: Int) {
            let everyRow = try InferenceSession(model: model, kvBits: bits), lastRow = try InferenceSession(model: model, kvBits: bits)
            everyRow.prefillRows = rows
            lastRow.prefillRows = rows
            // After 7 tokens in the cache: the passes start past position 0.
            try everyRow.feed(Array(ids[0..<7]))
            try lastRow.feed(Array(ids[0..<7]))
            let all = try everyRow.feed(Array(ids[7..<100]), allRows: true)
            let last = try lastRow.feed(Array(ids[7..<100]))
            return (all, last, try lastRow.feed([ids[100]]), lastRow.position)
        }
        let one = try run(512)
        #expect(one.all.count == 93 * 29 && one.last.count == 29 && one.position == 101)
        // 93 rows in passes of at most 10 (ten of 9 or 10), of about 2 (46 of 2 or 3: a single
        // row would take decoding's path), and of at most 50 (two).
        for rows in [10, 2, 50] {
            let split = try run(rows)
            #expect(split.position == 101)
            #expect(split.all == one.all, "\(bits), passes of \(rows): the rows' logits changed")
            #expect(split.last == one.last, "\(bits), passes of \(rows): the last row's logits changed")
            #expect(split.next == one.next, "\(bits), passes of \(rows): the next token's logits changed")
        }
    }

    @Test("an 8-bit session: prefill and one-token decoding agree; growing the cache keeps it; close to fp32")
    func session() throws {
        let (ids, last, scale) = try Self.checkSession(.int8)
        // Near the fp32 cache's logits: the blocks' rounding (a random model, 270 positions:
        // 2.3% of the largest logit), the same on both 8-bit paths.
        let reference = try InferenceSession(model: Self.model()).feed(ids)
        let drift = zip(reference, last).map { abs($0 - $1) }.max()!
        #expect(drift > 0 && drift <= 5e-2 * scale, "8-bit drift \(drift) of \(scale)")
    }

    @Test("8-bit keys and values need whole blocks per head: an error naming the option otherwise")
    func refusesOddHeads() throws {
        let model = try TransformerModel(config: Variant.all[0].config, seed: 1)   // head dimension 4
        #expect(throws: TransformerError.self) { try InferenceSession(model: model, kvBits: .int8) }
        do { _ = try InferenceSession(model: model, kvBits: .int8) } catch {
            #expect("\(error)".contains("--kv-bits 8: the head dimension") && "\(error)".contains("multiple of 32"), "\(error)")
        }
        #expect(try InferenceSession(model: model).kvBits == .fp32)
    }
}
