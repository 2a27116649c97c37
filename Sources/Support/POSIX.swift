#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// System calls whose Swift module differs between Linux (Glibc) and macOS (Darwin), behind
/// one name, so that no other file needs a platform branch for them.
public enum POSIX {
    /// `write(2)`: bytes written, or -1 with `errno` set.
    @inline(__always)
    public static func write(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(descriptor, bytes, count)
        #else
        Darwin.write(descriptor, bytes, count)
        #endif
    }
}
