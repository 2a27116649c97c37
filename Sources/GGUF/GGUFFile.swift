import Foundation
import Support
@_exported import Quantization

/// A GGUF file (llama.cpp's container, version 2 or 3), memory-mapped: metadata key/values, tensor
/// descriptions, and tensor data read in place. Every count, length, type, dimension and offset
/// is checked against the file before it is used, so a truncated or hostile file is an error
/// naming the field, never a trap or an allocation larger than the file.
///
/// Layout: magic `GGUF`, version u32, tensor count u64, key/value count u64; the key/values
/// (string key, u32 type, value); the tensor infos (string name, u32 dimension count, u64
/// dimensions innermost first, u32 type, u64 offset); padding to `general.alignment` (32 by
/// default); the tensor data, each tensor at its offset from the data start.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    /// Key/values in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Where tensor data starts.
    public let dataOffset: Int
    private let file: MappedFile
    private let index: [String: Int]

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        var reader = GGUFReader(bytes: file.bytes, path: path)
        guard file.count >= 24 else { throw GGUFError.invalid(path: path, field: "header", reason: "the file is \(file.count) bytes, shorter than the 24-byte header") }
        guard try reader.bytes(4, field: "magic") == Array("GGUF".utf8) else {
            throw GGUFError.invalid(path: path, field: "magic", reason: "not a GGUF file (the first bytes are not GGUF)")
        }
        version = try reader.u32("version")
        guard version == 2 || version == 3 else {
            throw GGUFError.invalid(path: path, field: "version", reason: "version \(version) is not supported (2 or 3)")
        }
        let tensorCount = try reader.u64("tensor_count"), kvCount = try reader.u64("metadata_kv_count")
        // Each key/value takes at least 13 bytes and each tensor info at least 24: counts the
        // file cannot hold are refused before anything is reserved.
        guard kvCount <= UInt64(reader.remaining / 13) else {
            throw GGUFError.invalid(path: path, field: "metadata_kv_count", reason: "\(kvCount) key/values cannot fit in the \(file.count)-byte file")
        }
        guard tensorCount <= UInt64(reader.remaining / 24) else {
            throw GGUFError.invalid(path: path, field: "tensor_count", reason: "\(tensorCount) tensors cannot fit in the \(file.count)-byte file")
        }
        var metadata: [(key: String, value: GGUFValue)] = []
        var seenKeys = Set<String>()
        for i in 0..<Int(kvCount) {
            let key = try reader.string("key \(i)")
            guard seenKeys.insert(key).inserted else { throw GGUFError.invalid(path: path, field: key, reason: "the key appears twice") }
            let type = try reader.u32("\(key).type")
            metadata.append((key, try reader.value(type: type, field: key, depth: 0)))
        }
        self.metadata = metadata
        var alignment = 32
        if let value = metadata.first(where: { $0.key == "general.alignment" })?.value {
            guard let a = value.integer, a > 0, a <= 1 << 20, a & (a - 1) == 0 else {
                throw GGUFError.invalid(path: path, field: "general.alignment", reason: "must be a power of two up to 1 MiB, got \(value)")
            }
            alignment = a
        }
        self.alignment = alignment
        var infos: [GGUFTensorInfo] = []
        var names: [String: Int] = [:]
        for i in 0..<Int(tensorCount) {
            let name = try reader.string("tensor \(i) name")
            let dimensionCount = try reader.u32("\(name).n_dims")
            guard dimensionCount >= 1 && dimensionCount <= 4 else {
                throw GGUFError.invalid(path: path, field: "\(name).n_dims", reason: "\(dimensionCount) dimensions (1 to 4 allowed)")
            }
            var dimensions: [Int] = []
            var elements = 1
            for d in 0..<Int(dimensionCount) {
                let size = try reader.u64("\(name).dims[\(d)]")
                guard size >= 1 && size <= 1 << 40 else {
                    throw GGUFError.invalid(path: path, field: "\(name).dims[\(d)]", reason: "dimension \(size) is out of range")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(size))
                guard !overflow, product <= 1 << 42 else {
                    throw GGUFError.invalid(path: path, field: "\(name).dims", reason: "the dimensions multiply past any real tensor")
                }
                elements = product
                dimensions.append(Int(size))
            }
            let typeCode = try reader.u32("\(name).type")
            guard let type = GGMLType(rawValue: typeCode) else {
                throw GGUFError.invalid(path: path, field: "\(name).type", reason: "unknown tensor type \(typeCode)")
            }
            guard dimensions[0] % type.blockSize == 0 else {
                throw GGUFError.invalid(path: path, field: "\(name).dims[0]", reason: "\(dimensions[0]) is not a multiple of \(type)'s block of \(type.blockSize)")
            }
            let offset = try reader.u64("\(name).offset")
            guard offset % UInt64(alignment) == 0 else {
                throw GGUFError.invalid(path: path, field: "\(name).offset", reason: "offset \(offset) is not aligned to \(alignment)")
            }
            guard names[name] == nil else { throw GGUFError.invalid(path: path, field: name, reason: "the tensor name appears twice") }
            names[name] = infos.count
            infos.append(GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: Int(clamping: offset),
                                        byteCount: elements / type.blockSize * type.blockBytes))
        }
        let (start, overflow) = reader.position.addingReportingOverflow(alignment - 1)
        dataOffset = overflow ? Int.max : start / alignment * alignment
        guard dataOffset <= file.count else {
            throw GGUFError.invalid(path: path, field: "tensor data", reason: "the tensor data would start past the end of the \(file.count)-byte file (truncated?)")
        }
        // Tensors lie inside the data, in order, without overlapping.
        var end = 0
        for info in infos.sorted(by: { $0.offset < $1.offset }) {
            guard info.offset >= end else {
                throw GGUFError.invalid(path: path, field: "\(info.name).offset", reason: "the tensor overlaps the one before it")
            }
            let (last, overflow) = info.offset.addingReportingOverflow(info.byteCount)
            guard !overflow, last <= file.count - dataOffset else {
                throw GGUFError.invalid(path: path, field: "\(info.name).offset", reason: "the tensor's \(info.byteCount) bytes run past the end of the file (truncated?)")
            }
            end = last
        }
        tensors = infos
        index = names
    }

    /// The value of `key`, if present.
    public subscript(key: String) -> GGUFValue? { metadata.first { $0.key == key }?.value }

    /// The tensor called `name`, if present.
    public func tensor(named name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// Runs `body` with the raw bytes of `tensor`, keeping the mapping alive meanwhile.
    public func withBytes<R>(of tensor: GGUFTensorInfo, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try file.withBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[(dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount)]))
        }
    }

    /// Drops `tensor`'s mapped pages from this process's memory (they are read from the file
    /// again if touched): for a loader that has copied the tensor out.
    public func release(_ tensor: GGUFTensorInfo) {
        release(tensor, bytes: 0..<tensor.byteCount)
    }

    /// Drops the pages of every tensor's data from memory (metadata stays).
    public func releaseTensorData() {
        file.release(dataOffset..<file.count)
    }

    /// Drops the whole pages inside `bytes` (offsets within `tensor`'s data) from memory.
    public func release(_ tensor: GGUFTensorInfo, bytes: Range<Int>) {
        let start = dataOffset + tensor.offset
        file.release((start + max(0, bytes.lowerBound))..<(start + min(tensor.byteCount, bytes.upperBound)))
    }

    /// `tensor` as floats (dequantized exactly as ggml does), into `out` (`elementCount` floats).
    /// The tensor's mapped pages are dropped afterwards.
    public func read(_ tensor: GGUFTensorInfo, into out: UnsafeMutablePointer<Float>) {
        withBytes(of: tensor) { GGMLBlocks.dequantize(tensor.type, $0, count: tensor.elementCount, into: out) }
        file.release((dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount))
    }

    /// A required metadata value of a given kind; the error names the key.
    public func required<T>(_ key: String, _ extract: (GGUFValue) -> T?, _ kind: String) throws -> T {
        guard let value = self[key] else { throw GGUFError.invalid(path: path, field: key, reason: "is missing") }
        guard let result = extract(value) else { throw GGUFError.invalid(path: path, field: key, reason: "must be \(kind), got \(value)") }
        return result
    }
}

/// One tensor's description. `dimensions` are ggml's, innermost first: a PyTorch `[out, in]`
/// matrix is `[in, out]` here, stored row by row (each row `in` values).
public struct GGUFTensorInfo: Sendable, Equatable {
    public var name: String
    public var dimensions: [Int]
    public var type: GGMLType
    /// From the start of the tensor data.
    public var offset: Int
    public var byteCount: Int
    public var elementCount: Int { dimensions.reduce(1, *) }
    /// The PyTorch shape (outermost first).
    public var shape: [Int] { dimensions.reversed() }
}

/// A metadata value.
public indirect enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String), array([GGUFValue])

    public var integer: Int? {
        switch self {
        case .uint(let v): v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v): Int(v)
        default: nil
        }
    }
    public var number: Double? {
        switch self {
        case .float(let v): v
        case .uint(let v): Double(v)
        case .int(let v): Double(v)
        default: nil
        }
    }
    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var array: [GGUFValue]? { if case .array(let a) = self { a } else { nil } }
    public var strings: [String]? { array?.compactMap(\.string).count == array?.count ? array?.compactMap(\.string) : nil }

    public var description: String {
        switch self {
        case .uint(let v): "\(v)"
        case .int(let v): "\(v)"
        case .float(let v): "\(v)"
        case .bool(let v): "\(v)"
        case .string(let s): s.count > 60 ? "\"\(s.prefix(60))…\"" : "\"\(s)\""
        case .array(let a): "[\(a.count) values]"
        }
    }
}

public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case invalid(path: String, field: String, reason: String)
    case unsupported(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalid(let path, let field, let reason): "\(path): \(field): \(reason)"
        case .unsupported(let path, let reason): "\(path): \(reason)"
        }
    }
}

/// Bounds-checked little-endian reads from the mapped bytes.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var position = 0
    var remaining: Int { bytes.count - position }

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    func truncated(_ field: String) -> GGUFError {
        .invalid(path: path, field: field, reason: "the file ends inside it (truncated?)")
    }

    mutating func bytes(_ n: Int, field: String) throws -> [UInt8] {
        guard n >= 0, n <= remaining else { throw truncated(field) }
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ field: String) throws -> T {
        guard MemoryLayout<T>.size <= remaining else { throw truncated(field) }
        defer { position += MemoryLayout<T>.size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    mutating func u32(_ field: String) throws -> UInt32 { try load(UInt32.self, field) }
    mutating func u64(_ field: String) throws -> UInt64 { try load(UInt64.self, field) }

    mutating func string(_ field: String) throws -> String {
        let length = try u64("\(field) length")
        guard length <= UInt64(remaining) else {
            throw GGUFError.invalid(path: path, field: field, reason: "a string of \(length) bytes runs past the end of the file")
        }
        let raw = bytes[position..<(position + Int(length))]
        position += Int(length)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw GGUFError.invalid(path: path, field: field, reason: "the string is not valid UTF-8")
        }
        return text
    }

    mutating func value(type: UInt32, field: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try load(UInt8.self, field)))
        case 1: return .int(Int64(try load(Int8.self, field)))
        case 2: return .uint(UInt64(try load(UInt16.self, field)))
        case 3: return .int(Int64(try load(Int16.self, field)))
        case 4: return .uint(UInt64(try load(UInt32.self, field)))
        case 5: return .int(Int64(try load(Int32.self, field)))
        case 6: return .float(Double(Float(bitPattern: try load(UInt32.self, field))))
        case 7:
            let b = try load(UInt8.self, field)
            guard b <= 1 else { throw GGUFError.invalid(path: path, field: field, reason: "a bool of value \(b)") }
            return .bool(b == 1)
        case 8: return .string(try string(field))
        case 9:
            guard depth < 2 else { throw GGUFError.invalid(path: path, field: field, reason: "arrays nested too deep") }
            let elementType = try u32("\(field) element type")
            let count = try u64("\(field) count")
            let minimum = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8][Int(elementType)] ?? 1
            guard count <= UInt64(remaining / minimum) else {
                throw GGUFError.invalid(path: path, field: field, reason: "an array of \(count) values cannot fit in the rest of the file")
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for i in 0..<Int(count) { values.append(try value(type: elementType, field: "\(field)[\(i)]", depth: depth + 1)) }
            return .array(values)
        case 10: return .uint(try load(UInt64.self, field))
        case 11: return .int(try load(Int64.self, field))
        case 12: return .float(Double(bitPattern: try load(UInt64.self, field)))
        default: throw GGUFError.invalid(path: path, field: field, reason: "unknown value type \(type)")
        }
    }
}
