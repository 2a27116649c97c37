import Tokenizer

/// The tokenizer a GGUF file carries (`tokenizer.ggml.*`).
public enum GGUFTokenizer {
    /// A byte-level BPE tokenizer for `tokenizer.ggml.model = gpt2`, with the pre-tokenizer that
    /// `tokenizer.ggml.pre` names.
    /// `preTokenizer` overrides the file's rule (transformers, for one, splits `smollm` files by
    /// GPT-2's rule alone, where llama.cpp and the original tokenizer split digits first).
    public static func load(_ file: GGUFFile, preTokenizer override: PreTokenizer? = nil) throws -> ByteLevelBPETokenizer {
        let model = try file.required("tokenizer.ggml.model", \.string, "a string")
        guard model == "gpt2" else {
            throw GGUFError.unsupported(path: file.path, reason: "tokenizer.ggml.model '\(model)' is not supported (gpt2: byte-level BPE)")
        }
        let tokens = try file.required("tokenizer.ggml.tokens", \.strings, "a list of strings")
        let merges = try file.required("tokenizer.ggml.merges", \.strings, "a list of strings")
        let types = try file["tokenizer.ggml.token_type"].map { value -> [Int32] in
            guard let list = value.array?.compactMap(\.integer), list.count == value.array?.count else {
                throw GGUFError.invalid(path: file.path, field: "tokenizer.ggml.token_type", reason: "must be a list of integers")
            }
            return list.map { Int32(clamping: $0) }
        }
        let preName = file["tokenizer.ggml.pre"]?.string ?? "default"
        guard let pre = override ?? PreTokenizer(ggufName: preName) else {
            throw GGUFError.unsupported(path: file.path, reason: "pre-tokenizer '\(preName)' is not supported (\(PreTokenizer.allCases.map(\.rawValue).joined(separator: ", ")), gpt2-family)")
        }
        func id(_ key: String) -> Int32 { Int32(clamping: file[key]?.integer ?? -1) }
        do {
            return try ByteLevelBPETokenizer(tokens: tokens, types: types, merges: merges, preTokenizer: pre,
                                             bosID: id("tokenizer.ggml.bos_token_id"), eosID: id("tokenizer.ggml.eos_token_id"),
                                             unknownID: id("tokenizer.ggml.unknown_token_id"), ignoreMerges: pre == .llama3,
                                             source: file.path)
        } catch let error as TokenizerError {
            throw GGUFError.invalid(path: file.path, field: "tokenizer.ggml", reason: "\(error)")
        }
    }
}
