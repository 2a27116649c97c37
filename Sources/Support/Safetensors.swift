import Foundation

/// The safetensors format: an 8-byte little-endian header length `n`, `n` bytes of JSON mapping
/// each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets into the data that
/// follows the header) plus an optional `__metadata__` map of strings, then the raw
/// little-endian data. Hugging Face's tools, PyTorch and others read and write it.
public enum Safetensors {
    public enum DType: String, Sendable, Codable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", i32 = "I32", u8 = "U8", i8 = "I8"

        public var size: Int {
            switch self {
            case .f32, .i32: 4
            case .f16, .bf16: 2
            case .u8, .i8: 1
            }
        }
    }

    /// One tensor's entry in the header.
    public struct TensorInfo: Sendable, Equatable {
        public var dtype: DType
        public var shape: [Int]
        /// Byte range within the data section.
        public var range: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Errors name the file and what is wrong with it.
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalid(path: String, reason: String)
        case missingTensor(path: String, name: String)
        case wrongShape(path: String, name: String, expected: [Int], found: [Int])
        case unsupportedDType(path: String, name: String, dtype: String)

        public var description: String {
            switch self {
            case .invalid(let path, let reason): "\(path): not a valid safetensors file: \(reason)"
            case .missingTensor(let path, let name): "\(path): tensor '\(name)' is missing"
            case .wrongShape(let path, let name, let expected, let found):
                "\(path): tensor '\(name)' has shape \(found), expected \(expected)"
            case .unsupportedDType(let path, let name, let dtype):
                "\(path): tensor '\(name)' has dtype \(dtype), which cannot be read as floats"
            }
        }
    }

    /// Header lengths above this are refused before anything is parsed.
    public static let maximumHeaderLength = 100 << 20

    /// A tensor to write: its name, shape and float data.
    public struct Entry {
        public var name: String
        public var shape: [Int]
        public var data: UnsafeBufferPointer<Float>

        public init(name: String, shape: [Int], data: UnsafeBufferPointer<Float>) {
            self.name = name
            self.shape = shape
            self.data = data
        }
    }

    /// Writes F32 tensors (in the given order) and string metadata to `path`, atomically.
    public static func write(_ entries: [Entry], metadata: [String: String] = [:], to path: String) throws {
        var header = "{"
        if !metadata.isEmpty {
            let fields = metadata.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }
            header += "\"__metadata__\":{\(fields.joined(separator: ","))},"
        }
        var offset = 0
        var parts: [String] = []
        for entry in entries {
            precondition(entry.shape.reduce(1, *) == entry.data.count, "shape does not match data for \(entry.name)")
            let bytes = entry.data.count * 4
            parts.append("\(jsonQuoted(entry.name)):{\"dtype\":\"F32\",\"shape\":[\(entry.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        // Pad with spaces so the data starts 8-byte aligned.
        while header.utf8.count % 8 != 0 { header += " " }
        try AtomicFile.write(to: path) { fd in
            var length = UInt64(header.utf8.count).littleEndian
            try withUnsafeBytes(of: &length) { try AtomicFile.writeAll(fd, $0, path: path) }
            try Array(header.utf8).withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }
            for entry in entries {
                // Little-endian hosts only (x86-64, arm64): the floats are written as they are.
                try AtomicFile.writeAll(fd, UnsafeRawBufferPointer(entry.data), path: path)
            }
        }
    }

    /// A validated, memory-mapped safetensors file.
    public final class File: @unchecked Sendable {
        public let path: String
        public let tensors: [String: TensorInfo]
        public let metadata: [String: String]
        private let mapped: MappedFile
        private let dataStart: Int

        public init(path: String) throws {
            self.path = path
            mapped = try MappedFile(path: path)
            let size = mapped.count
            func invalid(_ reason: String) -> Error { .invalid(path: path, reason: reason) }
            guard size >= 8 else { throw invalid("the file is \(size) bytes, shorter than the 8-byte header length") }
            let length = mapped.bytes.loadUnaligned(as: UInt64.self).littleEndian
            guard length <= UInt64(maximumHeaderLength) else {
                throw invalid("the header length \(length) exceeds the \(maximumHeaderLength)-byte limit")
            }
            guard length <= UInt64(size - 8) else {
                throw invalid("the header length \(length) runs past the end of the \(size)-byte file (truncated?)")
            }
            dataStart = 8 + Int(length)
            let headerBytes = Data(mapped.bytes[8..<dataStart])
            guard let object = try? JSONSerialization.jsonObject(with: headerBytes),
                  let header = object as? [String: Any] else {
                throw invalid("the header is not a JSON object")
            }
            var tensors: [String: TensorInfo] = [:]
            var metadata: [String: String] = [:]
            let dataSize = size - dataStart
            for (name, value) in header {
                if name == "__metadata__" {
                    guard let map = value as? [String: Any] else { throw invalid("__metadata__ is not an object") }
                    for (key, item) in map {
                        guard let text = item as? String else { throw invalid("__metadata__.\(key) is not a string") }
                        metadata[key] = text
                    }
                    continue
                }
                guard let fields = value as? [String: Any] else { throw invalid("'\(name)' is not an object") }
                guard let dtypeName = fields["dtype"] as? String else { throw invalid("'\(name)'.dtype is missing") }
                guard let dtype = DType(rawValue: dtypeName) else {
                    throw Error.unsupportedDType(path: path, name: name, dtype: dtypeName)
                }
                guard let shapeValues = fields["shape"] as? [Any],
                      let shape = integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
                    throw invalid("'\(name)'.shape is not a list of non-negative integers")
                }
                guard let offsetValues = fields["data_offsets"] as? [Any], let offsets = integers(offsetValues),
                      offsets.count == 2 else {
                    throw invalid("'\(name)'.data_offsets is not a pair of integers")
                }
                let (begin, end) = (offsets[0], offsets[1])
                guard begin >= 0, begin <= end, end <= dataSize else {
                    throw invalid("'\(name)'.data_offsets [\(begin), \(end)] lie outside the \(dataSize) data bytes")
                }
                var elements = 1
                for dimension in shape {
                    let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                    guard !overflow else { throw invalid("'\(name)'.shape \(shape) overflows") }
                    elements = product
                }
                let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
                guard !overflow, bytes == end - begin else {
                    throw invalid("'\(name)': shape \(shape) of \(dtypeName) needs \(elements) x \(dtype.size) bytes but data_offsets cover \(end - begin)")
                }
                tensors[name] = TensorInfo(dtype: dtype, shape: shape, range: begin..<end)
            }
            // Tensors must tile the data section: no overlaps and no holes.
            var cursor = 0
            for (name, info) in tensors.sorted(by: { ($0.value.range.lowerBound, $0.value.range.upperBound) < ($1.value.range.lowerBound, $1.value.range.upperBound) }) {
                guard info.range.lowerBound >= cursor else { throw invalid("'\(name)' overlaps another tensor's bytes") }
                guard info.range.lowerBound == cursor else { throw invalid("bytes \(cursor)..<\(info.range.lowerBound) of the data belong to no tensor") }
                cursor = info.range.upperBound
            }
            guard cursor == dataSize else { throw invalid("the last \(dataSize - cursor) data bytes belong to no tensor") }
            self.tensors = tensors
            self.metadata = metadata
        }

        /// Copies tensor `name` into `out` as floats, converting from F16 or BF16, after checking
        /// that its shape is `shape`.
        public func read(_ name: String, shape: [Int], into out: UnsafeMutablePointer<Float>) throws {
            guard let info = tensors[name] else { throw Error.missingTensor(path: path, name: name) }
            guard info.shape == shape else {
                throw Error.wrongShape(path: path, name: name, expected: shape, found: info.shape)
            }
            let base = mapped.bytes.baseAddress! + dataStart + info.range.lowerBound
            let n = info.elementCount
            switch info.dtype {
            case .f32:
                UnsafeMutableRawPointer(out).copyMemory(from: base, byteCount: n * 4)
            case .bf16:
                for i in 0..<n {
                    let bits = UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16
                    out[i] = Float(bitPattern: bits)
                }
            case .f16:
                for i in 0..<n {
                    out[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian))
                }
            case .i32, .u8, .i8:
                throw Error.unsupportedDType(path: path, name: name, dtype: info.dtype.rawValue)
            }
            mapped.release((dataStart + info.range.lowerBound)..<(dataStart + info.range.upperBound))
        }
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for value in values {
            guard let number = value as? NSNumber else { return nil }
            let double = number.doubleValue
            guard double == double.rounded(), abs(double) < 1e15 else { return nil }
            out.append(number.intValue)
        }
        return out
    }
}
