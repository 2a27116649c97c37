import Support

/// Text input as lines, validated as UTF-8 with the failing line named.
public enum TextLines {
    /// The lines of the file at `path`. A final newline ends the last line; it does not start an
    /// empty one.
    public static func read(_ path: String) throws -> [String] {
        try split(MappedFile(path: path).data(), source: path)
    }

    /// The lines of `bytes`; `source` names the input in errors.
    public static func split(_ bytes: [UInt8], source: String) throws -> [String] {
        var lines: [String] = []
        var number = 0
        for raw in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            guard let line = String(validating: raw, as: UTF8.self) else {
                throw TokenizerError.invalidUTF8(source: source, line: number)
            }
            lines.append(line)
        }
        if bytes.last == 0x0A { lines.removeLast() }
        return lines
    }
}
