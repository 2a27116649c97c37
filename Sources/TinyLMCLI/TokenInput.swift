import ArgumentParser
import Foundation
import Support
import Tokenizer

/// Loads token ids from a shard, checking its tokenizer and that every id is one of the
/// tokenizer's (an error names the file and the position).
func loadShard(_ path: String, tokenizer: SentencePieceTokenizer) throws -> [Int32] {
    let shard = try TokenShard(path: path, tokenizerSHA256: tokenizer.sha256)
    try MemoryBudget.check(floats: shard.count, what: "the \(shard.count) tokens of \(path)")
    var tokens = [Int32](repeating: 0, count: shard.count)
    tokens.withUnsafeMutableBufferPointer { shard.copy(from: 0, count: shard.count, into: $0.baseAddress!) }
    if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= tokenizer.vocabularySize }) {
        throw ValidationError("\(path): token \(bad) is id \(tokens[bad]), outside the tokenizer's \(tokenizer.vocabularySize) ids (a damaged shard?)")
    }
    return tokens
}

/// Whether `path` starts with a token shard's magic bytes (then it is read as a shard, and a
/// damaged one is reported as such, not as text).
func isTokenShard(_ path: String) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    let head = (try? handle.read(upToCount: TokenShard.magic.count)) ?? Data()
    return Array(head) == TokenShard.magic
}

/// A shard, or a text file tokenized like `data prepare` does (all of it).
func loadTokens(_ path: String, tokenizer: SentencePieceTokenizer) throws -> [Int32] {
    if isTokenShard(path) { return try loadShard(path, tokenizer: tokenizer) }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tinylm-tokens-\(getpid())-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var preparer = CorpusPreparer(tokenizer: tokenizer)
    preparer.validationFraction = 0
    _ = try preparer.prepare(inputs: [path], directory: directory)
    return try loadShard(directory + "/train.bin", tokenizer: tokenizer)
}
