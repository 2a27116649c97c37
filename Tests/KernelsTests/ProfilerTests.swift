import Foundation
import Kernels
import Testing

@Suite("profiler and benchmark statistics", .serialized)
struct ProfilerTests {
    @Test("phases add up their time and calls in first-run order; off records nothing")
    func phases() {
        Profiler.reset()
        Profiler.isEnabled = false
        Profiler.measure("off") { usleep(1000) }
        #expect(!Profiler.report().contains { $0.phase == "off" })
        Profiler.isEnabled = true
        defer { Profiler.isEnabled = false; Profiler.reset() }
        let value = Profiler.measure("b") { () -> Int in usleep(20_000); return 7 }
        Profiler.measure("a") { usleep(1000) }
        Profiler.measure("b") { usleep(20_000) }
        // Tests run in parallel: other suites' training steps may add phases of their own.
        let report = Profiler.report().filter { ["a", "b"].contains($0.phase) }
        #expect(value == 7)
        #expect(report.map(\.phase) == ["b", "a"])
        #expect(report.map(\.calls) == [2, 1])
        #expect(report[0].seconds >= 0.04 && report[0].seconds < 1)
        #expect(report[1].seconds >= 0.001 && report[1].seconds < report[0].seconds)
    }

    @Test("clean median: contaminated steps are left out when enough clean ones remain")
    func cleanMedian() {
        // Five clean steps around 1 s, three slow ones while another process held a core.
        let samples: [(seconds: Double, foreign: Double)] = [(1.0, 0), (3.0, 0.9), (1.2, 0.05), (0.9, 0), (3.5, 1.0), (1.1, 0), (2.9, 0.8), (1.05, 0.02)]
        let (median, clean) = KernelBenchmark.cleanMedian(samples)
        #expect(clean == 5)
        #expect(median == 1.05)
        // Too few clean steps: the median over all of them.
        let noisy: [(seconds: Double, foreign: Double)] = [(1, 0), (2, 0.5), (3, 0.5), (4, 0.5), (5, 0.5), (6, 0.5)]
        let all = KernelBenchmark.cleanMedian(noisy)
        #expect(all.clean == 1 && all.median == 3.5)
    }

    @Test("a step's products: each linear layer's forward, then input and weight gradients in reverse, 6·N·weights FLOPs")
    func stepShapes() {
        let n = 64
        let linears = [(inFeatures: 16, outFeatures: 48), (inFeatures: 16, outFeatures: 16), (inFeatures: 16, outFeatures: 50)]
        let shapes = KernelBenchmark.stepShapes(linears: linears, tokens: n)
        #expect(shapes.count == 3 * linears.count)
        let weights = linears.reduce(0) { $0 + $1.inFeatures * $1.outFeatures }
        #expect(shapes.reduce(0) { $0 + $1.flops } == Double(6 * n * weights))
        for (l, forward) in zip(linears, shapes.prefix(linears.count)) {
            #expect(forward.name == "fwd" && forward.m == n && forward.n == l.outFeatures && forward.k == l.inFeatures)
            #expect(forward.transB && !forward.transA)
        }
        // Backward runs the layers in reverse: the last layer's dX then dW come first.
        for (j, l) in linears.reversed().enumerated() {
            let dx = shapes[linears.count + 2 * j], dw = shapes[linears.count + 2 * j + 1]
            #expect(dx.name == "dX" && dx.m == n && dx.n == l.inFeatures && dx.k == l.outFeatures && !dx.transA && !dx.transB)
            #expect(dw.name == "dW" && dw.m == l.outFeatures && dw.n == l.inFeatures && dw.k == n && dw.transA && !dw.transB)
        }
    }
}
