import Foundation
import Kernels
import Testing
@testable import Transformer

/// Small mixture-of-experts models covering the options: SwiGLU or GELU experts, renormalized or
/// raw top-k weights, every block or every second one a mixture, k of 1 or 2.
struct MixtureVariant: CustomTestStringConvertible, Sendable {
    var name: String
    var config: ModelConfig
    var testDescription: String { name }

    static func make(_ name: String, activation: ModelConfig.Activation, experts: Int, k: Int, every: Int,
                     normalize: Bool, bias: Bool = false, jitter: Double = 0, perLayer: Bool = false) -> MixtureVariant {
        var c = ModelConfig(vocabularySize: 13, contextLength: 8, dModel: 8, layers: 2, heads: 2, kvHeads: 1, dFF: 12)
        c.norm = .rmsnorm
        c.positions = .rope
        c.activation = activation
        c.bias = bias
        c.tiedEmbeddings = false
        c.initStd = 0.4
        c.experts = experts
        c.expertsPerToken = k
        c.moeEvery = every
        c.expertDFF = 6
        c.normalizeTopK = normalize
        c.routerJitter = jitter
        c.routerAuxLossPerLayer = perLayer
        // Larger than the defaults, so that finite differences see the router losses.
        c.routerAuxLossCoef = 0.3
        c.routerZLossCoef = 0.05
        return MixtureVariant(name: name, config: c)
    }

    static let all: [MixtureVariant] = [
        make("Mixtral: swiglu, 4 experts, top 2, renormalized, every block", activation: .swiglu, experts: 4, k: 2, every: 1, normalize: true),
        make("OLMoE-style: swiglu, 5 experts, top 2, raw weights", activation: .swiglu, experts: 5, k: 2, every: 1, normalize: false),
        make("gelu experts with biases, top 1 of 3, every second block", activation: .gelu, experts: 3, k: 1, every: 2, normalize: true, bias: true),
        make("Mixtral with router jitter 0.2 (training noise on)", activation: .swiglu, experts: 4, k: 2, every: 1, normalize: true, jitter: 0.2),
        make("Mixtral with the load-balancing loss per block", activation: .swiglu, experts: 4, k: 2, every: 1, normalize: true, perLayer: true),
    ]
}

@Suite("mixture of experts")
struct MixtureTests {
    static func batch(_ seed: UInt64, count: Int) -> (ids: [Int32], targets: [Int32]) {
        var rng = SplitMix64(seed: seed)
        var ids = (0..<count).map { _ in Int32(rng.next() % 13) }, targets = (0..<count).map { _ in Int32(rng.next() % 13) }
        ids[0] = 3
        targets[2] = -1
        return (ids, targets)
    }

    @Test("every parameter's gradient, router and load-balancing and z losses included, against finite differences",
          arguments: MixtureVariant.all)
    func gradients(_ variant: MixtureVariant) throws {
        let c = variant.config
        let model = try TransformerModel(config: c, seed: 4)
        let batch = 2, length = 6, (ids, targets) = Self.batch(7, count: batch * length)
        let w = try TrainingWorkspace(model: model, batch: batch, length: length)
        func routing() -> [Int32] { Array(UnsafeBufferPointer(start: w.mixture!.chosen.pointer, count: w.mixture!.chosen.count)) }
        // Jitter is training noise: on with a seed (the same noise in every pass here).
        let seed: UInt64? = c.routerJitter > 0 ? 99 : nil
        // The training loss: cross-entropy plus the router losses with their coefficients.
        let loss = { () throws -> Double in
            let ce = Double(try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed))
            return ce + c.routerAuxLossCoef * w.routerAuxLoss + c.routerZLossCoef * w.routerZLoss
        }
        _ = try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed, forBackward: true)
        #expect(w.routerAuxLoss > 0.5 && w.routerZLoss > 0)
        #expect(w.mixture!.jitterActive == (c.routerJitter > 0))
        let chosen = routing()
        w.gradients.zero()
        model.backward(workspace: w)
        let analytic = w.gradients.array
        let p = model.parameters.pointer, h: Float = 1e-2
        var rng = SplitMix64(seed: 11)
        var checked = 0, skipped = 0
        for tensor in model.layout.tensors {
            let picks = Set((0..<10).map { _ in Int(rng.next() % UInt64(tensor.count)) })
            for k in picks {
                let i = tensor.offset + k, saved = p[i]
                p[i] = saved + h
                let up = try loss(), upRouting = routing()
                p[i] = saved - h
                let down = try loss(), downRouting = routing()
                p[i] = saved
                // The top-k choice is piecewise constant: a step that changes it has no derivative.
                if upRouting != chosen || downRouting != chosen { skipped += 1; continue }
                checked += 1
                let numeric = (up - down) / Double(2 * h), a = Double(analytic[i])
                #expect(abs(numeric - a) <= 2e-3 + 3e-2 * abs(a), "\(tensor.name)[\(k)]: numeric \(numeric), analytic \(a)")
            }
        }
        #expect(skipped * 10 < checked, "\(skipped) of \(checked + skipped) probes changed the routing")
        // Every expert got tokens in this batch, and the router's gradient is not zero.
        let router = model.layout.tensors.first { $0.name.hasSuffix("block_sparse_moe.gate.weight") }!
        #expect(analytic[router.gradientOffset!..<(router.gradientOffset! + router.count)].contains { $0 != 0 })
    }

    @Test("the router losses' gradients alone: aux and z against finite differences of their values",
          arguments: [false, true])
    func routerLosses(perLayer: Bool) throws {
        var c = MixtureVariant.all[0].config
        c.routerAuxLossPerLayer = perLayer
        c.routerAuxLossCoef = 1
        c.routerZLossCoef = 1
        let model = try TransformerModel(config: c, seed: 9)
        let (ids, _) = Self.batch(3, count: 12)
        let none = [Int32](repeating: -1, count: 12)   // no cross-entropy: only the router losses
        let w = try TrainingWorkspace(model: model, batch: 2, length: 6)
        _ = try model.forward(ids: ids, targets: none, workspace: w)
        w.gradients.zero()
        model.backward(workspace: w)
        let analytic = w.gradients.array
        let router = model.layout.tensors.first { $0.name == "model.layers.1.block_sparse_moe.gate.weight" }!
        let p = model.parameters.pointer, h: Float = 1e-3
        var compared = 0
        for k in stride(from: 0, to: router.count, by: 3) {
            let i = router.offset + k, saved = p[i]
            p[i] = saved + h
            _ = try model.forward(ids: ids, targets: none, workspace: w)
            let up = w.routerAuxLoss + w.routerZLoss
            p[i] = saved - h
            _ = try model.forward(ids: ids, targets: none, workspace: w)
            let down = w.routerAuxLoss + w.routerZLoss
            p[i] = saved
            let numeric = (up - down) / Double(2 * h), a = Double(analytic[router.gradientOffset! + k])
            #expect(abs(numeric - a) <= 1e-3 + 2e-2 * abs(a), "gate[\(k)]: numeric \(numeric), analytic \(a)")
            compared += 1
        }
        #expect(compared > 5)
    }

    @Test("the load-balancing loss from the routing by hand: pooled over blocks (Hugging Face) and per block")
    func balanceLossByHand() throws {
        var c = MixtureVariant.all[0].config
        let model = try TransformerModel(config: c, seed: 5)
        let (ids, targets) = Self.batch(8, count: 12)
        let w = try TrainingWorkspace(model: model, batch: 2, length: 6)
        _ = try model.forward(ids: ids, targets: targets, workspace: w)
        let pooledLoss = w.routerAuxLoss
        c.routerAuxLossPerLayer = true
        let perBlockModel = try TransformerModel(config: c, seed: 5)
        _ = try perBlockModel.forward(ids: ids, targets: targets, workspace: w)
        let perBlockLoss = w.routerAuxLoss
        // By hand from the chosen experts and the probabilities.
        let mix = w.mixture!, e = c.experts, k = c.expertsPerToken, n = 12, blocks = c.mixtureLayers
        var f = [[Double]](repeating: [Double](repeating: 0, count: e), count: blocks), p = f
        for m in 0..<blocks {
            for t in 0..<n {
                for j in 0..<k { f[m][Int(mix.chosen.pointer[(m * n + t) * k + j])] += 1 }
                for x in 0..<e { p[m][x] += Double(mix.probs.pointer[(m * n + t) * e + x]) }
            }
        }
        let own = (0..<blocks).map { m in Double(e) * (0..<e).reduce(0) { $0 + f[m][$1] / Double(n) * p[m][$1] / Double(n) } }
        let pooled = Double(e) * (0..<e).reduce(0) { acc, x in
            acc + f.reduce(0) { $0 + $1[x] } / Double(n * blocks) * p.reduce(0) { $0 + $1[x] } / Double(n * blocks)
        }
        #expect(abs(pooledLoss - pooled) < 1e-5 * pooled)
        #expect(abs(perBlockLoss - own.reduce(0, +) / Double(blocks)) < 1e-5 * perBlockLoss)
        #expect(abs(pooledLoss - perBlockLoss) > 1e-4, "the two losses should differ on this batch")
    }

    @Test("logits, losses and gradients do not depend on the thread count")
    func threads() throws {
        let c = MixtureVariant.all[0].config
        let model = try TransformerModel(config: c, seed: 2)
        let (ids, targets) = Self.batch(5, count: 16)
        var results: [([Float], Float, Double)] = []
        for threads in [1, 3] {
            let pool = ThreadPool(threadCount: threads)
            let w = try TrainingWorkspace(model: model, batch: 2, length: 8, threads: threads)
            let loss = try model.forward(ids: ids, targets: targets, workspace: w, pool: pool)
            w.gradients.zero()
            model.backward(workspace: w, pool: pool)
            results.append((w.gradients.array, loss, w.routerAuxLoss))
        }
        #expect(results[0].0 == results[1].0 && results[0].1 == results[1].1 && results[0].2 == results[1].2)
    }

    @Test("decoding with the cache gives the full forward's logits; loads are fractions summing to 1")
    func inference() throws {
        for variant in MixtureVariant.all {
            let model = try TransformerModel(config: variant.config, seed: 6)
            let (ids, _) = Self.batch(8, count: 8)
            let w = try TrainingWorkspace(model: model, batch: 1, length: 8, training: false, headChunk: 0)
            _ = try model.forward(ids: ids, targets: ids, workspace: w)
            let full = w.logits.array
            for loads in w.expertLoads { #expect(abs(loads.reduce(0, +) - 1) < 1e-12) }
            #expect(w.expertLoads.count == variant.config.mixtureLayers)
            let session = try InferenceSession(model: model)
            var stepwise = try session.feed(Array(ids[0..<3]), allRows: true)
            for id in ids[3...] { stepwise += try session.feed([id]) }
            #expect(stepwise.count == full.count)
            let largest = full.map(abs).max()!
            #expect(zip(full, stepwise).allSatisfy { abs($0 - $1) <= 1e-5 * largest }, "\(variant.name)")
        }
    }

    @Test("a checkpoint keeps Mixtral's tensor names and the mixture config; it round-trips")
    func checkpoint() throws {
        let c = MixtureVariant.all[0].config
        let model = try TransformerModel(config: c, seed: 1)
        let names = Set(model.layout.tensors.map(\.name))
        for name in ["model.layers.0.block_sparse_moe.gate.weight", "model.layers.1.block_sparse_moe.experts.3.w1.weight",
                     "model.layers.1.block_sparse_moe.experts.3.w3.weight", "model.layers.1.block_sparse_moe.experts.0.w2.weight"] {
            #expect(names.contains(name), "\(name)")
        }
        #expect(!names.contains { $0.contains("mlp.") })
        #expect(model.layout.tensor(named: "model.layers.0.block_sparse_moe.gate.weight")?.shape == [4, 8])
        #expect(model.layout.tensor(named: "model.layers.0.block_sparse_moe.experts.2.w2.weight")?.shape == [8, 6])
        let directory = NSTemporaryDirectory() + "/tinylm-moe-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Checkpoint.save(model, to: directory)
        let config = try String(contentsOfFile: directory + "/config.json", encoding: .utf8)
        for key in ["\"num_local_experts\" : 4", "\"num_experts_per_tok\" : 2", "\"router_aux_loss_coef\""] {
            #expect(config.contains(key), "\(config)")
        }
        let loaded = try Checkpoint.load(from: directory)
        #expect(loaded.config == c && loaded.parameters.array == model.parameters.array)
        // A dense config is written as before: no mixture keys.
        #expect(!String(decoding: ModelConfig.presets["small"]!.encoded(), as: UTF8.self).contains("experts"))
    }

    @Test("bad mixture configs are errors naming the field")
    func validation() {
        var c = MixtureVariant.all[0].config
        c.expertsPerToken = 5
        #expect(throws: TransformerError.self) { try c.validate() }
        c.expertsPerToken = 2
        c.moeEvery = 0
        #expect((try? c.validate()) == nil)
        c.moeEvery = 1
        c.routerJitter = 2
        do { try c.validate(); Issue.record("accepted jitter 2") } catch { #expect("\(error)".contains("router_jitter")) }
    }

    @Test("LoRA on the experts (--targets …,experts): adapter gradients against finite differences; the base stays frozen")
    func expertAdapters() throws {
        var c = MixtureVariant.all[0].config
        c.routerAuxLossCoef = 0
        c.routerZLossCoef = 0
        let base = try TransformerModel(config: c, seed: 12)
        let model = try TransformerModel.adapting(base, with: AdapterConfig(rank: 2, alpha: 4, targets: ["q", "v", "experts"]), seed: 1)
        let names = model.layout.tensors.filter { $0.group == .adapter }.map(\.name)
        #expect(names.contains("model.layers.1.block_sparse_moe.experts.3.w3.lora_B.weight"))
        #expect(names.contains("model.layers.0.block_sparse_moe.experts.0.w2.lora_A.weight"))
        #expect(model.layout.tensors.allSatisfy { $0.trainable == ($0.group == .adapter) })
        // B starts at zero; give it values so that A's gradient is not zero either.
        var rng = SplitMix64(seed: 4)
        for t in model.layout.tensors where t.name.hasSuffix("lora_B.weight") {
            for i in 0..<t.count { model.parameters.pointer[t.offset + i] = rng.nextGaussian() * 0.3 }
        }
        let (ids, targets) = Self.batch(21, count: 12)
        let w = try TrainingWorkspace(model: model, batch: 2, length: 6)
        _ = try model.forward(ids: ids, targets: targets, workspace: w)
        let chosen = Array(UnsafeBufferPointer(start: w.mixture!.chosen.pointer, count: w.mixture!.chosen.count))
        w.gradients.zero()
        model.backward(workspace: w)
        let analytic = w.gradients.array, p = model.parameters.pointer, h: Float = 1e-2
        var checked = 0
        for t in model.layout.tensors where t.name.contains("experts") && t.group == .adapter {
            for k in [0, t.count / 2, t.count - 1] {
                let i = t.offset + k, saved = p[i]
                p[i] = saved + h
                let up = Double(try model.forward(ids: ids, targets: targets, workspace: w))
                let same = Array(UnsafeBufferPointer(start: w.mixture!.chosen.pointer, count: w.mixture!.chosen.count)) == chosen
                p[i] = saved - h
                let down = Double(try model.forward(ids: ids, targets: targets, workspace: w))
                p[i] = saved
                guard same else { continue }
                let numeric = (up - down) / Double(2 * h), a = Double(analytic[t.gradientOffset! + k])
                #expect(abs(numeric - a) <= 2e-3 + 3e-2 * abs(a), "\(t.name)[\(k)]: numeric \(numeric), analytic \(a)")
                checked += 1
            }
        }
        #expect(checked > 40)
    }
}
