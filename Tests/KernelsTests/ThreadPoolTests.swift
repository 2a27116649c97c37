import Kernels
import Synchronization
import Testing

@Suite("thread pool")
struct ThreadPoolTests {
    @Test("parallelFor runs every task exactly once, on valid worker ids", arguments: [1, 2, 3, 8])
    func coversEveryTask(_ threads: Int) {
        let pool = ThreadPool(threadCount: threads)
        for count in [0, 1, 2, 5, 1000] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
            hits.initialize(repeating: 0, count: max(count, 1))
            defer { hits.deallocate() }
            let badWorker = Atomic<Int>(0)
            for _ in 0..<20 {
                pool.parallelFor(count) { task, worker in
                    hits[task] += 1
                    if worker < 0 || worker >= threads { badWorker.add(1, ordering: .relaxed) }
                }
            }
            for i in 0..<count { #expect(hits[i] == 20, "task \(i) of \(count)") }
            #expect(badWorker.load(ordering: .relaxed) == 0)
        }
    }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        func add(_ n: Int, ordering: AtomicUpdateOrdering) { value.add(n, ordering: .relaxed) }
        func load(ordering: AtomicLoadOrdering) -> Int { value.load(ordering: .acquiring) }
    }

    @Test("nested and concurrent calls complete")
    func nestedAndConcurrent() async {
        let pool = ThreadPool(threadCount: 3)
        let total = Counter()
        pool.parallelFor(4) { _, _ in
            pool.parallelFor(5) { _, _ in total.add(1, ordering: .relaxed) }
        }
        #expect(total.load(ordering: .relaxed) == 20)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<50 { pool.parallelFor(7) { _, _ in total.add(1, ordering: .relaxed) } }
                }
            }
        }
        #expect(total.load(ordering: .relaxed) == 20 + 4 * 50 * 7)
    }

    @Test("parallelRanges partitions the range")
    func ranges() {
        let pool = ThreadPool(threadCount: 2)
        let count = 10_001
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
        hits.initialize(repeating: 0, count: count)
        defer { hits.deallocate() }
        pool.parallelRanges(count, costPerItem: 1_000) { range, _ in
            for i in range { hits[i] += 1 }
        }
        #expect((0..<count).allSatisfy { hits[$0] == 1 })
    }
}
