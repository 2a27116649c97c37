import Foundation
import Kernels
import Support
import Transformer

/// Training: micro-batches from a batch source, forward, backward, clip, AdamW over the
/// trainable tensors, with validation, checkpoints and a loss guard. Deterministic for a seed
/// and thread count, across interruptions.
public final class Trainer {
    public let model: TransformerModel
    public let options: TrainingOptions
    public let optimizer: AdamW
    public private(set) var state: TrainerState
    let workspace: TrainingWorkspace
    private var data: any BatchSource
    let validation: [Int32]?
    let pool: ThreadPool
    private var ids: [Int32], targets: [Int32]

    /// Why a resume with other data is refused: the tokens, or their order (a batch source's
    /// grouping), hash differently.
    static let dataMismatch = "the training data differs from the run's (its tokens or their order hash differently)"
    public static let stateFile = "trainer_state.safetensors"

    /// What one step did.
    public struct StepReport: Sendable {
        public var step: Int
        public var loss: Float
        public var gradientNorm: Double
        public var learningRate: Double
        public var skipped: String?
        public var seconds: Double
        public var tokens: Int
        /// A mixture of experts' router losses (means over the step's micro-batches) and, per
        /// mixture block, each expert's share of the routing assignments (of the last micro-batch).
        public var routerAuxLoss: Double? = nil
        public var routerZLoss: Double? = nil
        public var expertLoads: [[Double]] = []
    }

    /// A pretraining run on random windows of `train`.
    public convenience init(model: TransformerModel, options: TrainingOptions, train: [Int32], validation: [Int32]?,
                            pool: ThreadPool = .shared) throws {
        try options.validate(contextLength: model.config.contextLength)
        guard train.count > options.sequenceLength else {
            throw TrainingError.notEnoughData(tokens: train.count, needed: options.sequenceLength + 1)
        }
        let windows = try TokenWindows(tokens: train, vocabularySize: model.config.vocabularySize, seed: options.seed)
        try self.init(model: model, options: options, data: windows, validation: validation, pool: pool)
    }

    /// A run on the batches of `data` (whose position the run's state starts from).
    public init(model: TransformerModel, options: TrainingOptions, data: any BatchSource, validation: [Int32]?,
                pool: ThreadPool = .shared) throws {
        try options.validate(contextLength: model.config.contextLength)
        guard model.layout.gradientCount > 0 else {
            throw TrainingError.invalidOption(name: "targets", reason: "nothing to train: every tensor is frozen")
        }
        self.model = model
        self.options = options
        self.data = data
        self.validation = validation
        self.pool = pool
        optimizer = AdamW(layout: model.layout)
        optimizer.beta1 = Float(options.beta1)
        optimizer.beta2 = Float(options.beta2)
        optimizer.epsilon = Float(options.epsilon)
        optimizer.weightDecay = Float(options.weightDecay)
        // A frozen base (LoRA) is rounded and packed for the tiles once, not at every product.
        if options.matmulPrecision == .bf16 { model.packFrozenProducts(pool: pool) }
        workspace = try TrainingWorkspace(model: model, batch: options.batch, length: options.sequenceLength,
                                          threads: pool.threadCount)
        workspace.precision = options.matmulPrecision
        state = TrainerState()
        state.rngState = data.position
        state.dataSHA256 = data.fingerprint
        ids = [Int32](repeating: 0, count: options.batch * options.sequenceLength)
        targets = ids
    }

    /// One optimizer step (over `accumulation` micro-batches of random windows).
    public func step() throws -> StepReport {
        try step { _ in data.fill(ids: &ids, targets: &targets, batch: options.batch, length: options.sequenceLength) }
    }

    /// One optimizer step on given micro-batches (`batch` rows of at most `sequenceLength` ids
    /// and targets each), for checking the optimizer against another implementation.
    public func step(batches: [(ids: [Int32], targets: [Int32])]) throws -> StepReport {
        guard batches.count == options.accumulation else {
            throw TrainingError.invalidOption(name: "accum", reason: "\(batches.count) batches for \(options.accumulation) micro-batches")
        }
        return try step { micro in
            ids = batches[micro].ids
            targets = batches[micro].targets
            return ids.count % options.batch == 0 ? ids.count / options.batch : options.sequenceLength
        }
    }

    /// `fill(micro)` puts micro-batch `micro` in `ids` and `targets` and returns its length.
    private func step(fill: (Int) -> Int) throws -> StepReport {
        let start = DispatchTime.now().uptimeNanoseconds
        let step = state.step
        Profiler.measure("zero gradients") { workspace.gradients.zero() }
        var lossSum: Float = 0, auxSum = 0.0, zSum = 0.0, tokens = 0
        for micro in 0..<options.accumulation {
            let length = fill(micro)
            try workspace.setLength(length)
            tokens += options.batch * length
            // Training noise (dropout, router jitter) from a seed per micro-batch.
            let noisy = model.config.dropout > 0 || (model.config.experts > 0 && model.config.routerJitter > 0)
                || (model.adapters?.dropout ?? 0) > 0
            let dropoutSeed: UInt64? = noisy ? options.seed ^ UInt64(step * options.accumulation + micro + 1) &* 0xD1B5_4A32_D192_ED03 : nil
            lossSum += try model.forward(ids: ids, targets: targets, workspace: workspace, dropoutSeed: dropoutSeed,
                                         forBackward: true, pool: pool)
            model.backward(workspace: workspace, scale: 1 / Float(options.accumulation), pool: pool)
            auxSum += workspace.routerAuxLoss
            zSum += workspace.routerZLoss
        }
        let loss = lossSum / Float(options.accumulation)
        let norm = Profiler.measure("gradient norm") { globalNorm(workspace.gradients, pool: pool) }
        let lr = options.schedule.rate(at: step)
        var skipped: String?
        if !loss.isFinite || !norm.isFinite {
            skipped = "non-finite loss or gradient"
        } else if options.spikeFactor > 0, step >= options.schedule.warmup, let average = state.lossAverage,
                  Double(loss) > options.spikeFactor * average {
            skipped = String(format: "loss spike (%.3f > %.1f × running mean %.3f)", loss, options.spikeFactor, average)
        }
        if skipped == nil {
            if options.clip > 0 && norm > options.clip {
                scale(workspace.gradients.pointer, by: Float(options.clip / (norm + 1e-6)), count: workspace.gradients.count)
            }
            Profiler.measure("AdamW") {
                optimizer.update(parameters: model.parameters, gradients: workspace.gradients, lr: Float(lr), pool: pool)
            }
            // A finite step can still push weights past Float's range (a learning rate far too
            // high); stop before anything saves them. The last checkpoint stays as it was. Only
            // the tensors the step changed are looked at (an adapter run leaves the base alone).
            for tensor in model.layout.tensors where tensor.trainable
                && firstNonFinite(model.parameters.pointer + tensor.offset, count: tensor.count) != nil {
                throw TrainingError.diverged(step: step + 1, tensor: tensor.name)
            }
            state.lossAverage = state.lossAverage.map { 0.95 * $0 + 0.05 * Double(loss) } ?? Double(loss)
            state.consecutiveSkips = 0
        } else {
            state.skippedSteps += 1
            state.consecutiveSkips += 1
        }
        state.step += 1
        state.tokensSeen += tokens
        state.rngState = data.position
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if state.consecutiveSkips >= options.maxSkips {
            throw TrainingError.tooManySkippedSteps(step: step, count: state.consecutiveSkips, lastLoss: loss)
        }
        var report = StepReport(step: state.step, loss: loss, gradientNorm: norm, learningRate: lr, skipped: skipped,
                                seconds: seconds, tokens: tokens)
        if model.config.experts > 0 {
            report.routerAuxLoss = auxSum / Double(options.accumulation)
            report.routerZLoss = zSum / Double(options.accumulation)
            report.expertLoads = workspace.expertLoads
        }
        return report
    }

    /// Validation loss on the first `evalTokens` validation tokens; records the best.
    public func evaluate() throws -> Double? {
        guard let validation, validation.count > 1 else { return nil }
        let tokens = Array(validation.prefix(options.evalTokens))
        // The step's workspace serves (the next step recomputes everything it uses).
        let (loss, _) = try model.evaluate(tokens: tokens, workspace: workspace, pool: pool)
        guard loss.isFinite else {
            throw TrainingError.diverged(step: state.step, tensor: "the validation loss")
        }
        state.lastValidationLoss = loss
        if let best = state.bestValidationLoss, best <= loss {
            state.evaluationsWithoutImprovement += 1
        } else {
            state.bestValidationLoss = loss
            state.evaluationsWithoutImprovement = 0
        }
        return loss
    }

    public var shouldStopEarly: Bool {
        options.patience > 0 && state.evaluationsWithoutImprovement >= options.patience
    }

    // MARK: Checkpoints

    private struct SavedRun: Codable {
        var options: TrainingOptions
        var state: TrainerState
        var adamStep: Int
    }

    /// Writes the checkpoint: first the resumable state (every parameter tensor, the AdamW
    /// moments of the trainable ones, each by name, and the run state) as one file, then the
    /// plain model files. Each file is written atomically, and the resumable state is
    /// self-contained, so a kill at any moment leaves a consistent run.
    public func save(to directory: String, tokenizer: Data?) throws {
        try AtomicFile.createDirectory(directory)
        let run = SavedRun(options: options, state: state, adamStep: optimizer.step)
        let encoded = String(decoding: try JSONEncoder().encode(run), as: UTF8.self)
        let p = model.parameters.pointer
        var entries: [Safetensors.Entry] = []
        for t in model.layout.tensors {
            entries.append(Safetensors.Entry(name: t.name, shape: t.shape, data: UnsafeBufferPointer(start: p + t.offset, count: t.count)))
        }
        entries += momentEntries()
        try withExtendedLifetime((model, optimizer)) {
            try Safetensors.write(entries, metadata: ["trainer_state": encoded, "config": String(decoding: model.config.encoded(), as: UTF8.self)],
                                  to: directory + "/" + Trainer.stateFile)
        }
        try Checkpoint.save(model, to: directory, tokenizer: tokenizer, metadata: ["step": String(state.step)])
    }

    /// Throws unless `directory` holds a saved run; the reason says what is there instead.
    public static func checkResumable(_ directory: String) throws {
        guard !FileManager.default.fileExists(atPath: directory + "/" + stateFile) else { return }
        if FileManager.default.fileExists(atPath: directory + "/data/train.bin") {
            throw TrainingError.resume(path: directory, reason: "the run stopped before its first checkpoint, so there is nothing to resume: start it again without --resume")
        }
        throw TrainingError.resume(path: directory, reason: "no \(stateFile) (not a training checkpoint)")
    }

    /// The AdamW moments of the trainable tensors, by name (views of the optimizer's buffers).
    func momentEntries() -> [Safetensors.Entry] {
        model.layout.tensors.compactMap { t in t.gradientOffset.map { (t, $0) } }.flatMap { t, g in [
            Safetensors.Entry(name: Trainer.firstMoment + t.name, shape: t.shape, data: UnsafeBufferPointer(start: optimizer.m.pointer + g, count: t.count)),
            Safetensors.Entry(name: Trainer.secondMoment + t.name, shape: t.shape, data: UnsafeBufferPointer(start: optimizer.v.pointer + g, count: t.count)),
        ] }
    }

    /// Throws unless `file` holds exactly the `expected` tensors (by name and shape); `whose`
    /// says what a stray tensor is not part of.
    static func checkTensors(of file: Safetensors.File, at path: String, expected: [String: [Int]], whose: String) throws {
        for (name, info) in file.tensors.sorted(by: { $0.key < $1.key }) {
            guard let shape = expected[name] else {
                throw TrainingError.resume(path: path, reason: "tensor '\(name)' is not part of \(whose)")
            }
            guard shape == info.shape else {
                throw TrainingError.resume(path: path, reason: "tensor '\(name)' has shape \(info.shape), the model needs \(shape)")
            }
        }
        if let missing = expected.keys.sorted().first(where: { file.tensors[$0] == nil }) {
            throw TrainingError.resume(path: path, reason: "tensor '\(missing)' is missing")
        }
    }

    /// Name prefixes of the AdamW moments in the state file.
    static let firstMoment = "adamw.m.", secondMoment = "adamw.v."

    /// Continues a run from `directory`: its model, optimizer, options and state. `steps`, when
    /// given, extends (or shortens) the run; the schedule keeps its original length. The state
    /// file must hold exactly the model's tensors (and the trainable ones' moments) by name and
    /// shape; anything else is refused before a value is read.
    public static func resume(from directory: String, train: [Int32], validation: [Int32]?, steps: Int? = nil,
                              pool: ThreadPool = .shared) throws -> Trainer {
        try resume(from: directory, data: { model, options in
            guard train.count > options.sequenceLength else {
                throw TrainingError.notEnoughData(tokens: train.count, needed: options.sequenceLength + 1)
            }
            return try TokenWindows(tokens: train, vocabularySize: model.config.vocabularySize, seed: options.seed)
        }, validation: validation, steps: steps, pool: pool)
    }

    /// Continues a run whose batches come from the source `data` makes for the saved model and
    /// options (its position is set from the saved state).
    public static func resume(from directory: String, data: (TransformerModel, TrainingOptions) throws -> any BatchSource,
                              validation: [Int32]?, steps: Int? = nil, pool: ThreadPool = .shared) throws -> Trainer {
        let path = directory + "/" + stateFile
        try checkResumable(directory)
        let file = try Safetensors.File(path: path)
        guard let runText = file.metadata["trainer_state"], let configText = file.metadata["config"],
              let run = try? JSONDecoder().decode(SavedRun.self, from: Data(runText.utf8)) else {
            throw TrainingError.resume(path: path, reason: "the trainer state is missing or unreadable")
        }
        let config = try ModelConfig.decode(Data(configText.utf8), source: path)
        let layout = ParameterLayout(config)
        // Every tensor by name and shape, before anything is allocated or read.
        var expected: [String: [Int]] = [:]
        for t in layout.tensors {
            expected[t.name] = t.shape
            if t.trainable {
                expected[firstMoment + t.name] = t.shape
                expected[secondMoment + t.name] = t.shape
            }
        }
        try checkTensors(of: file, at: path, expected: expected, whose: "this model (the state was written for another model or version)")
        try MemoryBudget.check(floats: 3 * layout.count, what: "the model and its optimizer state")
        let parameters = FloatBuffer(count: layout.count)
        for t in layout.tensors { try file.read(t.name, shape: t.shape, into: parameters.pointer + t.offset) }
        let model = try TransformerModel(config: config, parameters: parameters)
        var options = run.options
        if let steps { options.steps = steps }
        let trainer = try Trainer(model: model, options: options, data: try data(model, options), validation: validation, pool: pool)
        guard trainer.state.dataSHA256 == run.state.dataSHA256 else {
            throw TrainingError.resume(path: directory, reason: Trainer.dataMismatch)
        }
        for t in layout.tensors {
            guard let g = t.gradientOffset else { continue }
            try file.read(firstMoment + t.name, shape: t.shape, into: trainer.optimizer.m.pointer + g)
            try file.read(secondMoment + t.name, shape: t.shape, into: trainer.optimizer.v.pointer + g)
        }
        trainer.optimizer.step = run.adamStep
        trainer.state = run.state
        trainer.data.position = run.state.rngState
        return trainer
    }
}

extension Trainer {
    /// Writes an adapter run's resumable state to `path` (atomically): the trainable tensors,
    /// their AdamW moments and the run state. The frozen base is not in it: a resumed run takes
    /// it from where it came from.
    public func saveTrainableState(to path: String) throws {
        let run = SavedRun(options: options, state: state, adamStep: optimizer.step)
        let encoded = String(decoding: try JSONEncoder().encode(run), as: UTF8.self)
        let p = model.parameters.pointer
        var entries: [Safetensors.Entry] = []
        for t in model.layout.tensors where t.trainable {
            entries.append(Safetensors.Entry(name: t.name, shape: t.shape, data: UnsafeBufferPointer(start: p + t.offset, count: t.count)))
        }
        entries += momentEntries()
        try withExtendedLifetime((model, optimizer)) {
            try Safetensors.write(entries, metadata: ["trainer_state": encoded], to: path)
        }
    }

    /// Continues the adapter run saved at `path` in this trainer, made as the run's was (same
    /// base, adapters, options and data): its trainable tensors, moments, step and data position.
    /// The next steps are then bit-identical to the uninterrupted run's. Anything that does not
    /// match — another tensor set, other options, other data — is refused before a value is read.
    public func restoreTrainableState(from path: String) throws {
        let file = try Safetensors.File(path: path)
        guard let runText = file.metadata["trainer_state"],
              let run = try? JSONDecoder().decode(SavedRun.self, from: Data(runText.utf8)) else {
            throw TrainingError.resume(path: path, reason: "the trainer state is missing or unreadable")
        }
        var saved = run.options, current = options
        saved.steps = 0
        current.steps = 0
        guard saved == current else {
            throw TrainingError.resume(path: path, reason: "the run was made with other options (learning rate, batch, schedule, seed or precision)")
        }
        guard run.state.dataSHA256 == state.dataSHA256 else {
            throw TrainingError.resume(path: path, reason: Trainer.dataMismatch)
        }
        var expected: [String: [Int]] = [:]
        for t in model.layout.tensors where t.trainable {
            for name in [t.name, Trainer.firstMoment + t.name, Trainer.secondMoment + t.name] { expected[name] = t.shape }
        }
        try Trainer.checkTensors(of: file, at: path, expected: expected, whose: "this run (other adapters or targets)")
        for t in model.layout.tensors {
            guard let g = t.gradientOffset else { continue }
            try file.read(t.name, shape: t.shape, into: model.parameters.pointer + t.offset)
            try file.read(Trainer.firstMoment + t.name, shape: t.shape, into: optimizer.m.pointer + g)
            try file.read(Trainer.secondMoment + t.name, shape: t.shape, into: optimizer.v.pointer + g)
        }
        optimizer.step = run.adamStep
        state = run.state
        data.position = run.state.rngState
    }
}
