import Synchronization

/// Reusable 64-byte-aligned scratch memory for kernels.
///
/// GEMM packs its operands into megabytes of scratch on every call; fresh allocations of that
/// size come from `mmap` and cost a page fault per 4 KiB on first touch, which at training shapes
/// is slower than the packing itself. Buffers return to a small free list instead.
public enum Scratch {
    private struct Block: @unchecked Sendable {
        var pointer: UnsafeMutableRawPointer
        var bytes: Int
    }

    private static let freeList = Mutex<[Block]>([])

    /// Runs `body` with at least `count` floats of uninitialized, 64-byte-aligned scratch memory.
    public static func withFloats<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let bytes = max(64, count * MemoryLayout<Float>.stride)
        let block = take(bytes)
        defer { give(block) }
        return try body(block.pointer.assumingMemoryBound(to: Float.self))
    }

    private static func take(_ bytes: Int) -> Block {
        let reused: Block? = freeList.withLock { list in
            // The smallest block that fits, so large buffers stay for large requests.
            var best: Int?
            for (i, block) in list.enumerated() where block.bytes >= bytes {
                if best == nil || block.bytes < list[best!].bytes { best = i }
            }
            return best.map { list.remove(at: $0) }
        }
        if let reused { return reused }
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        return Block(pointer: pointer, bytes: bytes)
    }

    private static func give(_ block: Block) {
        let evicted: Block? = freeList.withLock { list in
            list.append(block)
            // Keep a handful; drop the smallest beyond that.
            guard list.count > 8 else { return nil }
            let smallest = list.indices.min { list[$0].bytes < list[$1].bytes }!
            return list.remove(at: smallest)
        }
        evicted?.pointer.deallocate()
    }
}
