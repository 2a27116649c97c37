#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Memory mapped on its own, aligned to 2 MB and offered to the kernel for transparent huge
/// pages (`MADV_HUGEPAGE`, which Linux honours when `transparent_hugepage` is `madvise` or
/// `always`).
///
/// Decoding SmolLM2 at Q4_0 streams about 90 MB of packed weights a token: some 22,000 pages of
/// 4 KB, each a TLB miss and a page walk, against 45 of 2 MB (see `LargePageArena`). The pages
/// arrive zeroed.
public final class LargePageMemory: @unchecked Sendable {
    /// The huge page size this memory is aligned to.
    public static let alignment = 2 << 20

    /// The first usable byte (2 MB aligned).
    public let pointer: UnsafeMutableRawPointer
    /// The usable bytes, `byteCount` rounded up to whole huge pages.
    public let byteCount: Int

    /// Maps at least `byteCount` zeroed bytes, or returns nil when the system refuses.
    public init?(byteCount: Int) {
        guard byteCount <= Int.max / 2 else { return nil }  // no address space is this large
        let size = (max(1, byteCount) + Self.alignment - 1) / Self.alignment * Self.alignment
        // Map one huge page more than asked and trim both ends, so the kept part is aligned.
        guard let raw = mmap(nil, size + Self.alignment, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { return nil }
        let start = Int(bitPattern: raw), aligned = (start + Self.alignment - 1) / Self.alignment * Self.alignment
        if aligned > start { munmap(raw, aligned - start) }
        let tail = start + Self.alignment - aligned  // what is left past aligned + size
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + size), tail) }
        pointer = UnsafeMutableRawPointer(bitPattern: aligned)!
        self.byteCount = size
        #if os(Linux)
        _ = madvise(pointer, size, Int32(MADV_HUGEPAGE))  // advice: refused, the pages stay 4 KB
        #endif
    }

    deinit { munmap(pointer, byteCount) }
}

/// Many medium blocks (a model's packed weight matrices, a megabyte each) carved one after
/// another from huge-page regions, so that they share 2 MB pages instead of each rounding up to
/// its own. A block keeps its region alive through the returned owner; the arena keeps only the
/// region it is filling, so a model loaded through its own arena frees all of it with the model.
public final class LargePageArena: Sendable {
    /// Bytes per region; a block larger than half of it gets a mapping of its own.
    public let regionBytes: Int
    private let state = Mutex<(region: LargePageMemory?, used: Int)>((nil, 0))

    public init(regionBytes: Int = 16 << 20) { self.regionBytes = regionBytes }

    /// `byteCount` zeroed bytes aligned to 64, and what keeps them alive; nil when the system
    /// refuses the mapping.
    public func allocate(byteCount: Int) -> (pointer: UnsafeMutableRawPointer, owner: AnyObject)? {
        guard byteCount <= Int.max / 2 else { return nil }
        let size = (max(1, byteCount) + 63) / 64 * 64
        if size > regionBytes / 2 {
            guard let own = LargePageMemory(byteCount: size) else { return nil }
            return (own.pointer, own)
        }
        return state.withLock { state in
            if state.region == nil || state.used + size > state.region!.byteCount {
                guard let region = LargePageMemory(byteCount: regionBytes) else { return nil }
                state = (region, 0)
            }
            let region = state.region!, pointer = region.pointer + state.used
            state.used += size
            return (pointer, region)
        }
    }
}
