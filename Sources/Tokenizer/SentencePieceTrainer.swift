import CSentencePiece
import Foundation
import Kernels
import Support

/// Options for training a SentencePiece model, named as `spm_train` names them.
public struct TokenizerTrainingOptions: Sendable, Equatable {
    public var vocabularySize = 4096
    public var modelType: ModelProto.ModelType = .bpe
    /// Fraction of characters the vocabulary must cover; the rest become bytes or `<unk>`.
    public var characterCoverage = 0.9995
    /// Unknown characters become UTF-8 byte pieces (`<0xE2>`…) instead of `<unk>`.
    public var byteFallback = true
    /// Symbols that are always exactly one token (e.g. chat markers).
    public var userDefinedSymbols: [String] = []
    public var maxSentenceLength = 4192
    /// Sentences sampled from the corpus for training; 0 uses all.
    public var inputSentenceSize = 0
    public var shuffleInputSentence = true
    public var threads = ThreadPool.defaultThreadCount
    /// `nmt_nfkc` (SentencePiece's default), `nfkc`, `identity`, …
    public var normalization = "nmt_nfkc"
    public var splitDigits = false
    /// Collapse whitespace runs and trim lines (SentencePiece's default). Off keeps every
    /// whitespace character, so decoding gives back the input exactly.
    public var removeExtraWhitespaces = true
    /// Prefix each input with a space, so a word is one piece wherever it stands.
    public var addDummyPrefix = true
    public var seed: UInt32 = 0

    public init() {}

    /// The chat markers TinyLM's template uses; each must be a single token.
    public static let chatMarkers = [
        "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    ]
}

public enum SentencePieceTrainer {
    /// Trains a model on the text files `inputs` and returns its serialized bytes. Deterministic
    /// for the same inputs, options and seed.
    public static func train(inputs: [String], options: TokenizerTrainingOptions) throws -> Data {
        guard !inputs.isEmpty else { throw TokenizerError.emptyCorpus(paths: []) }
        guard options.vocabularySize > 0 else {
            throw TokenizerError.invalidOption(name: "vocab-size", reason: "must be positive, got \(options.vocabularySize)")
        }
        guard options.characterCoverage > 0 && options.characterCoverage <= 1 else {
            throw TokenizerError.invalidOption(name: "character-coverage", reason: "must be in (0, 1], got \(options.characterCoverage)")
        }
        guard options.threads > 0, options.maxSentenceLength > 0, options.inputSentenceSize >= 0 else {
            throw TokenizerError.invalidOption(name: "threads", reason: "threads and max sentence length must be positive")
        }
        var hasText = false
        for path in inputs {
            // SentencePiece separates input files with commas.
            guard !path.contains(",") else {
                throw TokenizerError.invalidOption(name: "input", reason: "\(path): file names with commas are not supported")
            }
            let file = try MappedFile(path: path)
            if !hasText, file.withBytes({ $0.contains(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }) }) {
                hasText = true
            }
        }
        guard hasText else { throw TokenizerError.emptyCorpus(paths: inputs) }
        for symbol in options.userDefinedSymbols where symbol.isEmpty || symbol.contains(",") {
            throw TokenizerError.invalidOption(name: "user-defined-symbols", reason: "'\(symbol)' is empty or contains a comma")
        }

        // The model comes back serialized (with no `model_prefix`, SentencePiece writes no
        // files), so the caller writes it atomically.
        var settings: [(String, String)] = [
            ("input", inputs.joined(separator: ",")),
            ("vocab_size", String(options.vocabularySize)),
            ("model_type", options.modelType.description),
            ("character_coverage", String(options.characterCoverage)),
            ("byte_fallback", String(options.byteFallback)),
            ("max_sentence_length", String(options.maxSentenceLength)),
            ("input_sentence_size", String(options.inputSentenceSize)),
            ("shuffle_input_sentence", String(options.shuffleInputSentence)),
            ("num_threads", String(options.threads)),
            ("normalization_rule_name", options.normalization),
            ("split_digits", String(options.splitDigits)),
            ("remove_extra_whitespaces", String(options.removeExtraWhitespaces)),
            ("add_dummy_prefix", String(options.addDummyPrefix)),
        ]
        if !options.userDefinedSymbols.isEmpty {
            settings.append(("user_defined_symbols", options.userDefinedSymbols.joined(separator: ",")))
        }
        var model: UnsafeMutablePointer<CChar>?
        var length = 0
        var message: UnsafeMutablePointer<CChar>?
        let keys = settings.map { strdup($0.0) }, values = settings.map { strdup($0.1) }
        defer { (keys + values).forEach { free($0) } }
        let status = keys.map { UnsafePointer($0) }.withUnsafeBufferPointer { k in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { v in
                tlm_spm_train(k.baseAddress, v.baseAddress, settings.count, options.seed, &model, &length, &message)
            }
        }
        guard status == 0, let model else {
            let reason = takeMessage(message)
            if reason.contains("Vocabulary size too high") || reason.contains("Vocabulary size is too high") {
                throw TokenizerError.vocabularyTooLarge(requested: options.vocabularySize, reason: reason)
            }
            if reason.contains("smaller than required") || reason.contains("(vocab_size) >= (0)") {
                throw TokenizerError.invalidOption(
                    name: "vocab-size",
                    reason: "\(options.vocabularySize) is too small for the corpus's characters, bytes and special pieces: \(reason)")
            }
            throw TokenizerError.trainingFailed(reason: reason)
        }
        defer { tlm_spm_free_string(model) }
        return Data(bytes: model, count: length)
    }

    /// Trains and writes `output` (the `.model`) and `output` with extension `.vocab` (piece and
    /// score per line, as `spm_train` writes), both atomically.
    @discardableResult
    public static func train(inputs: [String], options: TokenizerTrainingOptions, output: String) throws -> SentencePieceTokenizer {
        let data = try train(inputs: inputs, options: options)
        let tokenizer = try SentencePieceTokenizer(modelData: data, source: output)
        try AtomicFile.write(data, to: output)
        var vocab = ""
        for id in 0..<Int32(tokenizer.vocabularySize) {
            vocab += "\(try tokenizer.piece(for: id))\t\(formatScore(tokenizer.score(of: id)))\n"
        }
        let vocabPath = (output as NSString).deletingPathExtension + ".vocab"
        try AtomicFile.write(Data(vocab.utf8), to: vocabPath)
        return tokenizer
    }

    private static func formatScore(_ score: Float) -> String {
        score == score.rounded() ? String(Int(score)) : String(score)
    }
}
