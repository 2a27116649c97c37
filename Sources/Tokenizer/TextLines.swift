import Foundation
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

/// Lines of a file or of standard input, read in chunks: memory stays within one batch of lines
/// and one chunk whatever the input's size (`< /dev/zero` included), and a line longer than
/// `maxLineBytes` is an error naming the source and the line, before it is buffered whole.
public struct LineReader {
    public let source: String
    public let maxLineBytes: Int
    private let handle: FileHandle
    private var pending: [UInt8] = []
    private var ended = false
    private var lineNumber = 0

    /// Reads `path`, or standard input when nil.
    public init(path: String?, maxLineBytes: Int = 1 << 20) throws {
        if let path {
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw FileManager.default.fileExists(atPath: path) ? FileError.unreadable(path: path, reason: "permission denied or not a file")
                                                                   : FileError.notFound(path: path)
            }
            self.handle = handle
        } else {
            handle = FileHandle.standardInput
        }
        source = path ?? "<stdin>"
        self.maxLineBytes = maxLineBytes
    }

    /// The next lines, up to `maxLines` of them or about `maxBytes` of text; nil at the end. A
    /// final newline ends the last line; it does not start an empty one.
    public mutating func nextBatch(maxLines: Int = 16_384, maxBytes: Int = 8 << 20) throws -> [String]? {
        var lines: [String] = []
        var bytes = 0
        while lines.count < maxLines && bytes < maxBytes {
            guard let line = try nextLine() else { break }
            bytes += line.utf8.count
            lines.append(line)
        }
        return lines.isEmpty && ended && pending.isEmpty ? nil : lines
    }

    private mutating func nextLine() throws -> String? {
        var searched = 0
        while true {
            if let newline = pending[searched...].firstIndex(of: 0x0A) {
                lineNumber += 1
                guard newline <= maxLineBytes else { throw TokenizerError.lineTooLong(source: source, line: lineNumber, limit: maxLineBytes) }
                let line = try decode(pending[..<newline])
                pending.removeFirst(newline + 1)
                return line
            }
            searched = pending.count
            if pending.count > maxLineBytes {
                throw TokenizerError.lineTooLong(source: source, line: lineNumber + 1, limit: maxLineBytes)
            }
            if ended {
                guard !pending.isEmpty else { return nil }
                lineNumber += 1
                let line = try decode(pending[...])
                pending.removeAll()
                return line
            }
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { ended = true } else { pending += chunk }
        }
    }

    private func decode(_ bytes: ArraySlice<UInt8>) throws -> String {
        guard let line = String(validating: bytes, as: UTF8.self) else {
            throw TokenizerError.invalidUTF8(source: source, line: lineNumber)
        }
        return line
    }
}
