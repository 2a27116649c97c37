import Kernels
import Testing

@Suite("Huge-page memory: aligned mappings and an arena's blocks")
struct LargePagesTests {
    @Test("a mapping is 2 MB aligned, whole huge pages, zeroed and writable to its last byte")
    func mapping() throws {
        for asked in [1, 4096, LargePageMemory.alignment, LargePageMemory.alignment + 1, 5 << 20] {
            let memory = try #require(LargePageMemory(byteCount: asked))
            #expect(Int(bitPattern: memory.pointer) % LargePageMemory.alignment == 0)
            #expect(memory.byteCount >= asked && memory.byteCount % LargePageMemory.alignment == 0
                    && memory.byteCount - asked < LargePageMemory.alignment)
            let bytes = memory.pointer.assumingMemoryBound(to: UInt8.self)
            for offset in stride(from: 0, to: memory.byteCount, by: 4093) { #expect(bytes[offset] == 0) }
            bytes[memory.byteCount - 1] = 7
            #expect(bytes[memory.byteCount - 1] == 7)
        }
        // More than the address space: refused, not a trap (a packed matrix then goes to the heap).
        #expect(LargePageMemory(byteCount: 1 << 60) == nil)
        #expect(LargePageMemory(byteCount: Int.max) == nil)
        #expect(LargePageArena().allocate(byteCount: Int.max) == nil)
    }

    @Test("an arena's blocks are 64-byte aligned, zeroed, disjoint, and outlive the arena; a large block gets its own mapping")
    func arena() throws {
        var arena: LargePageArena? = LargePageArena(regionBytes: 4 << 20)
        var blocks: [(pointer: UnsafeMutableRawPointer, owner: AnyObject, count: Int)] = []
        // 1.3 MB blocks: three (and a small one) to a 4 MB region, so the fourth opens a new one.
        for (i, count) in [1_300_000, 1_300_000, 1, 1_300_000, 1_300_000, 3 << 20].enumerated() {
            let block = try #require(arena!.allocate(byteCount: count))
            #expect(Int(bitPattern: block.pointer) % 64 == 0)
            let bytes = block.pointer.assumingMemoryBound(to: UInt8.self)
            #expect(bytes[0] == 0 && bytes[count - 1] == 0)
            bytes.update(repeating: UInt8(i + 1), count: count)
            blocks.append((block.pointer, block.owner, count))
        }
        let owners = blocks.map { ObjectIdentifier($0.owner) }
        #expect(owners[0] == owners[1] && owners[0] == owners[2] && owners[0] == owners[3])
        #expect(owners[4] != owners[0])
        #expect(owners[5] != owners[4] && Int(bitPattern: blocks[5].pointer) % LargePageMemory.alignment == 0)
        // Disjoint: each block still holds its own byte after all were written.
        arena = nil
        for (i, block) in blocks.enumerated() {
            let bytes = block.pointer.assumingMemoryBound(to: UInt8.self)
            #expect(bytes[0] == UInt8(i + 1) && bytes[block.count - 1] == UInt8(i + 1), "block \(i)")
        }
    }
}
