import Foundation
import Support
import Transformer

/// The outer loop of a run: steps, periodic validation and checkpoints, a JSONL log, early
/// stopping and a clean stop on request (Ctrl-C). The model with the best validation loss so far
/// is kept in `directory/best`.
public enum PretrainLoop {
    public enum Outcome: Equatable, Sendable {
        case finished, interrupted, stoppedEarly
    }

    /// What the progress callback receives after each step.
    public struct Progress: Sendable {
        public var report: Trainer.StepReport
        public var totalSteps: Int
        public var validationLoss: Double?
        public var tokensPerSecond: Double
        public var secondsLeft: Double
    }

    /// Runs `trainer` to its last step, writing checkpoints into `directory`.
    public static func run(
        _ trainer: Trainer, directory: String, tokenizer: Data?,
        progress: (Progress) -> Void = { _ in }, note: (String) -> Void = { _ in },
        shouldStop: () -> Bool = { false }
    ) throws -> Outcome {
        let options = trainer.options
        try AtomicFile.createDirectory(directory)
        let log = try TrainingLog(directory: directory, startingAfter: trainer.state.step)
        var recentSeconds: [Double] = []
        while trainer.state.step < options.steps {
            if shouldStop() {
                try trainer.save(to: directory, tokenizer: tokenizer)
                note("interrupted after step \(trainer.state.step); checkpoint saved in \(directory) (continue with --resume)")
                return .interrupted
            }
            let report = try trainer.step()
            if let reason = report.skipped { note("step \(report.step): skipped (\(reason))") }
            var validation: Double?
            let step = trainer.state.step
            if options.evalEvery > 0 && step % options.evalEvery == 0 && step < options.steps {
                validation = try trainer.evaluate()
                if validation != nil && trainer.state.evaluationsWithoutImprovement == 0 {
                    try Checkpoint.save(trainer.model, to: directory + "/best", tokenizer: tokenizer,
                                        metadata: ["step": String(step), "validation_loss": String(validation!)])
                }
            }
            recentSeconds.append(report.seconds)
            if recentSeconds.count > 20 { recentSeconds.removeFirst() }
            let perStep = recentSeconds.reduce(0, +) / Double(recentSeconds.count)
            let line = LogLine(step: step, loss: report.loss, lr: report.learningRate, grad_norm: report.gradientNorm,
                               tokens_per_s: Double(report.tokens) / report.seconds, val_loss: validation,
                               skipped: report.skipped, tokens: trainer.state.tokensSeen, aux_loss: report.routerAuxLoss,
                               z_loss: report.routerZLoss, expert_load: report.expertLoads.isEmpty ? nil : report.expertLoads)
            if let data = try? JSONEncoder().encode(line) { try log.append(data) }
            progress(Progress(report: report, totalSteps: options.steps, validationLoss: validation ?? trainer.state.lastValidationLoss,
                              tokensPerSecond: Double(report.tokens) / perStep,
                              secondsLeft: perStep * Double(options.steps - step)))
            if options.saveEvery > 0 && step % options.saveEvery == 0 && step < options.steps {
                try trainer.save(to: directory, tokenizer: tokenizer)
            }
            if validation != nil && trainer.shouldStopEarly {
                try trainer.save(to: directory, tokenizer: tokenizer)
                note("stopping early: no better validation loss in \(options.patience) evaluations (best \(trainer.state.bestValidationLoss ?? .nan))")
                return .stoppedEarly
            }
        }
        if let loss = try trainer.evaluate() {
            if trainer.state.evaluationsWithoutImprovement == 0 {
                try Checkpoint.save(trainer.model, to: directory + "/best", tokenizer: tokenizer,
                                    metadata: ["step": String(trainer.state.step), "validation_loss": String(loss)])
            }
            let line = LogLine(step: trainer.state.step, loss: nil, lr: nil, grad_norm: nil, tokens_per_s: nil,
                               val_loss: loss, skipped: nil, tokens: trainer.state.tokensSeen)
            if let data = try? JSONEncoder().encode(line) { try log.append(data) }
        }
        try trainer.save(to: directory, tokenizer: tokenizer)
        return .finished
    }

    private struct LogLine: Encodable {
        var step: Int
        var loss: Float?
        var lr: Double?
        var grad_norm: Double?
        var tokens_per_s: Double?
        var val_loss: Double?
        var skipped: String?
        var tokens: Int
        var aux_loss: Double? = nil
        var z_loss: Double? = nil
        /// Per mixture block, each expert's share of the routing assignments.
        var expert_load: [[Double]]? = nil
    }
}
