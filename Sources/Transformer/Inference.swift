import Kernels

/// Generation state for one sequence: a key/value cache per layer and buffers for up to a whole
/// context of new tokens at once. Prefill feeds the prompt in one call; decoding feeds one token
/// per call. Both run the same kernels as training, on keys cached from earlier calls.
public final class InferenceSession: @unchecked Sendable {
    public let model: TransformerModel
    /// Tokens already in the cache (the next token's position).
    public private(set) var position = 0
    let keys: FloatBuffer, values: FloatBuffer   // [L][ctx][kvHeads hd]
    let x: FloatBuffer, normed: FloatBuffer, branch: FloatBuffer
    let qkv: FloatBuffer, att: FloatBuffer, hidden: FloatBuffer, act: FloatBuffer
    let scores: FloatBuffer                        // [heads][ctx][ctx]
    public let logits: FloatBuffer                 // [ctx][V] (rows of the last call)

    public init(model: TransformerModel) {
        self.model = model
        let c = model.config, ctx = c.contextLength, kvDim = c.kvHeads * c.headDim
        keys = FloatBuffer(count: c.layers * ctx * kvDim)
        values = FloatBuffer(count: c.layers * ctx * kvDim)
        x = FloatBuffer(count: ctx * c.dModel)
        normed = FloatBuffer(count: ctx * c.dModel)
        branch = FloatBuffer(count: ctx * c.dModel)
        qkv = FloatBuffer(count: ctx * c.qkvDim)
        att = FloatBuffer(count: ctx * c.heads * c.headDim)
        hidden = FloatBuffer(count: ctx * c.mlpInDim)
        act = FloatBuffer(count: ctx * c.dFF)
        scores = FloatBuffer(count: c.heads * ctx * ctx)
        logits = FloatBuffer(count: ctx * c.vocabularySize)
    }

    /// Forgets the cached tokens.
    public func reset() { position = 0 }

    /// Feeds `ids` at the next positions and returns the logits of the last one (`allRows`: of
    /// every one, row-major). Throws, and changes nothing, when the tokens would overflow the
    /// context or an id is outside the vocabulary.
    @discardableResult
    public func feed(_ ids: [Int32], allRows: Bool = false, pool: ThreadPool = .shared) throws -> [Float] {
        let m = model, c = m.config, n = ids.count, d = c.dModel, hd = c.headDim
        guard n > 0 else { throw TransformerError.emptyInput(what: "the token sequence") }
        guard position + n <= c.contextLength else {
            throw TransformerError.sequenceTooLong(tokens: position + n, contextLength: c.contextLength)
        }
        try ids.withUnsafeBufferPointer { try m.validate($0) }
        let p = m.parameters.pointer, layout = m.layout
        let kvDim = c.kvHeads * hd, start = position, total = position + n
        ids.withUnsafeBufferPointer { embeddingForward(table: p + layout.tokenEmbedding, ids: $0.baseAddress!, into: x.pointer, count: n, dim: d) }
        if c.positions == .learned {
            for r in 0..<n { add(x.pointer + r * d, p + layout.positionEmbedding + (start + r) * d, into: x.pointer + r * d, count: d) }
        }
        for (i, layer) in layout.layers.enumerated() {
            m.normForward(x.pointer, weight: p + layer.norm1Weight, bias: c.normHasBias ? p + layer.norm1Bias : nil,
                          into: normed.pointer, mean: nil, rstd: nil, rows: n, pool: pool)
            linearForward(normed.pointer, rows: n, inDim: d, weight: p + layer.qkvWeight, bias: c.bias ? p + layer.qkvBias : nil,
                          into: qkv.pointer, outDim: c.qkvDim, pool: pool)
            if let rotary = m.rotary {
                rotary.apply(qkv.pointer, rows: n, rowStride: c.qkvDim, heads: c.heads + c.kvHeads,
                             firstPosition: start, period: Int.max)
            }
            // Append this call's keys and values to the cache.
            let layerKeys = keys.pointer + i * c.contextLength * kvDim, layerValues = values.pointer + i * c.contextLength * kvDim
            for r in 0..<n {
                (layerKeys + (start + r) * kvDim).update(from: qkv.pointer + r * c.qkvDim + c.heads * hd, count: kvDim)
                (layerValues + (start + r) * kvDim).update(from: qkv.pointer + r * c.qkvDim + (c.heads + c.kvHeads) * hd, count: kvDim)
            }
            let group = c.heads / c.kvHeads
            let q = qkv.pointer, out = att.pointer, s = scores.pointer
            pool.parallelFor(c.heads) { h, _ in
                let kvh = h / group
                attentionHeadForward(q: q + h * hd, qStride: c.qkvDim, k: layerKeys + kvh * hd, v: layerValues + kvh * hd,
                                     kvStride: kvDim, out: out + h * hd, outStride: c.heads * hd,
                                     probs: s + h * n * total, rows: n, keys: total, headDim: hd, pool: pool)
            }
            linearForward(att.pointer, rows: n, inDim: c.heads * hd, weight: p + layer.outWeight,
                          bias: c.bias ? p + layer.outBias : nil, into: branch.pointer, outDim: d, pool: pool)
            add(x.pointer, branch.pointer, into: x.pointer, count: n * d)
            m.normForward(x.pointer, weight: p + layer.norm2Weight, bias: c.normHasBias ? p + layer.norm2Bias : nil,
                          into: normed.pointer, mean: nil, rstd: nil, rows: n, pool: pool)
            linearForward(normed.pointer, rows: n, inDim: d, weight: p + layer.upWeight, bias: c.bias ? p + layer.upBias : nil,
                          into: hidden.pointer, outDim: c.mlpInDim, pool: pool)
            if c.activation == .swiglu {
                swigluForward(hidden.pointer, into: act.pointer, rows: n, dim: c.dFF, pool: pool)
            } else {
                geluForward(hidden.pointer, into: act.pointer, count: n * c.dFF, pool: pool)
            }
            linearForward(act.pointer, rows: n, inDim: c.dFF, weight: p + layer.downWeight,
                          bias: c.bias ? p + layer.downBias : nil, into: branch.pointer, outDim: d, pool: pool)
            add(x.pointer, branch.pointer, into: x.pointer, count: n * d)
        }
        // Only the rows asked for go through the final norm and the output layer.
        let first = allRows ? 0 : n - 1, rows = n - first
        m.normForward(x.pointer + first * d, weight: p + layout.finalNormWeight,
                      bias: c.normHasBias ? p + layout.finalNormBias : nil, into: normed.pointer,
                      mean: nil, rstd: nil, rows: rows, pool: pool)
        linearForward(normed.pointer, rows: rows, inDim: d, weight: p + layout.lmHead, bias: nil,
                      into: logits.pointer, outDim: c.vocabularySize, pool: pool)
        position = total
        return Array(UnsafeBufferPointer(start: logits.pointer, count: rows * c.vocabularySize))
    }
}
