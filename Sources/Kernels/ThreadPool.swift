#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// A persistent pool of worker threads that runs `parallelFor` jobs.
///
/// The pool is the one place where work crosses threads. Workers spin for a short while after a
/// job (back-to-back kernels of a training step then start in about a microsecond) and sleep on a
/// condition variable after that, so an idle process costs no CPU. Tasks are taken from a shared
/// counter, and a job waits only for the workers that joined it while it was open: on a machine
/// shared with other processes, a worker the OS has not scheduled does not hold up the caller,
/// which takes the tasks itself (with a busy loop on one of two cores, decoding SmolLM2 went from
/// 23-35 to 48-51 tokens/s).
///
/// A job's body is not `@Sendable`: kernels capture raw pointers, and the pool guarantees that the
/// body has finished on every thread before `parallelFor` returns, which is what makes that safe.
/// Calls from several threads are serialized; a call from inside a job runs serially on the
/// calling worker.
public final class ThreadPool: Sendable {
    /// The process-wide pool: one thread per core, or `TINYLM_THREADS` when set.
    public static let shared = ThreadPool(threadCount: ThreadPool.defaultThreadCount)

    /// Below this many floating-point operations a kernel runs on the calling thread: on two cores
    /// splitting less than ~20 µs of work loses to the hand-off.
    public static let parallelWorkThreshold = 200_000

    /// The number of threads that run a job, the calling thread included.
    public let threadCount: Int
    private let core: PoolCore
    /// `parallelStreams`' place in each thread's range, one per thread; in use by one call at a
    /// time.
    private let cursors: [StreamCursor]
    private let streamLock = Mutex<Void>(())

    /// Creates a pool in which `threadCount` threads (the caller and `threadCount - 1` workers)
    /// share each job.
    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        core = PoolCore(threadCount: self.threadCount)
        cursors = (0..<self.threadCount).map { _ in StreamCursor() }
        core.startWorkers()
    }

    deinit { core.shutdown() }

    /// One thread per available core, or the value of `TINYLM_THREADS` when it is a positive
    /// integer.
    public static var defaultThreadCount: Int {
        if let text = ProcessInfo.processInfo.environment["TINYLM_THREADS"],
           let value = Int(text), value > 0 {
            return min(value, 256)
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Runs `body(task, worker)` for every `task` in `0..<count`, spread over the pool's threads.
    /// `worker` is in `0..<threadCount` and identifies the thread, so a body can use per-thread
    /// scratch memory. Returns when every task has finished.
    public func parallelFor(_ count: Int, _ body: (_ task: Int, _ worker: Int) -> Void) {
        core.parallelFor(count, body)
    }

    /// Splits `0..<count` into contiguous ranges, four per thread, and runs `body` on them in
    /// parallel when `count * costPerItem` floating-point operations are worth the hand-off. Four
    /// balance uneven rows and a thread that starts late without much overhead; work that streams
    /// memory once takes `parallelStreams` instead.
    public func parallelRanges(
        _ count: Int, costPerItem: Int, _ body: (_ range: Range<Int>, _ worker: Int) -> Void
    ) {
        guard count > 0 else { return }
        let work = count &* max(1, costPerItem)
        if threadCount == 1 || work < ThreadPool.parallelWorkThreshold || count == 1 {
            body(0..<count, 0)
            return
        }
        let chunks = min(count, threadCount * 4)
        parallelFor(chunks) { chunk, worker in
            let start = count * chunk / chunks
            let end = count * (chunk + 1) / chunks
            if start < end { body(start..<end, worker) }
        }
    }

    /// Runs `body` over `0..<count` for work that reads its memory once (decoding's products
    /// streaming their weights, its attention streaming the cache): thread `t` starts on the
    /// `t`-th of `threadCount` equal ranges and walks it front to back, `grain` items per call, so
    /// that each thread's reads are one stream; a thread done with its own range then claims
    /// `grain` items at a time from the others' ranges, so that the threads finish together.
    /// Each thread's claims touch only its own cache line until then. Every item goes to exactly
    /// one call, so results do not depend on which thread ran it.
    ///
    /// On a shared 2-core AVX2 EPYC, decoding attention's tasks (then a key/value head's 64
    /// positions each) taken this way instead of one at a time from a shared counter took 5-16%
    /// less time (layer-alternating A/B). For the products, where equal ranges had left one
    /// thread idle for 2-6 µs at the end of most calls, it changed nothing beyond the noise: the
    /// thread still at work had the memory to itself.
    public func parallelStreams(
        _ count: Int, grain: Int, costPerItem: Int, _ body: (_ range: Range<Int>, _ worker: Int) -> Void
    ) {
        guard count > 0 else { return }
        let grain = max(1, grain)
        if threadCount == 1 || count &* max(1, costPerItem) < ThreadPool.parallelWorkThreshold || count <= grain
            || PoolCore.isWorkerThread {
            body(0..<count, 0)
            return
        }
        streamLock.withLock { _ in
            let ranges = threadCount
            // Published to the workers by the job's start (`parallelFor`).
            for t in 0..<ranges { cursors[t].next.store(count * t / ranges, ordering: .relaxed) }
            parallelFor(ranges) { home, worker in
                for k in 0..<ranges {
                    let t = (home + k) % ranges, end = count * (t + 1) / ranges
                    while true {
                        let start = cursors[t].next.wrappingAdd(grain, ordering: .relaxed).oldValue
                        if start >= end { break }
                        body(start..<min(end, start + grain), worker)
                    }
                }
            }
        }
    }

}

/// The next unclaimed item of one thread's range in `parallelStreams`, alone on its cache line
/// (the padding), so that the owner's claims do not contend with the other threads' until they
/// come to help.
private final class StreamCursor: Sendable {
    let next = Atomic<Int>(0)
    private let padding: (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

private final class PoolCore: @unchecked Sendable {
    let threadCount: Int

    private typealias Body = (_ task: Int, _ worker: Int) -> Void

    private nonisolated(unsafe) var body: Body?
    private nonisolated(unsafe) var taskCount = 0
    private let nextTask = Atomic<Int>(0)
    /// The current job and who is in it: `generation << 16 | closed << 15 | joined workers`.
    /// A worker joins a job only while it is open; the caller closes it once every task has been
    /// taken and then waits only for the workers that joined. A worker the OS has not scheduled
    /// yet (another process on its core) therefore never holds up a job the caller finished alone.
    private let entry = Atomic<Int>(0)
    private static let closedBit = 1 << 15, joinedMask = (1 << 15) - 1
    private let sleepers = Atomic<Int>(0)
    private let submitLock = Mutex<Void>(())
    private nonisolated(unsafe) var mutex = pthread_mutex_t()
    private nonisolated(unsafe) var condition = pthread_cond_t()
    private nonisolated(unsafe) var shuttingDown = false

    /// How long an idle worker polls for the next job before it sleeps.
    private static let spinNanoseconds: UInt64 = 2_000_000

    init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    func startWorkers() {
        for worker in 1..<threadCount {
            // The thread keeps the core alive until `shutdown()`.
            let thread = Thread { self.workerLoop(worker) }
            thread.name = "tinylm-worker-\(worker)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    func shutdown() {
        pthread_mutex_lock(&mutex)
        shuttingDown = true
        entry.add(1 << 16, ordering: .sequentiallyConsistent)
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }

    /// Runs `body(task, worker)` for every `task` in `0..<count`, spread over the pool's threads.
    /// `worker` is in `0..<threadCount` and identifies the thread, so a body can use per-thread
    /// scratch memory. Returns when every task has finished.
    func parallelFor(_ count: Int, _ body: (_ task: Int, _ worker: Int) -> Void) {
        guard count > 0 else { return }
        if count == 1 || threadCount == 1 || PoolCore.isWorkerThread {
            for task in 0..<count { body(task, 0) }
            return
        }
        submitLock.withLock { _ in
            withoutActuallyEscaping(body) { escaping in
                self.body = escaping
                self.taskCount = count
                nextTask.store(0, ordering: .relaxed)
                // Publishing the next generation (open, nobody joined) releases the body and count.
                let generation = (entry.load(ordering: .relaxed) >> 16) + 1
                entry.store(generation << 16, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    pthread_mutex_lock(&mutex)
                    pthread_cond_broadcast(&condition)
                    pthread_mutex_unlock(&mutex)
                }
                PoolCore.isWorkerThread = true
                runTasks(worker: 0)
                PoolCore.isWorkerThread = false
                // Every task has been taken: close the job, then wait for those who joined it.
                var state = entry.load(ordering: .relaxed)
                while true {
                    let (exchanged, current) = entry.compareExchange(
                        expected: state, desired: state | PoolCore.closedBit, ordering: .acquiringAndReleasing)
                    if exchanged { break }
                    state = current
                }
                while entry.load(ordering: .acquiring) & PoolCore.joinedMask != 0 {}
                self.body = nil
            }
        }
    }

    private func runTasks(worker: Int) {
        guard let body else { return }
        let count = taskCount
        while true {
            let task = nextTask.wrappingAdd(1, ordering: .relaxed).oldValue
            if task >= count { break }
            body(task, worker)
        }
    }

    private func workerLoop(_ worker: Int) {
        PoolCore.isWorkerThread = true
        // Generation 0 is the pool's state before its first job. A thread that starts late joins
        // the job open then, if any.
        var seen = 0
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            var polls = 0
            while entry.load(ordering: .acquiring) >> 16 == seen {
                polls &+= 1
                if polls & 1023 == 0,
                   DispatchTime.now().uptimeNanoseconds - start > PoolCore.spinNanoseconds {
                    sleep(until: seen)
                }
            }
            var state = entry.load(ordering: .acquiring)
            if shuttingDown { return }
            seen = state >> 16
            // Join the job while it is open; a job already closed is done without this worker.
            while state >> 16 == seen && state & PoolCore.closedBit == 0 {
                let (exchanged, current) = entry.compareExchange(
                    expected: state, desired: state + 1, ordering: .acquiringAndReleasing)
                if exchanged {
                    runTasks(worker: worker)
                    entry.subtract(1, ordering: .releasing)
                    break
                }
                state = current
            }
        }
    }

    private func sleep(until seen: Int) {
        pthread_mutex_lock(&mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while entry.load(ordering: .sequentiallyConsistent) >> 16 == seen {
            pthread_cond_wait(&condition, &mutex)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(&mutex)
    }

    private static let workerKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// True on a pool's worker threads and on a thread while it runs a job's tasks.
    static var isWorkerThread: Bool {
        get { pthread_getspecific(workerKey) != nil }
        set { pthread_setspecific(workerKey, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }
}
