// SafeTensors reader: the weight format of Hugging Face / sentence-transformers model folders.
//
// Layout (https://github.com/huggingface/safetensors#format):
//   [8 bytes: little-endian UInt64 N] [N bytes: UTF-8 JSON header] [raw tensor bytes]
// The header maps tensor names to `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`, with
// offsets relative to the first byte after the header, plus an optional `"__metadata__"` string map.
// The header JSON is parsed here (with Foundation's JSONSerialization) and validated field by field, so a
// damaged file is reported with its path and the exact problem instead of trapping or reading garbage.

import Foundation

/// Element types a SafeTensors file may declare. Only the floating-point ones can be read as `Float`.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case float64 = "F64", float32 = "F32", float16 = "F16", bfloat16 = "BF16"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }
}

/// Everything that can be wrong with a SafeTensors file or with a request for one of its tensors.
/// Every case names the file, so a message is actionable on its own.
public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or read.
    case unreadable(file: String, reason: String)
    /// The 8-byte length prefix or the JSON header is malformed (the reason says how).
    case badHeader(file: String, reason: String)
    /// A tensor's declared byte range does not fit in the file, or does not match its dtype × shape.
    case truncatedTensor(file: String, name: String, reason: String)
    /// A tensor the caller needs is absent.
    case missingTensor(file: String, name: String)
    /// A tensor has another shape than the caller expects.
    case shapeMismatch(file: String, name: String, expected: [Int], actual: [Int])
    /// A tensor's dtype cannot be converted to `Float`.
    case unsupportedDType(file: String, name: String, dtype: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "\(file): cannot read safetensors file: \(reason)"
        case let .badHeader(file, reason): return "\(file): bad safetensors header: \(reason)"
        case let .truncatedTensor(file, name, reason): return "\(file): tensor '\(name)' is truncated or inconsistent: \(reason)"
        case let .missingTensor(file, name): return "\(file): missing tensor '\(name)'"
        case let .shapeMismatch(file, name, expected, actual):
            return "\(file): tensor '\(name)' has shape \(actual), expected \(expected)"
        case let .unsupportedDType(file, name, dtype): return "\(file): tensor '\(name)' has dtype \(dtype), which cannot be read as Float"
        }
    }
}

/// A parsed SafeTensors file. The file is memory-mapped; tensors are converted to `[Float]` on request.
///
/// Thread safety: immutable after `init`; `floats(_:)` may be called from any thread.
public struct SafeTensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable, Equatable {
        public var dtype: SafeTensorsDType
        public var shape: [Int]
        /// Byte range relative to the start of the data section.
        public var dataRange: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// The path used in error messages.
    public let fileName: String
    /// Tensor entries by name.
    public let entries: [String: Entry]
    /// `__metadata__` from the header (empty when absent).
    public let metadata: [String: String]
    private let bytes: Data
    private let dataStart: Int

    /// Upper bound on the header size; the reference implementation uses 100 MB as well.
    static let maximumHeaderBytes = 100_000_000

    /// Opens and validates `url` (memory-mapped).
    /// - Throws: `SafeTensorsError` for an unreadable file, a malformed header, or a tensor whose byte range
    ///   lies outside the file or disagrees with its dtype and shape.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw SafeTensorsError.unreadable(file: url.path, reason: error.localizedDescription)
        }
        try self.init(data: data, fileName: url.path)
    }

    /// Parses an in-memory SafeTensors image; `fileName` is used in error messages only.
    public init(data: Data, fileName: String) throws {
        self.fileName = fileName
        self.bytes = data
        guard data.count >= 8 else {
            throw SafeTensorsError.badHeader(file: fileName, reason: "file is \(data.count) bytes, shorter than the 8-byte length prefix")
        }
        var headerLength: UInt64 = 0
        for (shift, byte) in data.prefix(8).enumerated() { headerLength |= UInt64(byte) << (8 * UInt64(shift)) }
        guard headerLength <= UInt64(Self.maximumHeaderBytes), Int(headerLength) <= data.count - 8 else {
            throw SafeTensorsError.badHeader(file: fileName, reason: "declared header length \(headerLength) exceeds the file (\(data.count) bytes)")
        }
        let headerBytes = data.subdata(in: data.startIndex + 8 ..< data.startIndex + 8 + Int(headerLength))
        dataStart = 8 + Int(headerLength)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
            throw SafeTensorsError.badHeader(file: fileName, reason: "header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else {
            throw SafeTensorsError.badHeader(file: fileName, reason: "header is not a JSON object")
        }
        let dataByteCount = data.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw SafeTensorsError.badHeader(file: fileName, reason: "__metadata__ is not an object")
                }
                for (key, item) in map { metadata[key] = item as? String ?? "\(item)" }
                continue
            }
            guard let fields = value as? [String: Any] else {
                throw SafeTensorsError.badHeader(file: fileName, reason: "entry '\(name)' is not an object")
            }
            guard let dtypeName = fields["dtype"] as? String else {
                throw SafeTensorsError.badHeader(file: fileName, reason: "entry '\(name)' has no string dtype")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw SafeTensorsError.badHeader(file: fileName, reason: "entry '\(name)' has unknown dtype '\(dtypeName)'")
            }
            guard let shape = Self.integers(fields["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
                throw SafeTensorsError.badHeader(file: fileName, reason: "entry '\(name)' has no valid shape")
            }
            guard let offsets = Self.integers(fields["data_offsets"]), offsets.count == 2,
                  offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw SafeTensorsError.badHeader(file: fileName, reason: "entry '\(name)' has no valid data_offsets")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            guard !overflow, elements <= Int.max / dtype.byteWidth else {
                throw SafeTensorsError.badHeader(file: fileName, reason: "entry '\(name)' has an absurd shape \(shape)")
            }
            guard offsets[1] - offsets[0] == elements * dtype.byteWidth else {
                throw SafeTensorsError.truncatedTensor(file: fileName, name: name,
                    reason: "byte range \(offsets[0])..<\(offsets[1]) holds \(offsets[1] - offsets[0]) bytes, but \(dtypeName) \(shape) needs \(elements * dtype.byteWidth)")
            }
            guard offsets[1] <= dataByteCount else {
                throw SafeTensorsError.truncatedTensor(file: fileName, name: name,
                    reason: "ends at data byte \(offsets[1]) but the file holds only \(dataByteCount) data bytes")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, dataRange: offsets[0] ..< offsets[1])
        }
        self.entries = entries
        self.metadata = metadata
    }

    private static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var result: [Int] = []
        result.reserveCapacity(array.count)
        for item in array {
            // JSONSerialization yields NSNumber; reject fractional values explicitly.
            guard let number = item as? NSNumber, let exact = Int(exactly: number.doubleValue) else { return nil }
            result.append(exact)
        }
        return result
    }

    /// Whether a tensor called `name` exists.
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// The tensor `name` converted to `Float` (row-major, as stored).
    /// - Parameter expectedShape: when given, the tensor's shape must equal it.
    /// - Throws: `.missingTensor`, `.shapeMismatch`, or `.unsupportedDType` (integer tensors).
    public func floats(_ name: String, expectedShape: [Int]? = nil) throws -> [Float] {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(file: fileName, name: name) }
        if let expectedShape, expectedShape != entry.shape {
            throw SafeTensorsError.shapeMismatch(file: fileName, name: name, expected: expectedShape, actual: entry.shape)
        }
        let count = entry.elementCount
        let begin = dataStart + entry.dataRange.lowerBound
        let dtype = entry.dtype
        guard [.float32, .float16, .bfloat16, .float64].contains(dtype) else {
            throw SafeTensorsError.unsupportedDType(file: fileName, name: name, dtype: dtype.rawValue)
        }
        return bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [Float] in
            let source = UnsafeRawBufferPointer(rebasing: raw[begin ..< begin + count * dtype.byteWidth])
            return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                // Safetensors data is little-endian and, in general, not aligned: load byte-wise unaligned.
                switch dtype {
                case .float32:
                    for i in 0 ..< count { out[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                case .float16:
                    for i in 0 ..< count { out[i] = Self.floatFromHalfBits(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                case .bfloat16:
                    for i in 0 ..< count { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
                case .float64:
                    for i in 0 ..< count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
                default:
                    preconditionFailure("unreachable: dtype checked above")
                }
                initialized = count
            }
        }
    }

    /// IEEE 754 binary16 → binary32, exact (including subnormals, infinities and NaN).
    /// Written out by hand because `Float16` is not available on every platform Swift supports.
    @inlinable
    static func floatFromHalfBits(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        var mantissa = UInt32(h & 0x03FF)
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
        if mantissa == 0 { return Float(bitPattern: sign) }
        // Subnormal half: normalise the mantissa.
        var e: UInt32 = 113
        while mantissa & 0x0400 == 0 { mantissa <<= 1; e -= 1 }
        mantissa &= 0x03FF
        return Float(bitPattern: sign | (e << 23) | (mantissa << 13))
    }

    /// binary32 → binary16 bits, round to nearest even. Used by tests and tools that write F16 files.
    public static func halfBits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF)
        let mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }
        let halfExponent = exponent - 127 + 15
        if halfExponent >= 0x1F { return sign | 0x7C00 }
        if halfExponent <= 0 {
            if halfExponent < -10 { return sign }
            let full = mantissa | 0x80_0000
            let shift = UInt32(14 - halfExponent)
            var half = full >> shift
            let remainder = full & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if remainder > halfway || (remainder == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(halfExponent) << 10 | (mantissa >> 13)
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
}

/// Writes SafeTensors images (F32, F16 or BF16). Used by tests and by tools that export weights.
public enum SafeTensorsWriter {
    /// One tensor to write: name, shape and row-major values, stored as `dtype` (a floating-point type).
    public struct Tensor {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public var dtype: SafeTensorsDType
        public init(name: String, shape: [Int], values: [Float], dtype: SafeTensorsDType = .float32) {
            // The writer side (tests and tools build these in code); files are read by the checked reader above.
            precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not match \(values.count) values")
            precondition([.float32, .float16, .bfloat16].contains(dtype), "writer supports F32, F16 and BF16")
            self.name = name; self.shape = shape; self.values = values; self.dtype = dtype
        }
    }

    /// The complete file image for `tensors`, in the given order.
    public static func image(_ tensors: [Tensor], metadata: [String: String] = [:]) -> Data {
        var payload = Data()
        var headerFields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            headerFields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        for tensor in tensors {
            let begin = payload.count
            for value in tensor.values {
                switch tensor.dtype {
                case .float32: withUnsafeBytes(of: value.bitPattern.littleEndian) { payload.append(contentsOf: $0) }
                case .float16: withUnsafeBytes(of: SafeTensorsFile.halfBits(from: value).littleEndian) { payload.append(contentsOf: $0) }
                default: withUnsafeBytes(of: UInt16(value.bitPattern >> 16).littleEndian) { payload.append(contentsOf: $0) }
                }
            }
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            headerFields.append("\(jsonString(tensor.name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(begin),\(payload.count)]}")
        }
        var header = Data("{\(headerFields.joined(separator: ","))}".utf8)
        // The format recommends padding the header with spaces to an 8-byte boundary.
        while header.count % 8 != 0 { header.append(0x20) }
        var image = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { image.append(contentsOf: $0) }
        image.append(header)
        image.append(payload)
        return image
    }

    private static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
