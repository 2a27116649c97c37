import Foundation
import Kernels
import Support
import Testing
import Training
@testable import Transformer

/// The committed reference made once by `Benchmarks/torch_reference.py --write-fixture
/// Tests/Fixtures/torch-golden` (an independent float64 PyTorch implementation), so that every
/// `make test` checks PyTorch parity without Python.
private let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/torch-golden").path

private struct Reference: Decodable {
    struct AdamW: Decodable {
        struct Step: Decodable { var ids: [Int32]; var targets: [Int32] }
        var lr: Double, min_lr: Double, warmup: Int, weight_decay: Double, clip: Double, steps: Int
        var batches: [Step]
        var losses: [Double]
    }
    var ids: [Int32]
    var batch: Int
    var batch_ids: [Int32]
    var batch_targets: [Int32]
    var loss: Double
    var adamw: AdamW
}

private func load(_ mix: String) throws -> (TransformerModel, Safetensors.File, Reference) {
    let directory = goldenDirectory + "/" + mix
    let model = try Checkpoint.load(from: directory)
    let file = try Safetensors.File(path: directory + "/reference.safetensors")
    let reference = try JSONDecoder().decode(Reference.self, from: Data((file.metadata["reference"] ?? "").utf8))
    return (model, file, reference)
}

private func floats(_ file: Safetensors.File, _ name: String) throws -> [Float] {
    let shape = try #require(file.tensors[name]).shape
    var out = [Float](repeating: 0, count: shape.reduce(1, *))
    try out.withUnsafeMutableBufferPointer { try file.read(name, shape: shape, into: $0.baseAddress!) }
    return out
}

@Suite("parity with PyTorch (committed float64 reference)")
struct TorchGoldenTests {
    @Test("logits of every position, through the cached inference path", arguments: ["gpt2", "llama"])
    func logits(_ mix: String) throws {
        let (model, file, reference) = try load(mix)
        let expected = try floats(file, "logits")
        let session = try InferenceSession(model: model)
        let ours = try session.feed(reference.ids, allRows: true)
        #expect(ours.count == expected.count)
        let scale = expected.map(abs).max()!
        let worst = zip(ours, expected).map { abs($0 - $1) }.max()! / scale
        #expect(worst < 1e-5, "max |Δlogit| / max |logit| = \(worst)")
    }

    @Test("every tensor's gradient of one masked batch", arguments: ["gpt2", "llama"])
    func gradients(_ mix: String) throws {
        let (model, file, reference) = try load(mix)
        let length = reference.batch_ids.count / reference.batch
        let workspace = try TrainingWorkspace(model: model, batch: reference.batch, length: length)
        let loss = try model.forward(ids: reference.batch_ids, targets: reference.batch_targets, workspace: workspace)
        model.backward(workspace: workspace)
        #expect(abs(Double(loss) - reference.loss) < 1e-5 * reference.loss)
        // Relative to each tensor's largest gradient, floored at 1e-3 of the model's largest: a few
        // gradients are exactly 0 in exact arithmetic, and float rounding is all that is left there.
        let expected = try Dictionary(uniqueKeysWithValues: model.layout.tensors.map { ($0.name, try floats(file, "grad." + $0.name)) })
        let top = expected.values.flatMap { $0.map(abs) }.max()!
        for tensor in model.layout.tensors {
            let g = try #require(tensor.gradientOffset)
            let ours = Array(UnsafeBufferPointer(start: workspace.gradients.pointer + g, count: tensor.count))
            let theirs = expected[tensor.name]!
            let scale = max(theirs.map(abs).max()!, 1e-3 * top)
            let worst = zip(ours, theirs).map { abs($0 - $1) }.max()! / scale
            #expect(worst < 1e-5, "\(tensor.name): relative difference \(worst)")
        }
    }

    @Test("10 AdamW steps (warmup, cosine, clipping, weight decay) give PyTorch's losses", arguments: ["gpt2", "llama"])
    func adamw(_ mix: String) throws {
        let (model, _, reference) = try load(mix)
        let hp = reference.adamw
        var options = TrainingOptions()
        options.steps = hp.steps
        options.batch = reference.batch
        options.sequenceLength = hp.batches[0].ids.count / reference.batch
        options.schedule = LearningRateSchedule(maxLR: hp.lr, minLR: hp.min_lr, warmup: hp.warmup, total: hp.steps)
        options.weightDecay = hp.weight_decay
        options.clip = hp.clip
        options.spikeFactor = 0
        let data = try FixedBatches(batches: hp.batches.map { MaskedExample(ids: $0.ids, targets: $0.targets) },
                                    vocabularySize: model.config.vocabularySize)
        let trainer = try Trainer(model: model, options: options, data: data, validation: nil)
        for (step, expected) in hp.losses.enumerated() {
            let loss = Double(try trainer.step().loss)
            #expect(abs(loss - expected) <= 2e-6 * expected, "step \(step + 1): \(loss) against \(expected)")
        }
    }
}
