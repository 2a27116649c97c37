import Kernels
import Support
import Transformer

/// Where a trainer's micro-batches come from. A source is deterministic: its `position`
/// (saved with each checkpoint) and its data decide every later batch, which is what makes a
/// resumed run bit-identical to an uninterrupted one.
public protocol BatchSource: Sendable {
    /// Replaces `ids` and `targets` with the next micro-batch, `batch` rows of the returned
    /// length (at most `length`; target -1: not counted), and advances.
    mutating func fill(ids: inout [Int32], targets: inout [Int32], batch: Int, length: Int) -> Int
    /// The state the next batch follows from.
    var position: UInt64 { get set }
    /// A hash of the data, so that a resume with other data is refused.
    var fingerprint: String { get }
}

/// SHA-256 of token ids, as hex.
func tokenFingerprint(_ tokens: [Int32]) -> String {
    var hasher = SHA256()
    tokens.withUnsafeBytes { hasher.update($0) }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// Random contiguous windows of one token stream (pretraining): each row is `length` tokens
/// from a uniformly drawn start, and its targets are the same tokens shifted by one.
public struct TokenWindows: BatchSource {
    public let tokens: [Int32]
    public var position: UInt64
    public let fingerprint: String

    /// Windows of `tokens`, every id checked against `vocabularySize`; the generator starts from
    /// `seed` as pretraining's always has.
    public init(tokens: [Int32], vocabularySize: Int, seed: UInt64) throws {
        for id in tokens where id < 0 || Int(id) >= vocabularySize {
            throw TransformerError.tokenOutOfRange(id: id, vocabularySize: vocabularySize)
        }
        self.tokens = tokens
        position = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        fingerprint = tokenFingerprint(tokens)
    }

    public mutating func fill(ids: inout [Int32], targets: inout [Int32], batch: Int, length t: Int) -> Int {
        resize(&ids, &targets, to: batch * t)
        var rng = SplitMix64(seed: position)
        let limit = UInt64(tokens.count - t)
        for b in 0..<batch {
            let start = Int(rng.next() % limit)
            for j in 0..<t {
                ids[b * t + j] = tokens[start + j]
                targets[b * t + j] = tokens[start + j + 1]
            }
        }
        position = rng.state
        return t
    }
}

/// Makes `ids` and `targets` hold `count` elements (their storage is kept: a step allocates
/// nothing once the longest batch has been seen).
func resize(_ ids: inout [Int32], _ targets: inout [Int32], to count: Int) {
    if ids.count != count {
        ids.removeAll(keepingCapacity: true)
        ids.append(contentsOf: repeatElement(0, count: count))
    }
    if targets.count != count {
        targets.removeAll(keepingCapacity: true)
        targets.append(contentsOf: repeatElement(-1, count: count))
    }
}

/// One training example: ids and their targets (-1 where the loss does not count, e.g. outside
/// the assistant's turns of a chat).
public struct MaskedExample: Sendable, Equatable {
    public var ids: [Int32]
    public var targets: [Int32]

    public init(ids: [Int32], targets: [Int32]) {
        self.ids = ids
        self.targets = targets
    }
}

/// Whole examples (fine-tuning): each epoch visits every example once in a seeded shuffled
/// order; a row holds one example, cut to `length` tokens or padded with targets -1 to the
/// micro-batch's longest. Causal attention keeps padding after a sequence from changing it, so
/// the loss and gradients are those of padding to `length`, at the cost of the tokens there are.
///
/// With `groupedBy` (the micro-batch size), each window of `lengthWindow` micro-batches of the
/// shuffled order is sorted by length, cut into micro-batches, and those are shuffled again: a
/// micro-batch then holds examples of nearly one length, so little of it is padding (Hugging
/// Face's `group_by_length`; mlx-lm sorts the whole set). Windows keep the batches' make-up
/// changing from epoch to epoch.
public struct MaskedExamples: BatchSource {
    public let examples: [MaskedExample]
    public let seed: UInt64
    /// The micro-batch size whose rows are grouped by length, if they are.
    public let groupedBy: Int?
    /// Micro-batches per window sorted by length.
    public static let lengthWindow = 32
    /// Rows handed out so far.
    public var position: UInt64 = 0
    public let fingerprint: String

    /// Checks that every example has matching lengths, ids in the vocabulary and at least one
    /// counted target; the error names the example's index.
    public init(examples: [MaskedExample], vocabularySize: Int, seed: UInt64, groupedBy: Int? = nil) throws {
        if let groupedBy, groupedBy < 1 {
            throw TrainingError.invalidOption(name: "batch", reason: "cannot group examples into batches of \(groupedBy)")
        }
        guard !examples.isEmpty else { throw TrainingError.notEnoughData(tokens: 0, needed: 2) }
        var all: [Int32] = []
        for (index, e) in examples.enumerated() {
            guard e.ids.count == e.targets.count, !e.ids.isEmpty else {
                throw TrainingError.invalidOption(name: "data", reason: "example \(index): \(e.ids.count) ids but \(e.targets.count) targets")
            }
            for id in e.ids where id < 0 || Int(id) >= vocabularySize {
                throw TransformerError.tokenOutOfRange(id: id, vocabularySize: vocabularySize)
            }
            for id in e.targets where id < -1 || Int(id) >= vocabularySize {
                throw TransformerError.tokenOutOfRange(id: id, vocabularySize: vocabularySize)
            }
            guard e.targets.contains(where: { $0 >= 0 }) else {
                throw TrainingError.invalidOption(name: "data", reason: "example \(index) has no token the loss counts")
            }
            all += e.ids + [-2] + e.targets + [-3]
        }
        self.examples = examples
        self.seed = seed
        self.groupedBy = groupedBy
        // The order is part of the data a resume must find again.
        fingerprint = tokenFingerprint(all) + (groupedBy.map { ":grouped-by-length-\($0)x\(Self.lengthWindow)" } ?? "")
    }

    /// The epoch whose order `order` holds (a training step reuses it instead of drawing the
    /// permutation again for every row).
    private var cachedEpoch: UInt64?
    private var order: [Int] = []

    /// The permutation epoch `epoch` visits, drawn from the seed and the epoch.
    func permutation(_ epoch: UInt64) -> [Int] {
        var order = Array(0..<examples.count)
        var rng = SplitMix64(seed: seed ^ (epoch &* 0xA076_1D64_78BD_642F) &+ 0x5851_F42D_4C95_7F2D)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        guard let batch = groupedBy else { return order }
        let window = batch * Self.lengthWindow
        for start in stride(from: 0, to: order.count, by: window) {
            let end = min(order.count, start + window)
            // Longest first within the window; ties keep the shuffled order.
            let sorted = order[start..<end].enumerated().sorted {
                let a = examples[$0.element].ids.count, b = examples[$1.element].ids.count
                return a != b ? a > b : $0.offset < $1.offset
            }.map(\.element)
            var batches = stride(from: 0, to: sorted.count, by: batch).map { Array(sorted[$0..<min(sorted.count, $0 + batch)]) }
            // A short last batch (the epoch's end) stays last, so that the others stay aligned.
            let whole = sorted.count / batch
            for i in stride(from: whole - 1, to: 0, by: -1) { batches.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            order.replaceSubrange(start..<end, with: batches.joined())
        }
        return order
    }

    /// The share of the rows' tokens that is padding over the first epoch, in micro-batches of
    /// `batch` rows cut at `length` tokens (what grouping by length saves).
    public func paddingShare(batch: Int, length: Int) -> Double {
        let order = permutation(0)
        var computed = 0, real = 0
        for start in stride(from: 0, to: order.count, by: batch) {
            let rows = order[start..<min(order.count, start + batch)].map { min(length, examples[$0].ids.count) }
            computed += batch * rows.max()!
            real += rows.reduce(0, +)
        }
        return Double(computed - real) / Double(computed)
    }

    /// The example at row `row` of the whole run: epoch `row / count` visits a permutation
    /// drawn from the seed and the epoch.
    public func example(at row: UInt64) -> MaskedExample {
        let n = UInt64(examples.count)
        return examples[permutation(row / n)[Int(row % n)]]
    }

    public mutating func fill(ids: inout [Int32], targets: inout [Int32], batch: Int, length: Int) -> Int {
        let n = UInt64(examples.count)
        var rows: [MaskedExample] = []
        rows.reserveCapacity(batch)
        for _ in 0..<batch {
            let epoch = position / n
            if cachedEpoch != epoch { order = permutation(epoch); cachedEpoch = epoch }
            rows.append(examples[order[Int(position % n)]])
            position += 1
        }
        let t = min(length, rows.map(\.ids.count).max()!)
        resize(&ids, &targets, to: batch * t)
        for (b, e) in rows.enumerated() {
            let used = min(t, e.ids.count)
            for j in 0..<t {
                ids[b * t + j] = j < used ? e.ids[j] : 0
                targets[b * t + j] = j < used ? e.targets[j] : -1
            }
        }
        return t
    }
}

/// Given batches, in order (checking an optimizer against another implementation): batch `i`
/// of the list is step `i`'s micro-batch.
public struct FixedBatches: BatchSource {
    public let batches: [MaskedExample]
    public var position: UInt64 = 0
    public let fingerprint: String

    public init(batches: [MaskedExample], vocabularySize: Int) throws {
        guard !batches.isEmpty else { throw TrainingError.notEnoughData(tokens: 0, needed: 2) }
        for b in batches {
            for id in b.ids where id < 0 || Int(id) >= vocabularySize {
                throw TransformerError.tokenOutOfRange(id: id, vocabularySize: vocabularySize)
            }
            for id in b.targets where id < -1 || Int(id) >= vocabularySize {
                throw TransformerError.tokenOutOfRange(id: id, vocabularySize: vocabularySize)
            }
        }
        self.batches = batches
        fingerprint = tokenFingerprint(batches.flatMap { $0.ids + $0.targets })
    }

    /// Copies the next batch (`batch` rows of at most `length`: the trainer's forward checks the
    /// sizes) and advances, wrapping around at the end.
    public mutating func fill(ids: inout [Int32], targets: inout [Int32], batch: Int, length: Int) -> Int {
        let b = batches[Int(position % UInt64(batches.count))]
        ids = b.ids
        targets = b.targets
        position += 1
        return b.ids.count % batch == 0 && b.ids.count / batch <= length ? b.ids.count / batch : length
    }
}
