import Kernels

/// Where a mixture of experts sends tokens: per mixture block, each expert's share of the
/// routing assignments, and each token's chosen experts (best first).
public struct RouterInspection: Sendable {
    /// The blocks that are mixtures, by layer index.
    public var layers: [Int]
    /// Per mixture block, per expert: the fraction of the `k` assignments of all tokens (uniform: 1/E).
    public var loads: [[Double]]
    /// Per mixture block, per token: its experts, best first.
    public var choices: [[[Int]]]
    /// The tokens looked at.
    public var tokens: [Int32]
}

extension TransformerModel {
    /// Runs the model over `tokens` (in windows of the context length) and records the router's
    /// choices in every mixture block. An error for a dense model.
    public func inspectRouter(tokens: [Int32], pool: ThreadPool = .shared) throws -> RouterInspection {
        let c = config
        guard c.experts > 0 else {
            throw TransformerError.invalidConfig(source: "model", field: "num_local_experts", reason: "the model has no mixture-of-experts blocks")
        }
        guard !tokens.isEmpty else { throw TransformerError.emptyInput(what: "the tokens to route") }
        let layers = (0..<c.layers).filter(c.isMixture), k = c.expertsPerToken
        var counts = [[Double]](repeating: [Double](repeating: 0, count: c.experts), count: layers.count)
        var choices = [[[Int]]](repeating: [], count: layers.count)
        let t = min(c.contextLength, tokens.count)
        let workspace = try TrainingWorkspace(model: self, batch: 1, length: t, threads: pool.threadCount, training: false)
        var start = 0
        while start < tokens.count {
            let length = min(t, tokens.count - start)
            var ids = [Int32](repeating: 0, count: t)
            ids.replaceSubrange(0..<length, with: tokens[start..<(start + length)])
            _ = try forward(ids: ids, targets: [Int32](repeating: -1, count: t), workspace: workspace, pool: pool)
            let routing = workspace.mixture!
            for m in 0..<layers.count {
                let chosen = routing.block(m, rows: t).chosen
                for r in 0..<length {
                    let experts = (0..<k).map { Int(chosen[r * k + $0]) }
                    choices[m].append(experts)
                    for e in experts { counts[m][e] += 1 }
                }
            }
            start += length
        }
        let loads = counts.map { row in row.map { $0 / Double(tokens.count * k) } }
        return RouterInspection(layers: layers, loads: loads, choices: choices, tokens: tokens)
    }
}
