/// Errors of the model, its checkpoints and its inputs; each names the file or value at fault.
public enum TransformerError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(source: String, field: String, reason: String)
    case tokenOutOfRange(id: Int32, vocabularySize: Int)
    case sequenceTooLong(tokens: Int, contextLength: Int)
    case emptyInput(what: String)
    case checkpoint(path: String, reason: String)
    case nonFiniteLoss(step: Int, value: Float)

    public var description: String {
        switch self {
        case .invalidConfig(let source, let field, let reason):
            "\(source): \(field) \(reason)"
        case .tokenOutOfRange(let id, let size):
            "token id \(id) is out of range: the model's vocabulary has ids 0..<\(size)"
        case .sequenceTooLong(let tokens, let context):
            "\(tokens) tokens do not fit the model's context of \(context) tokens"
        case .emptyInput(let what):
            "\(what) is empty"
        case .checkpoint(let path, let reason):
            "\(path): \(reason)"
        case .nonFiniteLoss(let step, let value):
            "step \(step): the loss is \(value)"
        }
    }
}
