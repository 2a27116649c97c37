import CQuant
import Foundation
import Kernels

/// Cached positions per task of one token's attention: half of them (in whole key blocks), at
/// least 64 and at most 1,024. It depends on the number of positions only, never on the thread
/// count, so the split of the work (and with it every rounding) is the same on every machine.
///
/// Each task streams its chunk's keys, then its values. On a shared 2-core Zen 3, tokens of Q4_0
/// SmolLM2 at 512-768 positions took 5.6% less time with two chunks per head than with chunks of
/// 64 (fp32 cache; halves 6%, 8-bit 2.3%), and 3% less than with four (token-alternating A/B, six
/// runs each): a thread's reads stay in long runs. With three key/value heads that makes six
/// tasks, enough for two to six threads; the cap gives a long context more.
func decodeKeyChunk(positions total: Int) -> Int {
    let half = (total + 1) / 2, width = KeyBlocks.width
    return min(1024, max(64, (half + width - 1) / width * width))
}

/// The widest pass of the weighted sum over a value row, for three query heads at once: 64
/// dimensions, in twelve 16-float accumulators. On AVX-512 that is twelve of its 32 registers. On
/// AVX2 each takes two of sixteen and some live on the stack, yet one pass over each row took
/// 2.5% less time a token than two passes of 32 once a task's chunk grew long (Q4_0 SmolLM2,
/// fp32 cache, token-alternating A/B on a Zen 3 EPYC, twelve runs; halves 1%): the second pass
/// had to find the chunk's rows in L2. A head's remaining 32 dimensions take a pass of 32.
let decodeValueSpan = 64

/// How far ahead of its reads (in bytes) a pass over the fp32 or half cache asks for the lines it
/// will need: on a shared AVX2 EPYC the hardware prefetchers alone left fp32 attention about 5%
/// slower at 512 and 1,024 positions (layer-alternating A/B, seven runs out of seven).
let decodePrefetchBytes = 2048

/// Asks for the `bytes` bytes at `decodePrefetchBytes` past `p` (whole cache lines).
@inline(__always)
private func prefetchAhead(_ p: UnsafeRawPointer, bytes: Int) {
    var offset = 0
    while offset < bytes {
        cq_prefetch(p + decodePrefetchBytes + offset)
        offset += 64
    }
}

/// Where one token's attention finds the cached keys and values.
enum DecodeCache {
    /// Head-major: key/value head g at `g·headStride`, so one head's positions are one stream.
    /// Keys in `KeyBlocks` (16 positions, dimension-major); value j at `j·hd`.
    case fp32(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, headStride: Int)
    /// Bytes and scales, head-major, the keys in `KeyBlocks` (`QuantizedKV`).
    case int8(QuantizedKV)
    /// Halves, laid out as `fp32`.
    case fp16(keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>, headStride: Int)
}

/// One new token's attention over `total` cached positions, every head at once (decoding).
///
/// The positions are split into chunks (`decodeKeyChunk(positions:)`); one task takes one (key/value head,
/// chunk) pair and, for the query heads that share that key/value head, computes the scores, their
/// exponentials against the chunk's own maximum, the sum of those and the weighted sum of the
/// values. Keys and values are read once per token, in one pass of the pool. The caller then
/// merges the chunks of each head: `out_h = Σ_c e^(m_c − M) o_c / Σ_c e^(m_c − M) l_c`, with `M`
/// the largest chunk maximum. Half and 8-bit caches are widened in registers as they are read, so
/// each is read from memory at two or one bytes per value. `valueSpan` (64 or 32) is the weighted
/// sum's widest pass; tests run both.
func decodeAttention(
    q: UnsafePointer<Float>, cache: DecodeCache, keys total: Int, heads: Int, kvHeads: Int, headDim hd: Int,
    out: UnsafeMutablePointer<Float>, pool: ThreadPool, valueSpan: Int = decodeValueSpan
) {
    guard total > 0 else { return }
    let chunk = decodeKeyChunk(positions: total)
    let group = heads / kvHeads, chunks = (total + chunk - 1) / chunk, tasks = kvHeads * chunks
    // Per task and query head of its group: the weighted values (hd), the chunk maximum, the sum.
    let partialStride = hd + 2
    // Per thread: the chunk's scores (group × chunk).
    let perThread = group * chunk
    Scratch.withFloats(tasks * group * partialStride + pool.threadCount * perThread) { scratch in
        let partials = scratch, threadScratch = scratch + tasks * group * partialStride
        // Each thread takes a contiguous run of tasks, so that its reads of a head's keys and
        // values are one stream (5-16% faster than tasks one at a time from a shared counter).
        pool.parallelStreams(tasks, grain: 1, costPerItem: ThreadPool.parallelWorkThreshold) { range, worker in
            for task in range {
                let g = task / chunks, first = (task % chunks) * chunk, n = min(total, first + chunk) - first
                let scores = threadScratch + worker * perThread
                let partial = partials + task * group * partialStride
                // Keys in blocks (`KeyBlocks`, from `first`, a whole number of blocks in), values in rows
                // of `hd`; halves and bytes are widened in registers as they are read.
                let queries = q + g * group * hd
                switch cache {
                case let .fp32(k, v, headStride):
                    attendBlockedChunk(queries: queries, keys: k + g * headStride + first * hd, values: v + g * headStride + first * hd,
                                       count: n, group: group, headDim: hd, scores: scores, into: partial, stride: partialStride,
                                       valueSpan: valueSpan)
                case let .fp16(k, v, headStride):
                    attendBlockedChunk(queries: queries, keys: k + g * headStride + first * hd, values: v + g * headStride + first * hd,
                                       count: n, group: group, headDim: hd, scores: scores, into: partial, stride: partialStride,
                                       valueSpan: valueSpan)
                case let .int8(kv):
                    let blocks = hd / KVBlocks.size, head = g * kv.capacity + first
                    let keys = kv.keys + head * hd, keyScales = kv.keyScales + head * blocks
                    let values = kv.values + head * hd, valueScales = kv.valueScales + head * blocks
                    attendChunk(count: n, group: group, headDim: hd, scores: scores, into: partial, stride: partialStride) { s in
                        var i = 0
                        while i < group {
                            byteScores(queries: queries + i * hd, heads: min(3, group - i), keys: keys, scales: keyScales, count: n,
                                       headDim: hd, into: s + i * n)
                            i += 3
                        }
                    } weigh: { s in
                        var i = 0
                        while i < group {
                            byteValues(scores: s + i * n, keys: n, heads: min(3, group - i), values: values, scales: valueScales,
                                       headDim: hd, out: partial + i * partialStride, outStride: partialStride)
                            i += 3
                        }
                    }
                }
            }
        }
        mergeChunks(partials, chunks: chunks, heads: heads, group: group, headDim: hd, stride: partialStride, into: out)
    }
}

/// A cached scalar, read sixteen at a time as floats: fp32 as it is, halves (their bit patterns)
/// widened in registers (`vcvtph2ps`, from C: Swift's own conversion is a call per vector), which
/// gives the same floats a widened copy would.
protocol CachedScalar {
    static func load16(_ p: UnsafePointer<Self>) -> SIMD16<Float>
    var floatValue: Float { get }
}

extension Float: CachedScalar {
    @inline(__always) static func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) var floatValue: Float { self }
}

extension UInt16: CachedScalar {
    @inline(__always) static func load16(_ p: UnsafePointer<UInt16>) -> SIMD16<Float> { cq_load_halves16(p) }
    @inline(__always) var floatValue: Float { cq_half_bits_to_float(self) }
}

/// One task of `decodeAttention` for the `group` query heads of one key/value head over a chunk
/// of `count` positions: `score(into)` writes their scores (head i's at `into + i·count`), which
/// become exponentials against each head's maximum; `weigh(scores)` writes the weighted values at
/// `into + i·stride`, beside which go the maximum and the sum of the exponentials.
@inline(__always)
private func attendChunk(
    count n: Int, group: Int, headDim hd: Int, scores: UnsafeMutablePointer<Float>,
    into partial: UnsafeMutablePointer<Float>, stride partialStride: Int,
    score: (_ into: UnsafeMutablePointer<Float>) -> Void, weigh: (_ scores: UnsafePointer<Float>) -> Void
) {
    score(scores)
    for i in 0..<group {
        let s = scores + i * n
        let m = maximum(s, count: n)
        partial[i * partialStride + hd] = m
        partial[i * partialStride + hd + 1] = exponentiate(s, count: n, minus: m)
    }
    weigh(scores)
}

/// `attendChunk` over an fp32 or a half cache: keys in `KeyBlocks`, values in rows of `hd`.
@inline(__always)
private func attendBlockedChunk<T: CachedScalar>(
    queries: UnsafePointer<Float>, keys: UnsafePointer<T>, values: UnsafePointer<T>, count n: Int, group: Int,
    headDim hd: Int, scores: UnsafeMutablePointer<Float>, into partial: UnsafeMutablePointer<Float>, stride partialStride: Int,
    valueSpan: Int
) {
    attendChunk(count: n, group: group, headDim: hd, scores: scores, into: partial, stride: partialStride) {
        blockedScores(queries: queries, heads: group, keys: keys, count: n, headDim: hd, into: $0)
    } weigh: {
        chunkValues(scores: $0, count: n, heads: group, values: values, stride: hd, headDim: hd, into: partial,
                    outStride: partialStride, span: valueSpan)
    }
}

/// `s[i·count + j] = q_i · k_j / √hd` for up to three queries at `queries` (`hd` apart) and the
/// chunk's `count` keys of an 8-bit cache: bytes in `KeyBlocks`, and per block of sixteen keys
/// one vector of their scales per 32 dimensions (`QuantizedKV`). Sixteen bytes are widened in
/// registers once for all the heads; each 32 dimensions' sums are then scaled.
@inline(__always)
private func byteScores(
    queries q: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<Int8>, scales: UnsafePointer<Float>, count n: Int,
    headDim hd: Int, into s: UnsafeMutablePointer<Float>
) {
    let scale = 1 / Float(hd).squareRoot(), width = KeyBlocks.width, blocks = hd / KVBlocks.size
    // Heads past `heads` repeat the first; their scores are not stored.
    let q0 = q, q1 = q + (heads > 1 ? hd : 0), q2 = q + (heads > 2 ? 2 * hd : 0)
    var j = 0
    while j < n {
        let block = keys + j / width * width * hd, blockScales = scales + j / width * blocks * width
        var a = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        for b in 0..<blocks {
            // Even and odd dimensions apart: six sums under way at once.
            var even = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>()), odd = even
            var e = b * KVBlocks.size
            while e < (b + 1) * KVBlocks.size {
                let k = cq_load_bytes16(block + e * width), l = cq_load_bytes16(block + (e + 1) * width)
                even.0 = even.0.addingProduct(q0[e], k)
                even.1 = even.1.addingProduct(q1[e], k)
                even.2 = even.2.addingProduct(q2[e], k)
                odd.0 = odd.0.addingProduct(q0[e + 1], l)
                odd.1 = odd.1.addingProduct(q1[e + 1], l)
                odd.2 = odd.2.addingProduct(q2[e + 1], l)
                e += 2
            }
            let d = UnsafeRawPointer(blockScales + b * width).loadUnaligned(as: SIMD16<Float>.self)
            a.0 = a.0.addingProduct(d, even.0 + odd.0)
            a.1 = a.1.addingProduct(d, even.1 + odd.1)
            a.2 = a.2.addingProduct(d, even.2 + odd.2)
        }
        let sums = (scale * a.0, scale * a.1, scale * a.2)
        for i in 0..<heads {
            let v = i == 0 ? sums.0 : i == 1 ? sums.1 : sums.2, row = s + i * n
            if j + width <= n {
                UnsafeMutableRawPointer(row + j).storeBytes(of: v, as: SIMD16<Float>.self)
            } else {
                for l in 0..<(n - j) { row[j + l] = v[l] }
            }
        }
        j += width
    }
}

/// `out[i·outStride + d] = Σ_j p_i[j] · v_j[d]` for up to three heads (their exponentials rows of
/// `scores`, `keys` long) over an 8-bit cache's value rows (`hd` bytes, a scale per 32): one block
/// of 32 dimensions per pass, six accumulators, each row's scale folded into the heads' weights.
@inline(__always)
private func byteValues(
    scores: UnsafePointer<Float>, keys n: Int, heads: Int, values: UnsafePointer<Int8>, scales: UnsafePointer<Float>,
    headDim hd: Int, out: UnsafeMutablePointer<Float>, outStride: Int
) {
    let blocks = hd / KVBlocks.size
    // Rows past `heads` repeat the first; their sums are dropped.
    let p0 = scores, p1 = scores + (heads > 1 ? n : 0), p2 = scores + (heads > 2 ? 2 * n : 0)
    for b in 0..<blocks {
        var a0 = (SIMD16<Float>(), SIMD16<Float>()), a1 = a0, a2 = a0
        for j in 0..<n {
            let row = values + j * hd + b * KVBlocks.size, d = scales[j * blocks + b]
            let v0 = cq_load_bytes16(row), v1 = cq_load_bytes16(row + 16)
            let s0 = d * p0[j], s1 = d * p1[j], s2 = d * p2[j]
            a0.0 = a0.0.addingProduct(s0, v0); a0.1 = a0.1.addingProduct(s0, v1)
            a1.0 = a1.0.addingProduct(s1, v0); a1.1 = a1.1.addingProduct(s1, v1)
            a2.0 = a2.0.addingProduct(s2, v0); a2.1 = a2.1.addingProduct(s2, v1)
        }
        for i in 0..<heads {
            let a = i == 0 ? a0 : i == 1 ? a1 : a2, o = UnsafeMutableRawPointer(out + i * outStride + b * KVBlocks.size)
            o.storeBytes(of: a.0, as: SIMD16<Float>.self)
            o.storeBytes(of: a.1, toByteOffset: 64, as: SIMD16<Float>.self)
        }
    }
}

/// `s[i·count + j] = q_i · k_j / √hd` for the `heads` queries at `queries` (`hd` apart) and the
/// chunk's `count` keys in `KeyBlocks`: three heads per pass over the keys, so that each key
/// vector loaded (and, from a half cache, widened) serves three products; a last one or two
/// heads alone.
@inline(__always)
private func blockedScores<K: CachedScalar>(
    queries: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<K>, count n: Int, headDim hd: Int,
    into s: UnsafeMutablePointer<Float>
) {
    var i = 0
    while i + 3 <= heads {
        threeHeadScores(queries: queries + i * hd, keys: keys, count: n, headDim: hd, into: s + i * n)
        i += 3
    }
    while i < heads {
        blockedScores(query: queries + i * hd, keys: keys, count: n, headDim: hd, into: s + i * n)
        i += 1
    }
}

/// `blockedScores` for three heads: one block of sixteen keys at a time, each head with two
/// accumulators (even and odd dimensions), so that six sums are under way at once and fit in
/// registers with the key vector even where a 16-float vector takes two (AVX2).
@inline(__always)
private func threeHeadScores<K: CachedScalar>(
    queries q: UnsafePointer<Float>, keys: UnsafePointer<K>, count n: Int, headDim hd: Int, into s: UnsafeMutablePointer<Float>
) {
    let scale = 1 / Float(hd).squareRoot(), width = KeyBlocks.width, blockFloats = width * hd
    let q0 = q, q1 = q + hd, q2 = q + 2 * hd
    var j = 0
    while j < n {
        let block = keys + j / width * blockFloats
        var even = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>()), odd = even
        var d = 0
        while d + 2 <= hd {
            prefetchAhead(block + d * width, bytes: 2 * width * MemoryLayout<K>.size)
            let k = K.load16(block + d * width)
            even.0 = even.0.addingProduct(q0[d], k)
            even.1 = even.1.addingProduct(q1[d], k)
            even.2 = even.2.addingProduct(q2[d], k)
            let l = K.load16(block + (d + 1) * width)
            odd.0 = odd.0.addingProduct(q0[d + 1], l)
            odd.1 = odd.1.addingProduct(q1[d + 1], l)
            odd.2 = odd.2.addingProduct(q2[d + 1], l)
            d += 2
        }
        if d < hd {
            let k = K.load16(block + d * width)
            even.0 = even.0.addingProduct(q0[d], k)
            even.1 = even.1.addingProduct(q1[d], k)
            even.2 = even.2.addingProduct(q2[d], k)
        }
        let sums = (scale * (even.0 + odd.0), scale * (even.1 + odd.1), scale * (even.2 + odd.2))
        if j + width <= n {
            UnsafeMutableRawPointer(s + j).storeBytes(of: sums.0, as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(s + n + j).storeBytes(of: sums.1, as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(s + 2 * n + j).storeBytes(of: sums.2, as: SIMD16<Float>.self)
        } else {
            for l in 0..<(n - j) {
                s[j + l] = sums.0[l]
                s[n + j + l] = sums.1[l]
                s[2 * n + j + l] = sums.2[l]
            }
        }
        j += width
    }
}

/// `s[j] = q · k_j / √hd` for the chunk's `count` keys in `KeyBlocks`: sixteen keys per vector,
/// four blocks at a time, each with two accumulators (even and odd dimensions) so that the sums
/// do not wait on one another.
@inline(__always)
private func blockedScores<K: CachedScalar>(
    query: UnsafePointer<Float>, keys: UnsafePointer<K>, count n: Int, headDim hd: Int, into s: UnsafeMutablePointer<Float>
) {
    let scale = 1 / Float(hd).squareRoot(), width = KeyBlocks.width, blockFloats = width * hd
    @inline(__always) func store(_ v: SIMD16<Float>, block b: Int) {
        let j = b * width
        if j + width <= n {
            UnsafeMutableRawPointer(s + j).storeBytes(of: scale * v, as: SIMD16<Float>.self)
        } else {
            for l in 0..<(n - j) { s[j + l] = scale * v[l] }
        }
    }
    let blocks = (n + width - 1) / width
    var b = 0
    while b < blocks {
        let m = min(4, blocks - b), base = keys + b * blockFloats
        // Blocks past the chunk's last read the first one again; their sums are dropped.
        let k0 = base, k1 = base + (m > 1 ? blockFloats : 0), k2 = base + (m > 2 ? 2 * blockFloats : 0), k3 = base + (m > 3 ? 3 * blockFloats : 0)
        var even = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>()), odd = even
        var d = 0
        while d + 2 <= hd {
            let a = SIMD16<Float>(repeating: query[d]), c = SIMD16<Float>(repeating: query[d + 1])
            let o = d * width
            even.0 = even.0.addingProduct(a, K.load16(k0 + o)); odd.0 = odd.0.addingProduct(c, K.load16(k0 + o + width))
            even.1 = even.1.addingProduct(a, K.load16(k1 + o)); odd.1 = odd.1.addingProduct(c, K.load16(k1 + o + width))
            even.2 = even.2.addingProduct(a, K.load16(k2 + o)); odd.2 = odd.2.addingProduct(c, K.load16(k2 + o + width))
            even.3 = even.3.addingProduct(a, K.load16(k3 + o)); odd.3 = odd.3.addingProduct(c, K.load16(k3 + o + width))
            d += 2
        }
        if d < hd {
            let a = SIMD16<Float>(repeating: query[d]), o = d * width
            even.0 = even.0.addingProduct(a, K.load16(k0 + o))
            even.1 = even.1.addingProduct(a, K.load16(k1 + o))
            even.2 = even.2.addingProduct(a, K.load16(k2 + o))
            even.3 = even.3.addingProduct(a, K.load16(k3 + o))
        }
        store(even.0 + odd.0, block: b)
        if m > 1 { store(even.1 + odd.1, block: b + 1) }
        if m > 2 { store(even.2 + odd.2, block: b + 2) }
        if m > 3 { store(even.3 + odd.3, block: b + 3) }
        b += m
    }
}

/// `s[j] = e^(s[j] − m)` in place; returns their sum.
@inline(__always)
private func exponentiate(_ s: UnsafeMutablePointer<Float>, count n: Int, minus m: Float) -> Float {
    var sum = SIMD16<Float>(), j = 0
    while j + 16 <= n {
        let e = exp16(load16(s + j) - m)
        UnsafeMutableRawPointer(s + j).storeBytes(of: e, as: SIMD16<Float>.self)
        sum += e
        j += 16
    }
    var total = sum.sum()
    while j < n {
        s[j] = Foundation.exp(s[j] - m)
        total += s[j]
        j += 1
    }
    return total
}

/// `out[i·outStride + d] = Σ_j s[i·count + j] · v_j[d]` for the group's `heads` query heads:
/// three at a time over `span` (64 or 32) dimensions, then 32, then sixteen, then one.
@inline(__always)
private func chunkValues<V: CachedScalar>(
    scores s: UnsafePointer<Float>, count n: Int, heads: Int, values: UnsafePointer<V>, stride: Int, headDim hd: Int,
    into out: UnsafeMutablePointer<Float>, outStride: Int, span: Int
) {
    var d0 = 0
    // Passes of `width` dimensions over the rows while whole ones fit.
    func passes(_ width: Int) {
        while d0 + width <= hd {
            var h0 = 0
            while h0 < heads {
                let m = min(3, heads - h0)
                // The first pass over the rows asks for whole rows ahead, so that the later passes
                // (the rows' other dimensions, the group's other heads) find them in cache: about 5%
                // less attention time than each pass asking for its own part (A/B, 9 runs of 10).
                let ahead = d0 == 0 && h0 == 0 ? hd * MemoryLayout<V>.size : 0
                if width == 64 {
                    weightedValues64(scores: s + h0 * n, keys: n, heads: m, values: values + d0, stride: stride, prefetch: ahead,
                                     out: out + h0 * outStride + d0, headDim: outStride)
                } else {
                    weightedValues32(scores: s + h0 * n, keys: n, heads: m, values: values + d0, stride: stride, prefetch: ahead,
                                     out: out + h0 * outStride + d0, headDim: outStride)
                }
                h0 += m
            }
            d0 += width
        }
    }
    passes(span)
    if span > 32 { passes(32) }
    while d0 + 16 <= hd {
        weightedValues16(scores: s, keys: n, heads: 0..<heads, values: values + d0, stride: stride, out: out + d0,
                         headDim: outStride)
        d0 += 16
    }
    for i in 0..<heads {
        for d in d0..<hd {
            var acc: Float = 0
            for j in 0..<n { acc += s[i * n + j] * values[j * stride + d].floatValue }
            out[i * outStride + d] = acc
        }
    }
}

/// `out[h·hd ..< h·hd + 64] = Σ_j p_h[j] · v_j` for up to three query heads (their weights rows
/// of `scores`, `keys` long), where `v_j` is the 64 floats at `values + j·stride`: each value row
/// is loaded once for all the heads, into twelve accumulators, so that neither the loads nor one
/// accumulator's chain of additions sets the pace. With each row, `prefetch` bytes
/// `decodePrefetchBytes` further on are asked for (0: none).
@inline(__always)
private func weightedValues64<V: CachedScalar>(
    scores: UnsafePointer<Float>, keys n: Int, heads: Int, values: UnsafePointer<V>, stride: Int, prefetch: Int,
    out: UnsafeMutablePointer<Float>, headDim hd: Int
) {
    // Rows past `heads` repeat the first; their sums are dropped.
    let p0 = scores, p1 = scores + (heads > 1 ? n : 0), p2 = scores + (heads > 2 ? 2 * n : 0)
    var a0 = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>()), a1 = a0, a2 = a0
    for j in 0..<n {
        let row = values + j * stride
        prefetchAhead(row, bytes: prefetch)
        let v0 = V.load16(row), v1 = V.load16(row + 16), v2 = V.load16(row + 32), v3 = V.load16(row + 48)
        let s0 = p0[j], s1 = p1[j], s2 = p2[j]
        a0.0 = a0.0.addingProduct(s0, v0); a0.1 = a0.1.addingProduct(s0, v1); a0.2 = a0.2.addingProduct(s0, v2); a0.3 = a0.3.addingProduct(s0, v3)
        a1.0 = a1.0.addingProduct(s1, v0); a1.1 = a1.1.addingProduct(s1, v1); a1.2 = a1.2.addingProduct(s1, v2); a1.3 = a1.3.addingProduct(s1, v3)
        a2.0 = a2.0.addingProduct(s2, v0); a2.1 = a2.1.addingProduct(s2, v1); a2.2 = a2.2.addingProduct(s2, v2); a2.3 = a2.3.addingProduct(s2, v3)
    }
    @inline(__always) func store(_ a: (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>), _ o: UnsafeMutablePointer<Float>) {
        let raw = UnsafeMutableRawPointer(o)
        raw.storeBytes(of: a.0, as: SIMD16<Float>.self)
        raw.storeBytes(of: a.1, toByteOffset: 64, as: SIMD16<Float>.self)
        raw.storeBytes(of: a.2, toByteOffset: 128, as: SIMD16<Float>.self)
        raw.storeBytes(of: a.3, toByteOffset: 192, as: SIMD16<Float>.self)
    }
    store(a0, out)
    if heads > 1 { store(a1, out + hd) }
    if heads > 2 { store(a2, out + 2 * hd) }
}

/// `weightedValues64` for 32 floats of each value row: six accumulators, which fit in registers
/// beside the row where a 16-float vector takes two (AVX2).
@inline(__always)
private func weightedValues32<V: CachedScalar>(
    scores: UnsafePointer<Float>, keys n: Int, heads: Int, values: UnsafePointer<V>, stride: Int, prefetch: Int,
    out: UnsafeMutablePointer<Float>, headDim hd: Int
) {
    // Rows past `heads` repeat the first; their sums are dropped.
    let p0 = scores, p1 = scores + (heads > 1 ? n : 0), p2 = scores + (heads > 2 ? 2 * n : 0)
    var a0 = (SIMD16<Float>(), SIMD16<Float>()), a1 = a0, a2 = a0
    for j in 0..<n {
        let row = values + j * stride
        prefetchAhead(row, bytes: prefetch)
        let v0 = V.load16(row), v1 = V.load16(row + 16)
        let s0 = p0[j], s1 = p1[j], s2 = p2[j]
        a0.0 = a0.0.addingProduct(s0, v0); a0.1 = a0.1.addingProduct(s0, v1)
        a1.0 = a1.0.addingProduct(s1, v0); a1.1 = a1.1.addingProduct(s1, v1)
        a2.0 = a2.0.addingProduct(s2, v0); a2.1 = a2.1.addingProduct(s2, v1)
    }
    @inline(__always) func store(_ a: (SIMD16<Float>, SIMD16<Float>), _ o: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(o).storeBytes(of: a.0, as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(o).storeBytes(of: a.1, toByteOffset: 64, as: SIMD16<Float>.self)
    }
    store(a0, out)
    if heads > 1 { store(a1, out + hd) }
    if heads > 2 { store(a2, out + 2 * hd) }
}

/// `out[h·hd ..< h·hd + 16] = Σ_j p_h[j] · v_j` for the query `heads` (their weights rows of
/// `scores`, `total` long), where `v_j` is the 16 floats at `values + j·stride`: up to four heads
/// per pass over the values, two accumulators per head (even and odd keys) so that the sums do
/// not wait on one another.
@inline(__always)
private func weightedValues16<V: CachedScalar>(
    scores: UnsafePointer<Float>, keys total: Int, heads: Range<Int>, values: UnsafePointer<V>, stride: Int,
    out: UnsafeMutablePointer<Float>, headDim hd: Int
) {
    var h0 = heads.lowerBound
    while h0 < heads.upperBound {
        let m = min(4, heads.upperBound - h0)
        var even = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
        var odd = even
        let p0 = scores + h0 * total, p1 = p0 + (m > 1 ? total : 0), p2 = p0 + (m > 2 ? 2 * total : 0), p3 = p0 + (m > 3 ? 3 * total : 0)
        var j = 0
        while j + 2 <= total {
            let a = V.load16(values + j * stride), b = V.load16(values + (j + 1) * stride)
            even.0 = even.0.addingProduct(p0[j], a); odd.0 = odd.0.addingProduct(p0[j + 1], b)
            even.1 = even.1.addingProduct(p1[j], a); odd.1 = odd.1.addingProduct(p1[j + 1], b)
            even.2 = even.2.addingProduct(p2[j], a); odd.2 = odd.2.addingProduct(p2[j + 1], b)
            even.3 = even.3.addingProduct(p3[j], a); odd.3 = odd.3.addingProduct(p3[j + 1], b)
            j += 2
        }
        if j < total {
            let a = V.load16(values + j * stride)
            even.0 = even.0.addingProduct(p0[j], a)
            even.1 = even.1.addingProduct(p1[j], a)
            even.2 = even.2.addingProduct(p2[j], a)
            even.3 = even.3.addingProduct(p3[j], a)
        }
        let sums = (even.0 + odd.0, even.1 + odd.1, even.2 + odd.2, even.3 + odd.3)
        for i in 0..<m {
            let sum = i == 0 ? sums.0 : i == 1 ? sums.1 : i == 2 ? sums.2 : sums.3
            UnsafeMutableRawPointer(out + (h0 + i) * hd).storeBytes(of: sum, as: SIMD16<Float>.self)
        }
        h0 += m
    }
}

/// Each head's chunks combined, in chunk order. The caller runs this alone between two pool
/// jobs, so it is kept short: each chunk's factor `e^(m_c − M)` is computed once, sixteen at a
/// time, and the weighted sum runs sixteen dimensions at a time.
private func mergeChunks(
    _ partials: UnsafePointer<Float>, chunks: Int, heads: Int, group: Int, headDim hd: Int, stride: Int,
    into out: UnsafeMutablePointer<Float>
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: (chunks + 15) / 16 * 16) { buffer in
        let factors = buffer.baseAddress!
        for h in 0..<heads {
            let g = h / group, i = h % group
            @inline(__always) func part(_ c: Int) -> UnsafePointer<Float> { partials + ((g * chunks + c) * group + i) * stride }
            var m = -Float.infinity
            for c in 0..<chunks { m = max(m, part(c)[hd]) }
            // Padding lanes past the last chunk give e^(−∞) = 0 and are never read.
            for c in 0..<((chunks + 15) / 16 * 16) { factors[c] = c < chunks ? part(c)[hd] - m : -.infinity }
            var sum: Float = 0
            for c in Swift.stride(from: 0, to: chunks, by: 16) {
                UnsafeMutableRawPointer(factors + c).storeBytes(of: exp16(load16(factors + c)), as: SIMD16<Float>.self)
            }
            for c in 0..<chunks { sum += factors[c] * part(c)[hd + 1] }
            for c in 0..<chunks { factors[c] /= sum }
            let o = out + h * hd
            var d = 0
            while d + 16 <= hd {
                var acc = SIMD16<Float>()
                for c in 0..<chunks { acc = acc.addingProduct(factors[c], load16(part(c) + d)) }
                UnsafeMutableRawPointer(o + d).storeBytes(of: acc, as: SIMD16<Float>.self)
                d += 16
            }
            while d < hd {
                var acc: Float = 0
                for c in 0..<chunks { acc += factors[c] * part(c)[d] }
                o[d] = acc
                d += 1
            }
        }
    }
}

@inline(__always)
private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
