import Foundation
import Support

/// Writes GGUF v3 files as llama.cpp reads them: key/values in the order added, tensor infos,
/// padding to `general.alignment` (32), then each tensor's data at an aligned offset, in the
/// order added. The file is written atomically (a temporary file renamed into place).
public struct GGUFWriter {
    public static let alignment = 32
    private var metadata: [(String, GGUFValue)] = []
    private var tensors: [(name: String, dimensions: [Int], type: GGMLType, data: [UInt8])] = []

    public init() {}

    /// Adds a key/value. Integers are written as u32/i32 when they fit (as llama.cpp's
    /// converter does), else u64/i64; floats as f32; arrays must hold values of one kind.
    public mutating func add(_ key: String, _ value: GGUFValue) { metadata.append((key, value)) }

    /// Adds a tensor: `dimensions` innermost first (a PyTorch `[out, in]` matrix is `[in, out]`),
    /// `data` in `type`'s encoding.
    public mutating func add(tensor name: String, dimensions: [Int], type: GGMLType, data: [UInt8]) {
        precondition(data.count == dimensions.reduce(1, *) / type.blockSize * type.blockBytes, "\(name): data size does not match its type and shape")
        tensors.append((name, dimensions, type, data))
    }

    /// The file's bytes.
    public func bytes() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        func typeCode(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint(let x): x <= UInt64(UInt32.max) ? 4 : 10
            case .int(let x): x >= Int64(Int32.min) && x <= Int64(Int32.max) ? 5 : 11
            case .float: 6
            case .bool: 7
            case .string: 8
            case .array: 9
            }
        }
        func value(_ v: GGUFValue, as code: UInt32) {
            switch v {
            case .uint(let x): if code == 4 { u32(UInt32(x)) } else { u64(x) }
            case .int(let x): if code == 5 { u32(UInt32(bitPattern: Int32(x))) } else { u64(UInt64(bitPattern: x)) }
            case .float(let x): u32(Float(x).bitPattern)
            case .bool(let b): out.append(b ? 1 : 0)
            case .string(let s): string(s)
            case .array(let items):
                // One element type for the whole array: the widest its items need.
                let codes = items.map(typeCode)
                let element = codes.contains(10) ? 10 : codes.contains(11) ? 11 : codes.first ?? 4
                u32(element)
                u64(UInt64(items.count))
                for item in items { value(item, as: element) }
            }
        }
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count + 1))
        string("general.alignment")
        u32(4)
        u32(UInt32(GGUFWriter.alignment))
        for (key, v) in metadata {
            string(key)
            let code = typeCode(v)
            u32(code)
            value(v, as: code)
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset = (offset + t.data.count + GGUFWriter.alignment - 1) / GGUFWriter.alignment * GGUFWriter.alignment
        }
        for (t, o) in zip(tensors, offsets) {
            string(t.name)
            u32(UInt32(t.dimensions.count))
            for d in t.dimensions { u64(UInt64(d)) }
            u32(t.type.rawValue)
            u64(UInt64(o))
        }
        func pad() { while out.count % GGUFWriter.alignment != 0 { out.append(0) } }
        pad()
        for t in tensors {
            out += t.data
            pad()
        }
        return out
    }

    /// Writes the file atomically.
    public func write(to path: String) throws {
        try AtomicFile.write(Data(bytes()), to: path)
    }
}
