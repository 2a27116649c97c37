import Kernels

/// One linear product of the model, `y = x · Wᵀ + b` with `W` stored `[outFeatures,
/// inFeatures]`: the seam every projection goes through (attention, MLP, output layer), in
/// training and in inference. It names its weight and bias by their places in the model's
/// parameter buffer, and their gradients' places in the gradient buffer; a frozen layer has no
/// gradient places, and its backward pass returns the input gradient alone.
///
/// The product's precision (fp32, or bf16 operands with fp32 sums) is chosen per call.
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

    /// `out[rows x outFeatures] = x[rows x inFeatures] · Wᵀ + b`.
    @inline(__always)
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>,
        parameters p: UnsafePointer<Float>, precision: MatmulPrecision = .fp32, pool: ThreadPool = .shared
    ) {
        gemm(precision, .none, .transposed, m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures,
             b: p + weight, ldb: inFeatures, beta: 0, c: out, ldc: outFeatures, bias: bias.map { p + $0 }, pool: pool)
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
        precision: MatmulPrecision = .fp32, pool: ThreadPool = .shared
    ) {
        if let dx {
            gemm(precision, .none, .none, m: rows, n: inFeatures, k: outFeatures, alpha: alpha, a: dy, lda: outFeatures,
                 b: p + weight, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures, pool: pool)
        }
        guard computeWeightGradient, let g, let weightGradient else { return }
        gemm(precision, .transposed, .none, m: outFeatures, n: inFeatures, k: rows, alpha: alpha, a: dy, lda: outFeatures,
             b: x, ldb: inFeatures, beta: 1, c: g + weightGradient, ldc: inFeatures, pool: pool)
        if let biasGradient {
            accumulateColumnSums(dy, rows: rows, cols: outFeatures, into: g + biasGradient, scale: alpha, pool: pool)
        }
    }
}
