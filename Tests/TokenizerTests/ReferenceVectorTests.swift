import Foundation
import Testing
import Tokenizer

/// Real SentencePiece models against encodings made by Python sentencepiece 0.2.3.
@Suite("reference vectors from ../shared/data/tokenizers")
struct ReferenceVectorTests {
    struct Vector: Decodable {
        var text: String
        var ids: [Int32]
        var pieces: [String]
        var decoded: String
    }

    @Test("every vector encodes to its ids and pieces and decodes to its text",
          .enabled(if: sharedData != nil, "../shared/data is absent"), arguments: ["llama2", "spm-test-unigram"])
    func vectors(_ name: String) throws {
        let shared = try #require(sharedData)
        let tokenizer = try SentencePieceTokenizer(contentsOf: "\(shared)/tokenizers/\(name).model")
        let lines = try String(contentsOfFile: "\(shared)/tokenizers/\(name).vectors.jsonl", encoding: .utf8)
            .split(separator: "\n").dropFirst()
        #expect(lines.count > 200)
        for line in lines {
            let vector = try JSONDecoder().decode(Vector.self, from: Data(line.utf8))
            let ids = try tokenizer.encode(vector.text)
            #expect(ids == vector.ids, "ids of \(vector.text.debugDescription)")
            #expect(try tokenizer.encodePieces(vector.text) == vector.pieces, "pieces of \(vector.text.debugDescription)")
            #expect(try tokenizer.decode(vector.ids) == vector.decoded, "decoding of \(vector.text.debugDescription)")
            // Unknown characters keep their surface text as the piece, so only known pieces map back.
            for (id, piece) in zip(vector.ids, vector.pieces) where id != tokenizer.unkID {
                #expect(try tokenizer.piece(for: id) == piece)
                #expect(tokenizer.id(for: piece) == id)
            }
        }
        // Batch encoding on the pool gives the same ids in the same order.
        let texts = try lines.map { try JSONDecoder().decode(Vector.self, from: Data($0.utf8)).text }
        let batch = try tokenizer.encode(lines: texts)
        #expect(try batch == texts.map { try tokenizer.encode($0) })
    }

    @Test("the T5 model loads, reports its specials and round-trips", .enabled(if: sharedData != nil, "../shared/data is absent"))
    func t5() throws {
        let shared = try #require(sharedData)
        let tokenizer = try SentencePieceTokenizer(contentsOf: "\(shared)/tokenizers/t5.model")
        #expect(tokenizer.vocabularySize == 32000)
        #expect(tokenizer.proto.modelType == .unigram)
        #expect(tokenizer.eosID == 1)
        #expect(tokenizer.bosID == -1)
        let text = "The quick brown fox jumps over the lazy dog. Numbers 12345 and symbols (a+b)=c!"
        let ids = try tokenizer.encode(text, addBOS: true, addEOS: true)
        #expect(ids.last == 1, "EOS appended; no BOS since T5 defines none")
        #expect(try tokenizer.decode(ids) == text)
    }
}
