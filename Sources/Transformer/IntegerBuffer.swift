/// An owned, zero-initialised block of integers on the heap (routing indices, the 8-bit cache's
/// bytes): `FloatBuffer`'s counterpart for integer types.
final class IntegerBuffer<Element: FixedWidthInteger>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Element>
    let count: Int

    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: 0, count: max(1, count))
    }

    deinit { pointer.deallocate() }
}
