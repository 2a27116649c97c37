import Support
import Kernels

/// Activations and gradients for training steps of `batch` sequences of up to `capacity`
/// tokens, allocated once (a step allocates nothing). An evaluation workspace
/// (`training: false`) holds the forward activations alone: no gradients, dropout masks or
/// backward scratch.
public final class TrainingWorkspace: @unchecked Sendable {
    public let batch: Int
    /// The longest sequences the buffers hold.
    public let capacity: Int
    /// The sequence length of the next forward (`capacity` until `setLength` says otherwise):
    /// fine-tuning pads a batch to its longest example, not to `capacity`.
    public private(set) var length: Int
    /// The trainable tensors' gradients (`layout.gradientCount` floats; empty for evaluation).
    public let gradients: FloatBuffer
    private(set) var rows: Int
    let dModel: Int
    // Forward activations, per layer where marked [L]; N = batch · length rows. Backward
    // recomputes the cheap ones (the norms' outputs, the MLP activation, the attention weights
    // and heads' outputs) from what is kept, one layer at a time, into the one-layer buffers:
    // storing them would take 60% of the activations' memory (2,000 floats per token and layer
    // for SmolLM2, plus the (B H T T) weights), recomputing them a few percent of a step.
    var ids: [Int32], targets: [Int32]
    // An evaluation workspace keeps no layer for backward: one layer's buffers, and two
    // residual slots that the blocks alternate between.
    let residual: FloatBuffer   // [L+1][N d] (evaluation: [2][N d])
    let mid: FloatBuffer        // [L][N d] (evaluation: one layer)
    let norm1: FloatBuffer, norm1Mean: FloatBuffer, norm1Rstd: FloatBuffer   // [N d], [L][N], [L][N]
    let qkv: FloatBuffer        // [L][N qkvDim] (after RoPE; evaluation: one layer)
    let probs: FloatBuffer      // [B H T T] one layer's attention weights
    let att: FloatBuffer        // [N H hd] one layer's heads' outputs
    let norm2: FloatBuffer, norm2Mean: FloatBuffer, norm2Rstd: FloatBuffer   // [N d], [L][N], [L][N]
    let mlpIn: FloatBuffer      // [L][N mlpInPerToken] (a mixture block: its slots' rows, N k expertInDim; evaluation: one layer)
    let mlpAct: FloatBuffer     // [N mlpActPerToken] one layer's MLP activation
    let mixture: MixtureWorkspace?   // the mixture blocks' routing state
    let finalNorm: FloatBuffer, finalMean: FloatBuffer, finalRstd: FloatBuffer   // [N d], [N], [N]
    let logits: FloatBuffer     // [N V]; becomes dlogits in backward ([headChunk V] with a frozen output layer)
    /// Whether forward runs the output layer and the loss a chunk of counted rows at a time and
    /// never holds the whole (N, V) logits (200 MB for 1,024 tokens of a 49,152-token
    /// vocabulary): always in evaluation, and in training when the output layer is frozen (LoRA:
    /// no weight gradient, no adapter), where each chunk also leaves the layer's input gradient.
    let chunkedHead: Bool
    let headRows: FloatBuffer   // [headChunk d] a chunk's gathered inputs (training: and [headChunk d] their gradients)
    let headSlots: IntegerBuffer<Int32>   // [2 headChunk] a chunk's rows, and their targets
    let headLosses: FloatBuffer           // [2 headChunk] a chunk's losses, and their logsumexps
    /// Rows of the output layer per chunk.
    let headChunk: Int

    /// Rows per chunk of a frozen output layer: equal chunks whose logits take at most 64 MB. Each
    /// chunk streams the whole output matrix twice (forward and input gradient), so fewer, larger
    /// chunks are faster: 64-row chunks made a SmolLM2 LoRA step 10% slower, 256-row ones
    /// (4 per 1,024 tokens, 50 MB of logits) cost a few percent.
    static func headChunk(rows n: Int, vocabulary v: Int) -> Int {
        let most = max(64, (1 << 24) / max(1, v)), chunks = (n + most - 1) / most
        return (n + chunks - 1) / chunks
    }
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

    /// `headChunk` sets the rows per chunk of the output layer (0: the whole logits, which tests
    /// read and compare with the chunked path).
    public init(model: TransformerModel, batch: Int, length: Int, threads: Int = ThreadPool.shared.threadCount,
                training: Bool = true, headChunk: Int? = nil) throws {
        let c = model.config
        guard batch > 0, length > 0 else { throw TransformerError.emptyInput(what: "a training batch") }
        guard length <= c.contextLength else { throw TransformerError.sequenceTooLong(tokens: length, contextLength: c.contextLength) }
        let head = model.layout.lmHead
        let chunked = headChunk != 0 && (!training || (!head.trainable && head.biasGradient == nil && head.adapters.isEmpty))
        let floats = try TrainingWorkspace.floatCount(config: c, gradients: training ? model.layout.gradientCount : 0,
                                                      batch: batch, length: length, threads: threads, training: training,
                                                      chunkedHead: chunked, headChunk: headChunk)
        try MemoryBudget.check(floats: floats, what: "the activations of \(batch) × \(length) tokens")
        self.batch = batch
        self.length = length
        capacity = length
        canTrain = training
        let n = batch * length, d = c.dModel, l = c.layers
        let b = training ? 1 : 0   // backward-only buffers are empty for evaluation
        rows = n
        dModel = d
        gradients = FloatBuffer(count: b * model.layout.gradientCount)
        ids = [Int32](repeating: 0, count: n)
        targets = [Int32](repeating: -1, count: n)
        let kept = training ? l : 1   // layers whose activations backward reads
        residual = FloatBuffer(count: (training ? l + 1 : 2) * n * d)
        mid = FloatBuffer(count: kept * n * d)
        norm1 = FloatBuffer(count: n * d); norm1Mean = FloatBuffer(count: l * n); norm1Rstd = FloatBuffer(count: l * n)
        qkv = FloatBuffer(count: kept * n * c.qkvDim)
        probs = FloatBuffer(count: batch * c.heads * length * length)
        att = FloatBuffer(count: n * c.heads * c.headDim)
        norm2 = FloatBuffer(count: n * d); norm2Mean = FloatBuffer(count: l * n); norm2Rstd = FloatBuffer(count: l * n)
        mlpIn = FloatBuffer(count: kept * n * c.mlpInPerToken)
        mlpAct = FloatBuffer(count: n * c.mlpActPerToken)
        mixture = c.experts > 0 ? MixtureWorkspace(config: c, rows: n, layers: c.mixtureLayers, training: training) : nil
        finalNorm = FloatBuffer(count: n * d); finalMean = FloatBuffer(count: n); finalRstd = FloatBuffer(count: n)
        chunkedHead = chunked
        self.headChunk = chunked ? min(n, headChunk ?? Self.headChunk(rows: n, vocabulary: c.vocabularySize)) : n
        logits = FloatBuffer(count: self.headChunk * c.vocabularySize)
        headRows = FloatBuffer(count: chunked ? (training ? 2 : 1) * self.headChunk * d : 0)
        headSlots = IntegerBuffer(count: chunked ? 2 * self.headChunk : 0)
        headLosses = FloatBuffer(count: chunked ? 2 * self.headChunk : 0)
        losses = FloatBuffer(count: n); dloss = FloatBuffer(count: n); logSumExps = FloatBuffer(count: n)
        masks = training && c.dropout > 0 ? FloatBuffer(count: (2 * l + 1) * n * d) : nil
        dResidual = FloatBuffer(count: b * n * d)
        dBranch = FloatBuffer(count: n * max(d, c.heads * c.headDim))
        dWide = FloatBuffer(count: b * n * max(c.mlpInPerToken, c.qkvDim))
        dWide2 = FloatBuffer(count: b * n * max(c.mlpActPerToken, c.heads * c.headDim))
        dProbs = FloatBuffer(count: b * max(1, threads) * length * length)
    }

    /// Makes the next forward (and its backward) run `batch` sequences of `t` tokens, for any `t`
    /// up to `capacity`. The per-layer buffers are packed at the new row count, so this must not
    /// fall between a forward and its backward.
    public func setLength(_ t: Int) throws {
        guard t >= 1 && t <= capacity else {
            throw TransformerError.invalidConfig(source: "workspace", field: "length",
                                                 reason: "must be in 1...\(capacity) (the workspace's capacity), got \(t)")
        }
        length = t
        rows = batch * t
    }

    /// Where block `i` reads its input (`i == layers`: the last block's output).
    func residual(_ i: Int) -> UnsafeMutablePointer<Float> { residual.pointer + (canTrain ? i : i % 2) * rows * dModel }
    /// Block `i`'s slot in a per-layer buffer of `width` floats per row.
    func layer(_ buffer: FloatBuffer, _ i: Int, width: Int) -> UnsafeMutablePointer<Float> {
        buffer.pointer + (canTrain ? i : 0) * rows * width
    }

    /// Bytes held by the buffers.
    public var residentBytes: Int {
        let buffers = [gradients, residual, mid, norm1, norm1Mean, norm1Rstd, qkv, probs, att, norm2, norm2Mean, norm2Rstd,
                       mlpIn, mlpAct, finalNorm, finalMean, finalRstd, logits, headRows, headLosses, losses, dloss, logSumExps, dResidual, dBranch,
                       dWide, dWide2, dProbs] + (masks.map { [$0] } ?? [])
        return 4 * buffers.reduce(0) { $0 + $1.count } + 4 * headSlots.count + (mixture?.residentBytes ?? 0)
    }

    /// Floats the buffers above take, computed with overflow checks (so that absurd sizes are an
    /// error, not a trap or a giant allocation).
    static func floatCount(config c: ModelConfig, gradients: Int, batch: Int, length: Int, threads: Int,
                           training: Bool, chunkedHead: Bool, headChunk: Int?) throws -> Int {
        let size = CheckedSize(what: "the activations of \(batch) × \(length) tokens")
        let n = try size.product(batch, length), l = c.layers, d = c.dModel, kept = training ? l : 1
        let perRow = try size.sum([
            (kept + 1) * d, kept * d, 2 * d, 4 * l, kept * c.qkvDim, c.heads * c.headDim, kept * c.mlpInPerToken,
            c.mlpActPerToken, d + 2, chunkedHead ? 0 : c.vocabularySize, 3, max(d, c.heads * c.headDim),
            training ? d + max(c.mlpInPerToken, c.qkvDim) + max(c.mlpActPerToken, c.heads * c.headDim)
                + (c.dropout > 0 ? (2 * l + 1) * d : 0) : 0,
        ])
        let routing = c.experts > 0 ? try MixtureWorkspace.floatCount(config: c, rows: n, layers: c.mixtureLayers, training: training) : 0
        let attention = try size.product(c.heads + (training ? max(1, threads) : 0), batch, length, length)
        let chunk = min(n, max(1, headChunk ?? Self.headChunk(rows: n, vocabulary: c.vocabularySize)))
        let head = chunkedHead ? try size.product(chunk, c.vocabularySize + (training ? 2 : 1) * d + 4) : 0
        return try size.sum([try size.product(n, perRow), attention, gradients, routing, head])
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
        // The masks in use: 2L+1 of n rows each (the buffer holds them for the longest batch).
        if let dropout, let seed = dropoutSeed { fillDropoutMasks(dropout, count: (2 * c.layers + 1) * n * d, probability: c.dropout, seed: seed) }
        w.dropoutActive = dropout != nil
        w.adapterNoise = (adapters?.dropout ?? 0) > 0 ? dropoutSeed : nil
        if let mixture = w.mixture {
            mixture.jitterActive = dropoutSeed != nil && c.routerJitter > 0 && mixture.noise != nil
            if mixture.jitterActive, let seed = dropoutSeed { mixture.fillNoise(jitter: c.routerJitter, seed: seed) }
        }

        let buffers = { (i: Int) in
            BlockBuffers(
                x: w.residual(i),
                norm1: w.norm1.pointer, norm1Mean: w.norm1Mean.pointer + i * n, norm1Rstd: w.norm1Rstd.pointer + i * n,
                qkv: w.layer(w.qkv, i, width: c.qkvDim), attention: w.att.pointer,
                mid: w.layer(w.mid, i, width: d),
                norm2: w.norm2.pointer, norm2Mean: w.norm2Mean.pointer + i * n, norm2Rstd: w.norm2Rstd.pointer + i * n,
                mlpIn: w.layer(w.mlpIn, i, width: c.mlpInPerToken), mlpAct: w.mlpAct.pointer,
                output: w.residual(i + 1), branch: w.dBranch.pointer,
                attentionMask: dropout.map { UnsafePointer($0.pointer + (1 + 2 * i) * n * d) },
                mlpMask: dropout.map { UnsafePointer($0.pointer + (2 + 2 * i) * n * d) },
                mixture: c.isMixture(i) ? w.mixture?.block(c.mixtureIndex(i), rows: n) : nil, adapterNoise: w.adapterNoise)
        }
        w.ids.withUnsafeBufferPointer { ids in
            forwardBlocks(ids: ids.baseAddress!, rows: n, firstPosition: 0, period: t,
                          embeddingMask: dropout.map { UnsafePointer($0.pointer) }, buffers: buffers,
                          span: { _ in .sequences(batch: w.batch, length: t, probs: w.probs.pointer) }, precision: w.precision, pool: pool)
        }
        if w.chunkedHead {
            chunkedHeadForward(w, pool: pool)
        } else {
            forwardHead(w.residual(c.layers), rows: n, normed: w.finalNorm.pointer, mean: w.finalMean.pointer,
                        rstd: w.finalRstd.pointer, logits: w.logits.pointer, precision: w.precision, pool: pool)
            Profiler.measure("loss") {
                w.targets.withUnsafeBufferPointer {
                    crossEntropyForward(logits: w.logits.pointer, targets: $0.baseAddress!, losses: w.losses.pointer,
                                        logSumExps: w.logSumExps.pointer, gradients: forBackward ? w.logits.pointer : nil,
                                        rows: n, vocab: c.vocabularySize, pool: pool)
                }
            }
        }
        if let mixture = w.mixture {
            w.routerAuxLoss = mixture.auxLoss(rows: n, perLayer: c.routerAuxLossPerLayer)
            w.routerZLoss = mixture.zLoss(rows: n)
        }
        let counted = w.targets[..<n].reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        w.counted = counted
        w.logitsHoldGradients = forBackward && !w.chunkedHead
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
        if w.chunkedHead {
            // Forward left the output layer's input gradient (for a row weight of 1) in dResidual.
        } else if w.logitsHoldGradients {
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
        if w.chunkedHead {
            dFinal.update(from: w.dResidual.pointer, count: n * d)
            Kernels.scale(dFinal, by: perToken, count: n * d)
        } else {
            Profiler.measure("lm head backward") {
                layout.lmHead.backward(w.logits.pointer, x: w.finalNorm.pointer, rows: n, dx: dFinal, parameters: p,
                                       gradients: g, alpha: outputScale, precision: w.precision, pool: pool)
            }
        }
        let dx = w.dResidual.pointer
        dx.update(repeating: 0, count: n * d)
        Profiler.measure("norm backward") {
            normBackward(dFinal, x: w.residual(c.layers), layout.finalNorm, mean: w.finalMean.pointer,
                         rstd: w.finalRstd.pointer, dx: dx, gradients: g, rows: n, pool: pool)
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
            let x = w.residual(i), xMid = w.layer(w.mid, i, width: d)
            // MLP branch: dx is the gradient of x_{i+1}, and of xMid through the skip.
            var dOut = branchGradient(mask: 2 + 2 * i)
            let hIn = w.layer(w.mlpIn, i, width: c.mlpInPerToken), act = w.mlpAct.pointer
            let dAct = w.dWide2.pointer, dIn = w.dWide.pointer
            let ln2 = w.norm2.pointer
            // The branch's input and activation again, by the forward's own calls (so bit-equal).
            Profiler.measure("recompute") {
                normForward(xMid, layer.norm2, into: ln2, mean: nil, rstd: nil, rows: n, pool: pool)
                if layer.mixture != nil, let routing = w.mixture {
                    mixtureActivations(hidden: hIn, into: act, routing.block(c.mixtureIndex(i), rows: n), pool: pool)
                } else if c.activation == .swiglu {
                    swigluForward(hIn, into: act, rows: n, dim: c.dFF, pool: pool)
                } else {
                    geluForward(hIn, into: act, count: n * c.dFF, pool: pool)
                }
            }
            if let mixture = layer.mixture, let routing = w.mixture {
                Profiler.measure("mixture backward") {
                    mixtureBackward(mixture, dBranch: dOut, x: ln2, hidden: hIn, act: act, dHidden: dIn, dAct: dAct,
                                    routing.block(c.mixtureIndex(i), rows: n), rows: n, dx: dBranch, gradients: g,
                                    balance: routing.auxGradient(block: c.mixtureIndex(i), rows: n, perLayer: c.routerAuxLossPerLayer),
                                    zRows: n * c.mixtureLayers,
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
            let att = w.att.pointer, qkv = w.layer(w.qkv, i, width: c.qkvDim)
            Profiler.measure("recompute") {
                attentionForward(qkv: qkv, att: att, probs: w.probs.pointer, batch: w.batch, length: t, pool: pool)
            }
            let dAtt = w.dWide2.pointer
            Profiler.measure("attention out backward") {
                layer.out.backward(dOut, x: att, rows: n, dx: dAtt, parameters: p, gradients: g, precision: w.precision,
                                   pool: pool, noise: w.adapterNoise)
            }
            let dqkv = w.dWide.pointer
            Profiler.measure("attention backward") {
                attentionBackward(dAtt: dAtt, qkv: qkv, probs: w.probs.pointer,
                                  dqkv: dqkv, scratch: w.dProbs, batch: w.batch, length: t, pool: pool)
            }
            if let rotary {
                rotary.apply(dqkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads,
                             firstPosition: 0, period: t, inverse: true, pool: pool)
            }
            let ln1 = w.norm1.pointer
            Profiler.measure("recompute") {
                normForward(x, layer.norm1, into: ln1, mean: nil, rstd: nil, rows: n, pool: pool)
            }
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

    /// The final norm, then the logits and the loss a chunk of counted rows at a time, and in
    /// training (a frozen output layer) the layer's input gradient (for a row weight of 1, into
    /// `dResidual`). Rows that do not count (masked prompts, padding) skip the output layer: their
    /// loss and gradient are 0.
    func chunkedHeadForward(_ w: TrainingWorkspace, pool: ThreadPool) {
        let c = config, n = w.rows, d = c.dModel, v = c.vocabularySize, p = parameters.pointer
        let normed = w.finalNorm.pointer, dNormed = w.dResidual.pointer, training = w.canTrain
        Profiler.measure("norm") {
            normForward(w.residual(c.layers), layout.finalNorm, into: normed, mean: w.finalMean.pointer,
                        rstd: w.finalRstd.pointer, rows: n, pool: pool)
        }
        let x = w.headRows.pointer, dx = x + w.headChunk * d
        let slotRows = w.headSlots.pointer, slotTargets = slotRows + w.headChunk
        let chunkLosses = w.headLosses.pointer, chunkLSE = chunkLosses + w.headChunk
        // The gathered rows (`m` of them) through the output layer and the loss, then scattered back.
        func flush(_ m: Int) {
            Profiler.measure("lm head") {
                layout.lmHead.forward(x, rows: m, into: w.logits.pointer, parameters: p, precision: w.precision, pool: pool)
            }
            Profiler.measure("loss") {
                crossEntropyForward(logits: w.logits.pointer, targets: slotTargets, losses: chunkLosses, logSumExps: chunkLSE,
                                    gradients: training ? w.logits.pointer : nil, rows: m, vocab: v, pool: pool)
            }
            if training {
                Profiler.measure("lm head backward") {
                    layout.lmHead.backward(w.logits.pointer, x: x, rows: m, dx: dx, parameters: p, gradients: nil,
                                           computeWeightGradient: false, precision: w.precision, pool: pool)
                }
            }
            for j in 0..<m {
                let r = Int(slotRows[j])
                w.losses.pointer[r] = chunkLosses[j]
                w.logSumExps.pointer[r] = chunkLSE[j]
                if training { (dNormed + r * d).update(from: dx + j * d, count: d) }
            }
        }
        var m = 0
        for r in 0..<n {
            let target = w.targets[r]
            guard target >= 0 else {
                w.losses.pointer[r] = 0
                w.logSumExps.pointer[r] = 0
                if training { (dNormed + r * d).update(repeating: 0, count: d) }
                continue
            }
            (x + m * d).update(from: normed + r * d, count: d)
            slotRows[m] = Int32(r)
            slotTargets[m] = target
            m += 1
            if m == w.headChunk { flush(m); m = 0 }
        }
        if m > 0 { flush(m) }
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

    func fillDropoutMasks(_ masks: FloatBuffer, count: Int, probability: Double, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let keep = Float(1 / (1 - probability)), threshold = Float(probability)
        for i in 0..<count { masks.pointer[i] = rng.nextFloat() < threshold ? 0 : keep }
    }
}
