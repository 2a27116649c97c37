import Foundation
import Kernels
import Testing
@testable import Tokenizer

@Suite("byte-level BPE")
struct ByteLevelBPETests {
    static let pools: [[Unicode.Scalar]] = [
        "abcXYZ", "0189", " \t\n\r\u{0B}\u{0C}\u{A0}\u{2003}\u{3000}\u{85}", "éßø", "жщ", "字ひ한", "٣١۲½", "😀👍🏽", "!\"#'-.,:;?@[]{}",
        "'s're've'll'd'm't", "\u{200D}\u{0301}\u{1}\u{7F}",
    ].map { Array($0.unicodeScalars) }

    static func randomText(_ rng: inout SplitMix64, length: Int) -> [Unicode.Scalar] {
        (0..<length).map { _ in
            let pool = pools[Int(rng.next() % UInt64(pools.count))]
            return pool[Int(rng.next() % UInt64(pool.count))]
        }
    }

    @Test("the GPT-2 split equals an ICU regular expression of the same pattern on random text")
    func gpt2Split() throws {
        let ws = "\\p{White_Space}"
        let regex = try NSRegularExpression(pattern: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\(ws)\\p{L}\\p{N}]+|[\(ws)]+(?![^\(ws)])|[\(ws)]+")
        var rng = SplitMix64(seed: 3)
        for _ in 0..<3000 {
            let scalars = Self.randomText(&rng, length: 1 + Int(rng.next() % 40))
            var text = String.UnicodeScalarView()
            text.append(contentsOf: scalars)
            let string = String(text)
            // Expected words as scalar ranges, from the regex's UTF-16 matches.
            let utf16 = Array(string.utf16)
            var offsets: [Int: Int] = [:]   // UTF-16 offset -> scalar index
            var u = 0
            for (i, s) in scalars.enumerated() { offsets[u] = i; u += s.utf16.count }
            offsets[u] = scalars.count
            let expected = regex.matches(in: string, range: NSRange(location: 0, length: utf16.count)).map {
                offsets[$0.range.location]!..<offsets[$0.range.location + $0.range.length]!
            }
            #expect(PreTokenizer.gpt2.split(scalars) == expected, "\(string.debugDescription)")
        }
    }

    /// A vocabulary of the byte alphabet plus merges drawn at random from pairs seen in text.
    static func vocabulary(seed: UInt64) -> (tokens: [String], merges: [String]) {
        var tokens = ByteLevelBPETokenizer.byteAlphabet.map { String(Character($0)) }
        var known = Set(tokens), merges: [String] = []
        var rng = SplitMix64(seed: seed)
        let sample = Array("the cat sat on the mat; hello hello world 123".utf8).map { String(Character(ByteLevelBPETokenizer.byteAlphabet[Int($0)])) }
        var pieces = sample
        for _ in 0..<40 {
            guard pieces.count > 1 else { break }
            let i = Int(rng.next() % UInt64(pieces.count - 1))
            let merged = pieces[i] + pieces[i + 1]
            if !merges.contains(pieces[i] + " " + pieces[i + 1]) { merges.append(pieces[i] + " " + pieces[i + 1]) }
            if !known.contains(merged) { tokens.append(merged); known.insert(merged) }
            pieces[i] = merged
            pieces.remove(at: i + 1)
        }
        return (tokens, merges)
    }

    /// BPE the slow way: merge the lowest-ranked adjacent pair, leftmost first, until none is left.
    static func naive(_ word: String, tokens: [String], merges: [String]) -> [Int32] {
        var symbols = Array(word.utf8).map { String(Character(ByteLevelBPETokenizer.byteAlphabet[Int($0)])) }
        let rank = Dictionary(merges.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        while symbols.count > 1 {
            var best: (Int, Int)?
            for i in 0..<(symbols.count - 1) {
                if let r = rank[symbols[i] + " " + symbols[i + 1]], best == nil || r < best!.0 { best = (r, i) }
            }
            guard let (_, i) = best else { break }
            symbols[i] += symbols[i + 1]
            symbols.remove(at: i + 1)
        }
        return symbols.map { Int32(tokens.firstIndex(of: $0)!) }
    }

    @Test("merges: the heap equals the slow reference; specials matched whole unless the text is plain; decode inverts encode")
    func encode() throws {
        for seed: UInt64 in [1, 2, 3] {
            var (tokens, merges) = Self.vocabulary(seed: seed)
            tokens += ["<|im_end|>", "<|im_end|>x"]
            let types = [Int32](repeating: 1, count: tokens.count - 2) + [3, 4]
            let t = try ByteLevelBPETokenizer(tokens: tokens, types: types, merges: merges, preTokenizer: .gpt2,
                                              bosID: -1, eosID: Int32(tokens.count - 2), source: "test")
            var rng = SplitMix64(seed: seed)
            for _ in 0..<500 {
                let words = ["the", " cat", " sat", "hello", " hello", " world", "123", " mat", "thethe", "e", " "]
                let text = (0..<(1 + Int(rng.next() % 6))).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined()
                let expected = PreTokenizer.gpt2.split(Array(text.unicodeScalars)).flatMap { r -> [Int32] in
                    var v = String.UnicodeScalarView()
                    v.append(contentsOf: Array(text.unicodeScalars)[r])
                    return Self.naive(String(v), tokens: tokens, merges: merges)
                }
                #expect(t.encode(text, specialTokens: true) == expected, "\(text)")
            }
            // Longest special first; none in plain text; decode(encode(s)) == s for any text.
            let end = Int32(tokens.count - 2), endX = Int32(tokens.count - 1)
            #expect(t.encode("a<|im_end|>xb", specialTokens: true).contains(endX))
            #expect(t.encode("a<|im_end|>b", specialTokens: true).contains(end))
            #expect(!t.encode("a<|im_end|>xb", specialTokens: false).contains { $0 == end || $0 == endX })
            for _ in 0..<500 {
                var v = String.UnicodeScalarView()
                v.append(contentsOf: Self.randomText(&rng, length: Int(rng.next() % 30)))
                let s = String(v)
                #expect(try t.decode(t.encode(s, specialTokens: true)) == s)
                #expect(try t.decode(t.encode(plainText: s)) == s)
            }
        }
    }
}
