import CSentencePiece
import Foundation
import Kernels
import Support

/// A loaded SentencePiece model: encode text to ids or pieces, decode ids to text, and look up
/// the vocabulary. Works with any `.model` file (BPE, unigram, char, word; with or without byte
/// fallback; any normalizer).
///
/// Encoding and decoding are `const` in libsentencepiece and safe from many threads at once,
/// which `encode(lines:)` uses to spread a batch over the pool.
public final class SentencePieceTokenizer: @unchecked Sendable {
    /// Where the model came from (a path, or a name for in-memory models), for messages.
    public let source: String
    /// SHA-256 of the serialized model: token shards record it to refuse another tokenizer.
    public let sha256: String
    /// Facts read from the model file itself.
    public let proto: ModelProto
    /// The serialized model.
    public let modelData: Data

    public let vocabularySize: Int
    /// Special ids; -1 when the model does not define one.
    public let bosID: Int32, eosID: Int32, unkID: Int32, padID: Int32

    private let handle: OpaquePointer
    /// Spellings of the user-defined symbols, which SentencePiece matches anywhere in text.
    public private(set) var userDefinedSpellings: [String] = []

    /// Loads a `.model` file.
    public convenience init(contentsOf path: String) throws {
        let file = try MappedFile(path: path)
        guard file.count > 0 else { throw TokenizerError.emptyModel(path: path) }
        try self.init(modelData: Data(file.data()), source: path)
    }

    /// Loads a serialized model held in memory; `source` names it in messages.
    public init(modelData: Data, source: String) throws {
        guard !modelData.isEmpty else { throw TokenizerError.emptyModel(path: source) }
        // Our own parse first: it rejects truncated and foreign files with a precise reason.
        do {
            proto = try modelData.withUnsafeBytes { try ModelProto(bytes: $0) }
        } catch let error as ModelProto.ParseError {
            throw TokenizerError.corruptModel(path: source, reason: error.reason)
        }
        var pointer: OpaquePointer?
        var message: UnsafeMutablePointer<CChar>?
        let status = modelData.withUnsafeBytes { raw in
            tlm_spm_load(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count, &pointer, &message)
        }
        guard status == 0, let pointer else {
            throw TokenizerError.corruptModel(path: source, reason: takeMessage(message))
        }
        handle = pointer
        self.source = source
        self.modelData = modelData
        sha256 = SHA256.hex(of: modelData)
        vocabularySize = Int(tlm_spm_piece_size(pointer))
        bosID = tlm_spm_bos_id(pointer)
        eosID = tlm_spm_eos_id(pointer)
        unkID = tlm_spm_unk_id(pointer)
        padID = tlm_spm_pad_id(pointer)
        userDefinedSpellings = userDefinedIDs.compactMap { try? piece(for: $0) }.filter { !$0.isEmpty }
    }

    deinit { tlm_spm_destroy(handle) }

    // MARK: Encoding

    /// The ids of `text`, optionally with BOS first and EOS last (when the model defines them).
    public func encode(_ text: String, addBOS: Bool = false, addEOS: Bool = false) throws -> [Int32] {
        var text = text
        var ids: UnsafeMutablePointer<Int32>?
        var count = 0
        var message: UnsafeMutablePointer<CChar>?
        let status = withUTF8Bytes(&text) { bytes, length in
            tlm_spm_encode_ids(handle, bytes, length, &ids, &count, &message)
        }
        guard status == 0, let ids else { throw TokenizerError.encodingFailed(reason: takeMessage(message)) }
        defer { tlm_spm_free_ids(ids) }
        var result: [Int32] = []
        result.reserveCapacity(count + 2)
        if addBOS && bosID >= 0 { result.append(bosID) }
        result.append(contentsOf: UnsafeBufferPointer(start: ids, count: count))
        if addEOS && eosID >= 0 { result.append(eosID) }
        return result
    }

    /// The ids of `text` as it tokenizes in the middle of a longer text (after a marker or a
    /// newline): without the dummy-prefix space SentencePiece puts before every input. Chat
    /// templates encode their pieces this way, so that the ids of a rendered conversation
    /// decode to exactly its text.
    public func encode(continuing text: String) throws -> [Int32] {
        guard proto.addDummyPrefix, !text.isEmpty else { return try encode(text) }
        // A newline is its own token (a byte piece or a piece of its own) and ends the dummy
        // prefix's word, so the ids after its ids are those of `text` in mid-text position.
        let prefix = try continuationPrefix()
        let ids = try encode("\n" + text)
        guard ids.count >= prefix.count, Array(ids[0..<prefix.count]) == prefix else { return try encode(text) }
        return Array(ids[prefix.count...])
    }

    /// The ids of `text` in mid-text position (as `encode(continuing:)`) as ordinary text: the
    /// spelling of a user-defined symbol inside it — a chat marker typed by a user, returned by a
    /// tool or written by a model — is encoded as the characters it is made of, never as the
    /// symbol. Only a chat template emits markers. The ids still decode to exactly `text`.
    public func encode(plainText text: String) throws -> [Int32] {
        guard !userDefinedSpellings.isEmpty else { return try encode(continuing: text) }
        var ids: [Int32] = []
        var rest = Substring(text)
        while let range = userDefinedSpellings.compactMap({ rest.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
            // Cut the spelling after its first character: neither side holds it whole. The rest
            // is scanned again (it may start another spelling).
            let cut = rest.index(after: range.lowerBound)
            ids += try encode(continuing: String(rest[..<cut]))
            rest = rest[cut...]
        }
        if !rest.isEmpty { ids += try encode(continuing: String(rest)) }
        return ids
    }

    private func continuationPrefix() throws -> [Int32] {
        try encode("\n")
    }

    /// The pieces of `text` (e.g. `▁Hello`, `<0x0A>`).
    public func encodePieces(_ text: String) throws -> [String] {
        var text = text
        var buffer: UnsafeMutablePointer<CChar>?
        var bytes = 0, count = 0
        var message: UnsafeMutablePointer<CChar>?
        let status = withUTF8Bytes(&text) { utf8, length in
            tlm_spm_encode_pieces(handle, utf8, length, &buffer, &bytes, &count, &message)
        }
        guard status == 0, let buffer else { throw TokenizerError.encodingFailed(reason: takeMessage(message)) }
        defer { tlm_spm_free_string(buffer) }
        let raw = UnsafeRawBufferPointer(start: buffer, count: bytes)
        return raw.split(separator: 0, omittingEmptySubsequences: false).prefix(count).map {
            String(decoding: $0, as: UTF8.self)
        }
    }

    /// Encodes many lines at once, spread over the pool; the result is in input order.
    public func encode(lines: [String], addBOS: Bool = false, addEOS: Bool = false,
                       pool: ThreadPool = .shared) throws -> [[Int32]] {
        var results = [[Int32]](repeating: [], count: lines.count)
        let failure = FailureBox()
        results.withUnsafeMutableBufferPointer { out in
            let chunks = min(lines.count, pool.threadCount * 8)
            pool.parallelFor(chunks) { chunk, _ in
                for i in (lines.count * chunk / chunks)..<(lines.count * (chunk + 1) / chunks) {
                    do {
                        out[i] = try encode(lines[i], addBOS: addBOS, addEOS: addEOS)
                    } catch {
                        failure.record(error)
                    }
                }
            }
        }
        if let error = failure.first { throw error }
        return results
    }

    // MARK: Decoding

    /// The text of `ids`. Throws for an id outside the vocabulary.
    public func decode(_ ids: [Int32]) throws -> String {
        for id in ids where id < 0 || Int(id) >= vocabularySize {
            throw TokenizerError.idOutOfRange(id: Int(id), vocabularySize: vocabularySize)
        }
        var text: UnsafeMutablePointer<CChar>?
        var length = 0
        var message: UnsafeMutablePointer<CChar>?
        let status = ids.withUnsafeBufferPointer { buffer in
            tlm_spm_decode_ids(handle, buffer.baseAddress, buffer.count, &text, &length, &message)
        }
        guard status == 0, let text else { throw TokenizerError.encodingFailed(reason: takeMessage(message)) }
        defer { tlm_spm_free_string(text) }
        return String(decoding: UnsafeRawBufferPointer(start: text, count: length), as: UTF8.self)
    }

    // MARK: Vocabulary

    /// The piece of `id`. Throws for an id outside the vocabulary.
    public func piece(for id: Int32) throws -> String {
        guard id >= 0 && Int(id) < vocabularySize else {
            throw TokenizerError.idOutOfRange(id: Int(id), vocabularySize: vocabularySize)
        }
        var length = 0
        let pointer = tlm_spm_id_to_piece(handle, id, &length)
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    /// The id of `piece`, or nil when the vocabulary has no such piece.
    public func id(for piece: String) -> Int32? {
        var piece = piece
        let id = withUTF8Bytes(&piece) { bytes, length in tlm_spm_piece_to_id(handle, bytes, length) }
        // PieceToId answers the unknown id for unknown pieces; only the unknown piece itself
        // truly has that id.
        if id == unkID, let unknown = try? self.piece(for: id), unknown != piece { return nil }
        return id
    }

    /// The kind of piece `id` is.
    public func type(of id: Int32) -> ModelProto.PieceType? {
        guard id >= 0 && Int(id) < proto.pieceTypes.count else { return nil }
        return proto.pieceTypes[Int(id)]
    }

    public func score(of id: Int32) -> Float {
        guard id >= 0 && Int(id) < vocabularySize else { return 0 }
        return tlm_spm_score(handle, id)
    }

    /// Ids of control symbols (`<s>`, `</s>`, …) and user-defined symbols (e.g. chat markers).
    public var controlIDs: [Int32] { ids(of: .control) }
    public var userDefinedIDs: [Int32] { ids(of: .userDefined) }
    public var byteIDs: [Int32] { ids(of: .byte) }

    private func ids(of type: ModelProto.PieceType) -> [Int32] {
        proto.pieceTypes.indices.filter { proto.pieceTypes[$0] == type }.map { Int32($0) }
    }
}

/// Runs `body` with the UTF-8 bytes of `text` (a valid pointer even for an empty string).
func withUTF8Bytes<R>(_ text: inout String, _ body: (UnsafePointer<CChar>, Int) -> R) -> R {
    text.withUTF8 { utf8 in
        if let base = utf8.baseAddress {
            return body(UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self), utf8.count)
        }
        var empty: CChar = 0
        return withUnsafePointer(to: &empty) { body($0, 0) }
    }
}

/// Takes ownership of a message from the shim.
func takeMessage(_ message: UnsafeMutablePointer<CChar>?) -> String {
    guard let message else { return "unknown error" }
    defer { tlm_spm_free_string(message) }
    return String(validatingCString: message) ?? "unreadable error message"
}

/// The first error thrown by any of a batch's threads.
final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var first: (any Error)?

    func record(_ error: any Error) {
        lock.lock()
        if first == nil { first = error }
        lock.unlock()
    }
}
