import CQuant
import Foundation
import Kernels
import Testing
@testable import GGUF
@testable import Quantization
import Transformer

/// Bytes that outlive the matrices over them.
final class Bytes {
    let pointer: UnsafeMutableRawPointer
    init(_ values: [UInt8]) {
        pointer = .allocate(byteCount: max(1, values.count), alignment: 64)
        pointer.copyMemory(from: values, byteCount: values.count)
    }
    deinit { pointer.deallocate() }
}

@Suite("Quantization: reference quantizers, integer kernels")
struct QuantizationTests {
    static let file = { try! GGUFFile(path: fixtures + "/gguf/blocks.gguf") }()

    /// `hard.source` is 100 tensors (rows of 256) with zeros, ties for the largest magnitude,
    /// denormals, ±1e30, values near the float maximum, constant rows and spikes; `hard.TYPE` is
    /// the `gguf` package's quantization of each (Q8_0, Q4_0, Q4_1) and ggml's C reference
    /// `quantize_row_q4_K_ref` (Q4_K), written by Benchmarks/gguf_fixture.py.
    @Test("Q8_0, Q4_0, Q4_1 and Q4_K blocks are byte-identical to the references on 100 hard tensors",
          arguments: [GGMLType.q8_0, .q4_0, .q4_1, .q4_K])
    func referenceBytes(_ type: GGMLType) throws {
        let source = try floats(Self.file, "hard.source")
        let info = try #require(Self.file.tensor(named: "hard.\(type)"))
        let expected = Self.file.withBytes(of: info) { Array($0) }
        #expect(source.count == 100 * 256)
        let rowBytes = 256 / type.blockSize * type.blockBytes
        var differing: [Int] = []
        for row in 0..<100 {
            let ours = try source[(row * 256)..<((row + 1) * 256)].withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: type) }
            if ours != Array(expected[(row * rowBytes)..<((row + 1) * rowBytes)]) { differing.append(row) }
        }
        #expect(differing.isEmpty, "rows whose blocks differ: \(differing)")
    }

    /// Random weights and activations, the activation quantized as the kernels do.
    struct Case {
        var type: GGMLType
        var rows: Int
        var columns: Int
        var blocks: [UInt8]
        var x: [Float]     // [n, columns]
        var n: Int

        init(_ type: GGMLType, rows: Int, columns: Int, n: Int, seed: UInt64) throws {
            var rng = SplitMix64(seed: seed)
            var w = (0..<(rows * columns)).map { _ in rng.nextGaussian() * 0.1 }
            for i in stride(from: 0, to: w.count, by: 97) { w[i] = 0 }   // a few exact zeros
            self.type = type
            self.rows = rows
            self.columns = columns
            blocks = try w.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: type) }
            x = (0..<(n * columns)).map { _ in rng.nextGaussian() }
            self.n = n
        }

        func matrix(owner _: AnyObject? = nil) -> QuantizedMatrix {
            let bytes = Bytes(blocks)
            return QuantizedMatrix(format: type, rows: rows, columns: columns, bytes: bytes.pointer, owner: bytes)
        }

        /// ggml's semantics in double precision: per block of 32, d_w · d_a · Σ q_w q_a (plus the
        /// format's offset terms), from the dequantized weights and the 8-bit activations.
        func reference() -> [Double] {
            var weights = [Float](repeating: 0, count: rows * columns)
            blocks.withUnsafeBytes { GGMLBlocks.dequantize(type, $0, count: rows * columns, into: &weights) }
            var y = [Double](repeating: 0, count: n * rows)
            for i in 0..<n {
                // The activation row as the kernels quantize it (ggml's quantize_row_q8_0_ref).
                var a = [Double](repeating: 0, count: columns)
                for b in 0..<(columns / 32) {
                    let block = x[(i * columns + b * 32)..<(i * columns + b * 32 + 32)]
                    let amax = block.map(abs).max()!
                    let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
                    let dh = Double(Float(Float16(d)))
                    for (j, v) in block.enumerated() { a[b * 32 + j] = Double((v * id).rounded(.toNearestOrAwayFromZero)) * dh }
                }
                for r in 0..<rows {
                    var s = 0.0
                    for c in 0..<columns { s += Double(weights[r * columns + c]) * a[c] }
                    y[i * rows + r] = s
                }
            }
            return y
        }
    }

    @Test("the integer kernels equal the block dot-product semantics at edge shapes (every format, 1-6 input rows)",
          arguments: [GGMLType.q4_0, .q4_1, .q8_0, .q4_K])
    func kernelAgainstReference(_ type: GGMLType) throws {
        let shapes: [(Int, Int)] = type == .q4_K ? [(1, 256), (5, 512), (17, 768)] : [(1, 32), (3, 64), (17, 96), (33, 288), (8, 576)]
        for (rows, columns) in shapes {
            for n in [1, 2, 3, 4] {
                let c = try Case(type, rows: rows, columns: columns, n: n, seed: UInt64(rows * 1000 + columns + n))
                let holder = NSObject()
                let reference = c.reference()
                // The rows as mapped, and interleaved sixteen at a time (Q4_K stays as mapped).
                for m in [c.matrix(owner: holder), c.matrix(owner: holder).packed()] {
                    var y = [Float](repeating: .nan, count: n * rows)
                    m.multiplyQuantized(c.x, rows: n, into: &y, ldc: rows, pool: .shared)
                    for (ours, ref) in zip(y, reference) {
                        #expect(abs(Double(ours) - ref) <= 2e-5 * max(1, abs(ref)),
                                "\(type) \(rows)x\(columns) n \(n) packed \(m.isPacked): \(ours) vs \(ref)")
                    }
                }
            }
        }
    }

    @Test("Q4_0 × Q8_0 is ggml's Σ d_w·d_a·Σ q_w·q_a, block by block")
    func q4_0Semantics() throws {
        let c = try Case(.q4_0, rows: 4, columns: 128, n: 1, seed: 7)
        for packed in [false, true] {
        var y = [Float](repeating: 0, count: 4)
        let m = packed ? c.matrix(owner: NSObject()).packed() : c.matrix(owner: NSObject())
        m.multiplyQuantized(c.x, rows: 1, into: &y, ldc: 4, pool: .shared)
        for r in 0..<4 {
            var total = 0.0
            for b in 0..<4 {
                let block = Array(c.blocks[((r * 4 + b) * 18)..<((r * 4 + b + 1) * 18)])
                let dw = Double(Float(Float16(bitPattern: UInt16(block[0]) | UInt16(block[1]) << 8)))
                let xs = Array(c.x[(b * 32)..<(b * 32 + 32)])
                let amax = xs.map(abs).max()!, d = amax / 127, id: Float = d != 0 ? 1 / d : 0
                let qa = xs.map { Int(($0 * id).rounded(.toNearestOrAwayFromZero)) }
                var dot = 0
                for j in 0..<16 {
                    let low = Int(block[2 + j] & 0x0F) - 8, high = Int(block[2 + j] >> 4) - 8
                    dot += low * qa[j]
                    dot += high * qa[j + 16]
                }
                total += dw * Double(Float(Float16(d))) * Double(dot)
            }
            #expect(abs(Double(y[r]) - total) <= 1e-5 * max(1, abs(total)), "row \(r) packed \(packed): \(y[r]) vs \(total)")
        }
        }
    }

    @Test("results do not depend on the thread count; the GEMM path (many rows) and the transposed product match fp32 on the dequantized weights")
    func threadsAndPaths() throws {
        let c = try Case(.q4_1, rows: 1100, columns: 576, n: 9, seed: 3)
        let m = c.matrix(owner: NSObject())
        var one = [Float](repeating: 0, count: 4 * 1100), two = one
        m.multiplyQuantized(c.x, rows: 4, into: &one, ldc: 1100, pool: ThreadPool(threadCount: 1))
        m.multiplyQuantized(c.x, rows: 4, into: &two, ldc: 1100, pool: ThreadPool(threadCount: 3))
        #expect(one == two)
        // One activation row (decoding) reduces sixteen weight rows' lanes together: the same floats
        // as each row reduced alone in the four-row product, at 1 and 3 threads, odd blocks too.
        for (type, rows, columns) in [(GGMLType.q4_1, 1100, 576), (.q8_0, 37, 96), (.q4_0, 50, 160)] {
            let k = try Case(type, rows: rows, columns: columns, n: 4, seed: 11)
            let km = k.matrix(owner: NSObject())
            var four = [Float](repeating: 0, count: 4 * rows)
            km.multiplyQuantized(k.x, rows: 4, into: &four, ldc: rows, pool: ThreadPool(threadCount: 1))
            for threads in [1, 3] {
                var single = [Float](repeating: .nan, count: rows)
                km.multiplyQuantized(Array(k.x[0..<columns]), rows: 1, into: &single, ldc: rows, pool: ThreadPool(threadCount: threads))
                #expect(single == Array(four[0..<rows]), "\(type) \(rows)x\(columns), \(threads) threads")
            }
        }
        // Nine rows take the GEMM path on dequantized panels: equal to x · Wᵀ in fp32.
        var w = [Float](repeating: 0, count: 1100 * 576)
        m.dequantizeRows(0..<1100, into: &w)
        var y = [Float](repeating: 0, count: 9 * 1100), expected = y
        m.multiply(c.x, rows: 9, into: &y, ldc: 1100)
        sgemm(.none, .transposed, m: 9, n: 1100, k: 576, a: c.x, lda: 576, b: w, ldb: 576, c: &expected, ldc: 1100)
        for (a, b) in zip(y, expected) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b))) }
        // dx = dy · W through dequantized panels.
        let dy: [Float] = (0..<(9 * 1100)).map { i -> Float in Float((i * 7919) % 13) / 13 - 0.5 }
        var dx = [Float](repeating: 0, count: 9 * 576), dxExpected = dx
        m.multiplyTransposed(dy, rows: 9, ldy: 1100, into: &dx, accumulate: false)
        sgemm(.none, .none, m: 9, n: 576, k: 1100, a: dy, lda: 1100, b: w, ldb: 576, c: &dxExpected, ldc: 576)
        for (a, b) in zip(dx, dxExpected) { #expect(abs(a - b) <= 1e-3 * max(1, abs(b))) }
    }

    @Test("packing: every row's blocks come back byte for byte, partial runs of 16 too; products and dequantized rows equal the mapped layout's",
          arguments: [GGMLType.q4_0, .q4_1, .q8_0, .q4_K])
    func packing(_ type: GGMLType) throws {
        let columns = type == .q4_K ? 512 : 96, blocks = columns / 32
        let arena = LargePageArena(regionBytes: 64 << 10)  // small regions: several are filled
        for rows in [1, 15, 16, 17, 40] {
            let c = try Case(type, rows: rows, columns: columns, n: 4, seed: UInt64(rows))
            let mapped = c.matrix(owner: NSObject()), packed = mapped.packed()
            #expect(packed.isPacked && packed.packed() == packed)
            // Dequantized rows: the bytes put back together are the original blocks.
            var a = [Float](repeating: 0, count: rows * columns), b = a
            mapped.dequantizeRows(0..<rows, into: &a)
            packed.dequantizeRows(0..<rows, into: &b)
            #expect(a.withUnsafeBytes { Array($0) } == b.withUnsafeBytes { Array($0) })
            // The raw round trip, run by run.
            let rowBytes = columns / type.blockSize * type.blockBytes
            for start in stride(from: 0, to: rows, by: 16) {
                let count = min(16, rows - start)
                var out = [UInt8](repeating: 0xAA, count: cq_packed_bytes(type.kernelCode, blocks))
                c.blocks.withUnsafeBufferPointer { all in
                    let pointers: [UnsafePointer<UInt8>?] = (0..<count).map { all.baseAddress! + (start + $0) * rowBytes }
                    cq_pack_rows(type.kernelCode, pointers, count, blocks, &out)
                }
                for r in 0..<count {
                    var row = [UInt8](repeating: 0, count: rowBytes)
                    cq_unpack_row(type.kernelCode, out, r, blocks, &row)
                    #expect(row == Array(c.blocks[((start + r) * rowBytes)..<((start + r + 1) * rowBytes)]), "\(type) row \(start + r)")
                }
            }
            // Products: within rounding of the mapped layout's; the same floats at 1 and 3
            // threads and whether a row is one of four activation rows or alone.
            var m = [Float](repeating: 0, count: 4 * rows), one = m, three = m
            mapped.multiplyQuantized(c.x, rows: 4, into: &m, ldc: rows, pool: ThreadPool(threadCount: 1))
            packed.multiplyQuantized(c.x, rows: 4, into: &one, ldc: rows, pool: ThreadPool(threadCount: 1))
            packed.multiplyQuantized(c.x, rows: 4, into: &three, ldc: rows, pool: ThreadPool(threadCount: 3))
            #expect(one == three)
            for (p, q) in zip(one, m) { #expect(abs(p - q) <= 1e-5 * max(1, abs(q))) }
            var single = [Float](repeating: .nan, count: rows)
            packed.multiplyQuantized(Array(c.x[0..<columns]), rows: 1, into: &single, ldc: rows, pool: .shared)
            #expect(single == Array(one[0..<rows]))
            // Packed into a huge-page arena (as a loader does), beside another matrix: the same
            // rows and the same products as on the heap.
            _ = mapped.packed(into: arena)
            let paged = mapped.packed(into: arena)
            var d = [Float](repeating: 0, count: rows * columns), fromArena = [Float](repeating: .nan, count: 4 * rows)
            paged.dequantizeRows(0..<rows, into: &d)
            #expect(d.withUnsafeBytes { Array($0) } == a.withUnsafeBytes { Array($0) })
            paged.multiplyQuantized(c.x, rows: 4, into: &fromArena, ldc: rows, pool: ThreadPool(threadCount: 1))
            #expect(fromArena == one)
        }
    }

    @Test("a prefill's products in tasks of 256 activation rows: every row's floats are its one-row product's, on 1, 2 and 3 threads, packed or mapped",
          arguments: [GGMLType.q4_0, .q4_1, .q8_0, .q4_K])
    func prefillPanels(_ type: GGMLType) throws {
        let columns = type == .q4_K ? 256 : 96, rows = 40, n = 2 * QuantizedMatrix.prefillPanelRows + 18
        let c = try Case(type, rows: rows, columns: columns, n: n, seed: 12)
        let mapped = c.matrix(owner: NSObject())
        for matrix in [mapped, mapped.packed()] {
            var alone = [Float](repeating: .nan, count: n * rows)
            for i in 0..<n {
                var row = [Float](repeating: .nan, count: rows)
                matrix.multiplyQuantized(Array(c.x[(i * columns)..<((i + 1) * columns)]), rows: 1, into: &row, ldc: rows,
                                         pool: ThreadPool(threadCount: 1))
                for r in 0..<rows { alone[i * rows + r] = row[r] }
            }
            for threads in [1, 2, 3] {
                var all = [Float](repeating: .nan, count: n * rows)
                matrix.multiplyQuantized(c.x, rows: n, into: &all, ldc: rows, pool: ThreadPool(threadCount: threads))
                let differs = (0..<(n * rows)).first { all[$0].bitPattern != alone[$0].bitPattern }
                #expect(differs == nil, "\(type), packed \(matrix.isPacked), \(threads) threads: first differing output \(differs ?? -1)")
            }
        }
    }

    /// Prefill quantizes its activations over the pool, rows split among the threads.
    @Test("activation rows quantized on 1, 2 and 3 threads: the same bytes, scales and sums as one row at a time")
    func activationsOverThreads() {
        var rng = SplitMix64(seed: 33)
        for (rows, columns) in [(1, 96), (21, 576), (530, 96), (300, 1536)] {
            let x = (0..<(rows * columns)).map { _ in rng.nextGaussian() * 3 }
            let bytes = ActivationBlocks.byteCount(rows: rows, columns: columns)
            func quantized(_ pool: ThreadPool) -> [UInt8] {
                let memory = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                defer { memory.deallocate() }
                memory.initializeMemory(as: UInt8.self, repeating: 0xA5, count: bytes)
                _ = ActivationBlocks(x, rows: rows, columns: columns, memory: memory, pool: pool)
                return Array(UnsafeRawBufferPointer(start: memory, count: bytes))
            }
            // One row at a time, each into its own place: what any split must give.
            let blocks = rows * columns / 32, perRow = columns / 32
            var expected = [UInt8](repeating: 0xA5, count: bytes)
            expected.withUnsafeMutableBytes { m in
                let base = m.baseAddress!
                for r in 0..<rows {
                    let first = r * perRow
                    x.withUnsafeBufferPointer { xs in
                        cq_quantize_q8(xs.baseAddress! + r * columns, perRow,
                                       (base + 68 * blocks).assumingMemoryBound(to: Int8.self) + first * 32,
                                       base.assumingMemoryBound(to: Float.self) + first * 8,
                                       (base + 32 * blocks).assumingMemoryBound(to: Float.self) + first * 8,
                                       (base + 64 * blocks).assumingMemoryBound(to: Int32.self) + first)
                    }
                }
            }
            for threads in [1, 2, 3] {
                let got = quantized(ThreadPool(threadCount: threads))
                let differs = got.indices.first { got[$0] != expected[$0] }
                #expect(differs == nil, "\(rows)×\(columns), \(threads) threads: first differing byte \(differs ?? -1) of \(bytes)")
            }
        }
    }

    @Test("the vector kernels equal their portable loops: activation quantization byte for byte (halves, ties, zeros, denormals), packed products within rounding")
    func portableTwins() throws {
        var rng = SplitMix64(seed: 21)
        // Blocks whose scaled values land on halves: the block's max is 127 · 2^-k, so x / d is
        // exact and k + 0.5 values round away from zero.
        var x: [Float] = []
        for b in 0..<64 {
            switch b % 4 {
            case 0: x += (0..<32).map { j in j == 0 ? 127 : Float(j % 9) - 4.5 }
            case 1: x += (0..<32).map { _ in rng.nextGaussian() }
            case 2: x += (0..<32).map { j in j % 3 == 0 ? 0 : Float.leastNonzeroMagnitude * Float(j) }
            default: x += (0..<32).map { j in j == 5 ? -63.5 : Float(j) * -0.5 }
            }
        }
        let blocks = x.count / 32
        func quantize(_ f: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int32>) -> Void)
            -> ([Int8], [Float], [Float], [Int32]) {
            var q = [Int8](repeating: 0, count: x.count), d = [Float](repeating: 0, count: 8 * blocks), s = d
            var sums = [Int32](repeating: 0, count: blocks)
            f(x, blocks, &q, &d, &s, &sums)
            return (q, d, s, sums)
        }
        let vector = quantize { cq_quantize_q8($0, $1, $2, $3, $4, $5) }
        let portable = quantize { cq_quantize_q8_portable($0, $1, $2, $3, $4, $5) }
        #expect(vector.0 == portable.0 && vector.1 == portable.1 && vector.2 == portable.2 && vector.3 == portable.3)
        #if arch(x86_64)
        if cq_avx2_available() != 0 {
            let avx2 = quantize { cq_avx2_quantize_q8($0, $1, $2, $3, $4, $5) }
            #expect(avx2.0 == portable.0 && avx2.1 == portable.1 && avx2.2 == portable.2 && avx2.3 == portable.3)
        }
        #endif
        #expect(vector.0[1] == -4 && vector.0[5] == 1, "halves round away from zero: \(vector.0[0..<6])")
        for type in [GGMLType.q4_0, .q4_1, .q8_0, .q4_K] {
            let columns = type == .q4_K ? 512 : 160, blocks = columns / 32
            let c = try Case(type, rows: 13, columns: columns, n: 3, seed: 4)
            let memory = UnsafeMutableRawPointer.allocate(byteCount: ActivationBlocks.byteCount(rows: 3, columns: columns),
                                                             alignment: 64)
            defer { memory.deallocate() }
            let activations = ActivationBlocks(c.x, rows: 3, columns: columns, memory: memory)
            var packed = [UInt8](repeating: 0, count: cq_packed_bytes(type.kernelCode, blocks))
            let rowBytes = columns / type.blockSize * type.blockBytes
            c.blocks.withUnsafeBufferPointer { all in
                let pointers: [UnsafePointer<UInt8>?] = (0..<13).map { all.baseAddress! + $0 * rowBytes }
                cq_pack_rows(type.kernelCode, pointers, 13, blocks, &packed)
            }
            var a = [Float](repeating: 0, count: 3 * 13), b = a
            cq_dot_packed(type.kernelCode, packed, 13, blocks, activations.q, activations.d8, activations.s8, activations.sums, 3, &a, 13)
            cq_dot_packed_portable(type.kernelCode, packed, 13, blocks, activations.q, activations.d8, activations.s8, 3, &b, 13)
            for (p, q) in zip(a, b) { #expect(abs(p - q) <= 1e-5 * max(1, abs(q)), "\(type): \(p) vs \(q)") }
        }
    }

    #if arch(x86_64)
    /// The AVX2 kernels run where AVX-512 VNNI is missing; called directly, they are tested on
    /// an AVX-512 machine too.
    @Test("the AVX2 kernels equal the block semantics (partial runs, odd block counts, sums at the 16-bit limit) and, packed, the AVX-512 kernels' floats",
          .enabled(if: cq_avx2_available() != 0, "this CPU has no AVX2"), arguments: [GGMLType.q4_0, .q4_1, .q8_0, .q4_K])
    func avx2Kernels(_ type: GGMLType) throws {
        let shapes: [(Int, Int)] = type == .q4_K ? [(5, 256), (16, 512), (17, 768)] : [(1, 32), (13, 160), (16, 96), (21, 288)]
        for (rows, columns) in shapes {
            for n in [1, 2, 3, 4, 5] {
                var c = try Case(type, rows: rows, columns: columns, n: n, seed: UInt64(rows * 31 + columns + n))
                if rows == 16 {
                    // The largest integer sums: every code at its extreme (4-bit 15, or 8-bit −128
                    // and 127) against activations of ±127 of one sign, alternating, and random.
                    let blockBytes = type.blockBytes, perRow = columns / type.blockSize * blockBytes
                    for r in 0..<rows {
                        for b in 0..<(perRow / blockBytes) {
                            let start = r * perRow + b * blockBytes
                            switch type {
                            case .q4_0: for j in 2..<18 { c.blocks[start + j] = r % 2 == 0 ? 0xFF : 0x00 }
                            case .q4_1: for j in 4..<20 { c.blocks[start + j] = 0xFF }
                            case .q8_0: for j in 2..<34 { c.blocks[start + j] = r % 2 == 0 ? 0x80 : 0x7F }
                            default: for j in 16..<144 { c.blocks[start + j] = 0xFF }
                            }
                        }
                    }
                    for i in 0..<min(n, 3) {
                        for j in 0..<columns { c.x[i * columns + j] = i == 0 ? 1 : i == 1 ? -1 : (j % 2 == 0 ? 1 : -1) }
                    }
                }
                let reference = c.reference()
                let memory = UnsafeMutableRawPointer.allocate(byteCount: ActivationBlocks.byteCount(rows: n, columns: columns),
                                                                 alignment: 64)
                defer { memory.deallocate() }
                let activations = ActivationBlocks(c.x, rows: n, columns: columns, memory: memory)
                let blocks = columns / 32, rowBytes = columns / type.blockSize * type.blockBytes
                var packedOut = [Float](repeating: .nan, count: n * rows), rowsOut = packedOut, vnniOut = packedOut
                c.blocks.withUnsafeBufferPointer { all in
                    let pointers: [UnsafePointer<UInt8>?] = (0..<rows).map { all.baseAddress! + $0 * rowBytes }
                    cq_avx2_dot_rows(type.kernelCode, pointers, rows, blocks, activations.q, activations.d8, activations.s8,
                                     n, &rowsOut, rows)
                    for start in stride(from: 0, to: rows, by: 16) {
                        let count = min(16, rows - start)
                        var packed = [UInt8](repeating: 0, count: cq_packed_bytes(type.kernelCode, blocks))
                        cq_pack_rows(type.kernelCode, Array(pointers[start..<(start + count)]), count, blocks, &packed)
                        packedOut.withUnsafeMutableBufferPointer { y in
                            cq_avx2_dot_packed(type.kernelCode, packed, count, blocks, activations.q, activations.d8, activations.s8,
                                               activations.sums, n, y.baseAddress! + start, rows)
                        }
                        if vnniAvailable {
                            vnniOut.withUnsafeMutableBufferPointer { y in
                                cq_dot_packed(type.kernelCode, packed, count, blocks, activations.q, activations.d8, activations.s8,
                                              activations.sums, n, y.baseAddress! + start, rows)
                            }
                        }
                    }
                }
                for (k, ref) in reference.enumerated() {
                    #expect(abs(Double(packedOut[k]) - ref) <= 2e-5 * max(1, abs(ref)),
                            "\(type) \(rows)x\(columns) n \(n) packed, output \(k): \(packedOut[k]) vs \(ref)")
                    #expect(abs(Double(rowsOut[k]) - ref) <= 2e-5 * max(1, abs(ref)),
                            "\(type) \(rows)x\(columns) n \(n) rows, output \(k): \(rowsOut[k]) vs \(ref)")
                }
                if vnniAvailable {
                    #expect(packedOut.map(\.bitPattern) == vnniOut.map(\.bitPattern), "\(type) \(rows)x\(columns) n \(n)")
                }
            }
        }
    }
    #endif

    @Test("stacked and reordered matrices read the right rows; a non-finite scale is found")
    func stackingAndScales() throws {
        let a = try Case(.q4_0, rows: 3, columns: 64, n: 1, seed: 11), b = try Case(.q8_0, rows: 2, columns: 64, n: 1, seed: 12)
        let owner = NSObject()
        let aBytes = Bytes(a.blocks)
        let reversed = QuantizedMatrix(format: .q4_0, rows: 3, columns: 64, bytes: aBytes.pointer, order: [2, 1, 0], owner: aBytes)
        let stacked = QuantizedMatrix.stacking([reversed, b.matrix(owner: owner)])
        #expect(stacked.rows == 5 && stacked.segments.count == 2)
        var y = [Float](repeating: 0, count: 5), ya = [Float](repeating: 0, count: 3), yb = [Float](repeating: 0, count: 2)
        stacked.multiplyQuantized(a.x, rows: 1, into: &y, ldc: 5, pool: .shared)
        a.matrix(owner: owner).multiplyQuantized(a.x, rows: 1, into: &ya, ldc: 3, pool: .shared)
        b.matrix(owner: owner).multiplyQuantized(a.x, rows: 1, into: &yb, ldc: 2, pool: .shared)
        #expect(y == [ya[2], ya[1], ya[0], yb[0], yb[1]])
        // Packed parts stack as they are, next to a part that is not packed.
        let k = try Case(.q4_K, rows: 3, columns: 256, n: 1, seed: 13)
        let wide = try Case(.q4_0, rows: 18, columns: 256, n: 1, seed: 14)
        let mixed = QuantizedMatrix.stacking([wide.matrix(owner: owner).packed(), k.matrix(owner: owner), wide.matrix(owner: owner).packed()])
        #expect(mixed.isPacked && mixed.rows == 39)
        var ym = [Float](repeating: 0, count: 39), yw = [Float](repeating: 0, count: 18), yk = [Float](repeating: 0, count: 3)
        mixed.multiplyQuantized(k.x, rows: 1, into: &ym, ldc: 39, pool: .shared)
        wide.matrix(owner: owner).packed().multiplyQuantized(k.x, rows: 1, into: &yw, ldc: 18, pool: .shared)
        k.matrix(owner: owner).multiplyQuantized(k.x, rows: 1, into: &yk, ldc: 3, pool: .shared)
        #expect(ym == yw + yk + yw)
        var rowK = [Float](repeating: 0, count: 256), rowK2 = rowK, rowW = rowK, rowW2 = rowK
        mixed.dequantizeRow(19, into: &rowK)
        k.matrix(owner: owner).dequantizeRow(1, into: &rowK2)
        mixed.dequantizeRow(38, into: &rowW)
        wide.matrix(owner: owner).dequantizeRow(17, into: &rowW2)
        #expect(rowK == rowK2 && rowW == rowW2)
        #expect(stacked.firstNonFiniteScale() == nil)
        var broken = a.blocks
        broken[18 * 3 + 1] = 0x7C   // the fp16 scale of row 1's second block: infinity
        let brokenBytes = Bytes(broken)
        let bad = QuantizedMatrix(format: .q4_0, rows: 3, columns: 64, bytes: brokenBytes.pointer, owner: brokenBytes)
        #expect(bad.firstNonFiniteScale() == 3)
    }
}

@Suite("Quantized models: GGUF weights kept in blocks, quantize, adapters for llama.cpp")
struct QuantizedModelTests {
    static func llama(seed: UInt64 = 5) throws -> TransformerModel {
        var c = ModelConfig(vocabularySize: 96, contextLength: 64, dModel: 64, layers: 2, heads: 4, kvHeads: 2, dFF: 96)
        c.useLlamaLayout(); c.tiedEmbeddings = true; c.initStd = 0.2
        return try TransformerModel(config: c, seed: seed)
    }

    @Test("a Q4_0 / Q4_1 / Q8_0 GGUF runs from its blocks: logits near the dequantized fp32 model's, prefill equals decoding's path within int8 error",
          arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func quantizedStorage(_ type: GGMLType) throws {
        let model = try Self.llama()
        let path = scratch() + "/m.gguf"
        try GGUFExport.gguf(model, tokenizer: nil, policy: QuantizationPolicy(type: type), name: "test").write(to: path)
        let file = try GGUFFile(path: path)
        let blocks = try GGUFModel.load(file, storage: .quantized), dense = try GGUFModel.load(file, storage: .fp32)
        #expect(blocks.layout.isQuantized && !dense.layout.isQuantized)
        // Only norms are left in the buffer: the matrices stay in the mapped file.
        #expect(blocks.layout.count == (2 * 2 + 1) * 64)
        #expect(blocks.layout.linears.allSatisfy { $0.blocks != nil })
        let ids: [Int32] = [3, 17, 90, 4, 41, 8, 77, 12, 5]
        let exact = try InferenceSession(model: dense).feed(ids, allRows: true)
        let scale = exact.map(abs).max()!
        let prefill = try InferenceSession(model: blocks).feed(ids, allRows: true)
        // Interleaved for decoding: the same blocks, so the same logits up to float order.
        let packed = try GGUFModel.load(file, storage: .packed)
        #expect(packed.layout.linears.allSatisfy { $0.blocks?.isPacked == true })
        let packedPrefillSession = try InferenceSession(model: packed)
        let packedPrefill = try packedPrefillSession.feed(ids, allRows: true)
        // Decoding: each layer's input is rounded to 8 bits, so a last-bit difference can move
        // one value by a rounding step (1/127 of its block's largest) and that carries on.
        let packedSession = try InferenceSession(model: packed), plainSession = try InferenceSession(model: blocks)
        var packedDecoded: [Float] = []
        for (i, id) in ids.enumerated() {
            let a = try packedSession.feed([id]), b = try plainSession.feed([id])
            packedDecoded += a
            #expect(zip(a, b).map { abs($0 - $1) }.max()! < 0.01 * scale)
            #expect(zip(a, exact[(i * 96)..<((i + 1) * 96)]).map { abs($0 - $1) }.max()! < 0.05 * scale)
        }
        if packedPrefillSession.precision == .bf16 {
            // With AMX, prefill multiplies the dequantized blocks whatever their layout.
            #expect(zip(packedPrefill, prefill).map { abs($0 - $1) }.max()! < 1e-4 * scale)
        } else {
            // Without, a packed model's prefill takes decoding's integer path, row by row.
            #expect(zip(packedPrefill, packedDecoded).map { abs($0 - $1) }.max()! < 0.01 * scale)
            #expect(zip(packedPrefill, exact).map { abs($0 - $1) }.max()! < 0.05 * scale)
        }
        let session = try InferenceSession(model: blocks)
        var decoded: [Float] = []
        for id in ids { decoded += try session.feed([id]) }
        // Prefill multiplies dequantized weights (exact up to bf16 operands); decoding quantizes
        // activations to 8 bits per block as ggml does.
        #expect(zip(prefill, exact).map { abs($0 - $1) }.max()! < 0.02 * scale)
        #expect(zip(decoded, exact).map { abs($0 - $1) }.max()! < 0.05 * scale)
    }

    @Test("quantize: the policy types each tensor (Q4_K falls back to Q4_1 on rows that are not whole super-blocks, embeddings Q8_0), metadata survives, the file loads")
    func requantize() throws {
        let model = try Self.llama()
        let path = scratch() + "/m.gguf", out = scratch() + "/q.gguf"
        try GGUFExport.gguf(model, tokenizer: nil, type: .f32, name: "test").write(to: path)
        let (writer, summary) = try GGUFQuantize.requantize(try GGUFFile(path: path), policy: .standard(.q4_K))
        try writer.write(to: out)
        let file = try GGUFFile(path: out)
        #expect(file.tensor(named: "token_embd.weight")?.type == .q8_0)
        #expect(file.tensor(named: "blk.0.attn_q.weight")?.type == .q4_1)      // 64 columns: not a super-block
        #expect(file.tensor(named: "blk.0.attn_norm.weight")?.type == .f32)
        #expect(file["general.name"]?.string == "test")
        #expect(file["general.file_type"]?.integer == 14)
        #expect(summary.bytesAfter < summary.bytesBefore / 4)
        _ = try GGUFModel.load(file, storage: .quantized)
        // 256 columns: Q4_K proper.
        var wide = try Self.llama().config
        wide.dModel = 256
        wide.heads = 4
        let big = try TransformerModel(config: wide, seed: 2)
        try GGUFExport.gguf(big, tokenizer: nil, policy: .standard(.q4_K), name: "wide").write(to: out)
        let wideFile = try GGUFFile(path: out)
        #expect(wideFile.tensor(named: "blk.0.attn_q.weight")?.type == .q4_K)
        #expect(wideFile.tensor(named: "blk.0.ffn_down.weight")?.type == .q4_1)   // 96 columns
        let loaded = try GGUFModel.load(wideFile, storage: .quantized), dense = try GGUFModel.load(wideFile, storage: .fp32)
        let ids: [Int32] = [1, 2, 3, 50]
        let a = try InferenceSession(model: loaded).feed(ids), b = try InferenceSession(model: dense).feed(ids)
        #expect(zip(a, b).map { abs($0 - $1) }.max()! < 0.05 * b.map(abs).max()!)
    }

    @Test("export-adapter: llama.cpp's names and shapes, alpha = scale · r, q/k lora_b rows in llama.cpp's order")
    func adapterGGUF() throws {
        let base = try Self.llama()
        let adapted = try TransformerModel.adapting(base, with: AdapterConfig(rank: 4, alpha: 12, targets: ["q", "k", "v", "down"]), seed: 3)
        // Non-zero B, so the permutation is visible.
        for t in adapted.layout.tensors where t.name.hasSuffix("lora_B.weight") {
            for i in 0..<t.count { adapted.parameters.pointer[t.offset + i] = Float(i % 97) / 97 }
        }
        let path = scratch() + "/a.gguf"
        try GGUFAdapter.gguf(adapted, name: "a").write(to: path)
        let file = try GGUFFile(path: path)
        #expect(file["general.type"]?.string == "adapter" && file["adapter.type"]?.string == "lora")
        #expect(file["adapter.lora.alpha"]?.number == 12)
        let a = try #require(file.tensor(named: "blk.1.attn_q.weight.lora_a")), b = try #require(file.tensor(named: "blk.1.attn_q.weight.lora_b"))
        #expect(a.dimensions == [64, 4] && b.dimensions == [4, 64])   // ggml order: [in, r] and [r, out]
        #expect(file.tensor(named: "blk.0.ffn_down.weight.lora_b")?.dimensions == [4, 64])
        #expect(file.tensor(named: "blk.0.attn_output.weight.lora_a") == nil)
        let stored = try floats(file, "blk.1.attn_q.weight.lora_b")
        let hf = adapted.layout.tensor(named: "model.layers.1.self_attn.q_proj.lora_B.weight")!
        let order = GGUFModel.unpermutedOrder(rows: 64, headDim: 16)
        for row in [0, 1, 8, 17, 63] {
            for c in 0..<4 { #expect(stored[order[row] * 4 + c] == adapted.parameters.pointer[hf.offset + row * 4 + c]) }
        }
    }
}
