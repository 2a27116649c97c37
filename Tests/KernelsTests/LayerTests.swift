import Foundation
import Kernels
import Testing

/// Forward kernels against double-precision references, backward kernels against central finite
/// differences of those references.
@Suite("normalization, activations, softmax, loss and embedding kernels")
struct LayerTests {
    static let shapes: [(rows: Int, dim: Int)] = [(1, 1), (3, 17), (4, 64), (2, 257)]

    // MARK: LayerNorm / RMSNorm

    static func layerNormRef(_ x: [Double], _ w: [Double], _ b: [Double]?, rows: Int, dim: Int, rms: Bool) -> [Double] {
        var y = [Double](repeating: 0, count: rows * dim)
        for r in 0..<rows {
            let row = Array(x[(r * dim)..<((r + 1) * dim)])
            let mean = rms ? 0 : row.reduce(0, +) / Double(dim)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(dim)
            let s = 1 / (variance + 1e-5).squareRoot()
            for i in 0..<dim { y[r * dim + i] = (row[i] - mean) * s * w[i] + (b?[i] ?? 0) }
        }
        return y
    }

    @Test("LayerNorm and RMSNorm forward and backward", arguments: [false, true], [0, 1, 2, 3])
    func norms(_ rms: Bool, _ shapeIndex: Int) {
        let (rows, dim) = Self.shapes[shapeIndex]
        let x = randomFloats(rows * dim, seed: 21, scale: 2)
        let w = randomFloats(dim, seed: 22).map { $0 + 1 }
        let b = randomFloats(dim, seed: 23)
        let dy = randomFloats(rows * dim, seed: 24)
        var y = [Float](repeating: 0, count: rows * dim)
        var mean = [Float](repeating: 0, count: rows), rstd = mean
        y.withUnsafeMutableBufferPointer { yp in
            mean.withUnsafeMutableBufferPointer { mp in
                rstd.withUnsafeMutableBufferPointer { rp in
                    if rms {
                        rmsNormForward(x, weight: w, into: yp.baseAddress!, rstd: rp.baseAddress!,
                                       rows: rows, dim: dim, eps: 1e-5)
                    } else {
                        layerNormForward(x, weight: w, bias: b, into: yp.baseAddress!, mean: mp.baseAddress!,
                                         rstd: rp.baseAddress!, rows: rows, dim: dim, eps: 1e-5)
                    }
                }
            }
        }
        let bias: [Double]? = rms ? nil : b.doubles
        expectClose(y, Self.layerNormRef(x.doubles, w.doubles, bias, rows: rows, dim: dim, rms: rms),
                    tolerance: 2e-5, "forward")

        // Backward accumulates: start from nonzero gradients and compare the increments.
        let dx0 = randomFloats(rows * dim, seed: 25), dw0 = randomFloats(dim, seed: 26), db0 = randomFloats(dim, seed: 27)
        var dx = dx0, dw = dw0, db = db0
        for pool in [singleThread, threeThreads] {
            dx = dx0; dw = dw0; db = db0
            dx.withUnsafeMutableBufferPointer { dxp in
                dw.withUnsafeMutableBufferPointer { dwp in
                    db.withUnsafeMutableBufferPointer { dbp in
                        if rms {
                            rmsNormBackward(dy, x: x, weight: w, rstd: rstd, dx: dxp.baseAddress!,
                                            dweight: dwp.baseAddress!, rows: rows, dim: dim, pool: pool)
                        } else {
                            layerNormBackward(dy, x: x, weight: w, mean: mean, rstd: rstd,
                                              dx: dxp.baseAddress!, dweight: dwp.baseAddress!,
                                              dbias: dbp.baseAddress!, rows: rows, dim: dim, pool: pool)
                        }
                    }
                }
            }
        }
        let dyD = dy.doubles
        let loss = { (y: [Double]) in zip(y, dyD).reduce(0) { $0 + $1.0 * $1.1 } }
        let gx = numericalGradient(x.doubles) { loss(Self.layerNormRef($0, w.doubles, bias, rows: rows, dim: dim, rms: rms)) }
        let gw = numericalGradient(w.doubles) { loss(Self.layerNormRef(x.doubles, $0, bias, rows: rows, dim: dim, rms: rms)) }
        expectClose(dx, zip(dx0, gx).map { Double($0) + $1 }, tolerance: 1e-4, "dx")
        expectClose(dw, zip(dw0, gw).map { Double($0) + $1 }, tolerance: 1e-4, "dweight")
        if !rms {
            let gb = numericalGradient(b.doubles) { loss(Self.layerNormRef(x.doubles, w.doubles, $0, rows: rows, dim: dim, rms: false)) }
            expectClose(db, zip(db0, gb).map { Double($0) + $1 }, tolerance: 1e-4, "dbias")
        }
    }

    // MARK: Activations

    static func geluRef(_ x: Double) -> Double {
        0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }
    static func siluRef(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    @Test("GELU and SiLU forward and backward", arguments: [false, true], [1, 15, 33, 1000])
    func activations(_ silu: Bool, _ n: Int) {
        let x = randomFloats(n, seed: 31, scale: 6)
        let dy = randomFloats(n, seed: 32)
        let f = silu ? Self.siluRef : Self.geluRef
        var y = [Float](repeating: 0, count: n), dx = y
        withPointers(&y) { silu ? siluForward(x, into: $0, count: n) : geluForward(x, into: $0, count: n) }
        withPointers(&dx) {
            silu ? siluBackward(dy, x: x, into: $0, count: n) : geluBackward(dy, x: x, into: $0, count: n)
        }
        expectClose(y, x.map { f(Double($0)) }, tolerance: 1e-6, "forward")
        let expected = zip(x, dy).map { xi, di in
            let h = 1e-6, v = Double(xi)
            return Double(di) * (f(v + h) - f(v - h)) / (2 * h)
        }
        expectClose(dx, expected, tolerance: 1e-5, "backward")
    }

    // MARK: Softmax

    static func softmaxRef(_ x: ArraySlice<Double>, scale: Double = 1) -> [Double] {
        let m = x.max() ?? 0
        let e = x.map { Foundation.exp(scale * ($0 - m)) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    @Test("softmax forward and backward", arguments: [0, 1, 2, 3])
    func softmax(_ shapeIndex: Int) {
        let (rows, cols) = Self.shapes[shapeIndex]
        let x = randomFloats(rows * cols, seed: 41, scale: 30)
        let dy = randomFloats(rows * cols, seed: 42)
        var y = [Float](repeating: 0, count: rows * cols), dx = y
        withPointers(&y) { softmaxForward(x, into: $0, rows: rows, cols: cols) }
        let xd = x.doubles
        let reference = (0..<rows).flatMap { r in Self.softmaxRef(xd[(r * cols)..<((r + 1) * cols)]) }
        expectClose(y, reference, tolerance: 1e-6, "forward")
        withPointers(&dx) { softmaxBackward(dy, y: y, into: $0, rows: rows, cols: cols) }
        let dyd = dy.doubles
        let g = numericalGradient(xd) { (v: [Double]) -> Double in
            var total = 0.0
            for r in 0..<rows {
                let p = Self.softmaxRef(v[(r * cols)..<((r + 1) * cols)])
                for c in 0..<cols { total += p[c] * dyd[r * cols + c] }
            }
            return total
        }
        expectClose(dx, g, tolerance: 1e-5, "backward")
    }

    /// Rows from 1 to 44 valid columns: tails that fit a whole vector inside `cols` (one masked
    /// load and store) and tails that do not (lane by lane).
    @Test("causal softmax masks the future, with and without a cache offset", arguments: [(5, 0), (5, 3), (40, 0), (37, 7)])
    func causalSoftmax(rows: Int, offset: Int) {
        let cols = rows + offset, ld = cols + 2, scale: Float = 0.35
        let scores = randomFloats(rows * ld, seed: 51, scale: 4)
        var p = scores
        withPointers(&p) { causalSoftmaxForward($0, rows: rows, cols: cols, ld: ld, offset: offset, scale: scale) }
        let dp = randomFloats(rows * ld, seed: 52)
        var ds = dp
        withPointers(&ds) { causalSoftmaxBackward($0, probs: p, rows: rows, cols: cols, ld: ld, offset: offset, scale: scale) }
        for i in 0..<rows {
            let valid = i + offset + 1
            let ref = Self.softmaxRef(scores[(i * ld)..<(i * ld + valid)].map(Double.init)[...], scale: Double(scale))
            expectClose(Array(p[(i * ld)..<(i * ld + valid)]), ref, tolerance: 1e-6, "row \(i)")
            #expect(p[(i * ld + valid)..<(i * ld + cols)].allSatisfy { $0 == 0 }, "masked row \(i)")
            #expect(ds[(i * ld + valid)..<(i * ld + cols)].allSatisfy { $0 == 0 }, "masked gradient row \(i)")
            let row = scores[(i * ld)..<(i * ld + valid)].map(Double.init)
            let dpr = dp[(i * ld)..<(i * ld + valid)].map(Double.init)
            let g = numericalGradient(row) { v in
                zip(Self.softmaxRef(v[...], scale: Double(scale)), dpr).reduce(0) { $0 + $1.0 * $1.1 }
            }
            expectClose(Array(ds[(i * ld)..<(i * ld + valid)]), g, tolerance: 1e-5, "gradient row \(i)")
            #expect(p[(i * ld + cols)..<(i * ld + ld)] == scores[(i * ld + cols)..<(i * ld + ld)], "padding untouched")
        }
    }

    /// The numerators that prefill's attention divides by their sums afterwards: times the
    /// inverse of each row's sum they are the causal softmax, bit for bit; zeros past each row.
    @Test("causal exponentials: over their sums, exactly the causal softmax", arguments: [(5, 0), (5, 3), (40, 0), (37, 7)])
    func causalExponentialRows(rows: Int, offset: Int) {
        let cols = rows + offset, ld = cols + 2, scale: Float = 0.35
        let scores = randomFloats(rows * ld, seed: 53, scale: 4)
        var p = scores, e = scores, sums = [Float](repeating: .nan, count: rows)
        withPointers(&p) { causalSoftmaxForward($0, rows: rows, cols: cols, ld: ld, offset: offset, scale: scale) }
        withPointers(&e) { ep in withPointers(&sums) { causalExponentials(ep, rows: rows, cols: cols, ld: ld, offset: offset, scale: scale, sums: $0) } }
        for i in 0..<rows {
            let valid = i + offset + 1, inverse = 1 / sums[i]
            let ref = scores[(i * ld)..<(i * ld + valid)].map { Foundation.exp(Double(scale) * (Double($0) - Double(scores[(i * ld)..<(i * ld + valid)].max()!))) }
            expectClose(Array(e[(i * ld)..<(i * ld + valid)]), ref, tolerance: 1e-6, "row \(i)")
            #expect(abs(Double(sums[i]) - ref.reduce(0, +)) <= 1e-6 * ref.reduce(0, +), "sum of row \(i)")
            #expect(e[(i * ld)..<(i * ld + valid)].map { $0 * inverse } == Array(p[(i * ld)..<(i * ld + valid)]), "row \(i) over its sum")
            #expect(e[(i * ld + valid)..<(i * ld + cols)].allSatisfy { $0 == 0 }, "masked row \(i)")
            #expect(e[(i * ld + cols)..<(i * ld + ld)] == scores[(i * ld + cols)..<(i * ld + ld)], "padding untouched")
        }
    }

    // MARK: Cross-entropy

    @Test("cross-entropy forward and backward, with a masked row", arguments: [1, 7, 300])
    func crossEntropy(_ vocab: Int) {
        let rows = 4
        let logits = randomFloats(rows * vocab, seed: 61, scale: 8)
        let targets: [Int32] = [0, Int32(vocab - 1), -1, Int32(vocab / 2)]
        let dloss: [Float] = [0.25, 0.5, 0.25, 1]
        var losses = [Float](repeating: 0, count: rows)
        var dlogits = [Float](repeating: .nan, count: rows * vocab)
        withPointers(&losses) { crossEntropyForward(logits: logits, targets: targets, losses: $0, rows: rows, vocab: vocab) }
        withPointers(&dlogits) {
            crossEntropyBackward(logits: logits, targets: targets, dloss: dloss, into: $0, rows: rows, vocab: vocab)
        }
        let ld = logits.doubles
        func rowLoss(_ v: ArraySlice<Double>, _ t: Int) -> Double {
            let m = v.max()!
            return m + Foundation.log(v.reduce(0) { $0 + Foundation.exp($1 - m) }) - v[v.startIndex + t]
        }
        let expected = (0..<rows).map { r in targets[r] < 0 ? 0 : rowLoss(ld[(r * vocab)..<((r + 1) * vocab)], Int(targets[r])) }
        expectClose(losses, expected, tolerance: 2e-6, "losses")
        let g = numericalGradient(ld) { v in
            (0..<rows).reduce(0.0) { total, r in
                targets[r] < 0 ? total : total + Double(dloss[r]) * rowLoss(v[(r * vocab)..<((r + 1) * vocab)], Int(targets[r]))
            }
        }
        expectClose(dlogits, g, tolerance: 1e-5, "dlogits")
        // In place: the logits buffer becomes its gradient.
        var inPlace = logits
        inPlace.withUnsafeMutableBufferPointer { p in
            crossEntropyBackward(logits: p.baseAddress!, targets: targets, dloss: dloss, into: p.baseAddress!, rows: rows, vocab: vocab)
        }
        #expect(inPlace == dlogits)
        // With the forward's saved log-sum-exps, the one-pass backward gives the same gradient.
        var lse = [Float](repeating: 0, count: rows), scratch = [Float](repeating: 0, count: rows)
        withPointers(&scratch) { losses in
            lse.withUnsafeMutableBufferPointer {
                crossEntropyForward(logits: logits, targets: targets, losses: losses, logSumExps: $0.baseAddress!, rows: rows, vocab: vocab)
            }
        }
        #expect(scratch == losses)
        var fast = [Float](repeating: .nan, count: rows * vocab)
        withPointers(&fast) {
            crossEntropyBackward(logits: logits, targets: targets, dloss: dloss, logSumExps: lse, into: $0, rows: rows, vocab: vocab)
        }
        expectClose(fast, g, tolerance: 1e-5, "dlogits from saved log-sum-exps")
        // The training path: the forward writes the gradient for a row weight of 1 over the logits.
        var fused = logits, fusedLosses = [Float](repeating: 0, count: rows)
        fused.withUnsafeMutableBufferPointer { p in
            withPointers(&fusedLosses) {
                crossEntropyForward(logits: p.baseAddress!, targets: targets, losses: $0, gradients: p.baseAddress!, rows: rows, vocab: vocab)
            }
        }
        expectClose(fusedLosses, expected, tolerance: 2e-6, "losses with gradients")
        let unweighted = (0..<(rows * vocab)).map { i in dloss[i / vocab] == 0 ? 0 : g[i] / Double(dloss[i / vocab]) }
        expectClose(fused, unweighted, tolerance: 4e-5, "gradients from the forward pass")
    }

    // MARK: Embedding and bias

    @Test("embedding gather and scatter-add with repeated ids; bias column sums")
    func embeddingAndBias() {
        let vocab = 11, dim = 37
        let table = randomFloats(vocab * dim, seed: 71)
        let ids: [Int32] = [3, 0, 10, 3, 3, 7]
        var out = [Float](repeating: 0, count: ids.count * dim)
        withPointers(&out) { embeddingForward(table: table, ids: ids, into: $0, count: ids.count, dim: dim) }
        for (t, id) in ids.enumerated() {
            #expect(Array(out[(t * dim)..<((t + 1) * dim)]) == Array(table[(Int(id) * dim)..<((Int(id) + 1) * dim)]))
        }
        let dout = randomFloats(ids.count * dim, seed: 72)
        let base = randomFloats(vocab * dim, seed: 73)
        var expected = base.doubles
        for (t, id) in ids.enumerated() {
            for i in 0..<dim { expected[Int(id) * dim + i] += Double(dout[t * dim + i]) }
        }
        for pool in [singleThread, threeThreads] {
            var dtable = base
            withPointers(&dtable) { embeddingBackward(dout, ids: ids, into: $0, count: ids.count, dim: dim, pool: pool) }
            expectClose(dtable, expected, tolerance: 1e-6, "scatter-add")
        }
        let bias = randomFloats(dim, seed: 74)
        var sums = bias
        withPointers(&sums) { accumulateColumnSums(dout, rows: ids.count, cols: dim, into: $0) }
        let columnSums = (0..<dim).map { i in Double(bias[i]) + (0..<ids.count).reduce(0.0) { $0 + Double(dout[$1 * dim + i]) } }
        expectClose(sums, columnSums, tolerance: 1e-6, "column sums")
    }
}

@Suite("SwiGLU and RoPE kernels")
struct GatedAndRotaryTests {
    @Test("SwiGLU forward and backward against the reference", arguments: [1, 17, 40])
    func swiglu(_ dim: Int) {
        let rows = 3
        let gateUp = randomFloats(rows * 2 * dim, seed: 81, scale: 4)
        let dy = randomFloats(rows * dim, seed: 82)
        var y = [Float](repeating: 0, count: rows * dim)
        var d = [Float](repeating: 0, count: rows * 2 * dim)
        withPointers(&y) { swigluForward(gateUp, into: $0, rows: rows, dim: dim) }
        withPointers(&d) { swigluBackward(dy, gateUp: gateUp, into: $0, rows: rows, dim: dim) }
        func f(_ v: [Double]) -> [Double] {
            (0..<rows).flatMap { r in (0..<dim).map { i in
                let g = v[r * 2 * dim + i], u = v[r * 2 * dim + dim + i]
                return g / (1 + Foundation.exp(-g)) * u
            } }
        }
        expectClose(y, f(gateUp.doubles), tolerance: 1e-6, "forward")
        let dyd = dy.doubles
        let g = numericalGradient(gateUp.doubles) { v in zip(f(v), dyd).reduce(0) { $0 + $1.0 * $1.1 } }
        expectClose(d, g, tolerance: 1e-5, "backward")
    }

    @Test("RoPE rotates pairs by position; the inverse undoes it")
    func rope() {
        let headDim = 8, heads = 2, rows = 5
        let table = RotaryTable(headDim: headDim, positions: 16, theta: 10_000)
        let x = randomFloats(rows * heads * headDim, seed: 91)
        var y = x
        withPointers(&y) { table.apply($0, rows: rows, rowStride: heads * headDim, heads: heads, firstPosition: 3, period: rows) }
        for r in 0..<rows {
            for h in 0..<heads {
                for i in 0..<(headDim / 2) {
                    let angle = Double(3 + r) * pow(10_000, -2 * Double(i) / Double(headDim))
                    let base = r * heads * headDim + h * headDim
                    let a = Double(x[base + i]), b = Double(x[base + i + headDim / 2])
                    #expect(abs(Double(y[base + i]) - (a * cos(angle) - b * sin(angle))) < 1e-5)
                    #expect(abs(Double(y[base + i + headDim / 2]) - (b * cos(angle) + a * sin(angle))) < 1e-5)
                }
            }
        }
        withPointers(&y) { table.apply($0, rows: rows, rowStride: heads * headDim, heads: heads, firstPosition: 3, period: rows, inverse: true) }
        expectClose(y, x.doubles, tolerance: 1e-6, "inverse")
    }

    @Test("RoPE over a pool's threads gives the serial rotation bit for bit, inverse and batched positions too")
    func ropeThreads() {
        // Enough rows for the pool to split them: 300 rows of 6 heads of 64, in batches of 75.
        let headDim = 64, heads = 6, rows = 300, stride = heads * headDim + 16
        let table = RotaryTable(headDim: headDim, positions: 128, theta: 10_000)
        let x = randomFloats(rows * stride, seed: 93)
        for inverse in [false, true] {
            var serial = x, pooled = x
            withPointers(&serial) {
                table.apply($0, rows: rows, rowStride: stride, heads: heads, firstPosition: 5, period: 75, inverse: inverse)
            }
            withPointers(&pooled) {
                table.apply($0, rows: rows, rowStride: stride, heads: heads, firstPosition: 5, period: 75, inverse: inverse,
                            pool: ThreadPool(threadCount: 3))
            }
            #expect(serial == pooled, "inverse \(inverse)")
            #expect(serial != x, "the rows were rotated")
            // The 16 floats after each row's heads are not touched.
            for r in 0..<rows { #expect(Array(pooled[(r * stride + heads * headDim)..<((r + 1) * stride)]) == Array(x[(r * stride + heads * headDim)..<((r + 1) * stride)])) }
        }
    }
}
