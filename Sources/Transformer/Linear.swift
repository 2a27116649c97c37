import CQuant
import Kernels
import Quantization

/// One linear product of the model, `y = x · Wᵀ + b` with `W` stored `[outFeatures,
/// inFeatures]`: the seam every projection goes through (attention, MLP, output layer), in
/// training and in inference. It names its weight and bias by their places in the model's
/// parameter buffer, and their gradients' places in the gradient buffer; a frozen layer has no
/// gradient places, and its backward pass returns the input gradient alone.
///
/// The product's precision (fp32, or bf16 operands with fp32 sums) is chosen per call.
///
/// Low-rank adapters (LoRA) sit in the same value: each adds `scale · (x·Aᵀ)·Bᵀ` to a range of
/// output columns (a fused q/k/v product has one adapter per projection it adapts).
public struct Linear: Sendable, Equatable {
    public var inFeatures: Int
    public var outFeatures: Int
    /// Offset of `W` (`outFeatures x inFeatures`) in the parameter buffer.
    public var weight: Int
    /// Offset of `b` (`outFeatures`), when the layer has a bias.
    public var bias: Int?
    /// Offsets of the gradients in the gradient buffer; nil when frozen.
    public var weightGradient: Int?
    public var biasGradient: Int?
    /// Low-rank adapters on ranges of the output columns (empty: none).
    public var adapters: [LowRankAdapter] = []
    /// The weight in quantized blocks instead of the parameter buffer (then `weight` is unused
    /// and the layer is frozen: QLoRA trains adapters over it).
    public var blocks: QuantizedMatrix?
    /// A frozen weight also packed into bf16 tile panels (both orientations), which `.bf16`
    /// products use instead of re-packing `W` every time (see `ParameterLayout.packFrozenProducts`).
    public var packed: PackedWeight?

    public init(inFeatures: Int, outFeatures: Int, weight: Int, bias: Int? = nil,
                weightGradient: Int? = nil, biasGradient: Int? = nil) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.weight = weight
        self.bias = bias
        self.weightGradient = weightGradient
        self.biasGradient = biasGradient
    }

    /// Whether backward computes weight gradients.
    public var trainable: Bool { weightGradient != nil }

    /// Multiply-adds per row of input (the FLOPs of a forward row are twice this).
    public var multiplyAdds: Int { inFeatures * outFeatures }

    /// The bytes of `W` a forward pass reads: its quantized blocks, or four a weight.
    public var weightByteCount: Int { blocks?.byteCount ?? 4 * inFeatures * outFeatures }

    /// `out[rows x outFeatures] = x[rows x inFeatures] · Wᵀ + b`.
    @inline(__always)
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>,
        parameters p: UnsafePointer<Float>, precision: MatmulPrecision = .fp32, pool: ThreadPool = .shared,
        noise: UInt64? = nil
    ) {
        if let blocks {
            blocks.multiply(x, rows: rows, into: out, ldc: outFeatures, bias: bias.map { p + $0 }, precision: precision, pool: pool)
        } else if precision == .bf16, let packed {
            gemmBF16(.none, m: rows, a: x, lda: inFeatures, packed: packed.forward, c: out, ldc: outFeatures,
                     bias: bias.map { p + $0 }, pool: pool)
        } else {
            gemm(precision, .none, .transposed, m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures,
                 b: p + weight, ldb: inFeatures, beta: 0, c: out, ldc: outFeatures, bias: bias.map { p + $0 }, pool: pool)
        }
        for adapter in adapters {
            adapter.forward(x, rows: rows, inFeatures: inFeatures, into: out, ldc: outFeatures, parameters: p,
                            precision: precision, pool: pool, noise: noise)
        }
    }

    /// Backward for an output gradient `alpha · dy`: `dx (=, or += when accumulate) alpha dy · W`;
    /// when `computeWeightGradient` and the layer trains, `dW += alpha dyᵀ · x` and
    /// `db += alpha` column sums of `dy` in `gradients`.
    @inline(__always)
    public func backward(
        _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
        dx: UnsafeMutablePointer<Float>?, accumulate: Bool = false,
        parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>?,
        computeWeightGradient: Bool = true, alpha: Float = 1,
        precision: MatmulPrecision = .fp32, pool: ThreadPool = .shared, noise: UInt64? = nil
    ) {
        if let dx, let blocks {
            blocks.multiplyTransposed(dy, rows: rows, ldy: outFeatures, alpha: alpha, into: dx, accumulate: accumulate,
                                      precision: precision, pool: pool)
        } else if let dx, precision == .bf16, let packed {
            gemmBF16(.none, m: rows, alpha: alpha, a: dy, lda: outFeatures, packed: packed.backward,
                     beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures, pool: pool)
        } else if let dx {
            gemm(precision, .none, .none, m: rows, n: inFeatures, k: outFeatures, alpha: alpha, a: dy, lda: outFeatures,
                 b: p + weight, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures, pool: pool)
        }
        for adapter in adapters {
            adapter.backward(dy, ldy: outFeatures, x: x, rows: rows, inFeatures: inFeatures, dx: dx, parameters: p,
                             gradients: computeWeightGradient ? g : nil, alpha: alpha, precision: precision, pool: pool,
                             noise: noise)
        }
        guard computeWeightGradient, let g, let weightGradient else { return }
        gemm(precision, .transposed, .none, m: outFeatures, n: inFeatures, k: rows, alpha: alpha, a: dy, lda: outFeatures,
             b: x, ldb: inFeatures, beta: 1, c: g + weightGradient, ldc: inFeatures, pool: pool)
        if let biasGradient {
            accumulateColumnSums(dy, rows: rows, cols: outFeatures, into: g + biasGradient, scale: alpha, pool: pool)
        }
    }
}

/// A frozen weight `W` (`out x in`) rounded to bfloat16 and packed for AMX tiles once, in the
/// two orientations a linear layer multiplies by: `Wᵀ` (forward, `x · Wᵀ`) and `W` (the input
/// gradient, `dy · W`). Twice n·k bf16 values: as much memory as the fp32 copy.
public struct PackedWeight: Sendable, Equatable {
    public let forward: BF16PackedMatrix
    public let backward: BF16PackedMatrix

    public init(_ w: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int, pool: ThreadPool = .shared) {
        forward = BF16PackedMatrix(.transposed, b: w, ldb: inFeatures, n: outFeatures, k: inFeatures, pool: pool)
        backward = BF16PackedMatrix(.none, b: w, ldb: inFeatures, n: inFeatures, k: outFeatures, pool: pool)
    }

    public var bytes: Int { forward.bytes + backward.bytes }
}

/// A low-rank adapter on output columns `outputs` of a linear layer: `y[:, outputs] += scale ·
/// (x·Aᵀ)·Bᵀ`, with `A` (`rank x inFeatures`) and `B` (`outputs.count x rank`) in the parameter
/// buffer (Hugging Face PEFT's `lora_A`, `lora_B`). Backward recomputes `x·Aᵀ` rather than
/// keeping it: `rank` columns per row, cheaper than memory traffic.
public struct LowRankAdapter: Sendable, Equatable {
    public var outputs: Range<Int>
    public var rank: Int
    /// `alpha / rank` (or `alpha / √rank` for rsLoRA).
    public var scale: Float
    public var a: Int
    public var b: Int
    public var aGradient: Int?
    public var bGradient: Int?
    /// Dropout on the adapter's input in training (PEFT's `lora_dropout`): `B A dropout(x)`.
    public var dropout: Float = 0

    public init(outputs: Range<Int>, rank: Int, scale: Float, a: Int, b: Int, aGradient: Int? = nil, bGradient: Int? = nil) {
        self.outputs = outputs
        self.rank = rank
        self.scale = scale
        self.a = a
        self.b = b
        self.aGradient = aGradient
        self.bGradient = bGradient
    }

    /// The dropout mask's value at element `i` of the input for training noise `seed`: 0 with
    /// probability `dropout`, else `1 / (1 - dropout)`. Counter-based (a hash of the seed, this
    /// adapter's place and `i`), so backward recomputes the forward's mask instead of keeping it.
    @inline(__always)
    func mask(_ i: Int, seed: UInt64) -> Float {
        var z = seed &+ UInt64(a) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i) &* 0xD1B5_4A32_D192_ED03
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) * 0x1p-24 < dropout ? 0 : 1 / (1 - dropout)
    }

    /// `x` through dropout's mask (written to `out`), as the adapter's products read it.
    func maskedInput(_ x: UnsafePointer<Float>, count: Int, seed: UInt64, into out: UnsafeMutablePointer<Float>,
                     pool: ThreadPool) -> UnsafePointer<Float> {
        pool.parallelRanges(count, costPerItem: 16) { range, _ in
            for i in range { out[i] = x[i] * mask(i, seed: seed) }
        }
        return UnsafePointer(out)
    }

    /// `out[:, outputs] += scale · (x·Aᵀ)·Bᵀ` (`out` rows `ldc` apart); with training `noise`
    /// and `dropout > 0`, `x` goes through the dropout mask first.
    func forward(_ x: UnsafePointer<Float>, rows: Int, inFeatures: Int, into out: UnsafeMutablePointer<Float>, ldc: Int,
                 parameters p: UnsafePointer<Float>, precision: MatmulPrecision, pool: ThreadPool, noise: UInt64? = nil) {
        let r = rank, m = outputs.count
        let masked = dropout > 0 ? noise : nil
        if rows == 1 && precision == .fp32 && masked == nil {
            // Decoding: (in + out)·r multiply-adds, less than handing two products to the pool.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: r) { u in
                let u = u.baseAddress!, y = out + outputs.lowerBound
                for j in 0..<r { u[j] = dotProduct(x, p + a + j * inFeatures, count: inFeatures) }
                if r == 16 {
                    // B's rows are 16 floats: eight outputs at a time, summed across registers.
                    cq_rank16_expand(p + b, m, u, scale, y)
                } else {
                    for i in 0..<m { y[i] += scale * dotProduct(u, p + b + i * r, count: r) }
                }
            }
            return
        }
        if r <= LowRankAdapter.directRank {
            // fp32 products on the strided operands (`LowRank`), whatever the layer's precision.
            Scratch.withFloats(rows * r + r * m + (masked != nil ? rows * inFeatures : 0)) { scratch in
                let u = scratch, bT = scratch + rows * r   // u: (rows, r); bT: Bᵀ (r, m)
                let input = masked.map { maskedInput(x, count: rows * inFeatures, seed: $0, into: bT + r * m, pool: pool) } ?? x
                LowRank.timesTransposed(input, rows: rows, width: inFeatures, ldx: inFeatures, p + a, rank: r, into: u, ldo: r, pool: pool)
                LowRank.transpose(p + b, rows: m, cols: r, lds: r, into: bT)
                LowRank.accumulateProduct(u, rows: rows, rank: r, ldu: r, bT, width: m, ldw: m, alpha: scale,
                                          into: out + outputs.lowerBound, ldo: ldc, pool: pool)
            }
            return
        }
        Scratch.withFloats(rows * r + (masked != nil ? rows * inFeatures : 0)) { scratch in
            let u = scratch
            let input = masked.map { maskedInput(x, count: rows * inFeatures, seed: $0, into: scratch + rows * r, pool: pool) } ?? x
            // u = x·Aᵀ   (rows, r)
            gemm(precision, .none, .transposed, m: rows, n: r, k: inFeatures, a: input, lda: inFeatures, b: p + a, ldb: inFeatures,
                 beta: 0, c: u, ldc: r, pool: pool)
            // out[:, outputs] += scale · u·Bᵀ
            gemm(precision, .none, .transposed, m: rows, n: m, k: r, alpha: scale, a: u, lda: r, b: p + b, ldb: r,
                 beta: 1, c: out + outputs.lowerBound, ldc: ldc, pool: pool)
        }
    }

    /// For an output gradient `alpha · dy` (rows `ldy` apart): `dx += alpha scale (dy·B)·A`, and
    /// when `gradients` is given and the adapter trains, `dB += alpha scale dyᵀ·(x·Aᵀ)`,
    /// `dA += alpha scale (dy·B)ᵀ·x` — with the forward's dropout mask on `x` and on the
    /// adapter's part of `dx` when `noise` is given.
    func backward(_ dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
                  dx: UnsafeMutablePointer<Float>?, parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>?,
                  alpha: Float, precision: MatmulPrecision, pool: ThreadPool, noise: UInt64? = nil) {
        let r = rank, m = outputs.count, s = alpha * scale
        let dyOut = dy + outputs.lowerBound
        let masked = dropout > 0 ? noise : nil
        if r <= LowRankAdapter.directRank {
            directBackward(dyOut, ldy: ldy, x: x, rows: rows, inFeatures: inFeatures, dx: dx, parameters: p, gradients: g,
                           s: s, masked: masked, pool: pool)
            return
        }
        Scratch.withFloats(2 * rows * r + (masked != nil ? rows * inFeatures : 0)) { scratch in
            let u = scratch, t = scratch + rows * r, wide = scratch + 2 * rows * r
            // t = dy[:, outputs]·B   (rows, r)
            gemm(precision, .none, .none, m: rows, n: r, k: m, a: dyOut, lda: ldy, b: p + b, ldb: r, beta: 0, c: t, ldc: r, pool: pool)
            if let dx {
                if let seed = masked {
                    // The adapter's input gradient goes back through the mask: into scratch, masked, added.
                    gemm(precision, .none, .none, m: rows, n: inFeatures, k: r, alpha: s, a: t, lda: r, b: p + a, ldb: inFeatures,
                         beta: 0, c: wide, ldc: inFeatures, pool: pool)
                    pool.parallelRanges(rows * inFeatures, costPerItem: 16) { range, _ in
                        for i in range { dx[i] += wide[i] * mask(i, seed: seed) }
                    }
                } else {
                    gemm(precision, .none, .none, m: rows, n: inFeatures, k: r, alpha: s, a: t, lda: r, b: p + a, ldb: inFeatures,
                         beta: 1, c: dx, ldc: inFeatures, pool: pool)
                }
            }
            guard let g else { return }
            let input = masked.map { maskedInput(x, count: rows * inFeatures, seed: $0, into: wide, pool: pool) } ?? x
            if let bGradient {
                gemm(precision, .none, .transposed, m: rows, n: r, k: inFeatures, a: input, lda: inFeatures, b: p + a, ldb: inFeatures,
                     beta: 0, c: u, ldc: r, pool: pool)
                gemm(precision, .transposed, .none, m: m, n: r, k: rows, alpha: s, a: dyOut, lda: ldy, b: u, ldb: r,
                     beta: 1, c: g + bGradient, ldc: r, pool: pool)
            }
            if let aGradient {
                gemm(precision, .transposed, .none, m: r, n: inFeatures, k: rows, alpha: s, a: t, lda: r, b: input, ldb: inFeatures,
                     beta: 1, c: g + aGradient, ldc: inFeatures, pool: pool)
            }
        }
    }
}

extension LowRankAdapter {
    /// Up to this rank an adapter's products run as fp32 `LowRank` kernels on the strided
    /// operands (at any layer precision): rounding and packing their wide operand for a general
    /// GEMM cost more than the products (a SmolLM2 LoRA step, r 8: see the README).
    static let directRank = 64

    /// `backward` through `LowRank`: `t = dy·B`, `dx += s t·A`, `u = x·Aᵀ`, `dB += s dyᵀ·u`,
    /// `dA += s tᵀ·x` (dropout's mask on `x` and on the adapter's part of `dx`).
    func directBackward(_ dyOut: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
                        dx: UnsafeMutablePointer<Float>?, parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>?,
                        s: Float, masked: UInt64?, pool: ThreadPool) {
        let r = rank, m = outputs.count
        let wideCount = masked != nil ? rows * inFeatures : 0
        Scratch.withFloats(2 * rows * r + 2 * r * m + wideCount) { scratch in
            // t, u: (rows, r); bT: Bᵀ (r, m); gT: s·dyᵀ·u transposed (r, m); wide: (rows, in)
            let t = scratch, u = t + rows * r, bT = u + rows * r, gT = bT + r * m, wide = gT + r * m
            LowRank.transpose(p + b, rows: m, cols: r, lds: r, into: bT)
            LowRank.timesTransposed(dyOut, rows: rows, width: m, ldx: ldy, bT, rank: r, into: t, ldo: r, pool: pool)
            if let dx {
                if let seed = masked {
                    // The adapter's input gradient goes back through the mask: into scratch, masked, added.
                    wide.update(repeating: 0, count: rows * inFeatures)
                    LowRank.accumulateProduct(t, rows: rows, rank: r, ldu: r, p + a, width: inFeatures, ldw: inFeatures,
                                              alpha: s, into: wide, ldo: inFeatures, pool: pool)
                    pool.parallelRanges(rows * inFeatures, costPerItem: 16) { range, _ in
                        for i in range { dx[i] += wide[i] * mask(i, seed: seed) }
                    }
                } else {
                    LowRank.accumulateProduct(t, rows: rows, rank: r, ldu: r, p + a, width: inFeatures, ldw: inFeatures,
                                              alpha: s, into: dx, ldo: inFeatures, pool: pool)
                }
            }
            guard let g else { return }
            let input = masked.map { maskedInput(x, count: rows * inFeatures, seed: $0, into: wide, pool: pool) } ?? x
            if let bGradient {
                LowRank.timesTransposed(input, rows: rows, width: inFeatures, ldx: inFeatures, p + a, rank: r, into: u, ldo: r, pool: pool)
                gT.update(repeating: 0, count: r * m)
                LowRank.accumulateTransposedProduct(u, rank: r, lda: r, dyOut, rows: rows, width: m, ldb: ldy, alpha: s,
                                                    into: gT, ldg: m, pool: pool)
                let dB = g + bGradient
                for j in 0..<m { for q in 0..<r { dB[j * r + q] += gT[q * m + j] } }
            }
            if let aGradient {
                LowRank.accumulateTransposedProduct(t, rank: r, lda: r, input, rows: rows, width: inFeatures, ldb: inFeatures,
                                                    alpha: s, into: g + aGradient, ldg: inFeatures, pool: pool)
            }
        }
    }
}
