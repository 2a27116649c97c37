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

    @Test("a step's products: each linear layer's forward, input and weight gradient, 6·N·parameters FLOPs")
    func stepShapes() {
        let (n, d, layers, vocab) = (64, 16, 3, 50)
        let shapes = KernelBenchmark.stepShapes(tokens: n, dModel: d, layers: layers, vocabularySize: vocab)
        #expect(shapes.count == 3 * (4 * layers + 1))
        let parameters = layers * 12 * d * d + vocab * d // weights of qkv, out, up, down; lm head
        #expect(shapes.reduce(0) { $0 + $1.flops } == Double(6 * n * parameters))
        for forward in shapes where forward.name == "fwd" {
            let (o, i) = (forward.n, forward.k)
            #expect(forward.m == n && forward.transB && !forward.transA)
            #expect(shapes.contains { $0.name == "dX" && $0.m == n && $0.n == i && $0.k == o && !$0.transA && !$0.transB })
            #expect(shapes.contains { $0.name == "dW" && $0.m == o && $0.n == i && $0.k == n && $0.transA && !$0.transB })
        }
        // Backward follows the forward: the lm head's gradients come right after its forward.
        let head = shapes.firstIndex { $0.name == "fwd" && $0.n == vocab }!
        #expect(head == 4 * layers && shapes[head + 1].m == vocab && shapes[head + 2].k == vocab)
    }
}
