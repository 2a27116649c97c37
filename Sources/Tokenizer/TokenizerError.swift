/// What can go wrong when loading, training or using a tokenizer. Each case names the file (or
/// input) and the reason.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case emptyModel(path: String)
    case corruptModel(path: String, reason: String)
    case invalidUTF8(source: String, line: Int)
    case lineTooLong(source: String, line: Int, limit: Int)
    case idOutOfRange(id: Int, vocabularySize: Int)
    case emptyCorpus(paths: [String])
    case vocabularyTooLarge(requested: Int, reason: String)
    case invalidOption(name: String, reason: String)
    case trainingFailed(reason: String)
    case encodingFailed(reason: String)

    public var description: String {
        switch self {
        case .emptyModel(let path):
            "\(path): the tokenizer model is empty"
        case .corruptModel(let path, let reason):
            "\(path): not a valid SentencePiece model: \(reason)"
        case .invalidUTF8(let source, let line):
            "\(source): line \(line) is not valid UTF-8"
        case .lineTooLong(let source, let line, let limit):
            "\(source): line \(line) is longer than \(limit) bytes (the limit; --max-line-bytes raises it): split the text into lines"
        case .idOutOfRange(let id, let size):
            "token id \(id) is out of range: the vocabulary has ids 0..<\(size)"
        case .emptyCorpus(let paths):
            "\(paths.joined(separator: ", ")): the corpus has no text (only whitespace, or nothing)"
        case .vocabularyTooLarge(let requested, let reason):
            "vocabulary size \(requested) is larger than the corpus allows: \(reason)"
        case .invalidOption(let name, let reason):
            "--\(name): \(reason)"
        case .trainingFailed(let reason):
            "tokenizer training failed: \(reason)"
        case .encodingFailed(let reason):
            "encoding failed: \(reason)"
        }
    }
}
