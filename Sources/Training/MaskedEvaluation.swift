import Kernels
import Transformer

extension TransformerModel {
    /// Mean loss over the counted targets of `examples` (each cut or padded to `length`), in
    /// batches of `batch`: the validation loss of fine-tuning.
    public func evaluate(examples: [MaskedExample], batch: Int, length: Int, precision: MatmulPrecision = .fp32,
                         pool: ThreadPool = .shared) throws -> Double {
        let workspace = try TrainingWorkspace(model: self, batch: batch, length: length, training: false)
        workspace.precision = precision
        var total = 0.0, counted = 0
        var start = 0
        while start < examples.count {
            var ids = [Int32](repeating: 0, count: batch * length), targets = [Int32](repeating: -1, count: batch * length)
            for (row, e) in examples[start..<min(examples.count, start + batch)].enumerated() {
                for j in 0..<min(length, e.ids.count) {
                    ids[row * length + j] = e.ids[j]
                    targets[row * length + j] = e.targets[j]
                }
            }
            let loss = try forward(ids: ids, targets: targets, workspace: workspace, pool: pool)
            total += Double(loss) * Double(workspace.counted)
            counted += workspace.counted
            start += batch
        }
        return counted == 0 ? .nan : total / Double(counted)
    }
}
