import Foundation
import Kernels

/// How the key/value cache stores its rows: fp32 (the default), IEEE halves (llama.cpp's
/// default `f16` cache type), or 8 bits per value in blocks of 32 with one fp32 scale each
/// (llama.cpp's `q8_0`: `d = max|x| / 127`, `q = round(x / d)`). Decoding a long context reads
/// the whole cache for every token — at 640 positions of SmolLM2, 29 MB in fp32 beside 96 MB of
/// weights — so halves cut a token's memory traffic by a ninth and 8 bits by a sixth.
public enum KVCacheBits: Int, Sendable, CaseIterable {
    case fp32 = 32
    case fp16 = 16
    case int8 = 8

    /// The option's values, for messages.
    public static let choices = "32 (fp32), 16 (fp16) or 8 (8-bit blocks)"

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

/// One layer's 8-bit cache, head-major like the others so that one decoding task (a key/value
/// head, a chunk of positions) reads two streams:
/// - keys `[kvHeads][capacity][hd]` bytes in `KeyBlocks` (16 positions, dimension-major), their
///   scales `[kvHeads][capacity / 16][hd / 32][16]`: one vector of sixteen positions' scales per
///   block of 32 dimensions;
/// - values `[kvHeads][capacity][hd]` bytes in rows, scales `[kvHeads][capacity][hd / 32]`;
/// and the fp32 scratch a multi-token call dequantizes it into (`[kvHeads][capacity][hd]` rows).
struct QuantizedKV {
    var keys: UnsafeMutablePointer<Int8>, keyScales: UnsafeMutablePointer<Float>
    var values: UnsafeMutablePointer<Int8>, valueScales: UnsafeMutablePointer<Float>
    var capacity: Int
    var keysScratch: UnsafeMutablePointer<Float>, valuesScratch: UnsafeMutablePointer<Float>

    /// Where position `j`'s scale of dimension block `b` is among head `g`'s key scales.
    @inline(__always)
    func keyScaleIndex(head g: Int, position j: Int, block b: Int, headDim hd: Int) -> Int {
        let blocks = hd / KVBlocks.size
        return g * capacity * blocks + (j / KeyBlocks.width * blocks + b) * KeyBlocks.width + j % KeyBlocks.width
    }

    /// Quantizes head `g`'s key and value (`hd` floats each, a multiple of 32) into position `j`.
    func store(key: UnsafePointer<Float>, value: UnsafePointer<Float>, head g: Int, position j: Int, headDim hd: Int) {
        let blocks = hd / KVBlocks.size
        KVBlocks.quantize(value, count: hd, into: values + (g * capacity + j) * hd,
                          scales: valueScales + (g * capacity + j) * blocks)
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: hd) { bytes in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: blocks) { scales in
                KVBlocks.quantize(key, count: hd, into: bytes.baseAddress!, scales: scales.baseAddress!)
                KeyBlocks.store(UnsafePointer(bytes.baseAddress!), headDim: hd, position: j, into: keys + g * capacity * hd)
                for b in 0..<blocks { keyScales[keyScaleIndex(head: g, position: j, block: b, headDim: hd)] = scales[b] }
            }
        }
    }

    /// Head `g`'s positions `0..<count` dequantized into rows of `hd` floats: keys into
    /// `keysScratch`, values into `valuesScratch`, each at `g·capacity·hd`.
    func widen(head g: Int, count: Int, headDim hd: Int) {
        let blocks = hd / KVBlocks.size, keyRows = keysScratch + g * capacity * hd
        KVBlocks.dequantize(values + g * capacity * hd, scales: valueScales + g * capacity * blocks, count: count * hd,
                            into: valuesScratch + g * capacity * hd)
        let width = KeyBlocks.width
        for j in 0..<count {
            let lane = keys + g * capacity * hd + j / width * width * hd + j % width
            for b in 0..<blocks {
                let scale = keyScales[keyScaleIndex(head: g, position: j, block: b, headDim: hd)]
                for d in (b * KVBlocks.size)..<((b + 1) * KVBlocks.size) { keyRows[j * hd + d] = scale * Float(lane[d * width]) }
            }
        }
    }
}

/// One layer's half-precision cache, head-major like the fp32 one (`[kvHeads][capacity][hd]`
/// bit patterns), and the fp32 scratch a multi-token call widens its values into (same layout).
struct HalfKV {
    var keys: UnsafeMutablePointer<UInt16>, values: UnsafeMutablePointer<UInt16>
    var capacity: Int
    var valuesScratch: UnsafeMutablePointer<Float>
}
