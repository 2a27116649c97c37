import Foundation
import Kernels
import Quantization
import Support

/// A decoder-only transformer: pre-norm blocks of causal self-attention and an MLP, a final
/// norm and an output layer, with every parameter in one buffer (see `ParameterLayout`).
public final class TransformerModel: @unchecked Sendable {
    public let config: ModelConfig
    public private(set) var layout: ParameterLayout
    public let parameters: FloatBuffer
    /// The low-rank adapters in the layout, if any.
    public let adapters: AdapterConfig?
    let rotary: RotaryTable?

    /// A model with the given parameters (`layout.count` floats). Tensors for which `trainable`
    /// is false are frozen: training computes no gradient for them and keeps no optimizer state.
    /// With `adapters`, the buffer holds the base model followed by the adapter matrices.
    /// Weight matrices in `external` stay in their quantized blocks (see `ParameterLayout`).
    public init(config: ModelConfig, parameters: FloatBuffer, adapters: AdapterConfig? = nil,
                trainable: (String) -> Bool = { _ in true }, external: [String: QuantizedMatrix] = [:]) throws {
        try config.validate()
        try adapters?.validate()
        self.config = config
        self.adapters = adapters
        layout = ParameterLayout(config, adapters: adapters, trainable: trainable, external: external)
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
        try MemoryBudget.check(floats: layout.count, what: "the \(layout.count) parameters of this config")
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
                let residual = name.hasSuffix("o_proj.weight") || name.hasSuffix("down_proj.weight") || name.hasSuffix(".w2.weight")
                let s = residual ? residualStd : std
                for i in 0..<tensor.count { p[i] = rng.nextGaussian() * s }
            }
        }
        try self.init(config: config, parameters: buffer)
    }

    /// `base` with fresh low-rank adapters: A from PEFT's Kaiming-uniform (a = √5, so bounds
    /// ±1/√in), B zero, so the adapted model starts as the base. Only the adapters train unless
    /// `trainable` says otherwise.
    public static func adapting(
        _ base: TransformerModel, with adapters: AdapterConfig, seed: UInt64,
        trainable: (String) -> Bool = { $0.contains(".lora_") }
    ) throws -> TransformerModel {
        try adapters.validate()
        let layout = ParameterLayout(base.config, adapters: adapters, external: base.layout.external)
        try MemoryBudget.check(floats: layout.count, what: "the model with its adapters")
        let buffer = FloatBuffer(count: layout.count)
        buffer.pointer.update(from: base.parameters.pointer, count: base.layout.baseCount)
        var rng = SplitMix64(seed: seed)
        for tensor in layout.tensors where tensor.group == .adapter && tensor.name.hasSuffix("lora_A.weight") {
            let bound = 1 / Float(tensor.shape[1]).squareRoot()
            for i in 0..<tensor.count { buffer.pointer[tensor.offset + i] = (2 * rng.nextFloat() - 1) * bound }
        }
        return try TransformerModel(config: base.config, parameters: buffer, adapters: adapters, trainable: trainable,
                                    external: base.layout.external)
    }

    /// Parameters counted as the peers count them: every value, the tied embedding once
    /// (matrices kept in quantized blocks included).
    public var parameterCount: Int { layout.tensors.reduce(0) { $0 + $1.count } }

    /// Packs the frozen weight matrices for `.bf16` products (`ParameterLayout.packFrozenProducts`):
    /// call before training, never while a step runs. Returns the bytes the packed copies take.
    @discardableResult
    public func packFrozenProducts(pool: ThreadPool = .shared) -> Int {
        layout.packFrozenProducts(parameters: parameters.pointer, pool: pool)
    }

    /// Rejects ids outside the vocabulary before any kernel sees them.
    func validate(_ ids: UnsafeBufferPointer<Int32>, allowNegative: Bool = false) throws {
        for id in ids where id >= Int32(config.vocabularySize) || (id < 0 && !(allowNegative && id == -1)) {
            throw TransformerError.tokenOutOfRange(id: id, vocabularySize: config.vocabularySize)
        }
    }
}

/// The model's cost, derived from its description (its layout's linear layers).
extension ModelConfig {
    /// Training FLOPs per token for sequences of `length` tokens, as nanoGPT's MFU estimate (and
    /// the PyTorch peer) counts them: 6 per parameter outside the position table (forward 2,
    /// backward 4), plus 12 · layers · heads · headDim · length for the attention products.
    public func trainingFlopsPerToken(length: Int) -> Double {
        let layout = ParameterLayout(self)
        let positionTable = positions == .learned ? contextLength * dModel : 0
        // A token runs through k of a mixture block's E experts.
        let expertParameters = mixtureLayers * experts * (expertInDim + expertWidth) * dModel
        let idle = expertParameters - expertParameters / max(1, experts) * expertsPerToken
        return 6 * Double(layout.count - positionTable - idle) + 12 * Double(layers * heads * headDim * length)
    }

    /// Every linear product of one training step on `tokens` tokens, in the order the step runs
    /// them: the forward `X·Wᵀ` of each layer's linears in order, then backward in reverse, each
    /// linear's input gradient `dY·W` then weight gradient `dYᵀ·X`.
    public func trainingStepProducts(tokens: Int) -> [KernelBenchmark.Shape] {
        KernelBenchmark.stepShapes(linears: ParameterLayout(self).linears.map { ($0.inFeatures, $0.outFeatures) }, tokens: tokens)
    }
}
