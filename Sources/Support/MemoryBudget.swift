import Foundation

/// Sizes that would not fit: computed with overflow checks and compared with the memory the
/// machine has, before anything is allocated.
public enum SizeError: Error, CustomStringConvertible, Equatable {
    /// The size does not fit in an `Int`.
    case overflow(what: String)
    /// It fits, but the machine does not have the memory.
    case tooLarge(what: String, bytes: Int, available: Int)

    public var description: String {
        switch self {
        case .overflow(let what):
            "\(what) would need more memory than can be counted (the sizes multiply past 2^63)"
        case .tooLarge(let what, let bytes, let available):
            "\(what) would need \(MemoryBudget.format(bytes)), more than the \(MemoryBudget.format(available)) this machine has available"
        }
    }
}

/// Overflow-checked arithmetic for sizes; an overflow throws `SizeError.overflow` naming `what`.
public struct CheckedSize: Sendable {
    public let what: String

    public init(what: String) { self.what = what }

    /// The product of `factors` (each must be ≥ 0).
    public func product(_ factors: Int...) throws -> Int {
        var result = 1
        for f in factors {
            guard f >= 0 else { throw SizeError.overflow(what: what) }
            let (p, overflow) = result.multipliedReportingOverflow(by: f)
            if overflow { throw SizeError.overflow(what: what) }
            result = p
        }
        return result
    }

    /// The sum of `terms` (each must be ≥ 0).
    public func sum(_ terms: [Int]) throws -> Int {
        var result = 0
        for t in terms {
            guard t >= 0 else { throw SizeError.overflow(what: what) }
            let (s, overflow) = result.addingReportingOverflow(t)
            if overflow { throw SizeError.overflow(what: what) }
            result = s
        }
        return result
    }
}

/// The memory available to allocate, and the check that a planned allocation fits in it.
public enum MemoryBudget {
    /// Bytes the system reports as available (`MemAvailable` on Linux, physical memory elsewhere);
    /// `TINYLM_MEMORY_LIMIT` (bytes) overrides it, for tests.
    public static var availableBytes: Int {
        if let text = ProcessInfo.processInfo.environment["TINYLM_MEMORY_LIMIT"], let limit = Int(text), limit > 0 {
            return limit
        }
        #if os(Linux)
        if let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Int(line.split(separator: " ").dropFirst().first ?? "") {
            return kb * 1024
        }
        #endif
        return Int(clamping: ProcessInfo.processInfo.physicalMemory)
    }

    /// Throws `SizeError.tooLarge` when `bytes` exceed the available memory.
    public static func check(bytes: Int, what: String) throws {
        let available = availableBytes
        if bytes > available { throw SizeError.tooLarge(what: what, bytes: bytes, available: available) }
    }

    /// Throws when `floats` 4-byte values would not fit (or their byte count overflows).
    public static func check(floats: Int, what: String) throws {
        try check(bytes: try CheckedSize(what: what).product(floats, 4), what: what)
    }

    /// `bytes` as a short human figure (KB, MB, GB, TB: powers of 1000).
    public static func format(_ bytes: Int) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"]
        var value = Double(bytes), unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", value, units[unit])
    }
}
