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

    /// More workers than cores: some are not running when a job starts, and the caller may take
    /// every task itself, close the job and go on. No task of a job may run after that job's
    /// `parallelFor` returned, and every task of every job runs exactly once.
    @Test("a worker that joins late never runs a finished job's tasks")
    func lateWorkers() {
        let pool = ThreadPool(threadCount: 8)
        let currentJob = Atomic<Int>(-1)
        let stale = Atomic<Int>(0), missed = Atomic<Int>(0)
        for job in 0..<20_000 {
            let count = 1 + job % 5
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            currentJob.store(job, ordering: .sequentiallyConsistent)
            pool.parallelFor(count) { task, _ in
                var spin = 0 // a task long enough that the caller can finish while a worker is in one
                for i in 0..<200 { spin &+= i &* task }
                if currentJob.load(ordering: .sequentiallyConsistent) != job || spin < 0 { stale.add(1, ordering: .relaxed) }
                hits[task] += 1
            }
            currentJob.store(-1, ordering: .sequentiallyConsistent)
            for i in 0..<count where hits[i] != 1 { missed.add(1, ordering: .relaxed) }
            hits.deallocate()
        }
        #expect(stale.load(ordering: .relaxed) == 0)
        #expect(missed.load(ordering: .relaxed) == 0)
    }

    @Test("parallelRanges partitions the range into rangesPerThread ranges per thread")
    func ranges() {
        for (threads, perThread, count) in [(2, 4, 10_001), (2, 1, 10_001), (3, 1, 7), (3, 16, 10_001), (2, 4, 5)] {
            let pool = ThreadPool(threadCount: threads)
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            defer { hits.deallocate() }
            let calls = Atomic<Int>(0)
            pool.parallelRanges(count, costPerItem: 1_000_000, rangesPerThread: perThread) { range, _ in
                calls.add(1, ordering: .relaxed)
                for i in range { hits[i] += 1 }
            }
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "\(threads) threads, \(perThread) per thread, \(count)")
            #expect(calls.load(ordering: .relaxed) == min(count, threads * perThread), "\(threads) threads, \(perThread) per thread")
        }
    }
}
