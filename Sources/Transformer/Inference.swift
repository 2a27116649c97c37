import Kernels
import Support

/// Generation state for one sequence: a key/value cache per layer and scratch for the tokens of
/// one call. Prefill feeds the prompt in one call; decoding feeds one token per call. Both run
/// the model's one block forward (`blockForward`), on keys cached from earlier calls.
///
/// Memory follows the work: the cache grows in chunks of `cacheChunk` positions as tokens
/// arrive (up to the context length), and the scratch is sized for the largest call so far, so a
/// model with a long context runs a short prompt in a small cache.
public final class InferenceSession: @unchecked Sendable {
    public let model: TransformerModel
    /// Tokens already in the cache (the next token's position).
    public private(set) var position = 0
    /// Positions the cache holds before it must grow: whole blocks of `KeyBlocks.width`, so the
    /// last one can reach past the context length.
    public private(set) var capacity = 0
    /// Positions added to the cache when it grows.
    public static let cacheChunk = 256
    /// How the cache stores keys and values.
    public let kvBits: KVCacheBits
    // The fp32 cache, head-major: [L][kvHeads][capacity][hd], so that one head's positions, which
    // a decoding task reads in order, are one stream; the keys in `KeyBlocks` of 16 positions.
    private var keys = FloatBuffer(count: 0), values = FloatBuffer(count: 0)
    // The 8-bit cache, head-major: bytes [L][kvHeads][capacity][hd] (keys in `KeyBlocks`), scales
    // [L][kvHeads][capacity][hd / 32] (`QuantizedKV` gives their order).
    private var keyBytes = Int8Buffer(count: 0), valueBytes = Int8Buffer(count: 0)
    private var keyScales = FloatBuffer(count: 0), valueScales = FloatBuffer(count: 0)
    // The half-precision cache, laid out as the fp32 one: [L][kvHeads][capacity][hd].
    private var keyHalves = IntegerBuffer<UInt16>(count: 0), valueHalves = IntegerBuffer<UInt16>(count: 0)
    // One layer's cache in rows of fp32 for multi-token calls, [kvHeads][capacity][hd] (8-bit:
    // keys and values; halves: values; fp32: none).
    private var keysScratch = FloatBuffer(count: 0), valuesScratch = FloatBuffer(count: 0)
    // Scratch for the rows of one call (`rows` rows each), grown to the largest call.
    private var rows = 0
    private var x = FloatBuffer(count: 0), normed = FloatBuffer(count: 0), branch = FloatBuffer(count: 0)  // [rows d]
    private var qkv = FloatBuffer(count: 0)      // [rows qkvDim]
    private var att = FloatBuffer(count: 0)      // [rows H hd]
    private var hidden = FloatBuffer(count: 0)   // [rows mlpInDim]
    private var act = FloatBuffer(count: 0)      // [rows dFF]
    private var logits = FloatBuffer(count: 0)   // [rows V]
    private var routing: MixtureWorkspace?       // a mixture block's routing state for `rows` rows

    /// The precision of the products of multi-token calls (prefill). A model with quantized
    /// weights defaults to bf16 operands on AMX tiles where the CPU has them: its decode path
    /// already rounds activations to 8 bits, so bf16 loses nothing it keeps, and prefill runs on
    /// the tiles. Single-token calls on quantized weights take the integer path either way.
    public var precision: MatmulPrecision

    /// A session whose cache starts with room for `reserve` positions (it grows past them), its
    /// keys and values stored as `kvBits` says.
    public init(model: TransformerModel, reserve: Int = 0, kvBits: KVCacheBits = .fp32) throws {
        try kvBits.validate(model.config)
        self.model = model
        self.kvBits = kvBits
        precision = model.layout.isQuantized && amxAvailable ? .bf16 : .fp32
        try reserveCache(min(max(0, reserve), model.config.contextLength))
    }

    /// Forgets the cached tokens (the memory stays).
    public func reset() { position = 0 }

    /// Drops cached positions from `position` on, so the next call continues from there.
    public func truncate(to position: Int) {
        self.position = max(0, min(self.position, position))
    }

    /// Bytes held by the cache and scratch.
    public var residentBytes: Int {
        4 * [keys, values, keyScales, valueScales, keysScratch, valuesScratch, x, normed, branch, qkv, att, hidden, act,
             logits].reduce(0) { $0 + $1.count }
            + keyBytes.count + valueBytes.count + 2 * (keyHalves.count + valueHalves.count) + (routing?.residentBytes ?? 0)
    }

    /// Grows the cache to hold at least `positions` positions, keeping what it holds.
    private func reserveCache(_ positions: Int) throws {
        guard positions > capacity else { return }
        let c = model.config, kvDim = c.kvHeads * c.headDim
        // Whole key blocks (the last one's room past the context is never filled).
        let target = KeyBlocks.padded(min(c.contextLength, max(positions, capacity + InferenceSession.cacheChunk)))
        let size = CheckedSize(what: "the key/value cache")
        // fp32: 2 floats per value; halves: 2 halves, and one layer's values in fp32; 8-bit: 2
        // bytes, 2 scales per 32, and one layer's keys and values in fp32.
        let floats = switch kvBits {
        case .fp32: try size.product(2, c.layers, target, kvDim)
        case .fp16: try size.sum([try size.product(c.layers, target, kvDim), try size.product(target, kvDim)])
        case .int8: try size.sum([try size.product(c.layers, target, kvDim) / 2, try size.product(2, target, kvDim)])
        }
        try MemoryBudget.check(floats: floats, what: "the key/value cache for \(target) positions")
        if kvBits == .int8 {
            let newKeys = Int8Buffer(count: c.layers * target * kvDim), newValues = Int8Buffer(count: c.layers * target * kvDim)
            let scales = c.layers * target * kvDim / KVBlocks.size
            let newKeyScales = FloatBuffer(count: scales), newValueScales = FloatBuffer(count: scales)
            moveHeadMajor(from: keyBytes.pointer, to: newKeys.pointer, capacity: target)
            moveHeadMajor(from: valueBytes.pointer, to: newValues.pointer, capacity: target)
            moveHeadMajor(from: keyScales.pointer, to: newKeyScales.pointer, capacity: target, perPosition: c.headDim / KVBlocks.size)
            moveHeadMajor(from: valueScales.pointer, to: newValueScales.pointer, capacity: target,
                          perPosition: c.headDim / KVBlocks.size)
            keyBytes = newKeys
            valueBytes = newValues
            keyScales = newKeyScales
            valueScales = newValueScales
            keysScratch = FloatBuffer(count: target * kvDim)
            valuesScratch = FloatBuffer(count: target * kvDim)
        } else if kvBits == .fp16 {
            let newKeys = IntegerBuffer<UInt16>(count: c.layers * target * kvDim), newValues = IntegerBuffer<UInt16>(count: c.layers * target * kvDim)
            moveHeadMajor(from: keyHalves.pointer, to: newKeys.pointer, capacity: target)
            moveHeadMajor(from: valueHalves.pointer, to: newValues.pointer, capacity: target)
            keyHalves = newKeys
            valueHalves = newValues
            valuesScratch = FloatBuffer(count: target * kvDim)
        } else {
            let newKeys = FloatBuffer(count: c.layers * target * kvDim), newValues = FloatBuffer(count: c.layers * target * kvDim)
            moveHeadMajor(from: keys.pointer, to: newKeys.pointer, capacity: target)
            moveHeadMajor(from: values.pointer, to: newValues.pointer, capacity: target)
            keys = newKeys
            values = newValues
        }
        capacity = target
    }

    /// Copies the cached positions of a head-major cache (`[L][kvHeads][capacity][perPosition]`,
    /// `perPosition` the head dimension unless given: the 8-bit cache's scales have fewer) into
    /// one of `capacity` positions per head: whole key blocks, which both capacities hold.
    private func moveHeadMajor<T>(from old: UnsafePointer<T>, to new: UnsafeMutablePointer<T>, capacity target: Int,
                                  perPosition: Int? = nil) {
        let c = model.config, hd = perPosition ?? c.headDim, kvDim = c.kvHeads * hd
        for l in 0..<c.layers where position > 0 {
            for g in 0..<c.kvHeads {
                let to = l * target * kvDim + g * target * hd, from = l * capacity * kvDim + g * capacity * hd
                (new + to).update(from: old + from, count: KeyBlocks.padded(position) * hd)
            }
        }
    }

    /// Sizes the per-call scratch for `n` rows.
    private func reserveScratch(rows n: Int) throws {
        let c = model.config
        if n > rows {
            let size = CheckedSize(what: "the scratch for \(n) tokens")
            let perRow = try size.sum([3 * c.dModel, c.qkvDim, c.heads * c.headDim, c.mlpInPerToken, c.mlpActPerToken])
            let routingFloats = c.experts > 0 ? try MixtureWorkspace.floatCount(config: c, rows: n, layers: 1, training: false) : 0
            try MemoryBudget.check(floats: try size.sum([try size.product(n, perRow), routingFloats]), what: "the scratch for \(n) tokens")
            x = FloatBuffer(count: n * c.dModel); normed = FloatBuffer(count: n * c.dModel); branch = FloatBuffer(count: n * c.dModel)
            qkv = FloatBuffer(count: n * c.qkvDim)
            att = FloatBuffer(count: n * c.heads * c.headDim)
            hidden = FloatBuffer(count: n * c.mlpInPerToken)
            act = FloatBuffer(count: n * c.mlpActPerToken)
            routing = c.experts > 0 ? MixtureWorkspace(config: c, rows: n, layers: 1, training: false) : nil
            rows = n
        }
    }

    /// Most rows one pass of a multi-token call runs (at least 2): a longer prompt goes through
    /// in passes of nearly equal size, so its per-row scratch is a 512-token prompt's (16 MB for SmolLM2)
    /// however long it is, where one pass would hold 130 MB at 4,096 tokens. The products take
    /// activation rows 256 at a time anyway (`QuantizedMatrix.prefillPanelRows`), so the passes
    /// read no more weights; each row's floats do not depend on the split (tested).
    var prefillRows = 512

    /// Feeds `ids` at the next positions and returns the logits of the last one (`allRows`: of
    /// every one, row-major). Throws, and changes nothing, when the tokens would overflow the
    /// context or an id is outside the vocabulary.
    @discardableResult
    public func feed(_ ids: [Int32], allRows: Bool = false, pool: ThreadPool = .shared) throws -> [Float] {
        let m = model, c = m.config, n = ids.count
        guard n > 0 else { throw TransformerError.emptyInput(what: "the token sequence") }
        guard position + n <= c.contextLength else {
            throw TransformerError.sequenceTooLong(tokens: position + n, contextLength: c.contextLength)
        }
        try ids.withUnsafeBufferPointer { try m.validate($0) }
        // Passes of nearly equal size, none of a single row unless the call is one token (a
        // single row takes decoding's path).
        let limit = max(2, prefillRows), passes = max(1, min((n + limit - 1) / limit, n / 2)), most = (n + passes - 1) / passes
        try reserveCache(position + n)
        try reserveScratch(rows: most)
        // Only the rows asked for go through the final norm and the output layer.
        let headRows = allRows ? most : 1
        if headRows * c.vocabularySize > logits.count {
            let floats = try CheckedSize(what: "the logits").product(headRows, c.vocabularySize)
            try MemoryBudget.check(floats: floats, what: "the logits of \(headRows) tokens")
            logits = FloatBuffer(count: floats)
        }
        if passes == 1 { return pass(ids[...], allRows: allRows, last: true, pool: pool) }
        var result: [Float] = []
        if allRows { result.reserveCapacity(n * c.vocabularySize) }
        for k in 0..<passes {
            let range = (n * k / passes)..<(n * (k + 1) / passes)
            result += pass(ids[range], allRows: allRows, last: k == passes - 1, pool: pool)
        }
        return result
    }

    /// One pass of `feed` over rows its checks and reservations cover: the logits of every row
    /// (`allRows`), of the last one (`last`), or none.
    private func pass(_ ids: ArraySlice<Int32>, allRows: Bool, last: Bool, pool: ThreadPool) -> [Float] {
        let m = model, c = m.config, n = ids.count, d = c.dModel
        let start = position, total = position + n
        let first = allRows ? 0 : last ? n - 1 : n, count = n - first
        let kvDim = c.kvHeads * c.headDim, capacity = capacity
        let x = x.pointer
        let buffers = BlockBuffers(
            x: x, norm1: normed.pointer, norm1Mean: nil, norm1Rstd: nil, qkv: qkv.pointer, attention: att.pointer,
            mid: x, norm2: normed.pointer, norm2Mean: nil, norm2Rstd: nil,
            mlpIn: hidden.pointer, mlpAct: act.pointer, output: x, branch: branch.pointer,
            attentionMask: nil, mlpMask: nil)
        var mixtureBuffers = buffers
        mixtureBuffers.mixture = routing?.block(0, rows: n)
        let keys = keys.pointer, values = values.pointer, blocks = kvDim / KVBlocks.size
        let quantized = { (l: Int) in
            QuantizedKV(keys: self.keyBytes.pointer + l * capacity * kvDim, keyScales: self.keyScales.pointer + l * capacity * blocks,
                        values: self.valueBytes.pointer + l * capacity * kvDim,
                        valueScales: self.valueScales.pointer + l * capacity * blocks, capacity: capacity,
                        keysScratch: self.keysScratch.pointer, valuesScratch: self.valuesScratch.pointer)
        }
        let halves = { (l: Int) in
            HalfKV(keys: self.keyHalves.pointer + l * capacity * kvDim, values: self.valueHalves.pointer + l * capacity * kvDim,
                   capacity: capacity, valuesScratch: self.valuesScratch.pointer)
        }
        let bits = kvBits
        ids.withUnsafeBufferPointer { ids in
            m.forwardBlocks(ids: ids.baseAddress!, rows: n, firstPosition: start, period: Int.max, embeddingMask: nil,
                            buffers: { c.isMixture($0) ? mixtureBuffers : buffers },
                            span: { l in
                                switch bits {
                                case .int8: .quantizedCache(quantized(l), start: start)
                                case .fp16: .halfCache(halves(l), start: start)
                                case .fp32: .cached(keys: keys + l * capacity * kvDim, values: values + l * capacity * kvDim,
                                                    capacity: capacity, start: start)
                                }
                            },
                            precision: n > 1 ? precision : .fp32, pool: pool)
        }
        position = total
        guard count > 0 else { return [] }
        m.forwardHead(x + first * d, rows: count, normed: normed.pointer, mean: nil, rstd: nil, logits: logits.pointer,
                      precision: count > 1 ? precision : .fp32, pool: pool)
        return Array(UnsafeBufferPointer(start: logits.pointer, count: count * c.vocabularySize))
    }
}
