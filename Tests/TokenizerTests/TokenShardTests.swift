import Foundation
import Support
import Testing
import Tokenizer

@Suite("token shards")
struct TokenShardTests {
    @Test("prepare splits documents, ends each with EOS, and round-trips through the shards")
    func prepareRoundTrip() throws {
        let (tokenizer, _) = try trainSmallTokenizer()
        let directory = temporaryDirectory()
        // Three stories in the TinyStories layout: paragraphs separated by blank lines,
        // stories by a single newline.
        let stories = [
            "Tom saw a red ball.\n\nHe liked the ball.",
            "Lily ran to the park.",
            "The cat ate three apples.\n\nIt was happy.\n\nThe end.",
        ]
        let input = directory + "/stories.txt"
        try stories.joined(separator: "\n").appending("\n").write(toFile: input, atomically: true, encoding: .utf8)
        var preparer = CorpusPreparer(tokenizer: tokenizer)
        preparer.validationFraction = 1.0 / 3.0
        let summary = try preparer.prepare(inputs: [input], directory: directory + "/data")
        #expect(summary.trainDocuments == 2 && summary.validationDocuments == 1)
        let train = try TokenShard(path: directory + "/data/train.bin", tokenizerSHA256: tokenizer.sha256)
        let validation = try TokenShard(path: directory + "/data/val.bin", tokenizerSHA256: tokenizer.sha256)
        #expect(train.bytesPerToken == 2)
        var decoded: [String] = []
        for shard in [train, validation] {
            var ids = [Int32](repeating: 0, count: shard.count)
            ids.withUnsafeMutableBufferPointer { shard.copy(from: 0, count: shard.count, into: $0.baseAddress!) }
            #expect(ids.last == tokenizer.eosID)
            for document in ids.split(separator: tokenizer.eosID) { decoded.append(try tokenizer.decode(Array(document))) }
        }
        #expect(Set(decoded) == Set(stories), "every story comes back whole, once")
        #expect(train.count + validation.count == summary.trainTokens + summary.validationTokens)
    }

    @Test("a shard made by another tokenizer, a truncated shard and a foreign file are refused")
    func refusals() throws {
        let directory = temporaryDirectory()
        let writer = TokenShardWriter(path: directory + "/s.bin", vocabularySize: 70_000, tokenizerSHA256: String(repeating: "ab", count: 32))
        writer.append(document: [1, 69_999, 5])
        try writer.finish()
        let shard = try TokenShard(path: directory + "/s.bin")
        #expect(shard.bytesPerToken == 4 && shard.count == 3 && shard[1] == 69_999)
        #expect(throws: TokenShard.Error.tokenizerMismatch(path: directory + "/s.bin", shard: String(repeating: "ab", count: 32), tokenizer: "cd")) {
            try TokenShard(path: directory + "/s.bin", tokenizerSHA256: "cd")
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/s.bin"))
        try bytes.dropLast(2).write(to: URL(fileURLWithPath: directory + "/t.bin"))
        #expect(throws: TokenShard.Error.self) { try TokenShard(path: directory + "/t.bin") }
        try Data("not a shard at all".utf8).write(to: URL(fileURLWithPath: directory + "/u.bin"))
        #expect(throws: TokenShard.Error.self) { try TokenShard(path: directory + "/u.bin") }
    }

    @Test("invalid UTF-8 in a corpus names the file and line")
    func invalidUTF8() throws {
        let (tokenizer, _) = try trainSmallTokenizer()
        let directory = temporaryDirectory()
        let path = directory + "/bad.txt"
        try (Data("fine\nalso fine\n".utf8) + Data([0x66, 0xC3, 0x28, 0x0A])).write(to: URL(fileURLWithPath: path))
        #expect(throws: TokenizerError.invalidUTF8(source: path, line: 3)) {
            try CorpusPreparer(tokenizer: tokenizer).prepare(inputs: [path], directory: directory + "/out")
        }
    }

    @Test("SHA-256 matches the standard test vectors")
    func sha256() {
        #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: []) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(of: [UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

@Suite("text input")
struct TextLinesTests {
    @Test("a file reads back as its lines; a bad byte names its line")
    func lines() throws {
        let directory = temporaryDirectory()
        let path = directory + "/lines.txt"
        let lines = ["first", "", "dritte Zeile ü", "  spaced  ", "last"]
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: path)
        #expect(try TextLines.read(path) == lines)
        try AtomicFile.write(Data("no final newline".utf8), to: path)
        #expect(try TextLines.read(path) == ["no final newline"])
        #expect(throws: TokenizerError.invalidUTF8(source: "x", line: 2)) {
            try TextLines.split(Array("ok\n".utf8) + [0xFF, 0x0A], source: "x")
        }
    }
}
