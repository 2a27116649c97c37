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

    /// Removes temporary files that an interrupted write left in `directory` (`.NAME.tmp-XXXXXX`),
    /// returning their names. Call it when a run starts, before anything writes there.
    @discardableResult
    public static func removeStaleTemporaries(in directory: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        let stale = names.filter { name in
            guard name.hasPrefix("."), let range = name.range(of: ".tmp-", options: .backwards) else { return false }
            return name.distance(from: range.upperBound, to: name.endIndex) == 6
        }
        for name in stale { unlink(directory + "/" + name) }
        return stale
    }

    /// Creates the directory `path` (and its parents); a failure names the first part of the
    /// path that is in the way and why, in plain words.
    public static func createDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return }
            throw FileError.unwritable(path: path, reason: "a file of that name is in the way, not a directory")
        }
        // The nearest existing ancestor says what is wrong.
        var ancestor = PathNames.parent(of: path)
        while !ancestor.isEmpty && !FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
            ancestor = PathNames.parent(of: ancestor)
        }
        if ancestor.isEmpty { ancestor = "." ; _ = FileManager.default.fileExists(atPath: ".", isDirectory: &isDirectory) }
        if !isDirectory.boolValue {
            throw FileError.unwritable(path: path, reason: "\(ancestor) is a file, not a directory")
        }
        if access(ancestor, W_OK) != 0 {
            throw FileError.unwritable(path: path, reason: "permission denied: \(ancestor) is not writable")
        }
        guard mkdirAll(path) else { throw FileError.unwritable(path: path, reason: systemError()) }
    }

    private static func mkdirAll(_ path: String) -> Bool {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return true }
        guard errno == ENOENT else { return false }
        let parent = PathNames.parent(of: path)
        guard !parent.isEmpty, parent != path, mkdirAll(parent) else { return false }
        return mkdir(path, 0o755) == 0 || errno == EEXIST
    }

    /// Creates a temporary file beside `path`, lets `body` write it through its descriptor, then
    /// fsyncs and renames it over `path`. On any error the temporary file is removed and `path`
    /// is untouched.
    public static func write(to path: String, _ body: (Int32) throws -> Void) throws {
        let directory = PathNames.parent(of: path)
        let name = PathNames.lastComponent(of: path)
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
