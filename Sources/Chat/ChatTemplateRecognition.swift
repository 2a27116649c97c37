/// Chat templates that files carry as Jinja source (GGUF `tokenizer.chat_template`, Hugging
/// Face `chat_template`), recognised by their markers: TinyLM renders the formats it knows as
/// data (`ChatTemplate`) instead of running Jinja.
public enum ChatTemplateError: Error, CustomStringConvertible, Equatable {
    case unsupported(source: String, found: String)

    public var description: String {
        switch self {
        case .unsupported(let source, let found):
            "\(source): the chat template is not ChatML (\(found)); TinyLM renders ChatML (<|im_start|>role … <|im_end|>) only"
        }
    }
}

extension ChatTemplate {
    /// The ChatML template described by Jinja source `jinja`, with the default system prompt it
    /// inserts when a conversation has none (SmolLM2's does); an error naming the format found
    /// otherwise.
    public static func recognizing(_ jinja: String, source: String) throws -> (template: ChatTemplate, defaultSystem: String?) {
        guard jinja.contains("<|im_start|>") && jinja.contains("<|im_end|>") else {
            let markers = ["[INST]": "Llama 2 / Mistral [INST]", "<|start_header_id|>": "Llama 3 headers",
                           "<start_of_turn>": "Gemma turns", "<|user|>": "Zephyr / Phi <|user|>", "<|begin_of_text|>": "Llama 3"]
            let found = markers.first { jinja.contains($0.key) }?.value ?? "an unrecognised format"
            throw ChatTemplateError.unsupported(source: source, found: found)
        }
        var defaultSystem: String?
        if let start = jinja.range(of: "<|im_start|>system\n"), let end = jinja.range(of: "<|im_end|>", range: start.upperBound..<jinja.endIndex) {
            let text = String(jinja[start.upperBound..<end.lowerBound])
            // A literal default, not a Jinja expression that inserts the user's system message.
            if !text.contains("{{") && !text.contains("{%") && !text.isEmpty { defaultSystem = text }
        }
        return (ChatTemplate.chatML, defaultSystem)
    }
}
