import Kernels

/// Where one block's forward pass reads and writes, for `rows` tokens. Training gives each layer
/// buffers of its own (backward reads them); inference reuses one set and works in place
/// (`mid` and `output` are `x`).
struct BlockBuffers {
    var x: UnsafeMutablePointer<Float>            // (rows, d) the block's input: the residual stream
    var norm1: UnsafeMutablePointer<Float>        // (rows, d)
    var norm1Mean: UnsafeMutablePointer<Float>?   // (rows) norm statistics, kept for backward
    var norm1Rstd: UnsafeMutablePointer<Float>?   // (rows)
    var qkv: UnsafeMutablePointer<Float>          // (rows, qkvDim) q, k, v (after RoPE)
    var attention: UnsafeMutablePointer<Float>    // (rows, heads·hd) the heads' outputs
    var mid: UnsafeMutablePointer<Float>          // (rows, d) x + attention branch
    var norm2: UnsafeMutablePointer<Float>        // (rows, d)
    var norm2Mean: UnsafeMutablePointer<Float>?   // (rows)
    var norm2Rstd: UnsafeMutablePointer<Float>?   // (rows)
    var mlpIn: UnsafeMutablePointer<Float>        // (rows, mlpInDim) before the activation
    var mlpAct: UnsafeMutablePointer<Float>       // (rows, dFF) after it
    var output: UnsafeMutablePointer<Float>       // (rows, d) mid + MLP branch
    var branch: UnsafeMutablePointer<Float>       // (rows, d) scratch: a branch's output
    var attentionMask: UnsafePointer<Float>?      // (rows, d) dropout on the attention branch
    var mlpMask: UnsafePointer<Float>?            // (rows, d) dropout on the MLP branch
    var mixture: MixtureBuffers? = nil            // a mixture block's routing state (mlpIn, mlpAct then hold (rows k, ·))
    var adapterNoise: UInt64? = nil               // training noise for the adapters' dropout
}

/// Which keys a block's queries see.
enum AttentionSpan {
    /// `batch` whole sequences of `length` tokens at positions `0..<length` (training,
    /// evaluation), their attention weights kept in `probs` (B, H, T, T) for backward.
    case sequences(batch: Int, length: Int, probs: UnsafeMutablePointer<Float>)
    /// New tokens of one sequence at positions `start...`; keys and values of earlier positions
    /// are in the cache, head-major (`[kvHeads][capacity][hd]`, `capacity` whole `KeyBlocks`, the
    /// keys in those blocks), and this call appends its own.
    case cached(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, capacity: Int, start: Int)
    /// The same with the cache in 8-bit blocks (`--kv-bits 8`).
    case quantizedCache(QuantizedKV, start: Int)
    /// The same with the cache in halves (`--kv-bits 16`).
    case halfCache(HalfKV, start: Int)
}

extension TransformerModel {
    /// One pre-norm block: `mid = x + attention(norm1(x))`, `output = mid + mlp(norm2(mid))`,
    /// with dropout masks on the branches when given. The one layer sequence of the model:
    /// training, evaluation, prefill and decoding all run it.
    func blockForward(
        _ layer: ParameterLayout.Layer, _ b: BlockBuffers, rows n: Int, span: AttentionSpan,
        precision: MatmulPrecision, pool: ThreadPool
    ) {
        let c = config, d = c.dModel, p = parameters.pointer
        // Attention branch.
        Profiler.measure("norm") {
            normForward(b.x, layer.norm1, into: b.norm1, mean: b.norm1Mean, rstd: b.norm1Rstd, rows: n, pool: pool)
        }
        Profiler.measure("qkv") {
            layer.qkv.forward(b.norm1, rows: n, into: b.qkv, parameters: p, precision: precision, pool: pool, noise: b.adapterNoise)
        }
        switch span {
        case let .sequences(batch, t, probs):
            rotary?.apply(b.qkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads, firstPosition: 0, period: t, pool: pool)
            Profiler.measure("attention") {
                attentionForward(qkv: b.qkv, att: b.attention, probs: probs, batch: batch, length: t, pool: pool)
            }
        case let .cached(keys, values, capacity, start):
            Profiler.measure("rope") {
                rotary?.apply(b.qkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads, firstPosition: start,
                              period: Int.max, pool: pool)
            }
            Profiler.measure("attention") {
                cachedAttentionForward(qkv: b.qkv, keys: keys, values: values, capacity: capacity, start: start, rows: n,
                                       att: b.attention, pool: pool)
            }
        case let .quantizedCache(kv, start):
            Profiler.measure("rope") {
                rotary?.apply(b.qkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads, firstPosition: start,
                              period: Int.max, pool: pool)
            }
            Profiler.measure("attention") {
                quantizedCachedAttentionForward(qkv: b.qkv, kv: kv, start: start, rows: n, att: b.attention, pool: pool)
            }
        case let .halfCache(kv, start):
            Profiler.measure("rope") {
                rotary?.apply(b.qkv, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads, firstPosition: start,
                              period: Int.max, pool: pool)
            }
            Profiler.measure("attention") {
                halfCachedAttentionForward(qkv: b.qkv, kv: kv, start: start, rows: n, att: b.attention, pool: pool)
            }
        }
        Profiler.measure("attention out") {
            layer.out.forward(b.attention, rows: n, into: b.branch, parameters: p, precision: precision, pool: pool, noise: b.adapterNoise)
        }
        if let mask = b.attentionMask { multiply(b.branch, by: mask, count: n * d) }
        Profiler.measure("residual") { add(b.x, b.branch, into: b.mid, count: n * d) }
        // MLP branch.
        Profiler.measure("norm") {
            normForward(b.mid, layer.norm2, into: b.norm2, mean: b.norm2Mean, rstd: b.norm2Rstd, rows: n, pool: pool)
        }
        if let mixture = layer.mixture, let routing = b.mixture {
            mixtureForward(mixture, x: b.norm2, into: b.branch, hidden: b.mlpIn, act: b.mlpAct, routing, rows: n,
                           precision: precision, pool: pool, adapterNoise: b.adapterNoise)
        } else {
            Profiler.measure("mlp up") {
                layer.up.forward(b.norm2, rows: n, into: b.mlpIn, parameters: p, precision: precision, pool: pool, noise: b.adapterNoise)
            }
            Profiler.measure("activation") {
                if c.activation == .swiglu {
                    swigluForward(b.mlpIn, into: b.mlpAct, rows: n, dim: c.dFF, pool: pool)
                } else {
                    geluForward(b.mlpIn, into: b.mlpAct, count: n * c.dFF, pool: pool)
                }
            }
            Profiler.measure("mlp down") {
                layer.down.forward(b.mlpAct, rows: n, into: b.branch, parameters: p, precision: precision, pool: pool, noise: b.adapterNoise)
            }
        }
        if let mask = b.mlpMask { multiply(b.branch, by: mask, count: n * d) }
        Profiler.measure("residual") { add(b.mid, b.branch, into: b.output, count: n * d) }
    }

    /// The model's forward pass from ids to the final norm's output: the embeddings, then every
    /// block (`buffers(i)` and `span(i)` say where layer `i` works). Position `r` of the call is
    /// `firstPosition + r % period` for learned position embeddings.
    func forwardBlocks(
        ids: UnsafePointer<Int32>, rows n: Int, firstPosition: Int, period: Int, embeddingMask: UnsafePointer<Float>?,
        buffers: (Int) -> BlockBuffers, span: (Int) -> AttentionSpan, precision: MatmulPrecision, pool: ThreadPool
    ) {
        let d = config.dModel, p = parameters.pointer
        let x0 = buffers(0).x
        Profiler.measure("embedding") {
            if let table = layout.tokenEmbeddingBlocks {
                for r in 0..<n { table.dequantizeRow(Int(ids[r]), into: x0 + r * d) }
            } else {
                embeddingForward(table: p + layout.tokenEmbedding, ids: ids, into: x0, count: n, dim: d)
            }
            if let positions = layout.positionEmbedding {
                for r in 0..<n {
                    add(x0 + r * d, p + positions + (firstPosition + r % period) * d, into: x0 + r * d, count: d)
                }
            }
        }
        if let embeddingMask { multiply(x0, by: embeddingMask, count: n * d) }
        for (i, layer) in layout.layers.enumerated() {
            blockForward(layer, buffers(i), rows: n, span: span(i), precision: precision, pool: pool)
        }
    }

    /// The final norm and the output layer on `rows` rows of the last block's output.
    func forwardHead(
        _ x: UnsafePointer<Float>, rows n: Int, normed: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?,
        logits: UnsafeMutablePointer<Float>, precision: MatmulPrecision, pool: ThreadPool
    ) {
        Profiler.measure("norm") {
            normForward(x, layout.finalNorm, into: normed, mean: mean, rstd: rstd, rows: n, pool: pool)
        }
        Profiler.measure("lm head") {
            layout.lmHead.forward(normed, rows: n, into: logits, parameters: parameters.pointer, precision: precision,
                                  pool: pool)
        }
    }

    /// Attention of `rows` new tokens against the cache: appends their keys and values, then
    /// runs each head over every cached position up to its own.
    private func cachedAttentionForward(
        qkv: UnsafePointer<Float>, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, capacity: Int,
        start: Int, rows n: Int, att: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let c = config, hd = c.headDim, total = start + n, headStride = capacity * hd
        for r in 0..<n {
            let row = qkv + r * c.qkvDim
            for g in 0..<c.kvHeads {
                KeyBlocks.store(row + (c.heads + g) * hd, headDim: hd, position: start + r, into: keys + g * headStride)
                (values + g * headStride + (start + r) * hd).update(from: row + (c.heads + c.kvHeads + g) * hd, count: hd)
            }
        }
        if n == 1 {
            decodeAttention(q: qkv, cache: .fp32(keys: keys, values: values, headStride: headStride),
                            keys: total, heads: c.heads, kvHeads: c.kvHeads, headDim: hd, out: att, pool: pool)
            return
        }
        prefillAttention(q: qkv, qStride: c.qkvDim, keys: .blocks(keys), values: values, headStride: headStride, start: start,
                         rows: n, heads: c.heads, kvHeads: c.kvHeads, headDim: hd, out: att, outStride: c.heads * hd, pool: pool)
    }

    /// `cachedAttentionForward` on the 8-bit cache: the new rows are quantized into it, then one
    /// token reads the blocks directly; several tokens (prefill) attend to the cache dequantized
    /// into fp32 scratch, their own rows included, so they see what later tokens will.
    private func quantizedCachedAttentionForward(
        qkv: UnsafePointer<Float>, kv: QuantizedKV, start: Int, rows n: Int, att: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let c = config, hd = c.headDim, total = start + n
        for r in 0..<n {
            let row = qkv + r * c.qkvDim
            for g in 0..<c.kvHeads {
                kv.store(key: row + (c.heads + g) * hd, value: row + (c.heads + c.kvHeads + g) * hd, head: g, position: start + r,
                         headDim: hd)
            }
        }
        if n == 1 {
            decodeAttention(q: qkv, cache: .int8(kv), keys: total, heads: c.heads, kvHeads: c.kvHeads, headDim: hd, out: att,
                            pool: pool)
            return
        }
        for g in 0..<c.kvHeads { kv.widen(head: g, count: total, headDim: hd) }
        prefillAttention(q: qkv, qStride: c.qkvDim, keys: .rows(kv.keysScratch), values: kv.valuesScratch,
                         headStride: kv.capacity * hd, start: start, rows: n, heads: c.heads, kvHeads: c.kvHeads, headDim: hd,
                         out: att, outStride: c.heads * hd, pool: pool)
    }

    /// `cachedAttentionForward` on the half cache: the new rows are rounded into it, then one
    /// token reads the halves directly; several tokens (prefill) attend to the values widened
    /// into fp32 scratch and the keys widened as they are transposed, their own rows included, so
    /// they see what later tokens will.
    private func halfCachedAttentionForward(
        qkv: UnsafePointer<Float>, kv: HalfKV, start: Int, rows n: Int, att: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let c = config, hd = c.headDim, total = start + n, headStride = kv.capacity * hd
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: hd) { key in
            for r in 0..<n {
                let row = qkv + r * c.qkvDim
                for g in 0..<c.kvHeads {
                    Half.narrow(row + (c.heads + g) * hd, count: hd, into: key.baseAddress!)
                    KeyBlocks.store(key.baseAddress!, headDim: hd, position: start + r, into: kv.keys + g * headStride)
                    Half.narrow(row + (c.heads + c.kvHeads + g) * hd, count: hd, into: kv.values + g * headStride + (start + r) * hd)
                }
            }
        }
        if n == 1 {
            decodeAttention(q: qkv, cache: .fp16(keys: kv.keys, values: kv.values, headStride: headStride), keys: total,
                            heads: c.heads, kvHeads: c.kvHeads, headDim: hd, out: att, pool: pool)
            return
        }
        for g in 0..<c.kvHeads {
            Half.widen(kv.values + g * headStride, count: total * hd, into: kv.valuesScratch + g * headStride)
        }
        prefillAttention(q: qkv, qStride: c.qkvDim, keys: .halfBlocks(kv.keys), values: kv.valuesScratch, headStride: headStride,
                         start: start, rows: n, heads: c.heads, kvHeads: c.kvHeads, headDim: hd, out: att,
                         outStride: c.heads * hd, pool: pool)
    }

    func normForward(
        _ x: UnsafePointer<Float>, _ norm: ParameterLayout.Norm, into y: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?, rows: Int, pool: ThreadPool
    ) {
        let eps = Float(config.normEps), p = parameters.pointer
        switch config.norm {
        case .layernorm:
            layerNormForward(x, weight: p + norm.weight, bias: norm.bias.map { p + $0 }, into: y, mean: mean, rstd: rstd,
                             rows: rows, dim: config.dModel, eps: eps, pool: pool)
        case .rmsnorm:
            rmsNormForward(x, weight: p + norm.weight, into: y, rstd: rstd, rows: rows, dim: config.dModel, eps: eps,
                           pool: pool)
        }
    }

    /// `dx += ∂L/∂x`; the norm's parameter gradients accumulate into `gradients` when it trains.
    func normBackward(
        _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, _ norm: ParameterLayout.Norm,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
        gradients g: UnsafeMutablePointer<Float>, rows: Int, pool: ThreadPool
    ) {
        let p = parameters.pointer
        switch config.norm {
        case .layernorm:
            layerNormBackward(dy, x: x, weight: p + norm.weight, mean: mean, rstd: rstd, dx: dx,
                              dweight: norm.weightGradient.map { g + $0 }, dbias: norm.biasGradient.map { g + $0 },
                              rows: rows, dim: config.dModel, pool: pool)
        case .rmsnorm:
            rmsNormBackward(dy, x: x, weight: p + norm.weight, rstd: rstd, dx: dx,
                            dweight: norm.weightGradient.map { g + $0 }, rows: rows, dim: config.dModel, pool: pool)
        }
    }
}
