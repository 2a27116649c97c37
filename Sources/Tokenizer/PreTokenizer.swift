/// The split of text into words before byte-level BPE, by the rules the vocabulary was trained
/// with (`tokenizer.ggml.pre` in a GGUF file). Written out by hand over Unicode scalars instead
/// of with a regular-expression engine: the rules are fixed, and this is linear and fast.
///
/// `gpt2` is GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
/// `smollm` (and StarCoder-family vocabularies) first split every digit on its own, then apply it;
/// `llama3` is Llama 3's pattern (case-insensitive contractions, letter runs that may start with
/// one non-letter, numbers in runs of up to three digits, newline runs).
public enum PreTokenizer: String, Sendable, CaseIterable {
    case gpt2, digitsThenGPT2 = "smollm", llama3

    /// The rules for a GGUF `tokenizer.ggml.pre` value.
    public init?(ggufName: String) {
        switch ggufName {
        case "gpt2", "default", "mpt", "olmo", "jais", "phi-2", "roberta-bpe": self = .gpt2
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b": self = .digitsThenGPT2
        case "llama-bpe", "llama3", "falcon3", "pixtral": self = .llama3
        default: return nil
        }
    }

    /// The words of `text`, as ranges of its scalars.
    public func split(_ text: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case .gpt2: return PreTokenizer.gpt2Words(text, 0..<text.count)
        case .digitsThenGPT2:
            var words: [Range<Int>] = []
            var start = 0
            for i in 0..<text.count where PreTokenizer.isNumber(text[i]) {
                if start < i { words += PreTokenizer.gpt2Words(text, start..<i) }
                words.append(i..<(i + 1))
                start = i + 1
            }
            if start < text.count { words += PreTokenizer.gpt2Words(text, start..<text.count) }
            return words
        case .llama3: return PreTokenizer.llama3Words(text)
        }
    }

    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return (s.value | 0x20) >= 0x61 && (s.value | 0x20) <= 0x7A }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s.value >= 0x30 && s.value <= 0x39 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    @inline(__always) static func isSpace(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s.value == 0x20 || (s.value >= 0x09 && s.value <= 0x0D) }
        return s.properties.isWhitespace
    }

    /// GPT-2's pattern over `t[range]`.
    static func gpt2Words(_ t: [Unicode.Scalar], _ range: Range<Int>) -> [Range<Int>] {
        var words: [Range<Int>] = []
        var i = range.lowerBound
        let end = range.upperBound
        func run(from j: Int, while test: (Unicode.Scalar) -> Bool) -> Int {
            var k = j
            while k < end && test(t[k]) { k += 1 }
            return k
        }
        let other = { (s: Unicode.Scalar) in !isSpace(s) && !isLetter(s) && !isNumber(s) }
        while i < end {
            let c = t[i]
            // Contractions: 's 't 're 've 'm 'll 'd (case-sensitive, as GPT-2's).
            if c == "'" && i + 1 < end {
                let a = t[i + 1]
                if a == "s" || a == "t" || a == "m" || a == "d" { words.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < end {
                    let b = t[i + 2]
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { words.append(i..<(i + 3)); i += 3; continue }
                }
            }
            // An optional space, then a run of letters, numbers or other symbols.
            let j = c == " " ? i + 1 : i
            if j < end {
                let d = t[j]
                let test: ((Unicode.Scalar) -> Bool)? = isLetter(d) ? isLetter : isNumber(d) ? isNumber : other(d) ? other : nil
                if let test {
                    let k = run(from: j, while: test)
                    words.append(i..<k)
                    i = k
                    continue
                }
            }
            // Whitespace: a run not followed by a non-space; otherwise all but its last character
            // (which then starts the next word), or a single character.
            if isSpace(c) {
                let k = run(from: i, while: isSpace)
                if k == end || k - i == 1 {
                    words.append(i..<k); i = k
                } else {
                    words.append(i..<(k - 1)); i = k - 1
                }
                continue
            }
            words.append(i..<(i + 1))
            i += 1
        }
        return words
    }

    /// Llama 3's pattern: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    static func llama3Words(_ t: [Unicode.Scalar]) -> [Range<Int>] {
        var words: [Range<Int>] = []
        var i = 0
        let end = t.count
        func run(from j: Int, while test: (Unicode.Scalar) -> Bool) -> Int {
            var k = j
            while k < end && test(t[k]) { k += 1 }
            return k
        }
        let newline = { (s: Unicode.Scalar) in s == "\r" || s == "\n" }
        while i < end {
            let c = t[i]
            if c == "'" && i + 1 < end {
                let a = Character(t[i + 1]).lowercased()
                if ["s", "t", "m", "d"].contains(a) { words.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < end {
                    let pair = a + Character(t[i + 2]).lowercased()
                    if ["re", "ve", "ll"].contains(pair) { words.append(i..<(i + 3)); i += 3; continue }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if isLetter(c) { let k = run(from: i, while: isLetter); words.append(i..<k); i = k; continue }
            if !newline(c) && !isNumber(c) && i + 1 < end && isLetter(t[i + 1]) {
                let k = run(from: i + 1, while: isLetter); words.append(i..<k); i = k; continue
            }
            // \p{N}{1,3}
            if isNumber(c) { var k = i; while k < end && k < i + 3 && isNumber(t[k]) { k += 1 }; words.append(i..<k); i = k; continue }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let other = { (s: Unicode.Scalar) in !isSpace(s) && !isLetter(s) && !isNumber(s) }
            let j = c == " " && i + 1 < end && other(t[i + 1]) ? i + 1 : i
            if other(t[j]) {
                var k = run(from: j, while: other)
                k = run(from: k, while: newline)
                words.append(i..<k); i = k; continue
            }
            // \s*[\r\n]+ : whitespace up to and including the last newline of the run
            let spaces = run(from: i, while: isSpace)
            if let lastNewline = (i..<spaces).last(where: { newline(t[$0]) }) {
                words.append(i..<(lastNewline + 1)); i = lastNewline + 1; continue
            }
            // \s+(?!\S) | \s+
            if spaces == end || spaces - i == 1 { words.append(i..<spaces); i = spaces } else { words.append(i..<(spaces - 1)); i = spaces - 1 }
        }
        return words
    }
}
