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
}

extension SentencePieceTokenizer: TextTokenizer {
    public func encode(_ text: String) throws -> [Int32] { try encode(text, addBOS: false, addEOS: false) }
}
