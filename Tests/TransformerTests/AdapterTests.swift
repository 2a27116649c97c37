import CQuant
import Foundation
import Kernels
import Testing
@testable import Transformer

/// Low-rank adapters through the `Linear` seam: `y = W x + scale · B A x` on each adapted
/// projection, gradients for A and B only, the base frozen.
@Suite("low-rank adapters")
struct AdapterTests {
    static let targetSets: [[String]] = [AdapterConfig.allTargets, ["q", "v"], ["k", "o", "down"]]

    /// A base model, and the same with adapters whose B is random (so every product matters).
    func models(_ variant: Variant, targets: [String], lastLayers: Int? = nil, rsLoRA: Bool = false)
        throws -> (TransformerModel, TransformerModel) {
        var config = variant.config
        config.dropout = 0
        let base = try TransformerModel(config: config, seed: 3)
        let adapters = AdapterConfig(rank: 3, alpha: 6, targets: targets, lastLayers: lastLayers, rankStabilized: rsLoRA)
        let adapted = try TransformerModel.adapting(base, with: adapters, seed: 9)
        var rng = SplitMix64(seed: 21)
        for t in adapted.layout.tensors where t.name.hasSuffix("lora_B.weight") {
            for i in 0..<t.count { adapted.parameters.pointer[t.offset + i] = (rng.nextFloat() - 0.5) * 0.8 }
        }
        return (base, adapted)
    }

    func logits(_ model: TransformerModel, _ ids: [Int32]) throws -> [Float] {
        try InferenceSession(model: model).feed(ids, allRows: true)
    }

    @Test("fresh adapters (B = 0) leave the model's logits unchanged; only adapter tensors train")
    func identityAtStart() throws {
        var config = Variant.all[1].config
        config.dropout = 0
        let base = try TransformerModel(config: config, seed: 3)
        let adapted = try TransformerModel.adapting(base, with: AdapterConfig(rank: 4, alpha: 8), seed: 1)
        let ids: [Int32] = [1, 5, 7, 2, 11, 3]
        #expect(try logits(adapted, ids) == logits(base, ids))
        #expect(adapted.layout.tensors.filter(\.trainable).allSatisfy { $0.group == .adapter })
        #expect(adapted.layout.gradientCount == adapted.layout.count - adapted.layout.baseCount)
        // PEFT's init: A within ±1/√in, not all zero.
        let a = adapted.layout.tensor(named: "model.layers.0.self_attn.q_proj.lora_A.weight")!
        let values = UnsafeBufferPointer(start: adapted.parameters.pointer + a.offset, count: a.count)
        #expect(a.shape == [4, config.dModel])
        #expect(values.allSatisfy { abs($0) <= 1 / Float(config.dModel).squareRoot() } && values.contains { $0 != 0 })
        #expect(adapted.layout.tensor(named: "model.layers.1.mlp.gate_proj.lora_B.weight")!.shape == [config.dFF, 4])
    }

    @Test("an adapted model equals its base with W += scale · B·A merged into each adapted projection",
          arguments: targetSets)
    func mergedEquivalence(_ targets: [String]) throws {
        for (variant, rsLoRA) in [(Variant.all[0], false), (Variant.all[1], true)] {
            let (base, adapted) = try models(variant, targets: targets, lastLayers: 1, rsLoRA: rsLoRA)
            let scale = adapted.adapters!.scale
            #expect(scale == Float(rsLoRA ? 6 / 3.0.squareRoot() : 2))
            // Merge by hand, from the tensor names alone.
            let merged = FloatBuffer(count: base.layout.count)
            merged.pointer.update(from: base.parameters.pointer, count: base.layout.count)
            for t in adapted.layout.tensors where t.name.hasSuffix("lora_A.weight") {
                let projection = String(t.name.dropLast("lora_A.weight".count)) + "weight"
                let w = try #require(base.layout.tensor(named: projection))
                let b = try #require(adapted.layout.tensor(named: String(t.name.dropLast("A.weight".count)) + "B.weight"))
                let (rows, columns, r) = (w.shape[0], w.shape[1], t.shape[0])
                for i in 0..<rows {
                    for j in 0..<columns {
                        var sum: Float = 0
                        for k in 0..<r { sum += adapted.parameters.pointer[b.offset + i * r + k] * adapted.parameters.pointer[t.offset + k * columns + j] }
                        merged.pointer[w.offset + i * columns + j] += scale * sum
                    }
                }
            }
            let fused = try TransformerModel(config: base.config, parameters: merged)
            let ids: [Int32] = [4, 9, 1, 12, 0, 7, 3]
            let a = try logits(adapted, ids), f = try logits(fused, ids), plain = try logits(base, ids)
            // `fused()` (what `tinylm fuse` writes) is the same merge.
            let library = try logits(try adapted.fused(), ids)
            #expect(zip(library, f).map { abs($0 - $1) }.max()! <= 1e-5 * f.map(abs).max()!, "fused(): \(variant.name), \(targets)")
            let scaleOfLogits = f.map(abs).max()!
            #expect(zip(a, f).map { abs($0 - $1) }.max()! <= 1e-5 * scaleOfLogits, "\(variant.name), \(targets)")
            #expect(zip(a, plain).map { abs($0 - $1) }.max()! > 1e-3, "the adapters change the output")
        }
    }

    @Test("adapter gradients against central finite differences; the frozen base gets none", arguments: Variant.all)
    func gradients(_ variant: Variant) throws {
        let (_, model) = try models(variant, targets: variant.config.activation == .swiglu ? ["q", "v", "gate", "down"] : ["k", "o", "up"])
        let batch = 2, length = 6
        let w = try TrainingWorkspace(model: model, batch: batch, length: length)
        #expect(w.gradients.count == model.layout.count - model.layout.baseCount)
        var rng = SplitMix64(seed: 5)
        let ids = (0..<(batch * length)).map { _ in Int32(rng.next() % 13) }
        var targets = (0..<(batch * length)).map { _ in Int32(rng.next() % 13) }
        targets[4] = -1
        _ = try model.forward(ids: ids, targets: targets, workspace: w, forBackward: true)
        model.backward(workspace: w)
        let analytic = w.gradients.array
        let p = model.parameters.pointer
        let h: Float = 1e-2
        var checked = 0
        for tensor in model.layout.tensors {
            guard let g = tensor.gradientOffset else { continue }
            #expect(tensor.group == .adapter)
            var errorNorm = 0.0, gradientNorm = 0.0
            for k in Set((0..<10).map { _ in Int(rng.next() % UInt64(tensor.count)) }) {
                let saved = p[tensor.offset + k]
                p[tensor.offset + k] = saved + h
                let up = Double(try model.forward(ids: ids, targets: targets, workspace: w))
                p[tensor.offset + k] = saved - h
                let down = Double(try model.forward(ids: ids, targets: targets, workspace: w))
                p[tensor.offset + k] = saved
                let numeric = (up - down) / Double(2 * h), a = Double(analytic[g + k])
                #expect(abs(numeric - a) <= 2e-3 + 3e-2 * abs(a), "\(tensor.name)[\(k)]: numeric \(numeric), analytic \(a)")
                errorNorm += (numeric - a) * (numeric - a)
                gradientNorm += a * a
            }
            #expect(gradientNorm > 1e-10, "\(tensor.name) has a gradient")
            #expect((errorNorm / max(gradientNorm, 1e-12)).squareRoot() < 2e-2, "\(tensor.name)")
            checked += 1
        }
        #expect(checked >= 2 * 3 * 2)
    }

    @Test("a frozen output layer runs a chunk of counted rows at a time: the same loss and gradients as the whole logits",
          arguments: [Variant.all[0], Variant.all[1]])
    func chunkedHead(_ variant: Variant) throws {
        let (_, model) = try models(variant, targets: AdapterConfig.allTargets)
        // 12 × 8 = 96 rows, 61 of them counted: chunks of 40 and 21 counted rows, around masked rows.
        let batch = 12, length = 8, n = batch * length
        let chunked = try TrainingWorkspace(model: model, batch: batch, length: length, headChunk: 40)
        let whole = try TrainingWorkspace(model: model, batch: batch, length: length, headChunk: 0)
        #expect(chunked.chunkedHead && !whole.chunkedHead)
        #expect(chunked.logits.count == 40 * model.config.vocabularySize)
        #expect(TrainingWorkspace.headChunk(rows: 1024, vocabulary: 49152) == 256)
        #expect(TrainingWorkspace.headChunk(rows: 1024, vocabulary: 8192) == 1024)
        var rng = SplitMix64(seed: 17)
        let ids = (0..<n).map { _ in Int32(rng.next() % 13) }
        let targets = (0..<n).map { i in i % 3 == 1 || i < 5 ? -1 : Int32(rng.next() % 13) }
        var results: [(loss: Float, gradients: [Float])] = []
        for w in [chunked, whole] {
            let loss = try model.forward(ids: ids, targets: targets, workspace: w, forBackward: true)
            w.gradients.zero()
            model.backward(workspace: w, scale: 0.5)
            results.append((loss, w.gradients.array))
            #expect(w.counted == targets.filter { $0 >= 0 }.count)
        }
        #expect(abs(results[0].loss - results[1].loss) <= 1e-6 * abs(results[1].loss))
        let largest = results[1].gradients.map(abs).max()!
        #expect(largest > 0)
        let worst = zip(results[0].gradients, results[1].gradients).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5 * largest, "worst difference \(worst) of \(largest)")
        // A forward without forBackward leaves what backward needs too.
        _ = try model.forward(ids: ids, targets: targets, workspace: chunked)
        chunked.gradients.zero()
        model.backward(workspace: chunked, scale: 0.5)
        #expect(chunked.gradients.array == results[0].gradients)
    }

    @Test("bf16 products on a frozen base packed once: the same loss and adapter gradients, bit for bit",
          .enabled(if: amxAvailable, "this CPU has no AMX-BF16 (packed operands are for the tiles)"),
          arguments: [Variant.all[0], Variant.all[1]])
    func packedFrozenBase(_ variant: Variant) throws {
        let (_, model) = try models(variant, targets: ["q", "v", "down"])
        let batch = 3, length = 8, n = batch * length
        var rng = SplitMix64(seed: 5)
        let ids = (0..<n).map { _ in Int32(rng.next() % 13) }
        let targets = (0..<n).map { _ in Int32(rng.next() % 13) }
        func run() throws -> (Float, [Float]) {
            let w = try TrainingWorkspace(model: model, batch: batch, length: length)
            w.precision = .bf16
            let loss = try model.forward(ids: ids, targets: targets, workspace: w, forBackward: true)
            w.gradients.zero()
            model.backward(workspace: w, scale: 0.5)
            return (loss, w.gradients.array)
        }
        let (loss, gradients) = try run()
        #expect(model.layout.layers.allSatisfy { $0.qkv.packed == nil })
        let bytes = model.packFrozenProducts()
        // Every base matrix (all frozen) packed in both orientations; adapters stay unpacked.
        let linears = model.layout.layers.flatMap { [$0.qkv, $0.out, $0.up, $0.down] } + [model.layout.lmHead]
        #expect(linears.allSatisfy { $0.packed != nil && $0.packed!.forward.n == $0.outFeatures && $0.packed!.backward.n == $0.inFeatures })
        #expect(bytes >= linears.reduce(0) { $0 + 4 * $1.multiplyAdds }, "two bf16 copies of each")
        #expect(model.packFrozenProducts() == 0, "packing twice adds nothing")
        let (packedLoss, packedGradients) = try run()
        #expect(packedLoss.bitPattern == loss.bitPattern)
        #expect(gradients.contains { $0 != 0 })
        #expect(packedGradients.map(\.bitPattern) == gradients.map(\.bitPattern))
    }

    @Test("evaluation runs the output layer a chunk of counted rows at a time: the same losses as the whole logits",
          arguments: [Variant.all[0], Variant.all[1]])
    func chunkedEvaluation(_ variant: Variant) throws {
        let model = try TransformerModel(config: variant.config, seed: 6)
        let batch = 12, length = 8, n = batch * length
        let chunked = try TrainingWorkspace(model: model, batch: batch, length: length, training: false, headChunk: 40)
        let whole = try TrainingWorkspace(model: model, batch: batch, length: length, training: false, headChunk: 0)
        #expect(chunked.chunkedHead && chunked.logits.count == 40 * model.config.vocabularySize && !whole.chunkedHead)
        var rng = SplitMix64(seed: 19)
        let ids = (0..<n).map { _ in Int32(rng.next() % 13) }
        let targets = (0..<n).map { i in i % 4 == 2 ? -1 : Int32(rng.next() % 13) }
        let a = try model.forward(ids: ids, targets: targets, workspace: chunked)
        let b = try model.forward(ids: ids, targets: targets, workspace: whole)
        #expect(abs(a - b) <= 1e-6 * abs(b))
        let perRow = zip(chunked.losses.array, whole.losses.array).map { abs($0 - $1) }.max()!
        #expect(perRow <= 1e-5, "worst per-row difference \(perRow)")
    }

    @Test("decoding one token at a time through rank-16 adapters (eight outputs per step, then the rest) gives the full forward's logits",
          arguments: [16, 5])
    func adapterDecoding(rank: Int) throws {
        // Output widths of 20 (k and v: two steps of eight and a tail of four), 40, 56 and 2·56.
        var config = ModelConfig(vocabularySize: 13, contextLength: 8, dModel: 40, layers: 2, heads: 4, kvHeads: 2, dFF: 56)
        config.useLlamaLayout()
        config.initStd = 0.3
        let base = try TransformerModel(config: config, seed: 2)
        let model = try TransformerModel.adapting(base, with: AdapterConfig(rank: rank, alpha: 2 * Double(rank)), seed: 4)
        var rng = SplitMix64(seed: 33)
        for t in model.layout.tensors where t.name.hasSuffix("lora_B.weight") {
            for i in 0..<t.count { model.parameters.pointer[t.offset + i] = (rng.nextFloat() - 0.5) * 0.6 }
        }
        let ids: [Int32] = [3, 7, 1, 12, 5, 0, 9, 4]
        let full = try InferenceSession(model: model).feed(ids, allRows: true)
        let session = try InferenceSession(model: model)
        var stepwise: [Float] = []
        for id in ids { stepwise += try session.feed([id]) }
        let scale = full.map(abs).max()!
        let worst = zip(full, stepwise).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5 * scale, "worst difference \(worst) of \(scale)")
        let plain = try InferenceSession(model: base).feed(ids, allRows: true)
        #expect(zip(full, plain).map { abs($0 - $1) }.max()! > 1e-2 * scale, "the adapters change the output")
    }

    @Test("a rank-16 adapter's decoding terms: the vector kernel equals the portable loop bit for bit at every row count and split, within rounding of float64, and exact where the sums are")
    func rank16Expansion() {
        var rng = SplitMix64(seed: 61)
        let scale: Float = 0.375
        for rows in 0...35 {
            let b = (0..<(16 * rows)).map { _ in rng.nextFloat() * 2 - 1 }, u = (0..<16).map { _ in rng.nextFloat() * 4 - 2 }
            let start = (0..<rows).map { _ in rng.nextFloat() - 0.5 }
            var vector = start, portable = start, split = start
            cq_rank16_expand(b, rows, u, scale, &vector)
            cq_rank16_expand_portable(b, rows, u, scale, &portable)
            // A column's sum does not depend on the other columns of the call.
            let cut = rows / 3
            b.withUnsafeBufferPointer { b in
                split.withUnsafeMutableBufferPointer { y in
                    cq_rank16_expand(b.baseAddress!, cut, u, scale, y.baseAddress!)
                    cq_rank16_expand(b.baseAddress! + 16 * cut, rows - cut, u, scale, y.baseAddress! + cut)
                }
            }
            #expect(vector.map(\.bitPattern) == portable.map(\.bitPattern), "\(rows) rows")
            #expect(split.map(\.bitPattern) == portable.map(\.bitPattern), "\(rows) rows, split at \(cut)")
            #if arch(x86_64)
            if cq_avx2_available() != 0 {
                var avx2 = start
                cq_avx2_rank16_expand(b, rows, u, scale, &avx2)
                #expect(avx2.map(\.bitPattern) == portable.map(\.bitPattern), "AVX2, \(rows) rows")
            }
            #endif
            for i in 0..<rows {
                let terms = (0..<16).map { Double(b[16 * i + $0]) * Double(u[$0]) }
                let exact = Double(start[i]) + Double(scale) * terms.reduce(0, +)
                let size = abs(Double(start[i])) + Double(scale) * terms.map(abs).reduce(0, +)
                #expect(abs(Double(vector[i]) - exact) <= 1e-6 * size, "row \(i) of \(rows)")
            }
        }
        // Multiples of 1/8 times multiples of 1/4: every product and sum is a multiple of 1/32
        // below 2^9, exact in a float, as is halving it; a lane that took another row's products
        // would show.
        let rows = 19
        let b = (0..<(16 * rows)).map { _ in Float(Int(rng.next() % 201) - 100) / 8 }, u = (0..<16).map { _ in Float(Int(rng.next() % 17) - 8) / 4 }
        var y = [Float](repeating: 1, count: rows)
        cq_rank16_expand(b, rows, u, 0.5, &y)
        for i in 0..<rows {
            let exact = 1 + 0.5 * (0..<16).map { Double(b[16 * i + $0]) * Double(u[$0]) }.reduce(0, +)
            #expect(Double(y[i]) == exact, "row \(i)")
        }
    }

    @Test("bad adapter settings are refused, naming the field")
    func invalid() {
        #expect(throws: TransformerError.self) { try AdapterConfig(rank: 0, alpha: 8).validate() }
        #expect(throws: TransformerError.self) { try AdapterConfig(rank: 4, alpha: .nan).validate() }
        #expect(throws: TransformerError.self) { try AdapterConfig(rank: 4, alpha: 8, targets: ["qkv"]).validate() }
        #expect(throws: TransformerError.self) { try AdapterConfig(rank: 4, alpha: 8, targets: []).validate() }
    }
}
