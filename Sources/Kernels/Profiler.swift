#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Wall time per named phase of a computation (a training step's layers, say), off by default.
///
/// A phase is timed on the thread that starts it; phases run one after another there, and the
/// kernels inside a phase may use the whole pool. When the profiler is off, `measure` costs one
/// relaxed atomic load.
public enum Profiler {
    private static let enabled = Atomic<Bool>(false)
    private static let totals = Mutex<[(phase: String, nanoseconds: UInt64, calls: Int)]>([])

    /// Turns timing on or off; `reset()` clears what was gathered.
    public static var isEnabled: Bool {
        get { enabled.load(ordering: .relaxed) }
        set { enabled.store(newValue, ordering: .relaxed) }
    }

    /// Runs `body`, adding its wall time to `phase` when the profiler is on.
    @inline(__always) @discardableResult
    public static func measure<Result>(_ phase: StaticString, _ body: () throws -> Result) rethrows -> Result {
        guard isEnabled else { return try body() }
        let start = now()
        defer { record(phase, now() - start) }
        return try body()
    }

    /// Phases in the order they first ran, with their total time and call count.
    public static func report() -> [(phase: String, seconds: Double, calls: Int)] {
        totals.withLock { $0.map { ($0.phase, Double($0.nanoseconds) / 1e9, $0.calls) } }
    }

    /// Forgets every phase.
    public static func reset() {
        totals.withLock { $0.removeAll() }
    }

    private static func record(_ phase: StaticString, _ nanoseconds: UInt64) {
        let name = phase.description
        totals.withLock { list in
            if let index = list.firstIndex(where: { $0.phase == name }) {
                list[index].nanoseconds += nanoseconds
                list[index].calls += 1
            } else {
                list.append((name, nanoseconds, 1))
            }
        }
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
