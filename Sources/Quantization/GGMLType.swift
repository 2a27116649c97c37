/// ggml's tensor types that TinyLM reads (and writes).
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q4_K = 12, q6_K = 14, bf16 = 30

    /// Values per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q8_0: 32
        case .q4_K, .q6_K: 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18      // fp16 scale, 16 bytes of nibbles
        case .q4_1: 20      // fp16 scale and minimum, 16 bytes of nibbles
        case .q8_0: 34      // fp16 scale, 32 signed bytes
        case .q4_K: 144     // fp16 d and dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
        case .q6_K: 210     // 128 bytes low nibbles, 64 bytes high 2 bits, 16 signed scales, fp16 d
        }
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q6_K: "Q6_K"
        }
    }
}
