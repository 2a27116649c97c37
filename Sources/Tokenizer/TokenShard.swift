#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Support

/// A file of token ids: a 128-byte little-endian header, then the ids as `uint16` (when the
/// vocabulary fits) or `uint32`.
///
/// Header: magic `TLMTOKS\0` (8), version u32 = 1, bytes per token u32 (2 or 4), token count
/// u64, document count u64, vocabulary size u32, reserved u32, tokenizer SHA-256 (32 raw
/// bytes), zero padding to 128. A shard records its tokenizer so it is never read with another.
public final class TokenShard: @unchecked Sendable {
    public static let magic: [UInt8] = Array("TLMTOKS".utf8) + [0]
    public static let version: UInt32 = 1
    public static let headerSize = 128

    public let path: String
    public let count: Int
    public let documentCount: Int
    public let vocabularySize: Int
    public let bytesPerToken: Int
    public let tokenizerSHA256: String
    private let file: MappedFile

    /// Errors reading a shard; each names the file.
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalidHeader(path: String, reason: String)
        case tokenizerMismatch(path: String, shard: String, tokenizer: String)

        public var description: String {
            switch self {
            case .invalidHeader(let path, let reason): "\(path): not a TinyLM token shard: \(reason)"
            case .tokenizerMismatch(let path, let shard, let tokenizer):
                "\(path): made by tokenizer \(shard.prefix(12))…, not by the given tokenizer \(tokenizer.prefix(12))…; prepare the data again with this tokenizer"
            }
        }
    }

    /// Maps a shard; with `tokenizerSHA256`, refuses a shard made by another tokenizer.
    public init(path: String, tokenizerSHA256 expected: String? = nil) throws {
        self.path = path
        file = try MappedFile(path: path)
        let header = file.withBytes { Array($0.prefix(TokenShard.headerSize)) }
        let fileSize = file.count
        guard fileSize >= TokenShard.headerSize else {
            throw Error.invalidHeader(path: path, reason: "\(fileSize) bytes is shorter than the \(TokenShard.headerSize)-byte header")
        }
        guard Array(header[0..<8]) == TokenShard.magic else {
            throw Error.invalidHeader(path: path, reason: "wrong magic bytes")
        }
        let version = TokenShard.load(header, 8, as: UInt32.self).littleEndian
        guard version == TokenShard.version else {
            throw Error.invalidHeader(path: path, reason: "version \(version) is not \(TokenShard.version)")
        }
        bytesPerToken = Int(TokenShard.load(header, 12, as: UInt32.self).littleEndian)
        guard bytesPerToken == 2 || bytesPerToken == 4 else {
            throw Error.invalidHeader(path: path, reason: "bytes per token is \(bytesPerToken), not 2 or 4")
        }
        let tokens = TokenShard.load(header, 16, as: UInt64.self).littleEndian
        documentCount = Int(truncatingIfNeeded: TokenShard.load(header, 24, as: UInt64.self).littleEndian)
        vocabularySize = Int(TokenShard.load(header, 32, as: UInt32.self).littleEndian)
        tokenizerSHA256 = header[40..<72].map { String(format: "%02x", $0) }.joined()
        let available = UInt64(fileSize - TokenShard.headerSize) / UInt64(bytesPerToken)
        guard tokens == available, (fileSize - TokenShard.headerSize) % bytesPerToken == 0 else {
            throw Error.invalidHeader(path: path, reason: "the header says \(tokens) tokens but the file holds \(available) (truncated?)")
        }
        count = Int(tokens)
        if let expected, expected != tokenizerSHA256 {
            throw Error.tokenizerMismatch(path: path, shard: tokenizerSHA256, tokenizer: expected)
        }
    }

    private static func load<T: FixedWidthInteger>(_ header: [UInt8], _ offset: Int, as: T.Type) -> T {
        header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    /// The id at `index`.
    public subscript(index: Int) -> Int32 {
        let offset = TokenShard.headerSize + index * bytesPerToken
        return bytesPerToken == 2
            ? Int32(file.bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
            : Int32(bitPattern: file.bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
    }

    /// Copies ids `start..<start+count` into `out`.
    public func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && n >= 0 && start + n <= count, "token range out of bounds")
        let base = file.bytes.baseAddress! + TokenShard.headerSize
        if bytesPerToken == 2 {
            let source = base.assumingMemoryBound(to: UInt16.self) + start
            for i in 0..<n { out[i] = Int32(UInt16(littleEndian: source[i])) }
        } else {
            let source = base.assumingMemoryBound(to: UInt32.self) + start
            for i in 0..<n { out[i] = Int32(bitPattern: UInt32(littleEndian: source[i])) }
        }
    }
}

/// Streams ids into a shard file, written atomically when `finish()` is called.
public final class TokenShardWriter {
    private let path: String
    private let bytesPerToken: Int
    private let vocabularySize: Int
    private let tokenizerSHA256: String
    private var buffer: [UInt8] = []
    private var data = Data()
    public private(set) var count = 0
    public private(set) var documentCount = 0

    public init(path: String, vocabularySize: Int, tokenizerSHA256: String) {
        self.path = path
        self.vocabularySize = vocabularySize
        self.tokenizerSHA256 = tokenizerSHA256
        bytesPerToken = vocabularySize <= 65_536 ? 2 : 4
    }

    /// Appends one document's ids (the caller adds EOS).
    public func append(document ids: [Int32]) {
        documentCount += 1
        count += ids.count
        data.reserveCapacity(data.count + ids.count * bytesPerToken)
        for id in ids {
            if bytesPerToken == 2 {
                let v = UInt16(truncatingIfNeeded: id).littleEndian
                data.append(UInt8(v & 0xff)); data.append(UInt8(v >> 8))
            } else {
                withUnsafeBytes(of: UInt32(bitPattern: id).littleEndian) { data.append(contentsOf: $0) }
            }
        }
    }

    /// Writes header and ids to `path` atomically.
    public func finish() throws {
        var header = [UInt8](repeating: 0, count: TokenShard.headerSize)
        header.replaceSubrange(0..<8, with: TokenShard.magic)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { header.replaceSubrange(offset..<(offset + $0.count), with: $0) }
        }
        put(TokenShard.version, at: 8)
        put(UInt32(bytesPerToken), at: 12)
        put(UInt64(count), at: 16)
        put(UInt64(documentCount), at: 24)
        put(UInt32(vocabularySize), at: 32)
        let digest = hexBytes(tokenizerSHA256)
        header.replaceSubrange(40..<(40 + digest.count), with: digest)
        try AtomicFile.write(Data(header) + data, to: path)
    }

    private func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var chars = Array(hex.utf8)[...]
        while chars.count >= 2 {
            out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16) ?? 0)
            chars = chars.dropFirst(2)
        }
        return Array(out.prefix(32))
    }
}
