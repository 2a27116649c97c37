import Dispatch

/// The machine's memory read bandwidth, measured by streaming a buffer far larger than the
/// last-level cache through every thread of a pool: what a memory-bound decode could read at best.
///
/// `tinylm bench decode` runs it between its decoding rounds, so the share of the bandwidth that
/// decoding reaches compares two figures of the same minutes (shared machines' bandwidth moves by
/// a fifth from one minute to the next). Each thread sums a contiguous range of 64-bit words with
/// vector additions; the sum is checked, so the reads cannot be optimized away.
public final class ReadBandwidth: @unchecked Sendable {
    /// Bytes streamed per pass.
    public let bytes: Int
    private let words: UnsafeMutablePointer<UInt64>
    private let count: Int

    /// A probe over `bytes` (rounded down to whole 64-byte lines, at least one), filled once.
    /// 256 MiB is 8× the 32 MiB of a large server L3 slice.
    public init(bytes: Int = 256 << 20) {
        count = max(8, bytes / 64 * 8)
        self.bytes = count * 8
        words = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 64).bindMemory(to: UInt64.self, capacity: count)
        for i in 0..<count { words[i] = UInt64(i) }
    }

    deinit { words.deallocate() }

    /// The sum of the buffer's words (wrapping), read on `pool`'s threads: `0 + 1 + … + (n − 1)`.
    public func sum(pool: ThreadPool) -> UInt64 {
        let threads = pool.threadCount, lines = count / 8
        var partial = [UInt64](repeating: 0, count: threads)
        partial.withUnsafeMutableBufferPointer { partial in
            // One contiguous range per thread: one stream each, as a decoding thread reads its rows.
            pool.parallelFor(threads) { task, _ in
                let first = lines * task / threads * 8, end = lines * (task + 1) / threads * 8
                var a = SIMD8<UInt64>(), b = SIMD8<UInt64>()
                var i = first
                while i + 16 <= end {
                    a &+= UnsafeRawPointer(words + i).load(as: SIMD8<UInt64>.self)
                    b &+= UnsafeRawPointer(words + i + 8).load(as: SIMD8<UInt64>.self)
                    i += 16
                }
                var total = (a &+ b).wrappedSum()
                while i < end { total &+= words[i]; i += 1 }
                partial[task] = total
            }
        }
        return partial.reduce(0, &+)
    }

    /// Gigabytes per second of the median of `passes` timed passes (after one untimed pass).
    public func gigabytesPerSecond(pool: ThreadPool, passes: Int = 5) -> Double {
        let n = UInt64(count), expected = n % 2 == 0 ? (n / 2) &* (n - 1) : n &* ((n - 1) / 2)
        precondition(sum(pool: pool) == expected, "the bandwidth probe read a wrong sum")
        var seconds: [Double] = []
        for _ in 0..<max(1, passes) {
            let start = DispatchTime.now().uptimeNanoseconds
            let s = sum(pool: pool)
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            precondition(s == expected, "the bandwidth probe read a wrong sum")
        }
        return Double(bytes) / seconds.sorted()[seconds.count / 2] / 1e9
    }
}
