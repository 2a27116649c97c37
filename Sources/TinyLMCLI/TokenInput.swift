import Foundation
import Tokenizer

/// Loads token ids from a shard, checking its tokenizer.
func loadShard(_ path: String, tokenizer: SentencePieceTokenizer) throws -> [Int32] {
    let shard = try TokenShard(path: path, tokenizerSHA256: tokenizer.sha256)
    var tokens = [Int32](repeating: 0, count: shard.count)
    tokens.withUnsafeMutableBufferPointer { shard.copy(from: 0, count: shard.count, into: $0.baseAddress!) }
    return tokens
}

/// A shard, or a text file tokenized like `data prepare` does (all of it).
func loadTokens(_ path: String, tokenizer: SentencePieceTokenizer) throws -> [Int32] {
    if (try? TokenShard(path: path)) != nil { return try loadShard(path, tokenizer: tokenizer) }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tinylm-tokens-\(getpid())-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var preparer = CorpusPreparer(tokenizer: tokenizer)
    preparer.validationFraction = 0
    _ = try preparer.prepare(inputs: [path], directory: directory)
    return try loadShard(directory + "/train.bin", tokenizer: tokenizer)
}
