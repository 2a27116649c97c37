#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation


/// Errors from reading and writing files, each naming the file.
public enum FileError: Error, CustomStringConvertible, Equatable {
    case notFound(path: String)
    case unreadable(path: String, reason: String)
    case unwritable(path: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let path): "\(path): no such file"
        case .unreadable(let path, let reason): "\(path): cannot read: \(reason)"
        case .unwritable(let path, let reason): "\(path): cannot write: \(reason)"
        }
    }
}

/// Writes files so that a reader (or a crash) never sees a partial file: the bytes go to a
/// temporary file in the same directory, which is flushed to disk and then renamed over the
/// target. `rename` within a directory is atomic on POSIX file systems.
public enum AtomicFile {
    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { fd in
            try data.withUnsafeBytes { raw in try writeAll(fd, raw, path: path) }
        }
    }

    /// Creates a temporary file beside `path`, lets `body` write it through its descriptor, then
    /// fsyncs and renames it over `path`. On any error the temporary file is removed and `path`
    /// is untouched.
    public static func write(to path: String, _ body: (Int32) throws -> Void) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        var template = Array(((directory.isEmpty ? "." : directory) + "/.\(name).tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw FileError.unwritable(path: path, reason: systemError())
        }
        let temporary = template.withUnsafeBufferPointer { String(validatingCString: $0.baseAddress!) } ?? path + ".tmp"
        var committed = false
        defer {
            if !committed { unlink(temporary) }
        }
        do {
            try body(fd)
            guard fsync(fd) == 0 else {
                throw FileError.unwritable(path: path, reason: systemError())
            }
            fchmod(fd, 0o644)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            throw FileError.unwritable(path: path, reason: systemError())
        }
        committed = true
        // Persist the rename itself.
        let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    /// Writes every byte of `raw` to `fd`, retrying short writes.
    public static func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < raw.count {
            let n = POSIX.write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError.unwritable(path: path, reason: systemError())
            }
            offset += n
        }
    }
}

/// The message for the current `errno`.
public func systemError() -> String {
    String(validatingCString: strerror(errno)) ?? "error \(errno)"
}
