import Kernels
import Training

/// Runs `steps` more steps with the profiler on and prints where a step's time goes.
func printTrainingProfile(_ trainer: Trainer, steps: Int) throws {
    Profiler.reset()
    Profiler.isEnabled = true
    var total = 0.0
    for _ in 0..<steps { total += try trainer.step().seconds }
    Profiler.isEnabled = false
    let phases = Profiler.report().sorted { $0.seconds > $1.seconds }
    print(String(format: "\nProfile over %d steps (%.1f ms per step):", steps, 1000 * total / Double(steps)))
    print("  phase                       ms/step   share  calls/step")
    for phase in phases {
        print("  " + phase.phase.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: " %8.2f  %5.1f%%  %6.0f", 1000 * phase.seconds / Double(steps),
                     100 * phase.seconds / total, Double(phase.calls) / Double(steps)))
    }
    let covered = phases.reduce(0) { $0 + $1.seconds }
    print("  (outside the phases)      " + String(format: " %8.2f  %5.1f%%", 1000 * (total - covered) / Double(steps),
                 100 * (total - covered) / total))
}
