import Foundation
import Kernels
import Support
import Testing
import Tokenizer

@Suite("training, round trips and errors")
struct TokenizerTests {
    @Test("training is deterministic, declares the chat markers as single tokens and writes .model and .vocab")
    func training() throws {
        let (tokenizer, data) = try trainSmallTokenizer()
        let (_, again) = try trainSmallTokenizer()
        #expect(data == again, "same corpus, options and seed give the same model bytes")
        #expect(tokenizer.vocabularySize == 600)
        for marker in TokenizerTrainingOptions.chatMarkers {
            let ids = try tokenizer.encode("x\(marker)y")
            let id = try #require(tokenizer.id(for: marker))
            #expect(ids.contains(id), "\(marker) is one token")
            #expect(tokenizer.type(of: id) == .userDefined)
        }
        #expect(Set(tokenizer.userDefinedIDs.map { try! tokenizer.piece(for: $0) }) == Set(TokenizerTrainingOptions.chatMarkers))
        #expect(tokenizer.byteIDs.count == 256)

        let directory = temporaryDirectory()
        let corpus = directory + "/c.txt"
        try generatedCorpus(lines: 500, seed: 3).write(toFile: corpus, atomically: true, encoding: .utf8)
        var options = TokenizerTrainingOptions()
        options.vocabularySize = 400
        let written = try SentencePieceTrainer.train(inputs: [corpus], options: options, output: directory + "/t.model")
        let loaded = try SentencePieceTokenizer(contentsOf: directory + "/t.model")
        #expect(loaded.sha256 == written.sha256)
        let vocab = try String(contentsOfFile: directory + "/t.vocab", encoding: .utf8).split(separator: "\n")
        #expect(vocab.count == 400)
        #expect(vocab[0].hasPrefix("<unk>\t"))
    }

    /// Random strings from every awkward corner of Unicode.
    static func randomText(_ rng: inout SplitMix64) -> String {
        let pools: [[Unicode.Scalar]] = [
            Array("abcdefghij ABC xyz 0123456789.,!?'\"".unicodeScalars),
            Array("日本語中文한국어".unicodeScalars),
            ["😀", "🚀", "👍", "🏽", "\u{200D}", "🇫", "🇷"],
            ["e", "\u{301}", "a", "\u{308}", "o", "\u{327}"], // combining marks
            [" ", " ", "  ", "\t", "\n", "\u{A0}", "\u{3000}"].flatMap { $0.unicodeScalars },
            ["\u{1}", "\u{7}", "\u{1B}", "\u{7F}", "\u{FEFF}"],
        ]
        var scalars = String.UnicodeScalarView()
        let length = Int(rng.next() % 40)
        for _ in 0..<length {
            let pool = pools[Int(rng.next() % UInt64(pools.count))]
            scalars.append(pool[Int(rng.next() % UInt64(pool.count))])
        }
        return String(scalars)
    }

    @Test("decode(encode(x)) == x with identity normalization and byte fallback, on random Unicode")
    func roundTripIdentity() throws {
        let (tokenizer, _) = try trainSmallTokenizer()
        var rng = SplitMix64(seed: 99)
        for _ in 0..<2000 {
            let text = Self.randomText(&rng)
            #expect(try tokenizer.decode(tokenizer.encode(text)) == text, "\(text.debugDescription)")
        }
    }

    @Test("each token's bytes, concatenated, are the text it decodes to (byte pieces as their byte, markers as their text)")
    func tokenBytes() throws {
        let (tokenizer, _) = try trainSmallTokenizer()
        let marker = try #require(tokenizer.id(for: "<|im_start|>"))
        var rng = SplitMix64(seed: 12)
        for _ in 0..<500 {
            let text = Self.randomText(&rng)
            let ids = [marker] + (try tokenizer.encode(continuing: text))
            // Token by token, as a decoder sees them.
            let bytes = ids.flatMap { tokenizer.bytes(of: [$0]) }
            #expect(bytes == Array(("<|im_start|>" + text).utf8), "\(text.debugDescription)")
        }
        #expect(tokenizer.bytes(of: [-1, Int32(tokenizer.vocabularySize)]).isEmpty)
    }

    @Test("mid-text encoding drops only the dummy prefix: markers plus pieces decode to the text exactly")
    func continuingEncoding() throws {
        let (tokenizer, _) = try trainSmallTokenizer()
        let marker = try #require(tokenizer.id(for: "<|im_start|>"))
        var rng = SplitMix64(seed: 4)
        for _ in 0..<500 {
            let first = Self.randomText(&rng), second = Self.randomText(&rng)
            let ids = [marker] + (try tokenizer.encode(continuing: first)) + [marker] + (try tokenizer.encode(continuing: second))
            #expect(try tokenizer.decode(ids) == "<|im_start|>" + first + "<|im_start|>" + second, "\(first.debugDescription) \(second.debugDescription)")
        }
        // In mid-text position a word has no leading-space piece.
        let plain = try tokenizer.encodePieces("Tom")
        #expect(plain.first?.hasPrefix("▁") == true)
        let continued = try tokenizer.encode(continuing: "Tom").map { try tokenizer.piece(for: $0) }
        #expect(continued.first?.hasPrefix("▁") == false)
    }

    @Test("with NFKC normalization, decode(encode(x)) is x normalized: a fixed point of the round trip")
    func roundTripNormalized() throws {
        let (tokenizer, _) = try trainSmallTokenizer(normalization: "nmt_nfkc", removeExtraWhitespaces: true)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<1000 {
            let text = Self.randomText(&rng)
            let normalized = try tokenizer.decode(tokenizer.encode(text))
            #expect(try tokenizer.decode(tokenizer.encode(normalized)) == normalized, "\(text.debugDescription)")
            // ASCII letters and digits survive normalization unchanged.
            let plain = String(text.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) })
            if !plain.isEmpty { #expect(try tokenizer.decode(tokenizer.encode(plain)) == plain) }
        }
    }

    @Test("other model types train and round-trip", arguments: [ModelProto.ModelType.unigram, .char, .word])
    func modelTypes(_ type: ModelProto.ModelType) throws {
        let (tokenizer, _) = try trainSmallTokenizer(vocabulary: type == .char ? 400 : 700, modelType: type)
        #expect(tokenizer.proto.modelType == type)
        let text = "Tom saw a red ball"
        #expect(try tokenizer.decode(tokenizer.encode(text)) == text)
    }

    @Test("bad models, corpora and ids give typed errors")
    func errors() throws {
        let directory = temporaryDirectory()
        #expect(throws: FileError.notFound(path: directory + "/missing.model")) {
            try SentencePieceTokenizer(contentsOf: directory + "/missing.model")
        }
        _ = FileManager.default.createFile(atPath: directory + "/empty.model", contents: Data())
        #expect(throws: TokenizerError.emptyModel(path: directory + "/empty.model")) {
            try SentencePieceTokenizer(contentsOf: directory + "/empty.model")
        }
        let (tokenizer, data) = try trainSmallTokenizer()
        for corrupt in [data.prefix(data.count / 2), Data("this is not a model".utf8), Data([0xFF, 0xFF, 0xFF])] {
            do {
                _ = try SentencePieceTokenizer(modelData: corrupt, source: "bad.model")
                Issue.record("a corrupt model loaded")
            } catch let error as TokenizerError {
                guard case .corruptModel(let path, _) = error else { Issue.record("\(error)"); continue }
                #expect(path == "bad.model")
            }
        }
        #expect(throws: TokenizerError.idOutOfRange(id: 600, vocabularySize: 600)) { try tokenizer.decode([5, 600]) }
        #expect(throws: TokenizerError.idOutOfRange(id: -1, vocabularySize: 600)) { try tokenizer.piece(for: -1) }
        #expect(tokenizer.id(for: "no-such-piece") == nil)

        let blank = directory + "/blank.txt"
        try " \n\n \t\n".write(toFile: blank, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.emptyCorpus(paths: [blank])) {
            try SentencePieceTrainer.train(inputs: [blank], options: TokenizerTrainingOptions())
        }
        #expect(throws: FileError.notFound(path: directory + "/none.txt")) {
            try SentencePieceTrainer.train(inputs: [directory + "/none.txt"], options: TokenizerTrainingOptions())
        }
        let small = directory + "/small.txt"
        try "hello world\nhello there\n".write(toFile: small, atomically: true, encoding: .utf8)
        var options = TokenizerTrainingOptions()
        options.vocabularySize = 5000
        do {
            _ = try SentencePieceTrainer.train(inputs: [small], options: options)
            Issue.record("a 5000-piece vocabulary trained on two lines")
        } catch let error as TokenizerError {
            guard case .vocabularyTooLarge(5000, _) = error else { Issue.record("\(error)"); return }
        }
    }
}
