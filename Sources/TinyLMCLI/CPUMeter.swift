import Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// How many cores *other* processes kept busy while this one measured something, the way the
/// peers' `cpuguard.py` counts it: (system busy CPU time − this process's CPU time) / wall time.
/// The same rule on both sides keeps a comparison on a shared machine fair: a step during which
/// another process held a core is left out of both medians.
#if canImport(Glibc)
private let RUSAGE_SELF_WHO = __rusage_who_t(RUSAGE_SELF.rawValue)
#else
private let RUSAGE_SELF_WHO = RUSAGE_SELF
#endif

struct CPUMeter {
    /// A reading: wall clock, system-wide busy CPU seconds, this process's CPU seconds.
    struct Reading {
        var wall: Double, busy: Double, own: Double
    }

    /// Steps with more foreign load than this are not clean (the peers' threshold).
    static let cleanThreshold = 0.1

    static func read() -> Reading {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        var usage = rusage()
        getrusage(RUSAGE_SELF_WHO, &usage)
        let own = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return Reading(wall: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9, busy: systemBusySeconds() ?? 0, own: own)
    }

    /// Cores other processes used between two readings (0 where /proc/stat is not readable).
    static func foreignCores(from start: Reading, to end: Reading) -> Double {
        let wall = end.wall - start.wall
        guard wall > 0 else { return 0 }
        return max(0, ((end.busy - start.busy) - (end.own - start.own)) / wall)
    }

    /// Waits until other processes use fewer than `threshold` cores over a one-second window, or
    /// `maxWait` seconds pass; returns the seconds waited.
    static func waitQuiet(threshold: Double = 0.15, maxWait: Double = 60) -> Double {
        let start = read()
        while true {
            let before = read()
            usleep(1_000_000)
            let after = read()
            if foreignCores(from: before, to: after) < threshold || after.wall - start.wall > maxWait {
                return after.wall - start.wall
            }
        }
    }

    /// The first line of /proc/stat: busy = all time but idle and iowait, in seconds.
    private static func systemBusySeconds() -> Double? {
        guard let file = fopen("/proc/stat", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let bytes = line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let fields = String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
            .dropFirst().compactMap { Double($0) }
        guard fields.count >= 5 else { return nil }
        let busy = fields.prefix(8).reduce(0, +) - fields[3] - fields[4]
        return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Waits for a quiet machine, runs `warmup` untimed then `steps` timed calls of `step`, and
    /// returns the median time of the clean ones (other processes under `cleanThreshold` cores)
    /// and how many were clean: one round of an alternating benchmark.
    static func measureRound(warmup: Int, steps: Int, _ step: () throws -> Void) rethrows -> (median: Double, clean: Int) {
        _ = waitQuiet()
        var samples: [(seconds: Double, foreign: Double)] = []
        for i in 0..<(warmup + steps) {
            let before = read()
            try step()
            let after = read()
            if i >= warmup { samples.append((after.wall - before.wall, foreignCores(from: before, to: after))) }
        }
        return KernelBenchmark.cleanMedian(samples, threshold: cleanThreshold)
    }
}
