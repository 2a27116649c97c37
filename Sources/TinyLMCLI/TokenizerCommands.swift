import ArgumentParser
import Foundation
import GGUF
import Kernels
import Support
import Tokenizer

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Train, inspect and run SentencePiece tokenizers.",
        subcommands: [TokenizerTrain.self, TokenizerEncode.self, TokenizerDecode.self, TokenizerInfo.self]
    )
}

extension ModelProto.ModelType: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "bpe": self = .bpe
        case "unigram": self = .unigram
        case "char": self = .char
        case "word": self = .word
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["bpe", "unigram", "char", "word"] }
}

struct TokenizerTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a SentencePiece model on text files.")

    @Option(name: .customLong("input"), parsing: .upToNextOption, help: "Training text files.")
    var inputs: [String]
    @Option(help: "The model to write (a .vocab is written beside it).")
    var output: String
    @Option(help: "Vocabulary size.") var vocabSize = 4096
    @Option(help: "bpe, unigram, char or word.") var modelType: ModelProto.ModelType = .bpe
    @Option(help: "Fraction of characters the vocabulary covers.") var characterCoverage = 0.9995
    @Flag(inversion: .prefixedNo, help: "Encode unknown characters as UTF-8 bytes.") var byteFallback = true
    @Option(help: "Comma-separated symbols that are always one token.") var userDefinedSymbols: String?
    @Flag(help: "Add the chat markers (<|im_start|>, <|im_end|>, <tool_call>, …) as user-defined symbols.")
    var chatMarkers = false
    @Option(help: "Longest sentence in bytes.") var maxSentenceLength = 4192
    @Option(help: "Sentences sampled for training (0: all).") var inputSentenceSize = 0
    @Option(help: "Normalization rule: nmt_nfkc, nfkc, identity, …") var normalization = "nmt_nfkc"
    @Flag(help: "Split digits into single-digit pieces.") var splitDigits = false
    @Flag(inversion: .prefixedNo, help: "Collapse whitespace runs and trim lines (off: decoding returns the input exactly).")
    var removeExtraWhitespaces = true
    @Flag(inversion: .prefixedNo, help: "Prefix each input with a space.") var addDummyPrefix = true
    @Option(help: "Training threads.") var threads = ThreadPool.defaultThreadCount
    @Option(help: "Random seed (training is deterministic for a seed).") var seed: UInt32 = 0

    func validate() throws {
        try OptionDomain.count(vocabSize, "vocab-size", min: 2, max: 1 << 20)
        try OptionDomain.number(characterCoverage, "character-coverage", 0...1, openLower: true)
        try OptionDomain.count(maxSentenceLength, "max-sentence-length", max: 1 << 30)
        try OptionDomain.count(inputSentenceSize, "input-sentence-size", min: 0, max: 1 << 40)
        try OptionDomain.count(threads, "threads", max: 1024)
    }

    func run() throws {
        var options = TokenizerTrainingOptions()
        options.vocabularySize = vocabSize
        options.modelType = modelType
        options.characterCoverage = characterCoverage
        options.byteFallback = byteFallback
        options.userDefinedSymbols = (chatMarkers ? TokenizerTrainingOptions.chatMarkers : [])
            + (userDefinedSymbols?.split(separator: ",").map(String.init) ?? [])
        options.maxSentenceLength = maxSentenceLength
        options.inputSentenceSize = inputSentenceSize
        options.normalization = normalization
        options.splitDigits = splitDigits
        options.removeExtraWhitespaces = removeExtraWhitespaces
        options.addDummyPrefix = addDummyPrefix
        options.threads = threads
        options.seed = seed
        let start = Date()
        let tokenizer = try SentencePieceTrainer.train(inputs: inputs, options: options, output: output)
        print("wrote \(output) (\(tokenizer.vocabularySize) pieces, \(tokenizer.proto.modelType), sha256 \(tokenizer.sha256)) in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
    }
}

enum TokenFormat: String, ExpressibleByArgument, CaseIterable {
    case ids, pieces, json
}

/// Calls `body` with batches of the UTF-8 lines of the named files, or of standard input when
/// there are none, read in bounded chunks (`LineReader`).
func forEachLineBatch(_ files: [String], maxLineBytes: Int, _ body: (_ source: String, _ firstLine: Int, _ lines: [String]) throws -> Void) throws {
    for path in files.isEmpty ? [nil] : files.map(Optional.some) {
        var reader = try LineReader(path: path, maxLineBytes: maxLineBytes)
        var first = 1
        while let batch = try reader.nextBatch() {
            try body(reader.source, first, batch)
            first += batch.count
        }
    }
}

extension PreTokenizer: ExpressibleByArgument {}

struct TokenizerEncode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode", abstract: "Encode text, one output line per input line.")

    @Option(help: "A SentencePiece model, or a GGUF file (its byte-level BPE tokenizer).") var model: String
    @Option(help: "ids, pieces or json.") var format: TokenFormat = .ids
    @Flag(help: "Add BOS.") var bos = false
    @Flag(help: "Add EOS.") var eos = false
    @Flag(help: "Print the encoding time (excluding reading and writing) to standard error.") var stats = false
    @Option(help: "GGUF only: split words by this rule instead of the file's (gpt2, smollm, llama3).") var preTokenizer: PreTokenizer?
    @Flag(help: "GGUF only: encode each file as one text (newlines included) and print one line of ids per file.") var wholeFile = false
    @Option(help: "Longest input line in bytes (longer lines are an error; encoding cost grows faster than a line's length).")
    var maxLineBytes = 1 << 20
    @Argument(help: "Text files (standard input when none).") var files: [String] = []

    func validate() throws { try OptionDomain.count(maxLineBytes, "max-line-bytes", max: 64 << 20) }

    func run() throws {
        if LoadedModel.isGGUF(model) { return try runBPE(GGUFTokenizer.load(GGUFFile(path: model), preTokenizer: preTokenizer)) }
        let tokenizer = try SentencePieceTokenizer(contentsOf: model)
        var out = StandardOutput()
        try forEachLineBatch(files, maxLineBytes: maxLineBytes) { _, _, batch in
                switch format {
                case .ids:
                    for ids in try tokenizer.encode(lines: batch, addBOS: bos, addEOS: eos) {
                        for (i, id) in ids.enumerated() {
                            if i > 0 { out.write(UInt8(ascii: " ")) }
                            out.write(integer: id)
                        }
                        out.write(UInt8(ascii: "\n"))
                    }
                case .pieces:
                    for line in batch {
                        out.write(try tokenizer.encodePieces(line).joined(separator: " "))
                        out.write(UInt8(ascii: "\n"))
                    }
                case .json:
                    let all = try tokenizer.encode(lines: batch, addBOS: bos, addEOS: eos)
                    for (line, ids) in zip(batch, all) {
                        let pieces = try ids.map { try tokenizer.piece(for: $0) }
                        out.write("{\"text\": \(jsonQuoted(line)), \"ids\": [\(ids.map(String.init).joined(separator: ", "))], \"pieces\": [\(pieces.map(jsonQuoted).joined(separator: ", "))]}\n")
                    }
                }
                out.flush()
        }
        out.flush()
    }
}

extension TokenizerEncode {
    /// One line at a time on one thread (the speed comparison with the `tokenizers` library is
    /// single-threaded too); special tokens in the text are matched, as Hugging Face's do.
    func runBPE(_ tokenizer: ByteLevelBPETokenizer) throws {
        var out = StandardOutput()
        if wholeFile {
            for path in files {
                let bytes = try MappedFile(path: path).data()
                guard let text = String(validating: bytes, as: UTF8.self) else { throw ValidationError("\(path): not valid UTF-8") }
                out.write(tokenizer.encode(text, specialTokens: true).map(String.init).joined(separator: " "))
                out.write(UInt8(ascii: "\n"))
            }
            out.flush()
            return
        }
        var seconds = 0.0, tokens = 0, bytes = 0
        try forEachLineBatch(files, maxLineBytes: maxLineBytes) { _, _, batch in
            let start = DispatchTime.now().uptimeNanoseconds
            var encoded = batch.map { tokenizer.encode($0, specialTokens: true) }
            seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            for (line, var ids) in zip(batch, encoded) {
                if bos && tokenizer.bosID >= 0 { ids.insert(tokenizer.bosID, at: 0) }
                if eos && tokenizer.eosID >= 0 { ids.append(tokenizer.eosID) }
                tokens += ids.count
                bytes += line.utf8.count
                switch format {
                case .ids:
                    for (i, id) in ids.enumerated() {
                        if i > 0 { out.write(UInt8(ascii: " ")) }
                        out.write(integer: id)
                    }
                    out.write(UInt8(ascii: "\n"))
                case .pieces:
                    out.write(try ids.map { try tokenizer.piece(for: $0) }.joined(separator: " "))
                    out.write(UInt8(ascii: "\n"))
                case .json:
                    let pieces = try ids.map { try tokenizer.piece(for: $0) }
                    out.write("{\"text\": \(jsonQuoted(line)), \"ids\": [\(ids.map(String.init).joined(separator: ", "))], \"pieces\": [\(pieces.map(jsonQuoted).joined(separator: ", "))]}\n")
                }
            }
            encoded.removeAll()
            out.flush()
        }
        out.flush()
        if stats {
            printError(String(format: "encoded %d bytes into %d tokens in %.3f s (%.2f MB/s, one thread)", bytes, tokens, seconds, Double(bytes) / seconds / 1e6))
        }
    }
}

struct TokenizerDecode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode ids (space- or comma-separated, or JSON objects with \"ids\"), or pieces, one line each.")

    @Option(help: "The SentencePiece model.") var model: String
    @Option(help: "ids (also accepts JSON lines), pieces or json.") var format: TokenFormat = .ids
    @Argument(help: "Files (standard input when none).") var files: [String] = []

    struct IDsLine: Decodable { var ids: [Int32] }

    func run() throws {
        let tokenizer: any TextTokenizer = LoadedModel.isGGUF(model) ? try GGUFTokenizer.load(GGUFFile(path: model))
                                                                        : try SentencePieceTokenizer(contentsOf: model)
        var out = StandardOutput()
        try forEachLineBatch(files, maxLineBytes: 64 << 20) { source, first, lines in
            for (offset, line) in lines.enumerated() {
                let index = first - 1 + offset
                let ids: [Int32]
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if format == .json || trimmed.hasPrefix("{") {
                    guard let parsed = try? JSONDecoder().decode(IDsLine.self, from: Data(trimmed.utf8)) else {
                        throw ValidationError("\(source): line \(index + 1) is not a JSON object with an \"ids\" array of integers")
                    }
                    ids = parsed.ids
                } else if format == .pieces {
                    ids = try trimmed.split(separator: " ").map { piece in
                        guard let id = tokenizer.id(for: String(piece)) else {
                            throw ValidationError("\(source): line \(index + 1): '\(piece)' is not a piece of \(model)")
                        }
                        return id
                    }
                } else {
                    ids = try trimmed.split(whereSeparator: { $0 == " " || $0 == "," }).map { field in
                        guard let id = Int32(field) else {
                            throw ValidationError("\(source): line \(index + 1): '\(field)' is not a token id")
                        }
                        return id
                    }
                }
                out.write(try tokenizer.decode(ids))
                out.write(UInt8(ascii: "\n"))
            }
            out.flush()
        }
        out.flush()
    }
}

struct TokenizerInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Print a model's type, size, special ids and normalizer.")

    @Option(help: "The SentencePiece model.") var model: String

    func run() throws {
        let t = try SentencePieceTokenizer(contentsOf: model)
        let p = t.proto
        func describe(_ ids: [Int32]) throws -> String {
            ids.isEmpty ? "none" : try ids.map { "\($0) \(try t.piece(for: $0))" }.joined(separator: ", ")
        }
        print("""
        model:        \(model)
        sha256:       \(t.sha256)
        type:         \(p.modelType)
        vocabulary:   \(t.vocabularySize)
        byte pieces:  \(t.byteIDs.count) (byte fallback \(p.byteFallback ? "on" : "off"))
        normalizer:   \(p.normalizerName) (dummy prefix \(p.addDummyPrefix), remove extra whitespace \(p.removeExtraWhitespaces))
        unk/bos/eos/pad: \(t.unkID) / \(t.bosID) / \(t.eosID) / \(t.padID)
        control:      \(try describe(t.controlIDs))
        user-defined: \(try describe(t.userDefinedIDs))
        """)
    }
}
