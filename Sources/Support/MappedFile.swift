#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Pages load on first touch, so opening a large
/// checkpoint or token shard costs nothing until it is read.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// The file's bytes; empty for an empty file. Valid only while this object lives: use
    /// `withBytes` or `data()` from outside, where Swift may release the object after its last
    /// use (the pointer would then outlive the mapping).
    public let bytes: UnsafeRawBufferPointer

    /// The size of the file in bytes.
    public var count: Int { bytes.count }

    /// Runs `body` with the mapped bytes, keeping the mapping alive meanwhile.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(bytes) }
    }

    /// A copy of the file's bytes.
    public func data() -> [UInt8] {
        withBytes { Array($0) }
    }

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            if errno == ENOENT { throw FileError.notFound(path: path) }
            throw FileError.unreadable(path: path, reason: systemError())
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FileError.unreadable(path: path, reason: systemError())
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FileError.unreadable(path: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw FileError.unreadable(path: path, reason: systemError())
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    /// Drops the pages of `range` from this process's memory (they are read from the file again
    /// if touched): a loader that copies a tensor out releases its source, so loading peaks at
    /// the copies' size, not twice it.
    public func release(_ range: Range<Int>) {
        guard let base = bytes.baseAddress, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page, end = min(bytes.count, range.upperBound) / page * page
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }
}
