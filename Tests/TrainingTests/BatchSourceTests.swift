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

    /// A short run's options: learning rate 1e-2 down to 1e-3 over `steps`, no spike guard.
    func shortRun(steps: Int, batch: Int, length: Int, warmup: Int) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = steps
        options.batch = batch
        options.sequenceLength = length
        options.schedule = LearningRateSchedule(maxLR: 1e-2, minLR: 1e-3, warmup: warmup, total: steps)
        options.spikeFactor = 0
        return options
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
        let options = shortRun(steps: 30, batch: 4, length: 8, warmup: 2)
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
        var options = shortRun(steps: steps, batch: 3, length: length, warmup: 1)
        options.accumulation = 2
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

    @Test("grouping by length: every example once an epoch, each window's batches consecutive in length order, less padding")
    func groupingByLength() throws {
        // 301 examples of 2 to 200 tokens: windows of 32 batches of 4 (128 rows) and a short last one.
        var rng = SplitMix64(seed: 11)
        let all = (0..<301).map { i -> MaskedExample in
            let n = 2 + Int(rng.next() % 199)
            return MaskedExample(ids: (0..<n).map { Int32(($0 + i) % 17) }, targets: (0..<n).map { j in j == 0 ? -1 : Int32(j % 17) })
        }
        let batch = 4, window = batch * MaskedExamples.lengthWindow
        let grouped = try MaskedExamples(examples: all, vocabularySize: 17, seed: 7, groupedBy: batch)
        let plain = try MaskedExamples(examples: all, vocabularySize: 17, seed: 7)
        for epoch: UInt64 in 0..<3 {
            let order = grouped.permutation(epoch)
            #expect(order.sorted() == Array(0..<all.count), "epoch \(epoch) visits every example once")
            // Grouping reorders the plain shuffle within each window only.
            let shuffled = plain.permutation(epoch)
            for start in stride(from: 0, to: all.count, by: window) {
                let end = min(all.count, start + window)
                #expect(Set(order[start..<end]) == Set(shuffled[start..<end]), "epoch \(epoch), window at \(start)")
                // The window's batches, each sorted and taken longest first, are its lengths sorted.
                let lengths = { (i: Int) in all[i].ids.count }
                let batches = stride(from: start, to: end, by: batch).map { order[$0..<min(end, $0 + batch)].map(lengths).sorted(by: >) }
                #expect(batches.sorted { $0[0] > $1[0] }.joined().elementsEqual(order[start..<end].map(lengths).sorted(by: >)),
                        "epoch \(epoch), window at \(start): a batch mixes lengths another batch lies between")
            }
        }
        #expect(grouped.permutation(0) != grouped.permutation(1), "each epoch draws its own order")
        #expect(try MaskedExamples(examples: all, vocabularySize: 17, seed: 7, groupedBy: batch).permutation(2) == grouped.permutation(2))
        // The padding share it reports is what `fill` hands out over the first epoch.
        var source = grouped
        var ids: [Int32] = [], targets: [Int32] = [], computed = 0, counted = 0
        while source.position + UInt64(batch) <= UInt64(all.count) {
            let first = Int(source.position)
            let t = source.fill(ids: &ids, targets: &targets, batch: batch, length: 150)
            computed += batch * t
            counted += (first..<(first + batch)).map { min(150, all[grouped.permutation(0)[$0]].ids.count) }.reduce(0, +)
        }
        // 301 rows: the last batch of the epoch has one row; `paddingShare` counts it alone.
        let lastRow = min(150, all[grouped.permutation(0)[300]].ids.count)
        let expected = Double(computed + batch * lastRow - counted - lastRow) / Double(computed + batch * lastRow)
        #expect(abs(grouped.paddingShare(batch: batch, length: 150) - expected) < 1e-12)
        let less = grouped.paddingShare(batch: batch, length: 150), more = plain.paddingShare(batch: batch, length: 150)
        #expect(less < 0.15 && more > 0.3, "padding \(less) grouped against \(more) not")
        #expect(throws: TrainingError.self) { try MaskedExamples(examples: all, vocabularySize: 17, seed: 7, groupedBy: 0) }
        #expect(grouped.fingerprint != plain.fingerprint, "a resume notices the other order")
    }

    @Test("a run on batches grouped by length resumes bit-identically, and not on ungrouped batches")
    func groupedResume() throws {
        let config = ModelConfig(vocabularySize: 17, contextLength: 16, dModel: 16, layers: 1, heads: 2, dFF: 32)
        let options = shortRun(steps: 10, batch: 2, length: 16, warmup: 1)
        func data(_ grouped: Bool) throws -> MaskedExamples {
            try MaskedExamples(examples: varied(70), vocabularySize: 17, seed: 2, groupedBy: grouped ? 2 : nil)
        }
        let straight = try Trainer(model: try TransformerModel(config: config, seed: 1), options: options, data: try data(true), validation: nil)
        for _ in 0..<10 { _ = try straight.step() }
        let first = try Trainer(model: try TransformerModel(config: config, seed: 1), options: options, data: try data(true), validation: nil)
        for _ in 0..<4 { _ = try first.step() }
        let directory = temporaryPath()
        try first.save(to: directory, tokenizer: nil)
        let resumed = try Trainer.resume(from: directory, data: { _, _ in try data(true) }, validation: nil)
        for _ in 4..<10 { _ = try resumed.step() }
        #expect(resumed.model.parameters.array == straight.model.parameters.array, "bit-identical to the uninterrupted run")
        #expect(throws: TrainingError.self) { try Trainer.resume(from: directory, data: { _, _ in try data(false) }, validation: nil) }
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
