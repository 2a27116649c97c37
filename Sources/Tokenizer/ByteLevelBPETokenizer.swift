import Synchronization

/// A byte-level BPE tokenizer (GPT-2's scheme, as GGUF files with `tokenizer.ggml.model = gpt2`
/// carry it): text is split into words by the vocabulary's pre-tokenizer, each word's UTF-8
/// bytes become the byte alphabet's symbols, and merges apply lowest rank first (leftmost on
/// ties) until none applies. Special tokens (control and user-defined) are matched as whole
/// tokens where they occur in text, longest first, except in `encode(plainText:)`.
public final class ByteLevelBPETokenizer: TextTokenizer, @unchecked Sendable {
    public let source: String
    /// Token spellings in the byte alphabet (`Ġ` for a space byte, …).
    public let tokens: [String]
    public let preTokenizer: PreTokenizer
    public let bosID: Int32, eosID: Int32, unknownID: Int32
    public var vocabularySize: Int { tokens.count }
    /// Control and user-defined tokens, matched whole in text.
    public let userDefinedSpellings: [String]
    /// Whether a word that is itself a token skips the merges (Llama 3's vocabularies).
    public let ignoreMerges: Bool

    private let ids: [String: Int32]
    /// (left id << 32 | right id) → (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// The token of each byte.
    private let byteTokens: [Int32]
    /// The bytes each token decodes to.
    private let tokenBytes: [[UInt8]]
    /// Special tokens by their first scalar, longest first.
    private let specials: [Unicode.Scalar: [(scalars: [Unicode.Scalar], id: Int32)]]
    private let cache = Mutex<[String: [Int32]]>([:])

    /// GPT-2's map from bytes to printable characters: the printable Latin-1 bytes stand for
    /// themselves, the others for 256, 257, … in byte order.
    public static let byteAlphabet: [Unicode.Scalar] = {
        var map = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            map[b] = Unicode.Scalar(printable ? UInt32(b) : { defer { next += 1 }; return next }())!
        }
        return map
    }()

    /// Builds the tokenizer from a vocabulary (`tokens`, with ggml token types: 3 control,
    /// 4 user-defined) and merges (`"left right"`, highest priority first).
    public init(tokens: [String], types: [Int32]?, merges mergeList: [String], preTokenizer: PreTokenizer,
                bosID: Int32, eosID: Int32, unknownID: Int32 = -1, ignoreMerges: Bool = false, source: String) throws {
        guard !tokens.isEmpty, tokens.count < Int(Int32.max) else { throw TokenizerError.corruptModel(path: source, reason: "the vocabulary is empty") }
        if let types, types.count != tokens.count {
            throw TokenizerError.corruptModel(path: source, reason: "\(types.count) token types for \(tokens.count) tokens")
        }
        self.source = source
        self.tokens = tokens
        self.preTokenizer = preTokenizer
        self.ignoreMerges = ignoreMerges
        func valid(_ id: Int32) -> Int32 { id >= 0 && Int(id) < tokens.count ? id : -1 }
        self.bosID = valid(bosID)
        self.eosID = valid(eosID)
        self.unknownID = valid(unknownID)
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        self.ids = ids
        let alphabet = ByteLevelBPETokenizer.byteAlphabet
        var inverse: [UInt32: UInt8] = [:]
        for (b, s) in alphabet.enumerated() { inverse[s.value] = UInt8(b) }
        byteTokens = alphabet.map { ids[String(Character($0))] ?? -1 }
        var specialSpellings: [String] = []
        var bytes: [[UInt8]] = []
        bytes.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            let type = types?[i] ?? 1
            if type == 3 || type == 4 {
                specialSpellings.append(t)
                bytes.append(Array(t.utf8))
            } else {
                // Byte-alphabet characters back to bytes; anything else as its UTF-8.
                var out: [UInt8] = []
                for s in t.unicodeScalars {
                    if let b = inverse[s.value] { out.append(b) } else { out += Array(String(s).utf8) }
                }
                bytes.append(out)
            }
        }
        tokenBytes = bytes
        userDefinedSpellings = specialSpellings
        var byFirst: [Unicode.Scalar: [(scalars: [Unicode.Scalar], id: Int32)]] = [:]
        for spelling in specialSpellings where !spelling.isEmpty {
            let scalars = Array(spelling.unicodeScalars)
            byFirst[scalars[0], default: []].append((scalars, ids[spelling]!))
        }
        specials = byFirst.mapValues { $0.sorted { $0.scalars.count > $1.scalars.count } }
        var table: [UInt64: (rank: Int32, merged: Int32)] = [:]
        table.reserveCapacity(mergeList.count)
        for (rank, merge) in mergeList.enumerated() {
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = ids[String(parts[0])], let b = ids[String(parts[1])],
                  let m = ids[String(parts[0]) + String(parts[1])] else {
                throw TokenizerError.corruptModel(path: source, reason: "merge \(rank) '\(merge)' does not join two tokens of the vocabulary into a third")
            }
            let key = UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))
            if table[key] == nil { table[key] = (Int32(rank), m) }
        }
        merges = table
    }

    // MARK: Encoding

    public func encode(_ text: String) throws -> [Int32] { encode(text, specialTokens: true) }
    public func encode(continuing text: String) throws -> [Int32] { encode(text, specialTokens: true) }
    public func encode(plainText text: String) throws -> [Int32] { encode(text, specialTokens: false) }

    /// The ids of `text`; special tokens are matched in it when `specialTokens`.
    public func encode(_ text: String, specialTokens: Bool) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count / 3 + 1)
        var start = 0, i = 0
        if specialTokens && !specials.isEmpty {
            while i < scalars.count {
                if let candidates = specials[scalars[i]],
                   let match = candidates.first(where: { c in
                       i + c.scalars.count <= scalars.count && scalars[i..<(i + c.scalars.count)].elementsEqual(c.scalars)
                   }) {
                    if start < i { encodeSegment(scalars, start..<i, into: &ids) }
                    ids.append(match.id)
                    i += match.scalars.count
                    start = i
                } else {
                    i += 1
                }
            }
        }
        if start < scalars.count { encodeSegment(scalars, start..<scalars.count, into: &ids) }
        return ids
    }

    private func encodeSegment(_ scalars: [Unicode.Scalar], _ range: Range<Int>, into ids: inout [Int32]) {
        let segment = Array(scalars[range])
        for word in preTokenizer.split(segment) {
            var key = String.UnicodeScalarView()
            key.append(contentsOf: segment[word])
            let text = String(key)
            if let cached = cache.withLock({ $0[text] }) {
                ids += cached
                continue
            }
            let encoded = bpe(Array(text.utf8), text: text)
            cache.withLock { c in
                if c.count > 100_000 { c.removeAll(keepingCapacity: true) }
                c[text] = encoded
            }
            ids += encoded
        }
    }

    /// Merges the bytes of one word: a heap of candidate pairs by (rank, position), over a linked
    /// list of symbols, so a long word costs n log n.
    private func bpe(_ bytes: [UInt8], text: String) -> [Int32] {
        if ignoreMerges, let whole = ids[String(bytes.map { Character(ByteLevelBPETokenizer.byteAlphabet[Int($0)]) })] {
            return [whole]
        }
        var symbols = bytes.map { byteTokens[Int($0)] >= 0 ? byteTokens[Int($0)] : unknownID }
        let n = symbols.count
        if n < 2 { return symbols }
        var next = Array(1...n), previous = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = PairHeap()
        func push(_ left: Int) {
            let right = next[left]
            guard right < n, let m = merges[UInt64(UInt32(symbols[left])) << 32 | UInt64(UInt32(symbols[right]))] else { return }
            heap.push((m.rank, Int32(left), m.merged, symbols[left], symbols[right]))
        }
        for i in 0..<(n - 1) { push(i) }
        while let (_, l, merged, a, b) = heap.pop() {
            let left = Int(l)
            guard alive[left], next[left] < n else { continue }
            let right = next[left]
            // A stale entry: one side has merged since it was pushed.
            guard symbols[left] == a, symbols[right] == b else { continue }
            symbols[left] = merged
            alive[right] = false
            next[left] = next[right]
            if next[right] < n { previous[next[right]] = left }
            if previous[left] >= 0 { push(previous[left]) }
            push(left)
        }
        var out: [Int32] = []
        var i = 0
        while i < n { out.append(symbols[i]); i = next[i] }
        return out
    }

    // MARK: Decoding and look-ups

    public func decode(_ ids: [Int32]) throws -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0 && Int(id) < tokens.count else { throw TokenizerError.idOutOfRange(id: Int(id), vocabularySize: tokens.count) }
            bytes += tokenBytes[Int(id)]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes of `ids` (a stream decoder keeps an unfinished UTF-8 sequence for later).
    public func bytes(of ids: [Int32]) -> [UInt8] {
        ids.flatMap { $0 >= 0 && Int($0) < tokens.count ? tokenBytes[Int($0)] : [] }
    }

    public func id(for piece: String) -> Int32? { ids[piece] }

    public func piece(for id: Int32) throws -> String {
        guard id >= 0 && Int(id) < tokens.count else { throw TokenizerError.idOutOfRange(id: Int(id), vocabularySize: tokens.count) }
        return tokens[Int(id)]
    }
}

/// A binary min-heap of merge candidates ordered by (rank, left position).
struct PairHeap {
    typealias Entry = (rank: Int32, left: Int32, merged: Int32, a: Int32, b: Int32)
    private var items: [Entry] = []

    @inline(__always) private static func less(_ x: Entry, _ y: Entry) -> Bool {
        x.rank < y.rank || (x.rank == y.rank && x.left < y.left)
    }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard PairHeap.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < items.count && PairHeap.less(items[l], items[smallest]) { smallest = l }
                if r < items.count && PairHeap.less(items[r], items[smallest]) { smallest = r }
                if smallest == i { break }
                items.swapAt(i, smallest)
                i = smallest
            }
        }
        return top
    }
}
