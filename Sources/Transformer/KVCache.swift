import Foundation
import Kernels

/// How the key/value cache stores its rows: fp32 (the default), or 8 bits per value in blocks
/// of 32 with one fp32 scale each (llama.cpp's `q8_0` cache type: `d = max|x| / 127`,
/// `q = round(x / d)`). Decoding a long context reads the whole cache for every token — at 640
/// positions of SmolLM2, 29 MB in fp32 beside 96 MB of weights — so 8 bits cut a token's
/// memory traffic by a sixth.
public enum KVCacheBits: Int, Sendable, CaseIterable {
    case fp32 = 32
    case int8 = 8

    /// Checks that `config`'s heads can be stored this way.
    func validate(_ config: ModelConfig) throws {
        guard self == .int8 else { return }
        guard config.headDim % KVBlocks.size == 0 else {
            throw TransformerError.invalidConfig(
                source: "--kv-bits 8", field: "the head dimension (d_model / n_heads)",
                reason: "must be a multiple of \(KVBlocks.size) for 8-bit keys and values, got \(config.headDim); use --kv-bits 32")
        }
    }
}

/// The 8-bit cache's bytes.
typealias Int8Buffer = IntegerBuffer<Int8>

/// The 8-bit blocks: 32 values, one scale.
enum KVBlocks {
    static let size = 32

    /// Quantizes `count` values (a multiple of 32) into bytes `q` and one scale per block.
    static func quantize(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<Int8>,
                         scales: UnsafeMutablePointer<Float>) {
        for b in 0..<(count / size) {
            let block = x + b * size
            var largest: Float = 0
            for i in 0..<size { largest = max(largest, abs(block[i])) }
            let d = largest / 127, inverse = d > 0 ? 1 / d : 0
            scales[b] = d
            for i in 0..<size { q[b * size + i] = Int8((block[i] * inverse).rounded()) }
        }
    }

    /// `count` values back to fp32.
    static func dequantize(_ q: UnsafePointer<Int8>, scales: UnsafePointer<Float>, count: Int,
                           into x: UnsafeMutablePointer<Float>) {
        for b in 0..<(count / size) {
            let d = scales[b]
            for i in 0..<size { x[b * size + i] = d * Float(q[b * size + i]) }
        }
    }
}

/// One layer's 8-bit cache (rows of `kvHeads·hd` bytes; `kvHeads·hd / 32` scales per row) and
/// the fp32 scratch a multi-token call dequantizes it into.
struct QuantizedKV {
    var keys: UnsafeMutablePointer<Int8>, keyScales: UnsafeMutablePointer<Float>
    var values: UnsafeMutablePointer<Int8>, valueScales: UnsafeMutablePointer<Float>
    var keysScratch: UnsafeMutablePointer<Float>, valuesScratch: UnsafeMutablePointer<Float>
}

/// `decodeAttention` over the 8-bit cache: one new token's attention, every head at once, with
/// the same split of the work (so results do not depend on the thread count). Each task first
/// widens the bytes it reads to fp32 in a scratch that stays in L1 (a plain loop the compiler
/// vectorizes), scaled by their blocks' scales, then runs the fp32 loops: the cache is read from
/// memory at one byte per value.
func decodeAttentionQ8(
    q: UnsafePointer<Float>, kv: QuantizedKV, kvDim: Int, keys total: Int, heads: Int, kvHeads: Int, headDim hd: Int,
    scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, pool: ThreadPool
) {
    let group = heads / kvHeads, scale = 1 / Float(hd).squareRoot()
    let blocksPerRow = kvDim / KVBlocks.size, blocksPerHead = hd / KVBlocks.size
    let keyChunk = 128, chunks = (total + keyChunk - 1) / keyChunk
    pool.parallelFor(kvHeads * chunks) { task, _ in
        let g = task / chunks, c = task % chunks, first = c * keyChunk, last = min(total, first + keyChunk)
        Scratch.withFloats((last - first) * hd) { keys in
            for j in first..<last {
                let row = keys + (j - first) * hd
                for b in 0..<blocksPerHead {
                    widen(kv.keys + j * kvDim + g * hd + b * KVBlocks.size, scale: kv.keyScales[j * blocksPerRow + g * blocksPerHead + b],
                          count: KVBlocks.size, into: row + b * KVBlocks.size)
                }
            }
            for j in first..<last {
                let key = keys + (j - first) * hd
                for h in (g * group)..<((g + 1) * group) {
                    let query = q + h * hd
                    var acc = SIMD16<Float>()
                    for o in stride(from: 0, to: hd, by: 16) { acc = acc.addingProduct(load16(query + o), load16(key + o)) }
                    scores[h * total + j] = scale * acc.sum()
                }
            }
        }
    }
    decodeSoftmax(scores, heads: heads, keys: total, pool: pool)
    // out_h = Σ_j p_hj v_j, 16 dimensions of one kv head per task.
    let spans = hd / 16
    pool.parallelFor(kvHeads * spans) { task, _ in
        let g = task / spans, d0 = (task % spans) * 16
        let value = kv.values + g * hd + d0, scaleIndex = g * blocksPerHead + d0 / KVBlocks.size
        Scratch.withFloats(total * 16) { values in
            for j in 0..<total {
                widen(value + j * kvDim, scale: kv.valueScales[j * blocksPerRow + scaleIndex], count: 16, into: values + j * 16)
            }
            weightedValues16(scores: scores, keys: total, heads: (g * group)..<((g + 1) * group), values: values, stride: 16,
                             out: out + d0, headDim: hd)
        }
    }
}

/// `count` bytes times `scale`, as floats.
@inline(__always)
private func widen(_ q: UnsafePointer<Int8>, scale: Float, count: Int, into x: UnsafeMutablePointer<Float>) {
    for i in 0..<count { x[i] = scale * Float(q[i]) }
}

@inline(__always)
private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
