import Kernels
import Transformer

extension TransformerModel {
    /// Mean loss over the counted targets of `examples` (each cut to `length`), in batches of
    /// `batch`: the validation loss of fine-tuning. The examples go by length, and each batch is
    /// padded to its longest (causal attention: padding after a sequence cannot change it), so
    /// short examples cost what they hold, not `length`.
    public func evaluate(examples: [MaskedExample], batch: Int, length: Int, precision: MatmulPrecision = .fp32,
                         pool: ThreadPool = .shared) throws -> Double {
        let workspace = try TrainingWorkspace(model: self, batch: batch, length: length, training: false)
        workspace.precision = precision
        let byLength = examples.indices.sorted { (examples[$0].ids.count, $0) < (examples[$1].ids.count, $1) }
        var total = 0.0, counted = 0
        var start = 0
        while start < byLength.count {
            let group = byLength[start..<min(byLength.count, start + batch)]
            let t = min(length, group.map { examples[$0].ids.count }.max()!)
            var ids = [Int32](repeating: 0, count: batch * t), targets = [Int32](repeating: -1, count: batch * t)
            for (row, index) in group.enumerated() {
                let e = examples[index]
                for j in 0..<min(t, e.ids.count) {
                    ids[row * t + j] = e.ids[j]
                    targets[row * t + j] = e.targets[j]
                }
            }
            try workspace.setLength(t)
            let loss = try forward(ids: ids, targets: targets, workspace: workspace, pool: pool)
            total += Double(loss) * Double(workspace.counted)
            counted += workspace.counted
            start += batch
        }
        return counted == 0 ? .nan : total / Double(counted)
    }
}
