/// The layout of a session's cached keys (fp32 and half caches): each key/value head's positions
/// in blocks of `width`, each block dimension-major (`[hd][width]`).
///
/// Decoding computes one query's scores against every cached key. With keys stored position
/// after position, each score is a dot product along a row, and sixteen of them end in sums
/// across registers that cost as much as the products. Stored in these blocks, the scores of
/// sixteen keys are `Σ_d q[d] · block[d]`: one vector of sixteen lanes, no reduction. Values stay
/// position after position (their weighted sum already runs along rows). Multi-token calls
/// (prefill) transpose each head's keys once for their score tiles (`transposeKeys`), a copy per
/// block row, since a block is already dimension-major.
enum KeyBlocks {
    /// Positions per block: one 16-float vector.
    static let width = 16

    /// `positions` rounded up to whole blocks: a head's room in a cache.
    static func padded(_ positions: Int) -> Int { (positions + width - 1) / width * width }

    /// Stores one key (`hd` values) at `position` of the head whose blocks start at `head`.
    @inline(__always)
    static func store<T>(_ key: UnsafePointer<T>, headDim hd: Int, position j: Int, into head: UnsafeMutablePointer<T>) {
        let lane = head + (j / width) * width * hd + j % width
        for d in 0..<hd { lane[d * width] = key[d] }
    }
}
