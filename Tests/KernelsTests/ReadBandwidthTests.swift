import Kernels
import Testing

/// The bandwidth probe of `bench decode`: it must read every word once, whatever the split.
@Suite("read bandwidth probe")
struct ReadBandwidthTests {
    @Test("the probe's sum covers every word exactly once, on 1, 2 and 3 threads and sizes that do not split evenly",
          arguments: [64, 64 * 17, 64 * 1001, 1 << 20])
    func sumCoversEveryWord(_ bytes: Int) {
        let probe = ReadBandwidth(bytes: bytes)
        #expect(probe.bytes == bytes)
        let n = UInt64(bytes / 8)
        for threads in [1, 2, 3] {
            #expect(probe.sum(pool: ThreadPool(threadCount: threads)) == n * (n - 1) / 2, "\(threads) threads")
        }
    }

    @Test("sizes are whole 64-byte lines, at least one; the rate is a positive, finite number")
    func sizesAndRate() {
        #expect(ReadBandwidth(bytes: 0).bytes == 64)
        #expect(ReadBandwidth(bytes: 100).bytes == 64)
        let rate = ReadBandwidth(bytes: 1 << 20).gigabytesPerSecond(pool: ThreadPool(threadCount: 2), passes: 3)
        #expect(rate.isFinite && rate > 0)
    }
}
