import Foundation
import Kernels
import Support
import Testing
import Transformer
@testable import Training

/// A small run: a model of a few thousand parameters on a repeating token pattern.
func smallRun(steps: Int = 8, dropout: Double = 0.1, maxSkips: Int = 10, spikeFactor: Double = 3,
              precision: MatmulPrecision = .fp32) throws -> (Trainer, [Int32]) {
    var config = ModelConfig(vocabularySize: 17, contextLength: 16, dModel: 16, layers: 2, heads: 2, dFF: 32)
    config.dropout = dropout
    let model = try TransformerModel(config: config, seed: 4)
    var options = TrainingOptions()
    options.steps = steps
    options.batch = 3
    options.accumulation = 2
    options.sequenceLength = 12
    options.schedule = LearningRateSchedule(maxLR: 3e-3, minLR: 3e-4, warmup: 2, total: steps)
    options.evalEvery = 3
    options.maxSkips = maxSkips
    options.spikeFactor = spikeFactor
    options.seed = 11
    options.precision = precision
    var rng = SplitMix64(seed: 2)
    let train = (0..<600).map { i in Int32((i * 5 + Int(rng.next() % 3)) % 17) }
    let validation = (0..<100).map { i in Int32((i * 5) % 17) }
    return (try Trainer(model: model, options: options, train: train, validation: validation), train)
}

func temporaryPath() -> String {
    ScratchDirectory.make("train")
}

@Suite("trainer")
struct TrainerTests {
    @Test("an interrupted and resumed run ends bit-identical to an uninterrupted one (dropout on)",
          arguments: MatmulPrecision.allCases)
    func resumeIsBitIdentical(_ precision: MatmulPrecision) throws {
        let (straight, _) = try smallRun(precision: precision)
        let whole = temporaryPath()
        #expect(try PretrainLoop.run(straight, directory: whole, tokenizer: nil) == .finished)

        let (first, train) = try smallRun(precision: precision)
        let directory = temporaryPath()
        var calls = 0
        let outcome = try PretrainLoop.run(first, directory: directory, tokenizer: nil, shouldStop: {
            calls += 1
            return calls > 5 // stop after 5 steps
        })
        #expect(outcome == .interrupted)
        #expect(first.state.step == 5)
        // Lines a kill after the save would leave: the resumed run drops them and logs its own.
        let log = directory + "/log.jsonl"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try handle.seekToEnd()
        handle.write(Data("{\"step\": 6, \"left\": \"by a kill\"}\n{\"step\": 7, \"lo".utf8))
        try handle.close()
        let resumed = try Trainer.resume(from: directory, train: train, validation: first.validation)
        #expect(resumed.state == first.state)
        #expect(resumed.options.matmulPrecision == precision && resumed.workspace.precision == precision)
        #expect(try PretrainLoop.run(resumed, directory: directory, tokenizer: nil) == .finished)
        #expect(resumed.model.parameters.array == straight.model.parameters.array, "parameters bit-identical")
        #expect(resumed.optimizer.m.array == straight.optimizer.m.array)
        #expect(resumed.optimizer.v.array == straight.optimizer.v.array)
        #expect(resumed.state == straight.state)
        // The plain checkpoint beside the state loads as a model.
        #expect(try Checkpoint.load(from: directory).parameters.array == straight.model.parameters.array)
        // Each step once, as in the uninterrupted run's log (the last step twice: its final evaluation).
        #expect(try TrainingLogTests.steps(log) == Array(1...8) + [8])
        #expect(try TrainingLogTests.steps(whole + "/log.jsonl") == Array(1...8) + [8])
        #expect(!(try String(contentsOfFile: log, encoding: .utf8)).contains("by a kill"))
    }

    @Test("training lowers the loss on learnable data")
    func learns() throws {
        let (trainer, _) = try smallRun(steps: 60, dropout: 0)
        let before = try trainer.evaluate()!
        for _ in 0..<60 { _ = try trainer.step() }
        let after = try trainer.evaluate()!
        #expect(after < before - 0.5, "validation loss \(before) → \(after)")
    }

    @Test("bf16 products: a step's gradients are fp32's up to bf16 rounding, and the run learns as fp32 does")
    func mixedPrecision() throws {
        let (full, _) = try smallRun(steps: 60, dropout: 0)
        let (mixed, _) = try smallRun(steps: 60, dropout: 0, precision: .bf16)
        #expect(mixed.workspace.precision == .bf16 && full.workspace.precision == .fp32)
        let before = try full.evaluate()!
        // The same first batch through both: the losses and gradients differ only by rounding.
        let lossFull = try full.step().loss, lossMixed = try mixed.step().loss
        #expect(abs(lossMixed - lossFull) < 1e-2 * abs(lossFull), "first loss \(lossFull) vs \(lossMixed)")
        let gf = full.workspace.gradients.array, gm = mixed.workspace.gradients.array
        var difference = 0.0, norm = 0.0
        for i in gf.indices { difference += Double(gf[i] - gm[i]) * Double(gf[i] - gm[i]); norm += Double(gf[i]) * Double(gf[i]) }
        let relative = (difference / norm).squareRoot()
        #expect(relative > 1e-5, "the bf16 run rounds (relative gradient difference \(relative))")
        #expect(relative < 3e-2, "relative gradient difference \(relative)")
        for _ in 1..<60 { _ = try full.step(); _ = try mixed.step() }
        let afterFull = try full.evaluate()!, afterMixed = try mixed.evaluate()!
        #expect(afterMixed < before - 0.5, "bf16 validation loss \(before) → \(afterMixed)")
        #expect(abs(afterMixed - afterFull) < 0.05 * afterFull, "validation loss fp32 \(afterFull), bf16 \(afterMixed)")
    }

    @Test("a NaN loss skips the step without touching the parameters; too many in a row stop the run and keep the last checkpoint")
    func nanGuard() throws {
        let (trainer, _) = try smallRun(maxSkips: 2)
        let directory = temporaryPath()
        _ = try trainer.step()
        try trainer.save(to: directory, tokenizer: nil)
        let saved = try Checkpoint.load(from: directory).parameters.array
        // Poison one weight of the output layer: every loss becomes NaN.
        trainer.model.parameters.pointer[trainer.model.layout.lmHead.weight + 3] = .nan
        let before = trainer.model.parameters.array
        let report = try trainer.step()
        #expect(report.skipped != nil)
        #expect(report.loss.isNaN)
        #expect(trainer.model.parameters.array.elementsEqual(before) { $0 == $1 || ($0.isNaN && $1.isNaN) })
        #expect(throws: TrainingError.self) { try trainer.step() }
        #expect(try Checkpoint.load(from: directory).parameters.array == saved, "the last good checkpoint is intact")
    }

    @Test("a loss spike far above the running mean is skipped")
    func spikeGuard() throws {
        let (trainer, _) = try smallRun(steps: 20, dropout: 0, spikeFactor: 1.5)
        for _ in 0..<6 { _ = try trainer.step() }
        // Scaling the output layer up makes the loss jump far above its running mean.
        let head = trainer.model.layout.lmHead.weight, p = trainer.model.parameters.pointer
        for i in 0..<(17 * 16) { p[head + i] *= 40 }
        let before = trainer.model.parameters.array
        let report = try trainer.step()
        #expect(report.skipped?.contains("spike") == true, "\(report.loss) vs mean \(trainer.state.lossAverage ?? 0)")
        #expect(trainer.model.parameters.array == before)
    }

    @Test("bad options and too little data are refused by name")
    func badOptions() throws {
        let (trainer, train) = try smallRun()
        var options = trainer.options
        options.sequenceLength = 17
        #expect(throws: TrainingError.invalidOption(name: "context", reason: "must be in 2...16 (the model's context), got 17")) {
            try Trainer(model: trainer.model, options: options, train: train, validation: nil)
        }
        options = trainer.options
        options.schedule.maxLR = -1
        #expect(throws: TrainingError.self) { try Trainer(model: trainer.model, options: options, train: train, validation: nil) }
        #expect(throws: TrainingError.notEnoughData(tokens: 5, needed: 13)) {
            try Trainer(model: trainer.model, options: trainer.options, train: [1, 2, 3, 4, 5], validation: nil)
        }
        let directory = temporaryPath()
        try trainer.save(to: directory, tokenizer: nil)
        #expect(throws: TrainingError.self) {
            try Trainer.resume(from: directory, train: Array(train.reversed()), validation: nil)
        }
    }
}
