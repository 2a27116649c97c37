import Foundation
import Kernels

/// A decoder-only transformer: pre-norm blocks of causal self-attention and an MLP, a final
/// norm and an output layer, with every parameter in one buffer (see `ParameterLayout`).
public final class TransformerModel: @unchecked Sendable {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public let parameters: FloatBuffer
    let rotary: RotaryTable?

    /// A model with the given parameters (`layout.count` floats).
    public init(config: ModelConfig, parameters: FloatBuffer) throws {
        try config.validate()
        self.config = config
        layout = ParameterLayout(config)
        guard parameters.count == layout.count else {
            throw TransformerError.checkpoint(path: "parameters", reason: "\(parameters.count) floats for a model of \(layout.count)")
        }
        self.parameters = parameters
        rotary = config.positions == .rope
            ? RotaryTable(headDim: config.headDim, positions: config.contextLength, theta: config.ropeTheta) : nil
    }

    /// A freshly initialised model: weights from N(0, initStd), residual output projections
    /// from N(0, initStd / sqrt(2 layers)) as GPT-2, biases 0, norm weights 1.
    public convenience init(config: ModelConfig, seed: UInt64) throws {
        try config.validate()
        let layout = ParameterLayout(config)
        let buffer = FloatBuffer(count: layout.count)
        var rng = SplitMix64(seed: seed)
        let std = Float(config.initStd), residualStd = Float(config.initStd / (2 * Double(config.layers)).squareRoot())
        for tensor in layout.tensors {
            let p = buffer.pointer + tensor.offset
            let name = tensor.name
            if name.hasSuffix("norm.weight") || name.hasSuffix("layernorm.weight") {
                p.update(repeating: 1, count: tensor.count)
            } else if name.hasSuffix(".bias") {
                continue
            } else {
                let s = name.hasSuffix("o_proj.weight") || name.hasSuffix("down_proj.weight") ? residualStd : std
                for i in 0..<tensor.count { p[i] = rng.nextGaussian() * s }
            }
        }
        try self.init(config: config, parameters: buffer)
    }

    /// Parameters counted as the peers count them: every float, the tied embedding once.
    public var parameterCount: Int { layout.count }

    /// Rejects ids outside the vocabulary before any kernel sees them.
    func validate(_ ids: UnsafeBufferPointer<Int32>, allowNegative: Bool = false) throws {
        for id in ids where id >= Int32(config.vocabularySize) || (id < 0 && !(allowNegative && id == -1)) {
            throw TransformerError.tokenOutOfRange(id: id, vocabularySize: config.vocabularySize)
        }
    }
}

/// `out[rows x outDim] = x[rows x inDim] · Wᵀ + b`, with `W` stored `[outDim, inDim]`.
@inline(__always)
func linearForward(
    _ x: UnsafePointer<Float>, rows: Int, inDim: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    into out: UnsafeMutablePointer<Float>, outDim: Int, precision: MatmulPrecision = .fp32, pool: ThreadPool
) {
    gemm(precision, .none, .transposed, m: rows, n: outDim, k: inDim, a: x, lda: inDim, b: weight, ldb: inDim,
          beta: 0, c: out, ldc: outDim, bias: bias, pool: pool)
}

/// Backward of `linearForward` for an output gradient `alpha * dy`: `dx (=, or += when
/// accumulate) alpha dy · W`, `dW += alpha dyᵀ · x`, `db += alpha column sums of dy`.
@inline(__always)
func linearBackward(
    _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, inDim: Int, outDim: Int,
    weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, accumulate: Bool,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, alpha: Float = 1,
    precision: MatmulPrecision = .fp32, pool: ThreadPool
) {
    if let dx {
        gemm(precision, .none, .none, m: rows, n: inDim, k: outDim, alpha: alpha, a: dy, lda: outDim, b: weight, ldb: inDim,
              beta: accumulate ? 1 : 0, c: dx, ldc: inDim, pool: pool)
    }
    gemm(precision, .transposed, .none, m: outDim, n: inDim, k: rows, alpha: alpha, a: dy, lda: outDim, b: x, ldb: inDim,
          beta: 1, c: dWeight, ldc: inDim, pool: pool)
    if let dBias { accumulateColumnSums(dy, rows: rows, cols: outDim, into: dBias, scale: alpha, pool: pool) }
}
