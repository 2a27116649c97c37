/// What generation, evaluation and chat templates need of a tokenizer: SentencePiece models and
/// byte-level BPE vocabularies (from GGUF files) both provide it.
public protocol TextTokenizer: AnyObject, Sendable {
    /// Where the tokenizer came from, for messages.
    var source: String { get }
    var vocabularySize: Int { get }
    /// Special ids; -1 when the tokenizer defines none.
    var bosID: Int32 { get }
    var eosID: Int32 { get }
    /// Spellings that the tokenizer turns into one special token wherever they occur in text.
    var userDefinedSpellings: [String] { get }

    /// The ids of a whole text (as the start of a document; no BOS or EOS).
    func encode(_ text: String) throws -> [Int32]
    /// The ids of `text` as it tokenizes in the middle of a longer text.
    func encode(continuing text: String) throws -> [Int32]
    /// Mid-text ids of `text` as ordinary text: no special token, whatever it spells.
    func encode(plainText text: String) throws -> [Int32]
    /// The text of `ids`.
    func decode(_ ids: [Int32]) throws -> String
    /// The id of a piece (a token's spelling in the vocabulary), if any.
    func id(for piece: String) -> Int32?
    /// The vocabulary's spelling of `id`.
    func piece(for id: Int32) throws -> String
    /// The bytes `ids` stand for in the middle of a text (a token may hold part of a UTF-8
    /// character); nothing for ids out of range.
    func bytes(of ids: [Int32]) -> [UInt8]
}

extension SentencePieceTokenizer: TextTokenizer {
    public func encode(_ text: String) throws -> [Int32] { try encode(text, addBOS: false, addEOS: false) }

    /// Byte pieces (`<0x41>`) are their byte; control pieces nothing; other pieces their text
    /// with `▁` as a space.
    public func bytes(of ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids {
            guard let piece = try? piece(for: id) else { continue }
            switch type(of: id) {
            case .byte?:
                if piece.hasPrefix("<0x"), let b = UInt8(piece.dropFirst(3).dropLast(), radix: 16) { out.append(b) }
            case .control?, .unknown?:
                continue
            default:
                let scalars = piece.unicodeScalars.map { $0 == "\u{2581}" ? " " : $0 }
                out += Array(String(String.UnicodeScalarView(scalars)).utf8)
            }
        }
        return out
    }
}
