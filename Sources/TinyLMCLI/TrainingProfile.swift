import Kernels
import Training

/// Runs `steps` more steps with the profiler on and prints where a step's time goes.
func printTrainingProfile(_ trainer: Trainer, steps: Int) throws {
    Profiler.reset()
    Profiler.isEnabled = true
    var total = 0.0
    for _ in 0..<steps { total += try trainer.step().seconds }
    Profiler.isEnabled = false
    print(String(format: "\nProfile over %d steps (%.1f ms per step):", steps, 1000 * total / Double(steps)))
    printPhases(Profiler.report(), over: steps, of: total, unit: "step")
}

/// The profiler's phases as a table, largest first: milliseconds and calls per `unit` (a step,
/// a decoded token) over `count` of them, each phase's share of `total` seconds, and what no
/// phase covers. With `bytes` (what one `unit` of a phase reads from memory, by phase name), also
/// each such phase's megabytes per `unit` and the rate at which it read them.
func printPhases(_ phases: [(phase: String, seconds: Double, calls: Int)], over count: Int, of total: Double, unit: String,
                 bytes: [String: Double] = [:]) {
    let n = Double(count), header = "ms/\(unit)"
    print("  phase                     " + header.leftPadded(to: 10) + "   share  calls/\(unit)"
          + (bytes.isEmpty ? "" : "   MB/\(unit)    GB/s"))
    for phase in phases.sorted(by: { $0.seconds > $1.seconds }) {
        var line = "  " + phase.phase.padding(toLength: 26, withPad: " ", startingAt: 0)
            + String(format: " %9.3f  %5.1f%%  %6.0f", 1000 * phase.seconds / n, 100 * phase.seconds / total, Double(phase.calls) / n)
        if let read = bytes[phase.phase], phase.seconds > 0 {
            line += String(format: "  %9.3f  %6.1f", read / 1e6, read * n / phase.seconds / 1e9)
        }
        print(line)
    }
    let outside = total - phases.reduce(0) { $0 + $1.seconds }
    print("  (outside the phases)      " + String(format: " %9.3f  %5.1f%%", 1000 * outside / n, 100 * outside / total))
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
