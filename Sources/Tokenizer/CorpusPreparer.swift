import Foundation
import Kernels
import Support

/// How a text file divides into documents, each of which ends with EOS in the shards.
public enum DocumentBoundary: String, Sendable, CaseIterable {
    /// A newline after a non-blank line ends a document; blank lines separate paragraphs
    /// inside one (the TinyStories files' layout).
    case newline
    /// A blank line ends a document.
    case blankLine = "blank-line"
    /// The whole file is one document.
    case file
}

/// Turns text files into train and validation token shards.
public struct CorpusPreparer {
    public var tokenizer: SentencePieceTokenizer
    public var boundary: DocumentBoundary = .newline
    /// Fraction of documents, spread evenly through the corpus, that go to validation.
    public var validationFraction = 0.01
    /// Called with (bytes done, bytes total, tokens so far).
    public var progress: ((Int, Int, Int) -> Void)?
    public var pool: ThreadPool = .shared

    public init(tokenizer: SentencePieceTokenizer) {
        self.tokenizer = tokenizer
    }

    public struct Summary: Sendable, Codable {
        public var trainTokens: Int, validationTokens: Int
        public var trainDocuments: Int, validationDocuments: Int
        public var tokenizerSHA256: String
        public var inputs: [String]
    }

    /// Writes `train.bin`, `val.bin` and `meta.json` into `directory`.
    public func prepare(inputs: [String], directory: String) throws -> Summary {
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw TokenizerError.invalidOption(name: "val-fraction", reason: "must be in [0, 1), got \(validationFraction)")
        }
        guard !inputs.isEmpty else { throw TokenizerError.emptyCorpus(paths: []) }
        guard tokenizer.eosID >= 0 else {
            throw TokenizerError.invalidOption(name: "tokenizer", reason: "\(tokenizer.source) defines no EOS id to separate documents")
        }
        try AtomicFile.createDirectory(directory)
        let files = try inputs.map { try MappedFile(path: $0) }
        let totalBytes = files.reduce(0) { $0 + $1.count }
        let train = TokenShardWriter(path: directory + "/train.bin", vocabularySize: tokenizer.vocabularySize,
                                     tokenizerSHA256: tokenizer.sha256)
        let validation = TokenShardWriter(path: directory + "/val.bin", vocabularySize: tokenizer.vocabularySize,
                                          tokenizerSHA256: tokenizer.sha256)
        var documentIndex = 0, doneBytes = 0
        for file in files {
            let documents = try split(file)
            // Batches keep memory flat and the progress line moving.
            var start = 0
            while start < documents.count {
                let batch = Array(documents[start..<min(documents.count, start + 4096)])
                let encoded = try encode(batch)
                for ids in encoded {
                    let before = floor(Double(documentIndex) * validationFraction)
                    let after = floor(Double(documentIndex + 1) * validationFraction)
                    (after > before ? validation : train).append(document: ids + [tokenizer.eosID])
                    documentIndex += 1
                }
                doneBytes += batch.reduce(0) { $0 + $1.utf8.count }
                progress?(min(doneBytes, totalBytes), totalBytes, train.count + validation.count)
                start += batch.count
            }
        }
        guard documentIndex > 0 else { throw TokenizerError.emptyCorpus(paths: inputs) }
        try train.finish()
        try validation.finish()
        let summary = Summary(trainTokens: train.count, validationTokens: validation.count,
                              trainDocuments: train.documentCount, validationDocuments: validation.documentCount,
                              tokenizerSHA256: tokenizer.sha256, inputs: inputs)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(summary), to: directory + "/meta.json")
        return summary
    }

    /// Encodes documents in parallel. Long documents are encoded in paragraph chunks of at most
    /// ~16 KB: SentencePiece's BPE slows down on very long inputs.
    private func encode(_ documents: [String]) throws -> [[Int32]] {
        var pieces: [String] = []
        var owner: [Int] = []
        for (i, document) in documents.enumerated() {
            for chunk in chunks(of: document) {
                pieces.append(chunk)
                owner.append(i)
            }
        }
        let encoded = try tokenizer.encode(lines: pieces, pool: pool)
        var result = [[Int32]](repeating: [], count: documents.count)
        for (k, ids) in encoded.enumerated() { result[owner[k]] += ids }
        return result
    }

    private func chunks(of document: String) -> [String] {
        guard document.utf8.count > 16_384 else { return [document] }
        var out: [String] = []
        var current = ""
        for paragraph in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if current.utf8.count + paragraph.utf8.count > 16_384 && !current.isEmpty {
                out.append(current)
                current = ""
            }
            current += paragraph
            current += "\n"
        }
        if current.hasSuffix("\n") { current.removeLast() }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Splits a file into documents (validated as UTF-8, with the failing line reported).
    func split(_ file: MappedFile) throws -> [String] {
        let bytes = file.data()
        guard let text = String(validating: bytes, as: UTF8.self) else {
            var line = 1
            for piece in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
                if String(validating: piece, as: UTF8.self) == nil { break }
                line += 1
            }
            throw TokenizerError.invalidUTF8(source: file.path, line: line)
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
        switch boundary {
        case .file:
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty ? [] : [trimmed]
        case .blankLine, .newline:
            var documents: [String] = []
            var current: [Substring] = []
            var previousBlank = true
            for line in lines {
                let blank = line.allSatisfy(\.isWhitespace)
                if blank {
                    if boundary == .blankLine && !current.isEmpty {
                        documents.append(current.joined(separator: "\n"))
                        current = []
                    }
                } else {
                    if boundary == .newline && !previousBlank && !current.isEmpty {
                        documents.append(current.joined(separator: "\n\n"))
                        current = []
                    }
                    current.append(line)
                }
                previousBlank = blank
            }
            if !current.isEmpty {
                documents.append(current.joined(separator: boundary == .newline ? "\n\n" : "\n"))
            }
            return documents
        }
    }
}
