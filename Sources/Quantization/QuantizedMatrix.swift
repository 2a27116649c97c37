import CQuant
import Kernels

/// A weight matrix `[rows, columns]` kept in ggml blocks (Q4_0, Q4_1, Q8_0 or Q4_K), usually
/// straight from a memory-mapped GGUF file: no dequantized copy exists.
///
/// Each row is addressed by a pointer to its first block, so a matrix can stack tensors that
/// live apart in the file (q, k and v as one product) and can reorder rows (llama.cpp's q/k row
/// permutation) without moving a byte. Rows of one segment share a format; segments may differ.
///
/// Products:
/// - a few input rows (decoding): each input row is quantized to 8 bits per block of 32 (ggml's
///   Q8_0 activation path) and every weight row is dotted with it in integer arithmetic (AVX-512
///   VNNI, `CQuant`), weight rows spread over the thread pool; each output is computed by one
///   thread, so results do not depend on the thread count. `packed()` interleaves each run of
///   16 rows (the same information, rearranged) so that one vector instruction serves sixteen
///   rows: the layout decoding reads;
/// - many input rows (prefill, training): row panels are dequantized to fp32 and multiplied by
///   the GEMM of `Kernels` (bf16 AMX tiles when asked for) — except on a packed matrix at fp32
///   (inference without AMX), which keeps the integer path for any number of rows.
public struct QuantizedMatrix: @unchecked Sendable, Equatable {
    /// A run of consecutive rows in one format.
    public struct Segment: Sendable, Equatable {
        public var format: GGMLType
        public var rows: Range<Int>
    }

    public let rows: Int
    public let columns: Int
    public let segments: [Segment]
    private let storage: Storage
    /// Runs of at most 16 weight rows in one format: the integer path's units of work, made once.
    private let chunks: [(format: GGMLType, rows: Range<Int>)]

    private static func chunks(of segments: [Segment]) -> [(format: GGMLType, rows: Range<Int>)] {
        segments.flatMap { s in
            stride(from: s.rows.lowerBound, to: s.rows.upperBound, by: 16).map { (s.format, $0..<min($0 + 16, s.rows.upperBound)) }
        }
    }

    /// The formats the integer kernels read.
    public static let formats: [GGMLType] = [.q4_0, .q4_1, .q8_0, .q4_K]

    /// Row pointers and whatever keeps their bytes alive (a mapped file); with `packed()`, each
    /// chunk's interleaved copy (nil for a chunk whose format is not packed).
    final class Storage: @unchecked Sendable {
        let rowPointers: UnsafeMutableBufferPointer<UnsafePointer<UInt8>?>
        let packed: [UnsafePointer<UInt8>?]
        let owners: [AnyObject]
        init(_ pointers: [UnsafePointer<UInt8>], packed: [UnsafePointer<UInt8>?] = [], owners: [AnyObject]) {
            rowPointers = .allocate(capacity: max(1, pointers.count))
            for (i, p) in pointers.enumerated() { rowPointers[i] = p }
            self.packed = packed
            self.owners = owners
        }
        deinit { rowPointers.deallocate() }
    }

    /// Memory that holds packed chunks, 64-byte aligned: from `arena`'s huge pages, or the heap
    /// when there is no arena or the system refuses the mapping.
    final class PackedBytes: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        private let region: AnyObject?
        init(count: Int, arena: LargePageArena?) {
            if let block = arena?.allocate(byteCount: max(64, count)) {
                (pointer, region) = block
            } else {
                (pointer, region) = (.allocate(byteCount: max(64, count), alignment: 64), nil)
            }
        }
        deinit { if region == nil { pointer.deallocate() } }
    }

    /// Whether `format` with `columns` columns can be held (whole blocks per row).
    public static func supports(_ format: GGMLType, columns: Int) -> Bool {
        formats.contains(format) && columns > 0 && columns % format.blockSize == 0
    }

    /// A matrix over `bytes`: `rows` rows of `columns` values in `format`, row after row. Row `r`
    /// of the matrix is stored row `order[r]` (default: the identity). `owner` is kept alive as
    /// long as the matrix is.
    public init(format: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawPointer, order: [Int]? = nil, owner: AnyObject?) {
        precondition(QuantizedMatrix.supports(format, columns: columns), "\(format) rows of \(columns) values")
        let rowBytes = columns / format.blockSize * format.blockBytes
        let base = bytes.assumingMemoryBound(to: UInt8.self)
        let pointers = (0..<rows).map { base + (order?[$0] ?? $0) * rowBytes }
        self.rows = rows
        self.columns = columns
        segments = [Segment(format: format, rows: 0..<rows)]
        chunks = Self.chunks(of: segments)
        storage = Storage(pointers, owners: owner.map { [$0] } ?? [])
    }

    private init(rows: Int, columns: Int, segments: [Segment], storage: Storage) {
        self.rows = rows
        self.columns = columns
        self.segments = segments
        chunks = Self.chunks(of: segments)
        self.storage = storage
    }

    /// `parts` one above the other (same column count), e.g. q, k and v as one product.
    public static func stacking(_ parts: [QuantizedMatrix]) -> QuantizedMatrix {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.columns == parts[0].columns })
        var pointers: [UnsafePointer<UInt8>] = [], segments: [Segment] = [], owners: [AnyObject] = []
        // Chunks restart at every segment, so the stack's chunks are its parts' chunks in order.
        var packed: [UnsafePointer<UInt8>?] = []
        let anyPacked = parts.contains { $0.isPacked }
        for part in parts {
            for s in part.segments {
                let start = pointers.count + s.rows.lowerBound
                segments.append(Segment(format: s.format, rows: start..<(start + s.rows.count)))
            }
            pointers += (0..<part.rows).map { part.storage.rowPointers[$0]! }
            owners += part.storage.owners
            if anyPacked { packed += part.isPacked ? part.storage.packed : Array(repeating: nil, count: part.chunks.count) }
        }
        return QuantizedMatrix(rows: pointers.count, columns: parts[0].columns, segments: segments,
                               storage: Storage(pointers, packed: packed, owners: owners))
    }

    /// Whether some chunks are interleaved (`packed()`).
    public var isPacked: Bool { !storage.packed.isEmpty }

    /// The same matrix with each run of 16 rows interleaved in memory: the layout the one-row
    /// product reads sixteen rows at a time from. The blocks are copied, not converted, so every
    /// product gives the same dequantized weights. `packedRows` is told each run's rows once
    /// they are copied: a loader releases its source (a mapped file) as it goes, so a large
    /// matrix is never held twice.
    ///
    /// A loader passes one `arena` for all of a model's matrices: decoding streams every one of
    /// them each token, and in 2 MB pages a token took 3.0–4.7% less time than in 4 KB ones (Q4_0
    /// SmolLM2 on a Zen 3 EPYC, two copies of the model decoding the same tokens in turn, thirteen
    /// runs). Without an arena, the copy lives on the heap.
    public func packed(into arena: LargePageArena? = nil, packedRows: ((Range<Int>) -> Void)? = nil) -> QuantizedMatrix {
        if isPacked { return self }
        let blocks = columns / 32
        let sizes = chunks.map { cq_packed_bytes($0.format.kernelCode, blocks) }
        let bytes = PackedBytes(count: sizes.reduce(0, +), arena: arena)
        var pointers: [UnsafePointer<UInt8>?] = [], offset = 0
        for (chunk, size) in zip(chunks, sizes) {
            let out = (bytes.pointer + offset).assumingMemoryBound(to: UInt8.self)
            cq_pack_rows(chunk.format.kernelCode, storage.rowPointers.baseAddress! + chunk.rows.lowerBound, chunk.rows.count, blocks, out)
            pointers.append(UnsafePointer(out))
            offset += size
            packedRows?(chunk.rows)
        }
        let rowPointers = (0..<rows).map { storage.rowPointers[$0]! }
        return QuantizedMatrix(rows: rows, columns: columns, segments: segments,
                               storage: Storage(rowPointers, packed: pointers, owners: storage.owners + [bytes]))
    }

    /// The chunk holding row `r` and the row's place in it.
    private func chunk(ofRow r: Int) -> (index: Int, lane: Int) {
        var index = 0
        for s in segments {
            if s.rows.contains(r) {
                let k = (r - s.rows.lowerBound) / 16
                return (index + k, r - chunks[index + k].rows.lowerBound)
            }
            index += (s.rows.count + 15) / 16
        }
        preconditionFailure("row \(r) of \(rows)")
    }

    public static func == (a: QuantizedMatrix, b: QuantizedMatrix) -> Bool {
        a.storage === b.storage && a.rows == b.rows && a.columns == b.columns && a.segments == b.segments
    }

    /// Bytes of the blocks (what a product reads).
    public var byteCount: Int {
        segments.reduce(0) { $0 + $1.rows.count * (columns / $1.format.blockSize) * $1.format.blockBytes }
    }

    func format(ofRow r: Int) -> GGMLType { segments.first { $0.rows.contains(r) }!.format }

    /// The first block (counting row by row) whose fp16 scale or minimum is infinite or NaN;
    /// every other block decodes to finite values.
    public func firstNonFiniteScale() -> Int? {
        var block = 0
        for s in segments {
            let per = columns / s.format.blockSize
            // Byte offsets of the fp16 fields in a block.
            let fields: [Int] = switch s.format {
            case .q4_0, .q8_0: [0]
            case .q4_1, .q4_K: [0, 2]
            default: []
            }
            for r in s.rows {
                let row = UnsafeRawPointer(storage.rowPointers[r]!)
                for b in 0..<per {
                    for f in fields {
                        let bits = row.loadUnaligned(fromByteOffset: b * s.format.blockBytes + f, as: UInt16.self).littleEndian
                        if bits & 0x7C00 == 0x7C00 { return block + b }
                    }
                }
                block += per
            }
        }
        return nil
    }

    /// Row `r` as fp32 values (ggml's dequantization).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let format = format(ofRow: r)
        let count = columns / format.blockSize * format.blockBytes
        if isPacked, case let (index, lane) = chunk(ofRow: r), let packed = storage.packed[index] {
            // The row's blocks put back together from the interleaved chunk.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { row in
                cq_unpack_row(format.kernelCode, packed, lane, columns / 32, row.baseAddress!)
                GGMLBlocks.dequantize(format, UnsafeRawBufferPointer(row), count: columns, into: out)
            }
            return
        }
        GGMLBlocks.dequantize(format, UnsafeRawBufferPointer(start: storage.rowPointers[r]!, count: count), count: columns, into: out)
    }

    /// Rows `range` as fp32, row after row (`ldo` floats apart).
    public func dequantizeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>, ldo: Int? = nil,
                               pool: ThreadPool = .shared) {
        let stride = ldo ?? columns
        pool.parallelRanges(range.count, costPerItem: 4 * columns) { part, _ in
            for i in part { dequantizeRow(range.lowerBound + i, into: out + i * stride) }
        }
    }

    /// Input rows at or below this count take the integer path. So do any number of rows on a
    /// packed matrix (inference's layout) at fp32 precision, i.e. where the CPU has no AMX tiles
    /// for bf16 prefill: 8-bit activations on integer dot products read each weight block once
    /// for all rows, and outrun dequantized panels through the fp32 GEMM (SmolLM2's 128-token
    /// prefill on 2 AVX2 cores: 516 tokens/s against 128). ggml's prefill rounds activations the
    /// same way.
    public static let integerPathRows = 4
    /// Up to this many activation rows a product streams its weights from memory (decoding) and
    /// gives each thread one contiguous span of them.
    static let streamingRows = 4
    /// Rows dequantized per panel on the GEMM path.
    static let panelRows = 512
    /// Activation rows per task of a prefill on the integer path: a multiple of the four rows the
    /// kernels take at a time (each row's floats do not depend on the split). A 512-token prompt's
    /// products on a shared 2-core EPYC took about 5% less time in tasks of one run of 16 weight
    /// rows against 256 activation rows, taken one at a time, than in four spans of runs a thread
    /// against every row (layer-alternating A/B, 24 runs over Q4_0, Q4_1 and Q4_K, all faster):
    /// a span's last run had often left one thread waiting. Panels of 64 rows were slower
    /// (weights read again for each) and 128 no better than 256.
    static let prefillPanelRows = 256

    /// `y[i, j] = Σ_k x[i, k] W[j, k]` (+ `bias[j]`), `y` rows `ldc` apart: `x · Wᵀ`. Few rows
    /// (or a packed matrix at fp32) on the integer path, otherwise through dequantized panels.
    public func multiply(
        _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, ldc: Int,
        bias: UnsafePointer<Float>? = nil, precision: MatmulPrecision = .fp32, pool: ThreadPool = .shared
    ) {
        guard n > 0 else { return }
        if n <= QuantizedMatrix.integerPathRows || (isPacked && precision == .fp32) {
            multiplyQuantized(x, rows: n, into: y, ldc: ldc, pool: pool)
            if let bias { for i in 0..<n { add(y + i * ldc, bias, into: y + i * ldc, count: rows) } }
            return
        }
        let panel = min(rows, QuantizedMatrix.panelRows)
        Scratch.withFloats(panel * columns) { w in
            for start in stride(from: 0, to: rows, by: panel) {
                let count = min(panel, rows - start)
                dequantizeRows(start..<(start + count), into: w, pool: pool)
                gemm(precision, .none, .transposed, m: n, n: count, k: columns, a: x, lda: columns, b: w, ldb: columns,
                     beta: 0, c: y + start, ldc: ldc, bias: bias.map { $0 + start }, pool: pool)
            }
        }
    }

    /// `dx (=, or += when accumulate) alpha · dy · W` for `dy` `[n, rows]` (rows `ldy` apart):
    /// the input gradient of `x · Wᵀ`, through dequantized row panels.
    public func multiplyTransposed(
        _ dy: UnsafePointer<Float>, rows n: Int, ldy: Int, alpha: Float = 1, into dx: UnsafeMutablePointer<Float>,
        accumulate: Bool, precision: MatmulPrecision = .fp32, pool: ThreadPool = .shared
    ) {
        guard n > 0 else { return }
        let panel = min(rows, QuantizedMatrix.panelRows)
        Scratch.withFloats(panel * columns) { w in
            for start in stride(from: 0, to: rows, by: panel) {
                let count = min(panel, rows - start)
                dequantizeRows(start..<(start + count), into: w, pool: pool)
                gemm(precision, .none, .none, m: n, n: columns, k: count, alpha: alpha, a: dy + start, lda: ldy,
                     b: w, ldb: columns, beta: accumulate || start > 0 ? 1 : 0, c: dx, ldc: columns, pool: pool)
            }
        }
    }

    /// The integer path: activations quantized per block of 32, weight rows over the pool.
    func multiplyQuantized(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, ldc: Int,
                           pool: ThreadPool) {
        // The quantized activations go to reused scratch rather than a fresh allocation: decoding
        // makes about 150 products a token.
        Scratch.withFloats((ActivationBlocks.byteCount(rows: n, columns: columns) + 3) / 4) { memory in
            let activations = ActivationBlocks(x, rows: n, columns: columns, memory: UnsafeMutableRawPointer(memory), pool: pool)
            multiplyQuantized(activations, rows: n, into: y, ldc: ldc, pool: pool)
        }
    }

    private func multiplyQuantized(_ activations: ActivationBlocks, rows n: Int, into y: UnsafeMutablePointer<Float>, ldc: Int,
                                   pool: ThreadPool) {
        let blocks = columns / 32
        let pointers = storage.rowPointers.baseAddress!
        let work = n * byteCount * 2
        // Run `i` of weight rows against the activation rows `inputs` (all of them but in prefill).
        let run = { (i: Int, chunk: (format: GGMLType, rows: Range<Int>), inputs: Range<Int>) in
            let first = inputs.lowerBound, q = activations.q + first * blocks * 32
            let d8 = activations.d8 + first * blocks * 8, s8 = activations.s8 + first * blocks * 8
            let out = y + first * ldc + chunk.rows.lowerBound
            if let packed = self.storage.packed.isEmpty ? nil : self.storage.packed[i] {
                cq_dot_packed(chunk.format.kernelCode, packed, chunk.rows.count, blocks, q, d8, s8,
                              activations.sums + first * blocks, inputs.count, out, ldc)
            } else {
                cq_dot_rows(chunk.format.kernelCode, pointers + chunk.rows.lowerBound, chunk.rows.count, blocks, q, d8, s8,
                            inputs.count, out, ldc)
            }
        }
        if pool.threadCount == 1 || work < ThreadPool.parallelWorkThreshold {
            for (i, chunk) in chunks.enumerated() { run(i, chunk, 0..<n) }
        } else if n <= QuantizedMatrix.streamingRows {
            // Decoding (a few rows) streams the weights from memory once: one contiguous span of
            // runs per thread keeps each thread's reads one stream, which measured 6-11% faster
            // than four spans per thread (layer-alternating A/B on an AVX2 EPYC), and a thread
            // that finishes first helps with the other's last runs. A claim covers about 16 KB.
            let grain = max(1, 16_384 / max(1, byteCount / max(1, chunks.count)))
            chunks.withUnsafeBufferPointer { chunks in
                pool.parallelStreams(chunks.count, grain: grain, costPerItem: ThreadPool.parallelWorkThreshold) { range, _ in
                    for i in range { run(i, chunks[i], 0..<n) }
                }
            }
        } else {
            // Prefill is bound by arithmetic. Its tasks are small, one run against up to
            // `prefillPanelRows` activation rows, and taken one at a time, so that the threads
            // finish together on a machine where their speeds differ from moment to moment.
            let panels = (n + QuantizedMatrix.prefillPanelRows - 1) / QuantizedMatrix.prefillPanelRows
            chunks.withUnsafeBufferPointer { chunks in
                pool.parallelFor(chunks.count * panels) { task, _ in
                    let i = task / panels, first = task % panels * QuantizedMatrix.prefillPanelRows
                    run(i, chunks[i], first..<min(n, first + QuantizedMatrix.prefillPanelRows))
                }
            }
        }
    }
}

/// Activation rows quantized as ggml's Q8_0: per block of 32, 32 signed bytes, the scale `d`
/// and `d·Σq` (each repeated over 8 lanes for the kernels), and `Σq`.
struct ActivationBlocks {
    let q: UnsafeMutablePointer<Int8>
    let d8: UnsafeMutablePointer<Float>
    let s8: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Int32>

    /// The bytes `init` lays out: d8, s8, sums, then the bytes.
    static func byteCount(rows: Int, columns: Int) -> Int { 4 * (17 * (rows * columns / 32)) + rows * columns }

    /// Quantizes `x` into `memory` (`byteCount(rows:columns:)` bytes, 64-byte aligned), which
    /// must outlive the value. Many rows (prefill) are spread over `pool`: on one thread, a
    /// 512-token prompt's quantizing kept the other thread waiting for 2-3% of the prompt's time.
    /// Each row's bytes and scales do not depend on the split.
    init(_ x: UnsafePointer<Float>, rows: Int, columns: Int, memory: UnsafeMutableRawPointer, pool: ThreadPool = .shared) {
        let blocks = rows * columns / 32, perRow = columns / 32
        let d8 = memory.bindMemory(to: Float.self, capacity: 8 * blocks)
        let s8 = (memory + 32 * blocks).bindMemory(to: Float.self, capacity: 8 * blocks)
        let sums = (memory + 64 * blocks).bindMemory(to: Int32.self, capacity: blocks)
        let q = (memory + 68 * blocks).bindMemory(to: Int8.self, capacity: rows * columns)
        // Split from about 20 rows of 576 values on (the pool's threshold at 16 a value).
        pool.parallelRanges(rows, costPerItem: 16 * columns) { range, _ in
            let first = range.lowerBound * perRow
            cq_quantize_q8(x + range.lowerBound * columns, range.count * perRow, q + first * 32, d8 + first * 8, s8 + first * 8,
                           sums + first)
        }
        self.q = q; self.d8 = d8; self.s8 = s8; self.sums = sums
    }
}

extension GGMLType {
    /// The format's number in `CQuant`.
    var kernelCode: Int32 {
        switch self {
        case .q4_0: Int32(CQ_Q4_0.rawValue)
        case .q4_1: Int32(CQ_Q4_1.rawValue)
        case .q8_0: Int32(CQ_Q8_0.rawValue)
        case .q4_K: Int32(CQ_Q4_K.rawValue)
        default: preconditionFailure("\(self) has no integer kernel")
        }
    }
}

/// Whether the integer kernels run on AVX-512 VNNI here (otherwise portable C loops).
public var vnniAvailable: Bool { cq_vnni_available() != 0 }
