import Foundation
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

    @Test("parallelRanges partitions the range into four ranges per thread")
    func ranges() {
        for (threads, count) in [(2, 10_001), (3, 7), (3, 10_001), (2, 5), (1, 100)] {
            let pool = ThreadPool(threadCount: threads)
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            defer { hits.deallocate() }
            let calls = Atomic<Int>(0)
            pool.parallelRanges(count, costPerItem: 1_000_000) { range, _ in
                calls.add(1, ordering: .relaxed)
                for i in range { hits[i] += 1 }
            }
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "\(threads) threads, \(count)")
            #expect(calls.load(ordering: .relaxed) == (threads == 1 ? 1 : min(count, threads * 4)), "\(threads) threads, \(count)")
        }
    }

    @Test("parallelStreams gives every item to one call, in grains, each thread first walking its own range in order")
    func streams() {
        for (threads, count, grain) in [(2, 10_001, 1), (2, 10_001, 3), (3, 1_000, 7), (4, 37, 2), (2, 5, 1), (2, 3, 8), (1, 50, 4)] {
            let pool = ThreadPool(threadCount: threads)
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            // Per thread, the ranges it was given in order.
            let given = UnsafeMutablePointer<[Range<Int>]>.allocate(capacity: threads)
            given.initialize(repeating: [], count: threads)
            defer { hits.deallocate(); given.deinitialize(count: threads); given.deallocate() }
            pool.parallelStreams(count, grain: grain, costPerItem: 1_000_000) { range, worker in
                given[worker].append(range)
                for i in range { hits[i] += 1 }
            }
            let label = "\(threads) threads, \(count) items, grain \(grain)"
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "\(label)")
            for w in 0..<threads {
                let ranges = given[w]
                // One thread, or no more items than a grain: one call with everything.
                let serial = threads == 1 || count <= grain
                #expect(ranges.allSatisfy { !$0.isEmpty && (serial || $0.count <= grain) }, "\(label)")
                // The first range a thread is given starts one of the threads' equal ranges,
                // unless the thread came late to a range that another thread, done with its own,
                // had started on: then that other thread was given the range's first item.
                if let first = ranges.first, !serial {
                    let home = (0..<threads).last { count * $0 / threads <= first.lowerBound }!
                    let start = count * home / threads
                    let helped = (0..<threads).contains { v in v != w && given[v].contains { $0.contains(start) } }
                    #expect(first.lowerBound == start || helped, "\(label): worker \(w) began at \(first.lowerBound)")
                }
            }
        }
    }

    @Test("parallelStreams: a thread done with its own range takes over the range of a thread held up")
    func streamsHelp() {
        let pool = ThreadPool(threadCount: 2), count = 64
        let owner = UnsafeMutablePointer<Int>.allocate(capacity: count)
        owner.initialize(repeating: -1, count: count)
        defer { owner.deallocate() }
        let released = Atomic<Bool>(false)
        pool.parallelStreams(count, grain: 1, costPerItem: 1_000_000) { range, worker in
            // Whoever takes item 0 (the start of the first range) is held until every other item
            // is done (or 10 s, so that a pool that does not help fails rather than hangs), so
            // the other thread must finish both ranges.
            if range.lowerBound == 0 {
                let deadline = Date().addingTimeInterval(10)
                while !released.load(ordering: .acquiring) && Date() < deadline { usleep(100) }
            }
            for i in range { owner[i] = worker }
            if range.lowerBound != 0, (1..<count).allSatisfy({ owner[$0] >= 0 }) { released.store(true, ordering: .releasing) }
        }
        let helper = owner[1]
        #expect((0..<count).allSatisfy { owner[$0] >= 0 })
        #expect((1..<count).allSatisfy { owner[$0] == helper }, "items 1..<64 all ran on the thread not held up")
        #expect(owner[0] != helper)
    }

    @Test("parallelStreams inside a job runs serially on the calling thread")
    func nestedStreams() {
        let pool = ThreadPool(threadCount: 2)
        let totals = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        totals.initialize(repeating: 0, count: 4)
        defer { totals.deallocate() }
        pool.parallelFor(4) { task, _ in
            var sum = 0, calls = 0
            pool.parallelStreams(1_000, grain: 10, costPerItem: 1_000_000) { range, _ in
                calls += 1
                for i in range { sum += i }
            }
            totals[task] = calls == 1 ? sum : -1
        }
        #expect((0..<4).allSatisfy { totals[$0] == 999 * 1_000 / 2 })
    }
}
