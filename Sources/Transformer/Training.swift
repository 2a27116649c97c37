import Support
import Kernels

/// Activations and gradients for training steps of `batch` sequences of `length` tokens,
/// allocated once (a step allocates nothing). An evaluation workspace (`training: false`) holds
/// the forward activations alone: no gradients, dropout masks or backward scratch.
public final class TrainingWorkspace: @unchecked Sendable {
    public let batch: Int, length: Int
    /// The trainable tensors' gradients (`layout.gradientCount` floats; empty for evaluation).
    public let gradients: FloatBuffer
    let rows: Int
    // Forward activations, per layer where marked [L]; N = batch · length rows.
    var ids: [Int32], targets: [Int32]
    let residual: FloatBuffer   // [L+1][N d]
    let mid: FloatBuffer        // [L][N d]
    let norm1: FloatBuffer, norm1Mean: FloatBuffer, norm1Rstd: FloatBuffer   // [L][N d], [L][N], [L][N]
    let qkv: FloatBuffer        // [L][N qkvDim]
    let probs: FloatBuffer      // [L][B H T T]
    let att: FloatBuffer        // [L][N H hd]
    let norm2: FloatBuffer, norm2Mean: FloatBuffer, norm2Rstd: FloatBuffer   // [L][N d], [L][N], [L][N]
    let mlpIn: FloatBuffer      // [L][N mlpInPerToken] (a mixture block: its slots' rows, N k expertInDim)
    let mlpAct: FloatBuffer     // [L][N mlpActPerToken]
    let mixture: MixtureWorkspace?   // the mixture blocks' routing state
    let finalNorm: FloatBuffer, finalMean: FloatBuffer, finalRstd: FloatBuffer   // [N d], [N], [N]
    let logits: FloatBuffer     // [N V]; becomes dlogits in backward
    let losses: FloatBuffer, dloss: FloatBuffer, logSumExps: FloatBuffer   // [N] each
    let masks: FloatBuffer?     // dropout: [2L+1][N d]
    // Backward scratch (dBranch also holds a branch's output in forward).
    let dResidual: FloatBuffer  // [N d]
    let dBranch: FloatBuffer    // [N max(d, H hd)]
    let dWide: FloatBuffer, dWide2: FloatBuffer   // [N max(mlpInDim, qkvDim)], [N dFF]
    let dProbs: FloatBuffer     // [threads][T T]
    /// Whether backward can run (gradients and scratch exist).
    public let canTrain: Bool
    /// The precision of the linear layers' products (attention and everything else stay fp32).
    public var precision: MatmulPrecision = .fp32
    /// Tokens that counted in the last forward (targets not -1).
    public internal(set) var counted = 0
    /// Whether the last forward left the loss gradient (for a row weight of 1) in `logits`.
    var logitsHoldGradients = false
    /// Whether the last forward applied dropout masks (backward then applies the same).
    var dropoutActive = false
    /// The adapters' dropout noise of the last forward (backward recomputes the same masks).
    var adapterNoise: UInt64?
    /// The mixture blocks' load-balancing loss and router z-loss in the last forward (0 for a
    /// dense model); training adds them, times their coefficients, to the loss.
    public internal(set) var routerAuxLoss = 0.0, routerZLoss = 0.0
    /// Per mixture block, the fraction of routing assignments each expert got in the last forward.
    public var expertLoads: [[Double]] { mixture?.loads(rows: rows) ?? [] }

    public init(model: TransformerModel, batch: Int, length: Int, threads: Int = ThreadPool.shared.threadCount,
                training: Bool = true) throws {
        let c = model.config
        guard batch > 0, length > 0 else { throw TransformerError.emptyInput(what: "a training batch") }
        guard length <= c.contextLength else { throw TransformerError.sequenceTooLong(tokens: length, contextLength: c.contextLength) }
        let floats = try TrainingWorkspace.floatCount(config: c, gradients: training ? model.layout.gradientCount : 0,
                                                      batch: batch, length: length, threads: threads, training: training)
        try MemoryBudget.check(floats: floats, what: "the activations of \(batch) × \(length) tokens")
        self.batch = batch
        self.length = length
        canTrain = training
        let n = batch * length, d = c.dModel, l = c.layers
        let b = training ? 1 : 0   // backward-only buffers are empty for evaluation
        rows = n
        gradients = FloatBuffer(count: b * model.layout.gradientCount)
        ids = [Int32](repeating: 0, count: n)
        targets = [Int32](repeating: -1, count: n)
        residual = FloatBuffer(count: (l + 1) * n * d)
        mid = FloatBuffer(count: l * n * d)
        norm1 = FloatBuffer(count: l * n * d); norm1Mean = FloatBuffer(count: l * n); norm1Rstd = FloatBuffer(count: l * n)
        qkv = FloatBuffer(count: l * n * c.qkvDim)
        probs = FloatBuffer(count: l * batch * c.heads * length * length)
        att = FloatBuffer(count: l * n * c.heads * c.headDim)
        norm2 = FloatBuffer(count: l * n * d); norm2Mean = FloatBuffer(count: l * n); norm2Rstd = FloatBuffer(count: l * n)
        mlpIn = FloatBuffer(count: l * n * c.mlpInPerToken)
        mlpAct = FloatBuffer(count: l * n * c.mlpActPerToken)
        mixture = c.experts > 0 ? MixtureWorkspace(config: c, rows: n, layers: c.mixtureLayers, training: training) : nil
        finalNorm = FloatBuffer(count: n * d); finalMean = FloatBuffer(count: n); finalRstd = FloatBuffer(count: n)
        logits = FloatBuffer(count: n * c.vocabularySize)
        losses = FloatBuffer(count: n); dloss = FloatBuffer(count: n); logSumExps = FloatBuffer(count: n)
        masks = training && c.dropout > 0 ? FloatBuffer(count: (2 * l + 1) * n * d) : nil
        dResidual = FloatBuffer(count: b * n * d)
        dBranch = FloatBuffer(count: n * max(d, c.heads * c.headDim))
        dWide = FloatBuffer(count: b * n * max(c.mlpInPerToken, c.qkvDim))
        dWide2 = FloatBuffer(count: b * n * max(c.mlpActPerToken, c.heads * c.headDim))
        dProbs = FloatBuffer(count: b * max(1, threads) * length * length)
    }

    /// Bytes held by the buffers.
    public var residentBytes: Int {
        let buffers = [gradients, residual, mid, norm1, norm1Mean, norm1Rstd, qkv, probs, att, norm2, norm2Mean, norm2Rstd,
                       mlpIn, mlpAct, finalNorm, finalMean, finalRstd, logits, losses, dloss, logSumExps, dResidual, dBranch,
                       dWide, dWide2, dProbs] + (masks.map { [$0] } ?? [])
        return 4 * buffers.reduce(0) { $0 + $1.count } + (mixture?.residentBytes ?? 0)
    }

    /// Floats the buffers above take, computed with overflow checks (so that absurd sizes are an
    /// error, not a trap or a giant allocation).
    static func floatCount(config c: ModelConfig, gradients: Int, batch: Int, length: Int, threads: Int,
                           training: Bool) throws -> Int {
        let size = CheckedSize(what: "the activations of \(batch) × \(length) tokens")
        let n = try size.product(batch, length), l = c.layers, d = c.dModel
        let perRow = try size.sum([
            (l + 1) * d, l * d, 2 * l * d, 4 * l, l * c.qkvDim, l * c.heads * c.headDim, l * c.mlpInPerToken,
            l * c.mlpActPerToken, d + 2, c.vocabularySize, 3, max(d, c.heads * c.headDim),
            training ? d + max(c.mlpInPerToken, c.qkvDim) + max(c.mlpActPerToken, c.heads * c.headDim)
                + (c.dropout > 0 ? (2 * l + 1) * d : 0) : 0,
        ])
        let routing = c.experts > 0 ? try MixtureWorkspace.floatCount(config: c, rows: n, layers: c.mixtureLayers, training: training) : 0
        let attention = try size.product(l * c.heads + (training ? max(1, threads) : 0), batch, length, length)
        return try size.sum([try size.product(n, perRow), attention, gradients, routing])
    }
}

extension TransformerModel {
    /// Runs the model on `batch x length` token ids and returns the mean cross-entropy against
    /// `targets` (-1 marks a position that does not count). With `dropoutSeed` (a training step),
    /// the training-only noise is on: dropout, and a mixture's router jitter.
    /// `forBackward` (a training step) lets the loss write its gradient over the logits as it
    /// goes, which saves `backward` two passes over them; `workspace` then holds no logits.
    @discardableResult
    public func forward(
        ids: [Int32], targets: [Int32], workspace w: TrainingWorkspace, dropoutSeed: UInt64? = nil,
        forBackward: Bool = false, pool: ThreadPool = .shared
    ) throws -> Float {
        let c = config, n = w.rows, d = c.dModel, t = w.length
        guard ids.count == n, targets.count == n else {
            throw TransformerError.invalidConfig(source: "batch", field: "ids", reason: "must hold \(n) tokens, got \(ids.count) ids and \(targets.count) targets")
        }
        if forBackward && !w.canTrain {
            throw TransformerError.invalidConfig(source: "workspace", field: "gradients", reason: "an evaluation workspace cannot run backward")
        }
        try ids.withUnsafeBufferPointer { try validate($0) }
        try targets.withUnsafeBufferPointer { try validate($0, allowNegative: true) }
        // Copied into the workspace's own arrays: assigning would share the caller's storage and
        // make its next write copy it.
        w.ids.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: ids) }
        w.targets.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: targets) }
        // Dropout is on only with a seed; backward applies the masks exactly when forward did.
        let dropout = dropoutSeed != nil && c.dropout > 0 ? w.masks : nil
        if let dropout, let seed = dropoutSeed { fillDropoutMasks(dropout, probability: c.dropout, seed: seed) }
        w.dropoutActive = dropout != nil
        w.adapterNoise = (adapters?.dropout ?? 0) > 0 ? dropoutSeed : nil
        if let mixture = w.mixture {
            mixture.jitterActive = dropoutSeed != nil && c.routerJitter > 0 && mixture.noise != nil
            if mixture.jitterActive, let seed = dropoutSeed { mixture.fillNoise(jitter: c.routerJitter, seed: seed) }
        }

        let heads = c.heads * c.headDim
        let buffers = { (i: Int) in
            BlockBuffers(
                x: w.residual.pointer + i * n * d,
                norm1: w.norm1.pointer + i * n * d, norm1Mean: w.norm1Mean.pointer + i * n, norm1Rstd: w.norm1Rstd.pointer + i * n,
                qkv: w.qkv.pointer + i * n * c.qkvDim, attention: w.att.pointer + i * n * heads,
                probs: w.probs.pointer + i * w.batch * c.heads * t * t, mid: w.mid.pointer + i * n * d,
                norm2: w.norm2.pointer + i * n * d, norm2Mean: w.norm2Mean.pointer + i * n, norm2Rstd: w.norm2Rstd.pointer + i * n,
                mlpIn: w.mlpIn.pointer + i * n * c.mlpInPerToken, mlpAct: w.mlpAct.pointer + i * n * c.mlpActPerToken,
                output: w.residual.pointer + (i + 1) * n * d, branch: w.dBranch.pointer,
                attentionMask: dropout.map { UnsafePointer($0.pointer + (1 + 2 * i) * n * d) },
                mlpMask: dropout.map { UnsafePointer($0.pointer + (2 + 2 * i) * n * d) },
                mixture: c.isMixture(i) ? w.mixture?.block(c.mixtureIndex(i), rows: n) : nil, adapterNoise: w.adapterNoise)
        }
        w.ids.withUnsafeBufferPointer { ids in
            forwardBlocks(ids: ids.baseAddress!, rows: n, firstPosition: 0, period: t,
                          embeddingMask: dropout.map { UnsafePointer($0.pointer) }, buffers: buffers,
                          span: { _ in .sequences(batch: w.batch, length: t) }, precision: w.precision, pool: pool)
        }
        forwardHead(w.residual.pointer + c.layers * n * d, rows: n, normed: w.finalNorm.pointer, mean: w.finalMean.pointer,
                    rstd: w.finalRstd.pointer, logits: w.logits.pointer, precision: w.precision, pool: pool)
        Profiler.measure("loss") {
            w.targets.withUnsafeBufferPointer {
                crossEntropyForward(logits: w.logits.pointer, targets: $0.baseAddress!, losses: w.losses.pointer,
                                    logSumExps: w.logSumExps.pointer, gradients: forBackward ? w.logits.pointer : nil,
                                    rows: n, vocab: c.vocabularySize, pool: pool)
            }
        }
        if let mixture = w.mixture {
            w.routerAuxLoss = mixture.auxLoss(rows: n)
            w.routerZLoss = mixture.zLoss(rows: n)
        }
        let counted = w.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        w.counted = counted
        w.logitsHoldGradients = forBackward
        return counted == 0 ? 0 : sum(w.losses.pointer, count: n) / Float(counted)
    }

    /// Adds the gradient of the last `forward`'s mean loss, times `scale`, to
    /// `workspace.gradients` (so micro-batches accumulate; zero the gradients to start). Frozen
    /// tensors get none; the input gradients still flow through them.
    public func backward(workspace w: TrainingWorkspace, scale: Float = 1, pool: ThreadPool = .shared) {
        precondition(w.canTrain, "backward needs a training workspace")
        let c = config, n = w.rows, d = c.dModel, t = w.length
        let p = parameters.pointer, g = w.gradients.pointer
        let dropout = w.dropoutActive ? w.masks : nil
        let perToken = w.counted == 0 ? 0 : scale / Float(w.counted)
        w.dloss.pointer.update(repeating: perToken, count: n)

        // Loss and output layer; the logits buffer becomes dlogits.
        // Every counted row has the same weight, so a gradient the forward pass left (for weight 1)
        // is scaled inside the output layer's GEMMs.
        var outputScale: Float = 1
        if w.logitsHoldGradients {
            outputScale = perToken
        } else {
            Profiler.measure("loss backward") {
                w.targets.withUnsafeBufferPointer {
                    crossEntropyBackward(logits: w.logits.pointer, targets: $0.baseAddress!, dloss: w.dloss.pointer,
                                         logSumExps: w.logSumExps.pointer, into: w.logits.pointer, rows: n,
                                         vocab: c.vocabularySize, pool: pool)
                }
            }
        }
        // Either way the logits are gone now.
        w.logitsHoldGradients = false
        let dFinal = w.dBranch.pointer
        Profiler.measure("lm head backward") {
            layout.lmHead.backward(w.logits.pointer, x: w.finalNorm.pointer, rows: n, dx: dFinal, parameters: p, gradients: g,
                                   alpha: outputScale, precision: w.precision, pool: pool)
        }
        let dx = w.dResidual.pointer
        dx.update(repeating: 0, count: n * d)
        Profiler.measure("norm backward") {
            normBackward(dFinal, x: w.residual.pointer + c.layers * n * d, layout.finalNorm, mean: w.finalMean.pointer,
                         rstd: w.finalRstd.pointer, dx: dx, gradients: g, rows: n, pool: pool)
        }

        let dBranch = w.dBranch.pointer
        // The load-balancing loss counts assignments over every mixture block.
        var pooledCounts = [Double](repeating: 0, count: c.experts)
        if let routing = w.mixture {
            for m in 0..<routing.layers {
                let s = routing.starts.pointer + m * (c.experts + 1)
                for e in 0..<c.experts { pooledCounts[e] += Double(s[e + 1] - s[e]) }
            }
        }
        /// What a branch reads as its output gradient: dx itself, or a copy through the branch's
        /// dropout mask. The branch reads it before its norm's backward adds to dx.
        func branchGradient(mask: Int) -> UnsafePointer<Float> {
            guard let dropout else { return UnsafePointer(dx) }
            dBranch.update(from: dx, count: n * d)
            multiply(dBranch, by: dropout.pointer + mask * n * d, count: n * d)
            return UnsafePointer(dBranch)
        }
        for (i, layer) in layout.layers.enumerated().reversed() {
            let x = w.residual.pointer + i * n * d, xMid = w.mid.pointer + i * n * d
            // MLP branch: dx is the gradient of x_{i+1}, and of xMid through the skip.
            var dOut = branchGradient(mask: 2 + 2 * i)
            let hIn = w.mlpIn.pointer + i * n * c.mlpInPerToken, act = w.mlpAct.pointer + i * n * c.mlpActPerToken
            let dAct = w.dWide2.pointer, dIn = w.dWide.pointer
            let ln2 = w.norm2.pointer + i * n * d
            if let mixture = layer.mixture, let routing = w.mixture {
                Profiler.measure("mixture backward") {
                    mixtureBackward(mixture, dBranch: dOut, x: ln2, hidden: hIn, act: act, dHidden: dIn, dAct: dAct,
                                    routing.block(c.mixtureIndex(i), rows: n), rows: n, dx: dBranch, gradients: g,
                                    pooledCounts: pooledCounts, pooledRows: n * c.mixtureLayers,
                                    auxScale: scale * Float(c.routerAuxLossCoef), zScale: scale * Float(c.routerZLossCoef),
                                    precision: w.precision, pool: pool, adapterNoise: w.adapterNoise)
                }
            } else {
            Profiler.measure("mlp down backward") {
                layer.down.backward(dOut, x: act, rows: n, dx: dAct, parameters: p, gradients: g, precision: w.precision,
                                    pool: pool, noise: w.adapterNoise)
            }
            Profiler.measure("activation backward") {
                if c.activation == .swiglu {
                    swigluBackward(dAct, gateUp: hIn, into: dIn, rows: n, dim: c.dFF, pool: pool)
                } else {
                    geluBackward(dAct, x: hIn, into: dIn, count: n * c.dFF, pool: pool)
                }
            }
            Profiler.measure("mlp up backward") {
                layer.up.backward(dIn, x: ln2, rows: n, dx: dBranch, parameters: p, gradients: g, precision: w.precision,
                                  pool: pool, noise: w.adapterNoise)
            }
            }
            Profiler.measure("norm backward") {
                normBackward(dBranch, x: xMid, layer.norm2, mean: w.norm2Mean.pointer + i * n,
                             rstd: w.norm2Rstd.pointer + i * n, dx: dx, gradients: g, rows: n, pool: pool)
            }
            // Attention branch: dx is now the gradient of xMid, and of x through the skip.
            dOut = branchGradient(mask: 1 + 2 * i)
            let att = w.att.pointer + i * n * c.heads * c.headDim
            let dAtt = w.dWide2.pointer
            Profiler.measure("attention out backward") {
                layer.out.backward(dOut, x: att, rows: n, dx: dAtt, parameters: p, gradients: g, precision: w.precision,
                                   pool: pool, noise: w.adapterNoise)
            }
            let qkv = w.qkv.pointer + i * n * c.qkvDim, dqkv = w.dWide.pointer
            Profiler.measure("attention backward") {
                attentionBackward(dAtt: dAtt, qkv: qkv, probs: w.probs.pointer + i * w.batch * c.heads * t * t,
                                  dqkv: dqkv, scratch: w.dProbs, batch: w.batch, length: t, pool: pool)
            }
            if let rotary {
                rotary.apply(dqkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads,
                             firstPosition: 0, period: t, inverse: true)
            }
            let ln1 = w.norm1.pointer + i * n * d
            Profiler.measure("qkv backward") {
                layer.qkv.backward(dqkv, x: ln1, rows: n, dx: dBranch, parameters: p, gradients: g, precision: w.precision,
                                   pool: pool, noise: w.adapterNoise)
            }
            Profiler.measure("norm backward") {
                normBackward(dBranch, x: x, layer.norm1, mean: w.norm1Mean.pointer + i * n,
                             rstd: w.norm1Rstd.pointer + i * n, dx: dx, gradients: g, rows: n, pool: pool)
            }
        }

        // Embeddings.
        if let dropout { multiply(dx, by: dropout.pointer, count: n * d) }
        Profiler.measure("embedding backward") {
            if let table = layout.tokenEmbeddingGradient {
                w.ids.withUnsafeBufferPointer {
                    embeddingBackward(dx, ids: $0.baseAddress!, into: g + table, count: n, dim: d, pool: pool)
                }
            }
            if let positions = layout.positionEmbeddingGradient {
                for r in 0..<n { axpy(1, dx + r * d, g + positions + (r % t) * d, count: d) }
            }
        }
    }

    // MARK: Pieces

    /// All heads of all sequences; tasks are (sequence, head) pairs.
    func attentionForward(
        qkv: UnsafePointer<Float>, att: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
        batch: Int, length t: Int, pool: ThreadPool
    ) {
        let c = config, hd = c.headDim, group = c.heads / c.kvHeads
        pool.parallelFor(batch * c.heads) { task, _ in
            let b = task / c.heads, h = task % c.heads, kvh = h / group
            let rowBase = qkv + b * t * c.qkvDim
            attentionHeadForward(
                q: rowBase + h * hd, qStride: c.qkvDim,
                k: rowBase + (c.heads + kvh) * hd, v: rowBase + (c.heads + c.kvHeads + kvh) * hd, kvStride: c.qkvDim,
                out: att + b * t * c.heads * hd + h * hd, outStride: c.heads * hd,
                probs: probs + task * t * t, rows: t, keys: t, headDim: hd, pool: pool)
        }
    }

    /// Tasks are (sequence, key/value head) pairs, so heads sharing `dk`, `dv` run in one task.
    func attentionBackward(
        dAtt: UnsafePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
        dqkv: UnsafeMutablePointer<Float>, scratch: FloatBuffer, batch: Int, length t: Int, pool: ThreadPool
    ) {
        let c = config, hd = c.headDim, group = c.heads / c.kvHeads
        let slots = scratch.count / (t * t)
        let body = { (task: Int, worker: Int) in
            let b = task / c.kvHeads, kvh = task % c.kvHeads
            let rowBase = qkv + b * t * c.qkvDim, dRowBase = dqkv + b * t * c.qkvDim
            // dq is written whole; dk and dv add up over the group's heads, so they start at 0,
            // zeroed here, by the task that uses them, rather than in one pass over all of dqkv.
            for row in 0..<t {
                (dRowBase + row * c.qkvDim + (c.heads + kvh) * hd).update(repeating: 0, count: hd)
                (dRowBase + row * c.qkvDim + (c.heads + c.kvHeads + kvh) * hd).update(repeating: 0, count: hd)
            }
            for h in (kvh * group)..<((kvh + 1) * group) {
                attentionHeadBackward(
                    dOut: dAtt + b * t * c.heads * hd + h * hd, dOutStride: c.heads * hd,
                    probs: probs + (b * c.heads + h) * t * t,
                    q: rowBase + h * hd, k: rowBase + (c.heads + kvh) * hd, v: rowBase + (c.heads + c.kvHeads + kvh) * hd,
                    stride: c.qkvDim,
                    dq: dRowBase + h * hd, dk: dRowBase + (c.heads + kvh) * hd, dv: dRowBase + (c.heads + c.kvHeads + kvh) * hd,
                    scratch: scratch.pointer + worker * t * t, rows: t, headDim: hd, pool: pool)
            }
        }
        // One scratch slot per thread; a pool larger than the workspace was made for runs serially.
        if pool.threadCount <= slots {
            pool.parallelFor(batch * c.kvHeads, body)
        } else {
            for task in 0..<(batch * c.kvHeads) { body(task, 0) }
        }
    }

    func fillDropoutMasks(_ masks: FloatBuffer, probability: Double, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let keep = Float(1 / (1 - probability)), threshold = Float(probability)
        for i in 0..<masks.count { masks.pointer[i] = rng.nextFloat() < threshold ? 0 : keep }
    }
}
