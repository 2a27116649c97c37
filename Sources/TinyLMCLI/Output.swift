#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Support

/// Buffered writes to standard output: one `fwrite` per 1 MiB instead of one per line.
struct StandardOutput {
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 20) }

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 20 { flush() }
    }

    mutating func write(_ byte: UInt8) { buffer.append(byte) }

    /// Appends the decimal digits of `value`.
    mutating func write(integer value: Int32) {
        var v = Int(value)
        if v < 0 { buffer.append(UInt8(ascii: "-")); v = -v }
        if v == 0 { buffer.append(UInt8(ascii: "0")); return }
        let start = buffer.count
        while v > 0 {
            buffer.append(UInt8(ascii: "0") + UInt8(v % 10))
            v /= 10
        }
        buffer[start...].reverse()
    }

    mutating func flush() {
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = POSIX.write(1, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    break // a closed pipe (e.g. `| head`): nothing more can be written
                }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Standard error, for progress lines and warnings.
func printError(_ text: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((text + terminator).utf8))
}

/// True when standard error is a terminal (progress lines may redraw in place).
var standardErrorIsTerminal: Bool { isatty(2) != 0 }

