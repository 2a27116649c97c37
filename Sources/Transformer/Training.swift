import Kernels

/// Activations and gradients for training steps of `batch` sequences of `length` tokens,
/// allocated once (a step allocates nothing).
public final class TrainingWorkspace: @unchecked Sendable {
    public let batch: Int, length: Int
    public let gradients: FloatBuffer
    let rows: Int
    // Forward activations, per layer where marked [L].
    var ids: [Int32], targets: [Int32]
    let residual: FloatBuffer   // [L+1][N d]
    let mid: FloatBuffer        // [L][N d]
    let norm1: FloatBuffer, norm1Mean: FloatBuffer, norm1Rstd: FloatBuffer
    let qkv: FloatBuffer        // [L][N qkvDim]
    let probs: FloatBuffer      // [L][B H T T]
    let att: FloatBuffer        // [L][N H hd]
    let norm2: FloatBuffer, norm2Mean: FloatBuffer, norm2Rstd: FloatBuffer
    let mlpIn: FloatBuffer      // [L][N mlpInDim]
    let mlpAct: FloatBuffer     // [L][N dFF]
    let finalNorm: FloatBuffer, finalMean: FloatBuffer, finalRstd: FloatBuffer
    let logits: FloatBuffer     // [N V]; becomes dlogits in backward
    let losses: FloatBuffer, dloss: FloatBuffer, logSumExps: FloatBuffer
    let masks: FloatBuffer?     // dropout: [2L+1][N d]
    // Backward scratch.
    let dResidual: FloatBuffer, dBranch: FloatBuffer, dWide: FloatBuffer, dWide2: FloatBuffer
    let dProbs: FloatBuffer     // [threads][T T]
    /// The precision of the linear layers' products (attention and everything else stay fp32).
    public var precision: MatmulPrecision = .fp32
    /// Tokens that counted in the last forward (targets not -1).
    public internal(set) var counted = 0
    /// Whether the last forward left the loss gradient (for a row weight of 1) in `logits`.
    var logitsHoldGradients = false

    public init(model: TransformerModel, batch: Int, length: Int, threads: Int = ThreadPool.shared.threadCount) throws {
        let c = model.config
        guard batch > 0, length > 0 else { throw TransformerError.emptyInput(what: "a training batch") }
        guard length <= c.contextLength else { throw TransformerError.sequenceTooLong(tokens: length, contextLength: c.contextLength) }
        self.batch = batch
        self.length = length
        let n = batch * length, d = c.dModel, l = c.layers
        rows = n
        gradients = FloatBuffer(count: model.layout.count)
        ids = [Int32](repeating: 0, count: n)
        targets = [Int32](repeating: -1, count: n)
        residual = FloatBuffer(count: (l + 1) * n * d)
        mid = FloatBuffer(count: l * n * d)
        norm1 = FloatBuffer(count: l * n * d); norm1Mean = FloatBuffer(count: l * n); norm1Rstd = FloatBuffer(count: l * n)
        qkv = FloatBuffer(count: l * n * c.qkvDim)
        probs = FloatBuffer(count: l * batch * c.heads * length * length)
        att = FloatBuffer(count: l * n * c.heads * c.headDim)
        norm2 = FloatBuffer(count: l * n * d); norm2Mean = FloatBuffer(count: l * n); norm2Rstd = FloatBuffer(count: l * n)
        mlpIn = FloatBuffer(count: l * n * c.mlpInDim)
        mlpAct = FloatBuffer(count: l * n * c.dFF)
        finalNorm = FloatBuffer(count: n * d); finalMean = FloatBuffer(count: n); finalRstd = FloatBuffer(count: n)
        logits = FloatBuffer(count: n * c.vocabularySize)
        losses = FloatBuffer(count: n); dloss = FloatBuffer(count: n); logSumExps = FloatBuffer(count: n)
        masks = c.dropout > 0 ? FloatBuffer(count: (2 * l + 1) * n * d) : nil
        dResidual = FloatBuffer(count: n * d)
        dBranch = FloatBuffer(count: n * max(d, c.heads * c.headDim))
        dWide = FloatBuffer(count: n * max(c.mlpInDim, c.qkvDim))
        dWide2 = FloatBuffer(count: n * c.dFF)
        dProbs = FloatBuffer(count: max(1, threads) * length * length)
    }
}

extension TransformerModel {
    /// Runs the model on `batch x length` token ids and returns the mean cross-entropy against
    /// `targets` (-1 marks a position that does not count). With `dropoutSeed`, dropout is on.
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
        try ids.withUnsafeBufferPointer { try validate($0) }
        try targets.withUnsafeBufferPointer { try validate($0, allowNegative: true) }
        // Copied into the workspace's own arrays: assigning would share the caller's storage and
        // make its next write copy it.
        w.ids.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: ids) }
        w.targets.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: targets) }
        let p = parameters.pointer
        let dropout = dropoutSeed != nil && c.dropout > 0 ? w.masks : nil
        if let dropout, let seed = dropoutSeed { fillDropoutMasks(dropout, probability: c.dropout, seed: seed) }

        // Embeddings (+ learned positions).
        let x0 = w.residual.pointer
        Profiler.measure("embedding") {
            w.ids.withUnsafeBufferPointer { embeddingForward(table: p + layout.tokenEmbedding, ids: $0.baseAddress!, into: x0, count: n, dim: d) }
            if c.positions == .learned {
                for r in 0..<n { add(x0 + r * d, p + layout.positionEmbedding + (r % t) * d, into: x0 + r * d, count: d) }
            }
        }
        if let dropout { multiply(x0, by: dropout.pointer, count: n * d) }

        for (i, layer) in layout.layers.enumerated() {
            let x = w.residual.pointer + i * n * d, xMid = w.mid.pointer + i * n * d, xNext = x + n * d
            // Attention branch.
            let ln1 = w.norm1.pointer + i * n * d
            Profiler.measure("norm") {
                normForward(x, weight: p + layer.norm1Weight, bias: c.normHasBias ? p + layer.norm1Bias : nil,
                            into: ln1, mean: w.norm1Mean.pointer + i * n, rstd: w.norm1Rstd.pointer + i * n, rows: n, pool: pool)
            }
            let qkv = w.qkv.pointer + i * n * c.qkvDim
            Profiler.measure("qkv") {
                linearForward(ln1, rows: n, inDim: d, weight: p + layer.qkvWeight, bias: c.bias ? p + layer.qkvBias : nil,
                              into: qkv, outDim: c.qkvDim, precision: w.precision, pool: pool)
            }
            if let rotary {
                rotary.apply(qkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads, firstPosition: 0, period: t)
            }
            let att = w.att.pointer + i * n * c.heads * c.headDim
            let probs = w.probs.pointer + i * w.batch * c.heads * t * t
            Profiler.measure("attention") {
                attentionForward(qkv: qkv, att: att, probs: probs, batch: w.batch, length: t, pool: pool)
            }
            let branch = w.dBranch.pointer // scratch in the forward pass
            Profiler.measure("attention out") {
                linearForward(att, rows: n, inDim: c.heads * c.headDim, weight: p + layer.outWeight,
                              bias: c.bias ? p + layer.outBias : nil, into: branch, outDim: d, precision: w.precision, pool: pool)
            }
            if let dropout { multiply(branch, by: dropout.pointer + (1 + 2 * i) * n * d, count: n * d) }
            Profiler.measure("residual") {
                add(x, branch, into: xMid, count: n * d)
            }
            // MLP branch.
            let ln2 = w.norm2.pointer + i * n * d
            Profiler.measure("norm") {
                normForward(xMid, weight: p + layer.norm2Weight, bias: c.normHasBias ? p + layer.norm2Bias : nil,
                            into: ln2, mean: w.norm2Mean.pointer + i * n, rstd: w.norm2Rstd.pointer + i * n, rows: n, pool: pool)
            }
            let hIn = w.mlpIn.pointer + i * n * c.mlpInDim, act = w.mlpAct.pointer + i * n * c.dFF
            Profiler.measure("mlp up") {
                linearForward(ln2, rows: n, inDim: d, weight: p + layer.upWeight, bias: c.bias ? p + layer.upBias : nil,
                              into: hIn, outDim: c.mlpInDim, precision: w.precision, pool: pool)
            }
            Profiler.measure("activation") {
                if c.activation == .swiglu {
                    swigluForward(hIn, into: act, rows: n, dim: c.dFF, pool: pool)
                } else {
                    geluForward(hIn, into: act, count: n * c.dFF, pool: pool)
                }
            }
            Profiler.measure("mlp down") {
                linearForward(act, rows: n, inDim: c.dFF, weight: p + layer.downWeight, bias: c.bias ? p + layer.downBias : nil,
                              into: branch, outDim: d, precision: w.precision, pool: pool)
            }
            if let dropout { multiply(branch, by: dropout.pointer + (2 + 2 * i) * n * d, count: n * d) }
            Profiler.measure("residual") {
                add(xMid, branch, into: xNext, count: n * d)
            }
        }

        // Final norm, output layer, loss.
        let xL = w.residual.pointer + c.layers * n * d
        Profiler.measure("norm") {
            normForward(xL, weight: p + layout.finalNormWeight, bias: c.normHasBias ? p + layout.finalNormBias : nil,
                        into: w.finalNorm.pointer, mean: w.finalMean.pointer, rstd: w.finalRstd.pointer, rows: n, pool: pool)
        }
        Profiler.measure("lm head") {
            linearForward(w.finalNorm.pointer, rows: n, inDim: d, weight: p + layout.lmHead, bias: nil,
                          into: w.logits.pointer, outDim: c.vocabularySize, precision: w.precision, pool: pool)
        }
        Profiler.measure("loss") {
            w.targets.withUnsafeBufferPointer {
                crossEntropyForward(logits: w.logits.pointer, targets: $0.baseAddress!, losses: w.losses.pointer,
                                    logSumExps: w.logSumExps.pointer, gradients: forBackward ? w.logits.pointer : nil,
                                    rows: n, vocab: c.vocabularySize, pool: pool)
            }
        }
        let counted = w.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        w.counted = counted
        w.logitsHoldGradients = forBackward
        return counted == 0 ? 0 : sum(w.losses.pointer, count: n) / Float(counted)
    }

    /// Adds the gradient of the last `forward`'s mean loss, times `scale`, to
    /// `workspace.gradients` (so micro-batches accumulate; zero the gradients to start).
    public func backward(workspace w: TrainingWorkspace, scale: Float = 1, pool: ThreadPool = .shared) {
        let c = config, n = w.rows, d = c.dModel, t = w.length
        let p = parameters.pointer, g = w.gradients.pointer
        let dropout = w.masks != nil && c.dropout > 0 ? w.masks : nil
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
            linearBackward(w.logits.pointer, x: w.finalNorm.pointer, rows: n, inDim: d, outDim: c.vocabularySize,
                           weight: p + layout.lmHead, dx: dFinal, accumulate: false, dWeight: g + layout.lmHead, dBias: nil,
                           alpha: outputScale, precision: w.precision, pool: pool)
        }
        let dx = w.dResidual.pointer
        dx.update(repeating: 0, count: n * d)
        Profiler.measure("norm backward") {
            normBackward(dFinal, x: w.residual.pointer + c.layers * n * d, weight: p + layout.finalNormWeight,
                         mean: w.finalMean.pointer, rstd: w.finalRstd.pointer, dx: dx, dWeight: g + layout.finalNormWeight,
                         dBias: c.normHasBias ? g + layout.finalNormBias : nil, rows: n, pool: pool)
        }

        let dBranch = w.dBranch.pointer
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
            let hIn = w.mlpIn.pointer + i * n * c.mlpInDim, act = w.mlpAct.pointer + i * n * c.dFF
            let dAct = w.dWide2.pointer, dIn = w.dWide.pointer
            Profiler.measure("mlp down backward") {
                linearBackward(dOut, x: act, rows: n, inDim: c.dFF, outDim: d, weight: p + layer.downWeight,
                               dx: dAct, accumulate: false, dWeight: g + layer.downWeight,
                               dBias: c.bias ? g + layer.downBias : nil, precision: w.precision, pool: pool)
            }
            Profiler.measure("activation backward") {
                if c.activation == .swiglu {
                    swigluBackward(dAct, gateUp: hIn, into: dIn, rows: n, dim: c.dFF, pool: pool)
                } else {
                    geluBackward(dAct, x: hIn, into: dIn, count: n * c.dFF, pool: pool)
                }
            }
            let ln2 = w.norm2.pointer + i * n * d
            Profiler.measure("mlp up backward") {
                linearBackward(dIn, x: ln2, rows: n, inDim: d, outDim: c.mlpInDim, weight: p + layer.upWeight,
                               dx: dBranch, accumulate: false, dWeight: g + layer.upWeight,
                               dBias: c.bias ? g + layer.upBias : nil, precision: w.precision, pool: pool)
            }
            Profiler.measure("norm backward") {
                normBackward(dBranch, x: xMid, weight: p + layer.norm2Weight, mean: w.norm2Mean.pointer + i * n,
                             rstd: w.norm2Rstd.pointer + i * n, dx: dx, dWeight: g + layer.norm2Weight,
                             dBias: c.normHasBias ? g + layer.norm2Bias : nil, rows: n, pool: pool)
            }
            // Attention branch: dx is now the gradient of xMid, and of x through the skip.
            dOut = branchGradient(mask: 1 + 2 * i)
            let att = w.att.pointer + i * n * c.heads * c.headDim
            let dAtt = w.dWide2.pointer
            Profiler.measure("attention out backward") {
                linearBackward(dOut, x: att, rows: n, inDim: c.heads * c.headDim, outDim: d, weight: p + layer.outWeight,
                               dx: dAtt, accumulate: false, dWeight: g + layer.outWeight,
                               dBias: c.bias ? g + layer.outBias : nil, precision: w.precision, pool: pool)
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
                linearBackward(dqkv, x: ln1, rows: n, inDim: d, outDim: c.qkvDim, weight: p + layer.qkvWeight,
                               dx: dBranch, accumulate: false, dWeight: g + layer.qkvWeight,
                               dBias: c.bias ? g + layer.qkvBias : nil, precision: w.precision, pool: pool)
            }
            Profiler.measure("norm backward") {
                normBackward(dBranch, x: x, weight: p + layer.norm1Weight, mean: w.norm1Mean.pointer + i * n,
                             rstd: w.norm1Rstd.pointer + i * n, dx: dx, dWeight: g + layer.norm1Weight,
                             dBias: c.normHasBias ? g + layer.norm1Bias : nil, rows: n, pool: pool)
            }
        }

        // Embeddings.
        if let dropout { multiply(dx, by: dropout.pointer, count: n * d) }
        Profiler.measure("embedding backward") {
            w.ids.withUnsafeBufferPointer {
                embeddingBackward(dx, ids: $0.baseAddress!, into: g + layout.tokenEmbedding, count: n, dim: d, pool: pool)
            }
            if c.positions == .learned {
                for r in 0..<n { axpy(1, dx + r * d, g + layout.positionEmbedding + (r % t) * d, count: d) }
            }
        }
    }

    // MARK: Pieces

    func normForward(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        into y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?,
        rows: Int, pool: ThreadPool
    ) {
        let eps = Float(config.normEps)
        switch config.norm {
        case .layernorm:
            layerNormForward(x, weight: weight, bias: bias, into: y, mean: mean, rstd: rstd, rows: rows,
                             dim: config.dModel, eps: eps, pool: pool)
        case .rmsnorm:
            rmsNormForward(x, weight: weight, into: y, rstd: rstd, rows: rows, dim: config.dModel, eps: eps, pool: pool)
        }
    }

    func normBackward(
        _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
        dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, rows: Int, pool: ThreadPool
    ) {
        switch config.norm {
        case .layernorm:
            layerNormBackward(dy, x: x, weight: weight, mean: mean, rstd: rstd, dx: dx, dweight: dWeight,
                              dbias: dBias, rows: rows, dim: config.dModel, pool: pool)
        case .rmsnorm:
            rmsNormBackward(dy, x: x, weight: weight, rstd: rstd, dx: dx, dweight: dWeight, rows: rows,
                            dim: config.dModel, pool: pool)
        }
    }

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
