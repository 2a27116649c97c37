import Kernels

/// Hyperparameters of a pretraining run; saved with its checkpoints so `--resume` continues the
/// same run.
public struct TrainingOptions: Codable, Sendable, Equatable {
    public var steps = 1000
    /// Sequences per micro-batch.
    public var batch = 8
    /// Micro-batches per optimizer step.
    public var accumulation = 1
    /// Tokens per sequence (at most the model's context).
    public var sequenceLength = 256
    public var schedule = LearningRateSchedule(maxLR: 1e-3, minLR: 1e-4, warmup: 100, total: 1000)
    public var weightDecay = 0.1
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var epsilon = 1e-8
    /// Global-norm gradient clipping (0: off).
    public var clip = 1.0
    /// Validation every this many steps (0: only at the end).
    public var evalEvery = 200
    /// Validation tokens scored each time (the first ones of the validation set).
    public var evalTokens = 65_536
    /// Checkpoint every this many steps (0: only at the end).
    public var saveEvery = 500
    public var seed: UInt64 = 0
    /// A step whose loss exceeds this multiple of the running mean is skipped (0: off).
    public var spikeFactor = 3.0
    /// Consecutive skipped steps (NaN, Inf or spikes) before the run stops.
    public var maxSkips = 10
    /// Stop after this many validations without a new best (0: never).
    public var patience = 0
    /// The linear layers' matrix products: fp32, or bf16 operands with fp32 sums (mixed
    /// precision, as PyTorch's bf16 autocast). Absent (nil) in runs saved before it existed: fp32.
    public var precision: MatmulPrecision?

    public init() {}

    /// `precision`, fp32 when unset.
    public var matmulPrecision: MatmulPrecision { precision ?? .fp32 }

    public var tokensPerStep: Int { batch * accumulation * sequenceLength }

    /// Checks every field; the error names the option.
    public func validate(contextLength: Int) throws {
        func check(_ ok: Bool, _ field: String, _ reason: String) throws {
            if !ok { throw TrainingError.invalidOption(name: field, reason: reason) }
        }
        try check(steps > 0, "steps", "must be positive")
        try check(batch > 0 && batch <= 1 << 16, "batch", "must be in 1...65536")
        try check(accumulation > 0 && accumulation <= 1 << 16, "accum", "must be in 1...65536")
        try check(sequenceLength > 1 && sequenceLength <= contextLength, "context",
                  "must be in 2...\(contextLength) (the model's context), got \(sequenceLength)")
        try check(schedule.maxLR > 0 && schedule.maxLR <= 10, "lr", "must be a finite number in (0, 10]")
        try check(schedule.minLR >= 0 && schedule.minLR <= schedule.maxLR, "min-lr", "must be in [0, lr]")
        try check(schedule.warmup >= 0, "warmup", "must be ≥ 0")
        try check(weightDecay >= 0 && weightDecay <= 10, "weight-decay", "must be a finite number in [0, 10]")
        try check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "beta1", "betas must be in [0, 1)")
        try check(epsilon > 0 && epsilon < 1, "eps", "must be in (0, 1)")
        try check(clip >= 0 && clip.isFinite, "clip", "must be a finite number ≥ 0")
        try check(evalEvery >= 0 && saveEvery >= 0, "eval-every", "intervals must be ≥ 0")
        try check(evalTokens > 1, "eval-tokens", "must be > 1")
        try check(spikeFactor == 0 || (spikeFactor > 1 && spikeFactor.isFinite), "spike-factor", "must be 0 (off) or a finite number > 1")
        try check(maxSkips > 0, "max-skips", "must be positive")
        try check(patience >= 0, "patience", "must be ≥ 0")
    }
}

/// The mutable state of a run, saved with each checkpoint.
public struct TrainerState: Codable, Sendable, Equatable {
    public var step = 0
    /// The data sampler's generator state: the next batch follows from it.
    public var rngState: UInt64 = 0
    public var bestValidationLoss: Double?
    public var lastValidationLoss: Double?
    public var evaluationsWithoutImprovement = 0
    public var lossAverage: Double?
    public var skippedSteps = 0
    public var consecutiveSkips = 0
    public var tokensSeen = 0
    /// SHA-256 of the training tokens, so a resume with other data is refused.
    public var dataSHA256 = ""
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case invalidOption(name: String, reason: String)
    case tooManySkippedSteps(step: Int, count: Int, lastLoss: Float)
    case notEnoughData(tokens: Int, needed: Int)
    case resume(path: String, reason: String)
    case diverged(step: Int, tensor: String)

    public var description: String {
        switch self {
        case .invalidOption(let name, let reason): "--\(name): \(reason)"
        case .tooManySkippedSteps(let step, let count, let loss):
            "stopped at step \(step): \(count) steps in a row had a NaN/Inf loss or gradient or a loss spike (last loss \(loss)); the last good checkpoint is intact — lower --lr or raise --warmup"
        case .notEnoughData(let tokens, let needed):
            "the training data has \(tokens) tokens; a sequence needs \(needed)"
        case .resume(let path, let reason): "\(path): cannot resume: \(reason)"
        case .diverged(let step, let tensor):
            "stopped at step \(step): \(tensor) became NaN or infinite (the learning rate is far too high?); nothing was saved after it, so the last checkpoint is intact — lower --lr"
        }
    }
}
