import Kernels
import Support

extension TransformerModel {
    /// The model with each low-rank adapter merged into the weight it adapts,
    /// `W[outputs, :] += scale · B·A` (mlx-lm's `fuse`): a plain model with the same outputs and
    /// no adapter cost. The weights must be in the parameter buffer (load a GGUF base as fp32).
    public func fused() throws -> TransformerModel {
        guard adapters != nil else { return self }
        guard !layout.isQuantized else {
            throw TransformerError.checkpoint(path: "fuse", reason: "the base weights are quantized blocks; load the base as fp32 to fuse")
        }
        let base = ParameterLayout(config)
        try MemoryBudget.check(floats: base.count, what: "the fused model")
        let buffer = FloatBuffer(count: base.count)
        let p = parameters.pointer
        buffer.pointer.update(from: p, count: base.count)
        for linear in layout.linears {
            for adapter in linear.adapters {
                // W[outputs, :] += scale · B (outputs x r) · A (r x in)
                gemm(.fp32, .none, .none, m: adapter.outputs.count, n: linear.inFeatures, k: adapter.rank, alpha: adapter.scale,
                     a: p + adapter.b, lda: adapter.rank, b: p + adapter.a, ldb: linear.inFeatures, beta: 1,
                     c: buffer.pointer + linear.weight + adapter.outputs.lowerBound * linear.inFeatures, ldc: linear.inFeatures)
            }
        }
        return try TransformerModel(config: config, parameters: buffer)
    }
}
