import Foundation

/// Measurements behind `tinylm bench kernels`: GEMM throughput and the pool's dispatch cost.
public enum KernelBenchmark {
    /// One GEMM problem: `C[m x n] = op(A) · op(B)` with depth `k`.
    public struct Shape: Sendable, Hashable, Codable {
        public var name: String
        public var transA: Bool
        public var transB: Bool
        public var m: Int, n: Int, k: Int

        public init(_ name: String, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int) {
            self.name = name
            self.transA = transA
            self.transB = transB
            self.m = m
            self.n = n
            self.k = k
        }

        public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    }

    /// Square problems, then the GEMMs of one training step of the `small` model (8 x 256 tokens,
    /// d 384, MLP 1536, vocab 8192; weights stored `[out, in]`): forward `X·Wᵀ`, input gradient
    /// `dY·W` and weight gradient `dYᵀ·X`; then some of the `tiny` model's.
    public static let standardShapes: [Shape] = [
        Shape("square 256", m: 256, n: 256, k: 256),
        Shape("square 512", m: 512, n: 512, k: 512),
        Shape("square 1024", m: 1024, n: 1024, k: 1024),
        Shape("square 2048", m: 2048, n: 2048, k: 2048),
        Shape("qkv fwd X·Wᵀ", transB: true, m: 2048, n: 1152, k: 384),
        Shape("qkv dX = dY·W", m: 2048, n: 384, k: 1152),
        Shape("qkv dW = dYᵀ·X", transA: true, m: 1152, n: 384, k: 2048),
        Shape("mlp up fwd", transB: true, m: 2048, n: 1536, k: 384),
        Shape("mlp down fwd", transB: true, m: 2048, n: 384, k: 1536),
        Shape("mlp down dX", m: 2048, n: 1536, k: 384),
        Shape("mlp down dW", transA: true, m: 384, n: 1536, k: 2048),
        Shape("lm head fwd", transB: true, m: 2048, n: 8192, k: 384),
        Shape("lm head dX", m: 2048, n: 384, k: 8192),
        Shape("lm head dW", transA: true, m: 8192, n: 384, k: 2048),
        // The `tiny` model (16 x 128 tokens, d 128, MLP 512, vocab 4096).
        Shape("tiny qkv fwd", transB: true, m: 2048, n: 384, k: 128),
        Shape("tiny qkv dX", m: 2048, n: 128, k: 384),
        Shape("tiny qkv dW", transA: true, m: 384, n: 128, k: 2048),
        Shape("tiny mlp down fwd", transB: true, m: 2048, n: 128, k: 512),
        Shape("tiny mlp down dW", transA: true, m: 128, n: 512, k: 2048),
        Shape("tiny lm head fwd", transB: true, m: 2048, n: 4096, k: 128),
        Shape("tiny lm head dX", m: 2048, n: 128, k: 4096),
        Shape("tiny lm head dW", transA: true, m: 4096, n: 128, k: 2048),
    ]

    /// Best GFLOP/s over repetitions lasting at least `seconds` (at least 3 runs).
    public static func gflops(_ shape: Shape, pool: ThreadPool, seconds: Double = 0.3, precision: MatmulPrecision = .fp32) -> Double {
        let aCount = shape.m * shape.k, bCount = shape.k * shape.n, cCount = shape.m * shape.n
        let a = UnsafeMutablePointer<Float>.allocate(capacity: aCount)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: bCount)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: cCount)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        var rng = SplitMix64(seed: 1)
        for i in 0..<aCount { a[i] = rng.nextFloat() - 0.5 }
        for i in 0..<bCount { b[i] = rng.nextFloat() - 0.5 }
        let lda = shape.transA ? shape.m : shape.k
        let ldb = shape.transB ? shape.k : shape.n
        let run = {
            gemm(precision, shape.transA ? .transposed : .none, shape.transB ? .transposed : .none,
                  m: shape.m, n: shape.n, k: shape.k, a: a, lda: lda, b: b, ldb: ldb,
                  c: c, ldc: shape.n, pool: pool)
        }
        run()
        var best = Double.infinity, spent = 0.0, runs = 0
        while runs < 3 || spent < seconds {
            let t = elapsed(run)
            best = min(best, t)
            spent += t
            runs += 1
        }
        return shape.flops / best / 1e9
    }

    /// Every product of one training step of a model whose linear layers, in forward order, are
    /// `linears` (`(in, out)` features each): the forward `X·Wᵀ` of each in order, then backward
    /// in reverse order, each layer's input gradient `dY·W` then its weight gradient `dYᵀ·X`.
    /// The model describes its own linears (`TransformerModel.trainingStepProducts`).
    public static func stepShapes(linears: [(inFeatures: Int, outFeatures: Int)], tokens n: Int) -> [Shape] {
        let forward = linears.map { Shape("fwd", transB: true, m: n, n: $0.outFeatures, k: $0.inFeatures) }
        let backward = linears.reversed().flatMap { l in
            [Shape("dX", m: n, n: l.inFeatures, k: l.outFeatures), Shape("dW", transA: true, m: l.outFeatures, n: l.inFeatures, k: n)]
        }
        return forward + backward
    }

    /// Seconds for `shapes` run back to back, each on operands of its own (as in a training step,
    /// where a product's inputs were last touched long before): the best and the median of
    /// `repeats` runs.
    public static func sequenceSeconds(_ shapes: [Shape], pool: ThreadPool, repeats: Int = 10) -> (best: Double, median: Double) {
        var rng = SplitMix64(seed: 1)
        let operands = shapes.map { shape -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) in
            let a = UnsafeMutablePointer<Float>.allocate(capacity: shape.m * shape.k)
            let b = UnsafeMutablePointer<Float>.allocate(capacity: shape.k * shape.n)
            let c = UnsafeMutablePointer<Float>.allocate(capacity: shape.m * shape.n)
            for i in 0..<(shape.m * shape.k) { a[i] = rng.nextFloat() - 0.5 }
            for i in 0..<(shape.k * shape.n) { b[i] = rng.nextFloat() - 0.5 }
            c.initialize(repeating: 0, count: shape.m * shape.n)
            return (a, b, c)
        }
        defer { for (a, b, c) in operands { a.deallocate(); b.deallocate(); c.deallocate() } }
        let run = {
            for (shape, (a, b, c)) in zip(shapes, operands) {
                sgemm(shape.transA ? .transposed : .none, shape.transB ? .transposed : .none,
                      m: shape.m, n: shape.n, k: shape.k, a: a, lda: shape.transA ? shape.m : shape.k,
                      b: b, ldb: shape.transB ? shape.k : shape.n, c: c, ldc: shape.n, pool: pool)
            }
        }
        run()
        let times = (0..<max(1, repeats)).map { _ in elapsed(run) }.sorted()
        return (times[0], times[times.count / 2])
    }

    /// Mean wall time of an empty `parallelFor` over `threadCount` tasks, in microseconds.
    public static func dispatchMicroseconds(pool: ThreadPool, iterations: Int = 20_000) -> Double {
        let tasks = pool.threadCount
        pool.parallelFor(tasks) { _, _ in }
        let t = elapsed {
            for _ in 0..<iterations { pool.parallelFor(tasks) { _, _ in } }
        }
        return t / Double(iterations) * 1e6
    }

    static func elapsed(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// The median step time over clean samples — those during which other processes used fewer
    /// than `threshold` cores — when there are enough of them (a third of all, at least 3), else
    /// over all samples; with the clean count. The rule of the peers' `cpuguard.clean_median`.
    public static func cleanMedian(_ samples: [(seconds: Double, foreign: Double)], threshold: Double = 0.1) -> (median: Double, clean: Int) {
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let clean = samples.filter { $0.foreign < threshold }.map(\.seconds)
        if clean.count >= max(3, samples.count / 3) { return (median(clean), clean.count) }
        return (median(samples.map(\.seconds)), clean.count)
    }
}
