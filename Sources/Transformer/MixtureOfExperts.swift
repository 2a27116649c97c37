import Foundation
import Kernels
import Support

/// Routing indices.
typealias IndexBuffer = IntegerBuffer<Int32>

/// Routing state and expert outputs of the mixture blocks for `rows` tokens, per mixture block
/// (training keeps every block's for backward; inference reuses one). Each token's `k` choices
/// are its slots `t·k + j`; `order` lists the slots grouped by expert (tokens ascending within an
/// expert), so each expert's tokens are contiguous rows for one GEMM.
final class MixtureWorkspace: @unchecked Sendable {
    let rows: Int, layers: Int, experts: Int, k: Int, dModel: Int
    let logits: FloatBuffer        // [Lm][N E] router logits
    let probs: FloatBuffer         // [Lm][N E] their softmax
    let weights: FloatBuffer       // [Lm][N k] routing weights of the chosen experts
    let chosen: IndexBuffer        // [Lm][N k] the chosen experts, best first
    let order: IndexBuffer         // [Lm][N k] slots grouped by expert
    let slotPosition: IndexBuffer  // [Lm][N k] where slot t·k + j sits in `order`
    let starts: IndexBuffer        // [Lm][E + 1] where each expert's rows start in `order`
    let outputs: FloatBuffer       // [Lm][N k d] each slot's expert output, rows in `order`
    let gathered: FloatBuffer      // [N k d] the block's input rows in `order` (scratch)
    let dOutputs: FloatBuffer      // [N k d] backward: gradient of each slot's output, then of its input
    let dRouter: FloatBuffer       // [N E] backward: gradient of probabilities, then of logits
    let noise: FloatBuffer?        // [Lm][N d] router jitter (training with jitter > 0): the input's factors
    let jittered: FloatBuffer?     // [Lm][N d] the block's input times the noise
    /// Whether the last forward applied the jitter (backward then does too).
    var jitterActive = false

    /// Floats (and indices) the buffers take.
    static func floatCount(config c: ModelConfig, rows n: Int, layers: Int, training: Bool) throws -> Int {
        let size = CheckedSize(what: "the routing state of \(n) tokens")
        let e = c.experts, k = c.expertsPerToken, d = c.dModel
        let perLayer = try size.sum([2 * e, 4 * k, k * d, training && c.routerJitter > 0 ? 2 * d : 0])
        return try size.sum([try size.product(n, layers, perLayer), layers * (e + 1),
                             try size.product(n, k * d + (training ? k * d + e : 0))])
    }

    init(config c: ModelConfig, rows n: Int, layers: Int, training: Bool) {
        rows = n
        self.layers = layers
        experts = c.experts
        k = c.expertsPerToken
        dModel = c.dModel
        let e = c.experts, k = c.expertsPerToken, d = c.dModel
        logits = FloatBuffer(count: layers * n * e)
        probs = FloatBuffer(count: layers * n * e)
        weights = FloatBuffer(count: layers * n * k)
        chosen = IndexBuffer(count: layers * n * k)
        order = IndexBuffer(count: layers * n * k)
        slotPosition = IndexBuffer(count: layers * n * k)
        starts = IndexBuffer(count: layers * (e + 1))
        outputs = FloatBuffer(count: layers * n * k * d)
        gathered = FloatBuffer(count: n * k * d)
        dOutputs = FloatBuffer(count: training ? n * k * d : 0)
        dRouter = FloatBuffer(count: training ? n * e : 0)
        noise = training && c.routerJitter > 0 ? FloatBuffer(count: layers * n * d) : nil
        jittered = training && c.routerJitter > 0 ? FloatBuffer(count: layers * n * d) : nil
    }

    /// Draws the jitter factors, uniform in [1 - jitter, 1 + jitter], for a training forward.
    func fillNoise(jitter: Double, seed: UInt64) {
        guard let noise else { return }
        var rng = SplitMix64(seed: seed ^ 0x6A09_E667_F3BC_C908)
        let width = Float(2 * jitter), low = Float(1 - jitter)
        for i in 0..<noise.count { noise.pointer[i] = low + width * rng.nextFloat() }
    }

    var residentBytes: Int {
        4 * ([logits, probs, weights, outputs, gathered, dOutputs, dRouter].reduce(0) { $0 + $1.count }
             + (noise?.count ?? 0) + (jittered?.count ?? 0)
             + [chosen, order, slotPosition, starts].reduce(0) { $0 + $1.count })
    }

    /// Mixture block `m`'s part, for `n` (≤ rows) tokens.
    func block(_ m: Int, rows n: Int) -> MixtureBuffers {
        let e = experts, d = dModel
        return MixtureBuffers(
            logits: logits.pointer + m * rows * e, probs: probs.pointer + m * rows * e, weights: weights.pointer + m * rows * k,
            chosen: chosen.pointer + m * rows * k, order: order.pointer + m * rows * k,
            slotPosition: slotPosition.pointer + m * rows * k, starts: starts.pointer + m * (e + 1),
            outputs: outputs.pointer + m * rows * k * d, gathered: gathered.pointer,
            dOutputs: dOutputs.count > 0 ? dOutputs.pointer : nil, dRouter: dRouter.count > 0 ? dRouter.pointer : nil,
            noise: jitterActive ? noise.map { $0.pointer + m * rows * d } : nil,
            jittered: jitterActive ? jittered.map { $0.pointer + m * rows * d } : nil)
    }

    /// Per mixture block, the fraction of the `k` assignments each expert got in the last forward
    /// over `n` tokens (uniform: 1/E each).
    func loads(rows n: Int) -> [[Double]] {
        (0..<layers).map { m in
            let s = starts.pointer + m * (experts + 1)
            return (0..<experts).map { Double(s[$0 + 1] - s[$0]) / Double(max(1, n * k)) }
        }
    }

    /// Expert `e`'s assignments in mixture block `m`'s last forward.
    func assignments(block m: Int, expert e: Int) -> Double {
        let s = starts.pointer + m * (experts + 1)
        return Double(s[e + 1] - s[e])
    }

    /// The load-balancing loss `E · Σ_e f_e · P_e`, `f_e` the assignments to expert e per token and
    /// `P_e` the mean router probability of e: over every mixture block's tokens pooled, as Hugging
    /// Face's `load_balancing_loss_func`, or (`perLayer`) per block and averaged over blocks.
    func auxLoss(rows n: Int, perLayer: Bool) -> Double {
        func loss(_ blocks: [Int]) -> Double {
            let total = Double(n * blocks.count)
            var f = [Double](repeating: 0, count: experts), p = [Double](repeating: 0, count: experts)
            for m in blocks {
                let probs = probs.pointer + m * rows * experts
                for e in 0..<experts { f[e] += assignments(block: m, expert: e) }
                for t in 0..<n { for e in 0..<experts { p[e] += Double(probs[t * experts + e]) } }
            }
            return Double(experts) * zip(f, p).reduce(0) { $0 + ($1.0 / total) * ($1.1 / total) }
        }
        guard perLayer else { return loss(Array(0..<layers)) }
        return (0..<layers).reduce(0) { $0 + loss([$1]) } / Double(layers)
    }

    /// The gradient of `auxLoss` with respect to each router probability of mixture block `m`
    /// (the same for all its tokens: the counts f are constants).
    func auxGradient(block m: Int, rows n: Int, perLayer: Bool) -> [Float] {
        let count = Double(n), blocks = Double(layers)
        return (0..<experts).map { e in
            if perLayer { return Float(Double(experts) * assignments(block: m, expert: e) / (count * count * blocks)) }
            let pooled = (0..<layers).reduce(0) { $0 + assignments(block: $1, expert: e) }
            return Float(Double(experts) * pooled / (count * blocks * count * blocks))
        }
    }

    /// ST-MoE's router z-loss: the mean over every mixture block's tokens of logsumexp(logits)².
    func zLoss(rows n: Int) -> Double {
        var total = 0.0
        for m in 0..<layers {
            for t in 0..<n {
                let lse = Double(logSumExp(logits.pointer + (m * rows + t) * experts, count: experts))
                total += lse * lse
            }
        }
        return total / Double(max(1, n * layers))
    }
}

/// One mixture block's routing state and expert outputs (see `MixtureWorkspace`).
struct MixtureBuffers {
    var logits: UnsafeMutablePointer<Float>        // (N, E)
    var probs: UnsafeMutablePointer<Float>         // (N, E)
    var weights: UnsafeMutablePointer<Float>       // (N, k)
    var chosen: UnsafeMutablePointer<Int32>        // (N, k)
    var order: UnsafeMutablePointer<Int32>         // (N k)
    var slotPosition: UnsafeMutablePointer<Int32>  // (N k)
    var starts: UnsafeMutablePointer<Int32>        // (E + 1)
    var outputs: UnsafeMutablePointer<Float>       // (N k, d)
    var gathered: UnsafeMutablePointer<Float>      // (N k, d)
    var dOutputs: UnsafeMutablePointer<Float>?     // (N k, d)
    var dRouter: UnsafeMutablePointer<Float>?      // (N, E)
    var noise: UnsafeMutablePointer<Float>? = nil     // (N, d) router jitter factors, when on
    var jittered: UnsafeMutablePointer<Float>? = nil  // (N, d) the input times them
}

/// `log Σ exp(x)`, stable.
func logSumExp(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    var m = -Float.infinity
    for i in 0..<n { m = max(m, x[i]) }
    var s: Float = 0
    for i in 0..<n { s += expf(x[i] - m) }
    return m + logf(s)
}

extension TransformerModel {
    /// The mixture MLP: `branch[t] = Σ_j w_tj · expert_{e_tj}(x[t])` over each token's top k
    /// experts. The router's product and softmax run in fp32 whatever `precision` the experts
    /// use, so the choices do not depend on it; each expert runs one product over its own tokens
    /// (no capacity, no dropped tokens), and the outputs are summed per token in slot order, so
    /// results do not depend on the thread count.
    func mixtureForward(
        _ mixture: ParameterLayout.Mixture, x: UnsafePointer<Float>, into branch: UnsafeMutablePointer<Float>,
        hidden: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>, _ b: MixtureBuffers, rows n: Int,
        precision: MatmulPrecision, pool: ThreadPool, adapterNoise: UInt64? = nil
    ) {
        let c = config, p = parameters.pointer, k = c.expertsPerToken, d = c.dModel
        // Mixtral's jitter (training): router and experts see the input times noise near 1.
        var x = x
        if let noise = b.noise, let jittered = b.jittered {
            for i in 0..<(n * d) { jittered[i] = x[i] * noise[i] }
            x = UnsafePointer(jittered)
        }
        Profiler.measure("router") {
            mixture.router.forward(x, rows: n, into: b.logits, parameters: p, precision: .fp32, pool: pool)
            route(b, rows: n, pool: pool)
        }
        Profiler.measure("experts") {
            // Each expert's input rows, gathered in `order`.
            pool.parallelRanges(n * k, costPerItem: d) { range, _ in
                for position in range {
                    let token = Int(b.order[position]) / k
                    (b.gathered + position * d).update(from: x + token * d, count: d)
                }
            }
            let inDim = c.expertInDim, width = c.expertWidth
            for (expert, layer) in mixture.experts.enumerated() {
                let start = Int(b.starts[expert]), count = Int(b.starts[expert + 1]) - start
                guard count > 0 else { continue }   // decoding reads only the chosen experts' weights
                layer.up.forward(b.gathered + start * d, rows: count, into: hidden + start * inDim, parameters: p,
                                 precision: precision, pool: pool, noise: adapterNoise)
                if c.activation == .swiglu {
                    swigluForward(hidden + start * inDim, into: act + start * width, rows: count, dim: width, pool: pool)
                } else {
                    geluForward(hidden + start * inDim, into: act + start * width, count: count * width, pool: pool)
                }
                layer.down.forward(act + start * width, rows: count, into: b.outputs + start * d, parameters: p,
                                   precision: precision, pool: pool, noise: adapterNoise)
            }
            // The weighted sum per token, slots in order.
            pool.parallelRanges(n, costPerItem: k * d) { range, _ in
                for t in range {
                    let out = branch + t * d
                    out.update(repeating: 0, count: d)
                    for j in 0..<k {
                        axpy(b.weights[t * k + j], b.outputs + Int(b.slotPosition[t * k + j]) * d, out, count: d)
                    }
                }
            }
        }
    }

    /// Softmax over all experts, the top k (ties to the lower index), their weights (renormalized
    /// when `normalizeTopK`), and the slots grouped by expert.
    private func route(_ b: MixtureBuffers, rows n: Int, pool: ThreadPool) {
        let c = config, e = c.experts, k = c.expertsPerToken
        softmaxForward(b.logits, into: b.probs, rows: n, cols: e, pool: pool)
        for t in 0..<n {
            let probs = b.probs + t * e
            var sum: Float = 0
            for j in 0..<k {
                var best = -1
                for x in 0..<e where (0..<j).allSatisfy({ b.chosen[t * k + $0] != Int32(x) }) {
                    if best < 0 || probs[x] > probs[best] { best = x }
                }
                b.chosen[t * k + j] = Int32(best)
                b.weights[t * k + j] = probs[best]
                sum += probs[best]
            }
            if c.normalizeTopK {
                for j in 0..<k { b.weights[t * k + j] /= sum }
            }
        }
        // Counting sort of the slots by expert; tokens stay ascending within an expert.
        for x in 0...e { b.starts[x] = 0 }
        for slot in 0..<(n * k) { b.starts[Int(b.chosen[slot]) + 1] += 1 }
        for x in 0..<e { b.starts[x + 1] += b.starts[x] }
        var next = (0..<e).map { Int(b.starts[$0]) }
        for slot in 0..<(n * k) {
            let x = Int(b.chosen[slot])
            b.order[next[x]] = Int32(slot)
            b.slotPosition[slot] = Int32(next[x])
            next[x] += 1
        }
    }

    /// The experts' activations from their first products, expert by expert as `mixtureForward`
    /// computes them (so the same values): backward recomputes them rather than keep every block's.
    func mixtureActivations(hidden: UnsafePointer<Float>, into act: UnsafeMutablePointer<Float>, _ b: MixtureBuffers,
                            pool: ThreadPool) {
        let c = config, inDim = c.expertInDim, width = c.expertWidth
        for expert in 0..<c.experts {
            let start = Int(b.starts[expert]), count = Int(b.starts[expert + 1]) - start
            guard count > 0 else { continue }
            if c.activation == .swiglu {
                swigluForward(hidden + start * inDim, into: act + start * width, rows: count, dim: width, pool: pool)
            } else {
                geluForward(hidden + start * inDim, into: act + start * width, count: count * width, pool: pool)
            }
        }
    }

    /// Backward of `mixtureForward` for the branch gradient `dBranch`: writes `dx` (the gradient
    /// of the block's input `x`) and adds the experts' and the router's weight gradients. The
    /// router also gets the gradients of the load-balancing loss (`auxScale · aux`; `balance` its
    /// gradient with respect to each router probability, `MixtureWorkspace.auxGradient`) and of
    /// the z-loss (`zScale · z`, a mean over `zRows` tokens).
    func mixtureBackward(
        _ mixture: ParameterLayout.Mixture, dBranch: UnsafePointer<Float>, x: UnsafePointer<Float>,
        hidden: UnsafePointer<Float>, act: UnsafePointer<Float>, dHidden: UnsafeMutablePointer<Float>,
        dAct: UnsafeMutablePointer<Float>, _ b: MixtureBuffers, rows n: Int, dx: UnsafeMutablePointer<Float>,
        gradients g: UnsafeMutablePointer<Float>, balance: [Float], zRows: Int, auxScale: Float, zScale: Float,
        precision: MatmulPrecision, pool: ThreadPool, adapterNoise: UInt64? = nil
    ) {
        let c = config, p = parameters.pointer, e = c.experts, k = c.expertsPerToken, d = c.dModel
        let inDim = c.expertInDim, width = c.expertWidth
        let x = b.jittered.map { UnsafePointer($0) } ?? x
        guard let dOut = b.dOutputs, let dp = b.dRouter else { preconditionFailure("mixture backward needs a training workspace") }
        // Routing weights' gradients (into dp, per slot for now) and each slot's output gradient.
        pool.parallelRanges(n, costPerItem: 2 * k * d) { range, _ in
            for t in range {
                for j in 0..<k {
                    let position = Int(b.slotPosition[t * k + j])
                    dp[t * e + j] = dotProduct(dBranch + t * d, b.outputs + position * d, count: d)
                    let row = dOut + position * d
                    row.update(from: dBranch + t * d, count: d)
                    scale(row, by: b.weights[t * k + j], count: d)
                }
            }
        }
        // The inputs again (the scratch held another block's).
        pool.parallelRanges(n * k, costPerItem: d) { range, _ in
            for position in range {
                (b.gathered + position * d).update(from: x + Int(b.order[position]) / k * d, count: d)
            }
        }
        for (expert, layer) in mixture.experts.enumerated() {
            let start = Int(b.starts[expert]), count = Int(b.starts[expert + 1]) - start
            guard count > 0 else { continue }
            layer.down.backward(dOut + start * d, x: act + start * width, rows: count, dx: dAct + start * width,
                                parameters: p, gradients: g, precision: precision, pool: pool, noise: adapterNoise)
            if c.activation == .swiglu {
                swigluBackward(dAct + start * width, gateUp: hidden + start * inDim, into: dHidden + start * inDim,
                               rows: count, dim: width, pool: pool)
            } else {
                geluBackward(dAct + start * width, x: hidden + start * inDim, into: dHidden + start * inDim,
                             count: count * width, pool: pool)
            }
            // Each slot's input gradient replaces its output gradient (no longer needed).
            layer.up.backward(dHidden + start * inDim, x: b.gathered + start * d, rows: count, dx: dOut + start * d,
                              parameters: p, gradients: g, precision: precision, pool: pool, noise: adapterNoise)
        }
        // dx per token: its slots' input gradients, in slot order.
        pool.parallelRanges(n, costPerItem: k * d) { range, _ in
            for t in range {
                let out = dx + t * d
                out.update(from: dOut + Int(b.slotPosition[t * k]) * d, count: d)
                for j in 1..<max(1, k) { axpy(1, dOut + Int(b.slotPosition[t * k + j]) * d, out, count: d) }
            }
        }
        // Router: the probabilities' gradient, then the logits'.
        // The routing weights' gradients of one token (held in its row until the row is rewritten).
        var dw = [Float](repeating: 0, count: k)
        for t in 0..<n {
            let probs = b.probs + t * e, row = dp + t * e
            for j in 0..<k { dw[j] = row[j] }
            row.update(repeating: 0, count: e)
            if c.normalizeTopK {
                // w_j = p_j / S over the chosen: ∂/∂p_j = (dw_j - Σ_i dw_i w_i) / S.
                var s: Float = 0, dot: Float = 0
                for j in 0..<k { s += probs[Int(b.chosen[t * k + j])]; dot += dw[j] * b.weights[t * k + j] }
                for j in 0..<k { row[Int(b.chosen[t * k + j])] += (dw[j] - dot) / s }
            } else {
                for j in 0..<k { row[Int(b.chosen[t * k + j])] += dw[j] }
            }
            // The load-balancing loss E · Σ f_e P_e: f is constant (a count), P the mean probability.
            if auxScale != 0 { for x in 0..<e { row[x] += auxScale * balance[x] } }
            // Softmax backward, then the z-loss mean(lse²): ∂/∂logit = 2 · lse · p / rows.
            var dot: Float = 0
            for x in 0..<e { dot += row[x] * probs[x] }
            for x in 0..<e { row[x] = probs[x] * (row[x] - dot) }
            if zScale != 0 {
                let lse = logSumExp(b.logits + t * e, count: e), factor = zScale * 2 * lse / Float(zRows)
                for x in 0..<e { row[x] += factor * probs[x] }
            }
        }
        mixture.router.backward(dp, x: x, rows: n, dx: dx, accumulate: true, parameters: p, gradients: g,
                                precision: .fp32, pool: pool)
        // Through the jitter: the gradient of the block's own input.
        if let noise = b.noise { multiply(dx, by: noise, count: n * d) }
    }
}
