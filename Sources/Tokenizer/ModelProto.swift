/// The parts of a SentencePiece `ModelProto` TinyLM reports and checks, read with a minimal
/// protobuf wire-format reader (the library's own accessors need protobuf headers Debian's
/// package does not ship).
///
/// Field numbers from sentencepiece_model.proto: ModelProto { pieces = 1, trainer_spec = 2,
/// normalizer_spec = 3 }; SentencePiece { piece = 1, score = 2, type = 3 }; TrainerSpec
/// { model_type = 3, vocab_size = 4, byte_fallback = 35 }; NormalizerSpec { name = 1,
/// add_dummy_prefix = 3, remove_extra_whitespaces = 4 }.
public struct ModelProto: Sendable, Equatable {
    /// SentencePiece.Type.
    public enum PieceType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public enum ModelType: Int, Sendable, CustomStringConvertible {
        case unigram = 1, bpe = 2, word = 3, char = 4
        public var description: String {
            switch self {
            case .unigram: "unigram"
            case .bpe: "bpe"
            case .word: "word"
            case .char: "char"
            }
        }
    }

    public var pieceTypes: [PieceType] = []
    public var modelType: ModelType = .unigram
    public var byteFallback = false
    public var normalizerName = "nmt_nfkc"
    public var addDummyPrefix = true
    public var removeExtraWhitespaces = true

    struct ParseError: Error { var reason: String }

    /// Parses the serialized proto; throws on malformed wire data.
    init(bytes: UnsafeRawBufferPointer) throws {
        var reader = WireReader(bytes: bytes)
        while !reader.atEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (1, 2):
                var piece = WireReader(bytes: try reader.lengthDelimited())
                var type = PieceType.normal
                while !piece.atEnd {
                    let (f, w) = try piece.tag()
                    if f == 3 && w == 0 {
                        type = PieceType(rawValue: Int(try piece.varint())) ?? .normal
                    } else {
                        try piece.skip(wire: w)
                    }
                }
                pieceTypes.append(type)
            case (2, 2):
                var spec = WireReader(bytes: try reader.lengthDelimited())
                while !spec.atEnd {
                    let (f, w) = try spec.tag()
                    switch (f, w) {
                    case (3, 0): modelType = ModelType(rawValue: Int(try spec.varint())) ?? .unigram
                    case (35, 0): byteFallback = try spec.varint() != 0
                    default: try spec.skip(wire: w)
                    }
                }
            case (3, 2):
                var spec = WireReader(bytes: try reader.lengthDelimited())
                while !spec.atEnd {
                    let (f, w) = try spec.tag()
                    switch (f, w) {
                    case (1, 2): normalizerName = String(decoding: try spec.lengthDelimited(), as: UTF8.self)
                    case (3, 0): addDummyPrefix = try spec.varint() != 0
                    case (4, 0): removeExtraWhitespaces = try spec.varint() != 0
                    default: try spec.skip(wire: w)
                    }
                }
            default:
                try reader.skip(wire: wire)
            }
        }
        if pieceTypes.isEmpty { throw ParseError(reason: "it has no pieces") }
    }
}

/// Protobuf wire format: varints, length-delimited fields and fixed 32/64-bit values.
struct WireReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    var atEnd: Bool { offset >= bytes.count }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else { throw ModelProto.ParseError(reason: "truncated varint at byte \(offset)") }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift >= 64 { throw ModelProto.ParseError(reason: "varint too long at byte \(offset)") }
        }
    }

    mutating func tag() throws -> (field: Int, wire: Int) {
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        guard field > 0 else { throw ModelProto.ParseError(reason: "invalid field number at byte \(offset)") }
        return (field, Int(key & 7))
    }

    mutating func lengthDelimited() throws -> UnsafeRawBufferPointer {
        let length = try varint()
        guard length <= UInt64(bytes.count - offset) else {
            throw ModelProto.ParseError(reason: "a field of \(length) bytes runs past the end of the file at byte \(offset)")
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(length))])
        offset += Int(length)
        return slice
    }

    mutating func skip(wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1: try advance(8)
        case 2: _ = try lengthDelimited()
        case 5: try advance(4)
        default: throw ModelProto.ParseError(reason: "unsupported wire type \(wire) at byte \(offset)")
        }
    }

    private mutating func advance(_ n: Int) throws {
        guard n <= bytes.count - offset else { throw ModelProto.ParseError(reason: "truncated field at byte \(offset)") }
        offset += n
    }
}
