import Foundation
import Kernels
import Support
import Testing
import Transformer
@testable import Training

@Suite("batch sources and trainer state")
struct BatchSourceTests {
    func examples(_ count: Int, vocabulary: Int32 = 17) -> [MaskedExample] {
        (0..<count).map { i in
            let n = 3 + i % 5
            let ids = (0..<n).map { Int32(($0 * 3 + i) % Int(vocabulary)) }
            // The first half is "prompt" (not counted), the rest "completion".
            let targets = (0..<n).map { j in j < n / 2 ? Int32(-1) : ids[(j + 1) % n] }
            return MaskedExample(ids: ids, targets: targets)
        }
    }

    @Test("masked examples: each epoch visits every example once, rows padded with uncounted targets, deterministic")
    func maskedExamples() throws {
        let all = examples(10)
        var source = try MaskedExamples(examples: all, vocabularySize: 17, seed: 4)
        let most = 6
        var ids: [Int32] = [], targets: [Int32] = []
        var seen: [MaskedExample] = []
        for step in 0..<5 {
            // Rows are padded to the batch's longest example, cut at `most`.
            let longest = min(most, max(source.example(at: UInt64(2 * step)).ids.count, source.example(at: UInt64(2 * step + 1)).ids.count))
            let length = source.fill(ids: &ids, targets: &targets, batch: 2, length: most)
            #expect(length == longest && ids.count == 2 * length && targets.count == 2 * length)
            for b in 0..<2 {
                let row = MaskedExample(ids: Array(ids[(b * length)..<((b + 1) * length)]),
                                        targets: Array(targets[(b * length)..<((b + 1) * length)]))
                let match = try #require(all.first { e in
                    let used = min(length, e.ids.count)
                    return Array(e.ids.prefix(used)) == Array(row.ids.prefix(used))
                        && Array(e.targets.prefix(used)) == Array(row.targets.prefix(used))
                        && row.targets[used...].allSatisfy { $0 == -1 }
                })
                seen.append(match)
            }
        }
        #expect(Set(seen.map(\.ids)).count == 10, "one epoch covers every example once")
        // The same seed gives the same order; another seed another one.
        var again = try MaskedExamples(examples: all, vocabularySize: 17, seed: 4)
        var other = try MaskedExamples(examples: all, vocabularySize: 17, seed: 5)
        #expect((0..<10).map { again.example(at: UInt64($0)) } == (0..<10).map { source.example(at: UInt64($0)) })
        #expect((0..<10).map { other.example(at: UInt64($0)) } != (0..<10).map { source.example(at: UInt64($0)) })
        again.position = 3
        other.position = 3
        #expect(again.position == 3)
        // Bad examples are refused with their index.
        #expect(throws: TrainingError.self) {
            try MaskedExamples(examples: [MaskedExample(ids: [1, 2], targets: [-1, -1])], vocabularySize: 17, seed: 0)
        }
        #expect(throws: TransformerError.tokenOutOfRange(id: 40, vocabularySize: 17)) {
            try MaskedExamples(examples: [MaskedExample(ids: [1, 40], targets: [2, 3])], vocabularySize: 17, seed: 0)
        }
    }

    @Test("a trainer on masked examples learns the completions and resumes bit-identically")
    func trainerOnExamples() throws {
        let config = ModelConfig(vocabularySize: 17, contextLength: 8, dModel: 16, layers: 1, heads: 2, dFF: 32)
        var options = TrainingOptions()
        options.steps = 30
        options.batch = 4
        options.sequenceLength = 8
        options.schedule = LearningRateSchedule(maxLR: 1e-2, minLR: 1e-3, warmup: 2, total: 30)
        options.spikeFactor = 0
        func make() throws -> Trainer {
            let model = try TransformerModel(config: config, seed: 1)
            return try Trainer(model: model, options: options,
                               data: try MaskedExamples(examples: examples(12), vocabularySize: 17, seed: 2), validation: nil)
        }
        let straight = try make()
        var losses: [Float] = []
        for _ in 0..<30 { losses.append(try straight.step().loss) }
        let early: Float = losses.prefix(5).reduce(0, +), late: Float = losses.suffix(5).reduce(0, +)
        #expect(late < 0.75 * early, "\(losses)")

        let first = try make()
        for _ in 0..<12 { _ = try first.step() }
        let directory = temporaryPath()
        try first.save(to: directory, tokenizer: nil)
        let state = try Safetensors.File(path: directory + "/" + Trainer.stateFile)
        #expect(state.tensors["adamw.m.model.layers.0.mlp.up_proj.weight"]?.shape == [32, 16])
        #expect(first.state.rngState == 48, "12 steps of 4 rows")
        let resumed = try Trainer.resume(from: directory, data: { model, _ in
            try MaskedExamples(examples: examples(12), vocabularySize: model.config.vocabularySize, seed: 2)
        }, validation: nil)
        for _ in 12..<30 { _ = try resumed.step() }
        #expect(resumed.model.parameters.array == straight.model.parameters.array, "bit-identical to the uninterrupted run")
        // Other examples are refused.
        #expect(throws: TrainingError.self) {
            try Trainer.resume(from: directory, data: { model, _ in
                try MaskedExamples(examples: examples(11), vocabularySize: model.config.vocabularySize, seed: 2)
            }, validation: nil)
        }
    }

    /// Examples of 3 to 11 tokens over a 17-token vocabulary, the first third uncounted.
    func varied(_ count: Int) -> [MaskedExample] {
        (0..<count).map { i in
            let n = 3 + (i * 7) % 9
            let ids = (0..<n).map { Int32(($0 * 5 + i * 3) % 17) }
            return MaskedExample(ids: ids, targets: (0..<n).map { j in j < n / 3 ? -1 : ids[(j + 1) % n] })
        }
    }

    @Test("padding each batch to its longest example trains as padding to the whole length (loss, updates; full and LoRA)",
          arguments: [false, true])
    func paddingToLongest(lora: Bool) throws {
        let config = ModelConfig(vocabularySize: 17, contextLength: 16, dModel: 16, layers: 2, heads: 2, kvHeads: 1, dFF: 32)
        let length = 16, steps = 4
        var options = TrainingOptions()
        options.steps = steps
        options.batch = 3
        options.accumulation = 2
        options.sequenceLength = length
        options.schedule = LearningRateSchedule(maxLR: 1e-2, minLR: 1e-3, warmup: 1, total: steps)
        options.spikeFactor = 0
        func model() throws -> TransformerModel {
            let base = try TransformerModel(config: config, seed: 9)
            return lora ? try TransformerModel.adapting(base, with: AdapterConfig(rank: 2, alpha: 4), seed: 5) : base
        }
        let all = varied(14)
        let source = try MaskedExamples(examples: all, vocabularySize: 17, seed: 3)
        let trimmed = try Trainer(model: try model(), options: options, data: source, validation: nil)
        // The same rows, each padded to `length`.
        var rows: [MaskedExample] = []
        for micro in 0..<(steps * options.accumulation) {
            var ids = [Int32](repeating: 0, count: options.batch * length), targets = [Int32](repeating: -1, count: options.batch * length)
            for b in 0..<options.batch {
                let e = source.example(at: UInt64(micro * options.batch + b))
                for j in e.ids.indices { ids[b * length + j] = e.ids[j]; targets[b * length + j] = e.targets[j] }
            }
            rows.append(MaskedExample(ids: ids, targets: targets))
        }
        let padded = try Trainer(model: try model(), options: options, data: try FixedBatches(batches: rows, vocabularySize: 17),
                                 validation: nil)
        var shorter = false
        for step in 0..<steps {
            let a = try trimmed.step(), b = try padded.step()
            #expect(b.tokens == options.batch * options.accumulation * length)
            let longest = (0..<options.accumulation).map { micro in
                (0..<options.batch).map { source.example(at: UInt64((step * options.accumulation + micro) * options.batch + $0)).ids.count }.max()!
            }
            #expect(a.tokens == options.batch * longest.reduce(0, +), "step \(step): \(a.tokens) tokens for longest rows \(longest)")
            shorter = shorter || a.tokens < b.tokens
            #expect(abs(a.loss - b.loss) <= 1e-5 * abs(b.loss), "step \(step): \(a.loss) against \(b.loss)")
            #expect(abs(a.gradientNorm - b.gradientNorm) <= 1e-5 * b.gradientNorm, "step \(step)")
        }
        #expect(shorter, "some batch was shorter than the whole length")
        let x = trimmed.model.parameters.array, y = padded.model.parameters.array
        let worst = zip(x, y).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5, "largest parameter difference \(worst)")
        #expect(x != (try model()).parameters.array, "training moved the parameters")
    }

    @Test("the validation loss of examples batched by length equals padding them all to the whole length")
    func evaluationByLength() throws {
        let config = ModelConfig(vocabularySize: 17, contextLength: 16, dModel: 16, layers: 2, heads: 2, dFF: 32)
        let model = try TransformerModel(config: config, seed: 2)
        let all = varied(11)
        let got = try model.evaluate(examples: all, batch: 4, length: 16)
        // Reference: every example alone, padded to 16, its summed loss over its counted targets.
        let workspace = try TrainingWorkspace(model: model, batch: 1, length: 16, training: false)
        var total = 0.0, counted = 0
        for e in all {
            var ids = [Int32](repeating: 0, count: 16), targets = [Int32](repeating: -1, count: 16)
            for j in e.ids.indices { ids[j] = e.ids[j]; targets[j] = e.targets[j] }
            let loss = try model.forward(ids: ids, targets: targets, workspace: workspace)
            total += Double(loss) * Double(workspace.counted)
            counted += workspace.counted
        }
        #expect(abs(got - total / Double(counted)) <= 1e-6 * total / Double(counted), "\(got) against \(total / Double(counted))")
        // A length past the workspace's capacity, or none, is refused.
        #expect(throws: TransformerError.self) { try workspace.setLength(17) }
        #expect(throws: TransformerError.self) { try workspace.setLength(0) }
    }

    @Test("a state file whose tensors do not match the model by name and shape is refused, naming the tensor")
    func mismatchedState() throws {
        let (trainer, train) = try smallRun(steps: 4)
        _ = try trainer.step()
        let directory = temporaryPath()
        try trainer.save(to: directory, tokenizer: nil)
        let path = directory + "/" + Trainer.stateFile
        let file = try Safetensors.File(path: path)
        func rewrite(_ change: (inout [(String, [Int], [Float])]) -> Void) throws {
            var tensors = try file.tensors.keys.sorted().map { name -> (String, [Int], [Float]) in
                let shape = file.tensors[name]!.shape
                var values = [Float](repeating: 0, count: shape.reduce(1, *))
                try values.withUnsafeMutableBufferPointer { try file.read(name, shape: shape, into: $0.baseAddress!) }
                return (name, shape, values)
            }
            change(&tensors)
            let buffers = tensors.map { FloatBuffer($0.2) }
            let entries = zip(tensors, buffers).map { t, b in
                Safetensors.Entry(name: t.0, shape: t.1, data: UnsafeBufferPointer(start: b.pointer, count: b.count))
            }
            try withExtendedLifetime(buffers) { try Safetensors.write(entries, metadata: file.metadata, to: directory + "/bad/" + Trainer.stateFile) }
        }
        try FileManager.default.createDirectory(atPath: directory + "/bad", withIntermediateDirectories: true)
        // A renamed tensor, a reshaped one, a missing moment.
        let cases: [(String, (inout [(String, [Int], [Float])]) -> Void)] = [
            ("model.layers.9.mlp.up_proj.weight", { t in
                let i = t.firstIndex { $0.0 == "model.layers.1.mlp.up_proj.weight" }!
                t[i].0 = "model.layers.9.mlp.up_proj.weight"
            }),
            ("model.norm.weight", { t in
                let i = t.firstIndex { $0.0 == "model.norm.weight" }!
                t[i].1 = [8, 2]
            }),
            ("adamw.v.model.norm.bias", { t in t.removeAll { $0.0 == "adamw.v.model.norm.bias" } }),
        ]
        for (name, change) in cases {
            try rewrite(change)
            do {
                _ = try Trainer.resume(from: directory + "/bad", train: train, validation: nil)
                Issue.record("a state file with a bad \(name) was accepted")
            } catch let error as TrainingError {
                #expect("\(error)".contains(name), "\(error)")
            }
        }
        // The untouched file resumes.
        _ = try Trainer.resume(from: directory, train: train, validation: nil)
    }
}
