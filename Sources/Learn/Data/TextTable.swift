import Foundation

/// A frozen item-embedding table (e.g. MiniLM / LLM title embeddings): `(numItems + 1) × dimension`
/// floats, row-major; row `i` belongs to item `i`, row 0 (padding) is all zeros.
/// Immutable and shared between threads; never trained.
public struct TextTable: Sendable {
    public let numItems: Int
    public let dimension: Int
    /// `(numItems + 1) · dimension` values, row 0 zero.
    public let values: [Float]

    /// - Throws: `LearnError.shapeMismatch` when the value count is wrong. Row 0 is forced to zero.
    public init(numItems: Int, dimension: Int, values: [Float]) throws {
        guard dimension > 0, numItems >= 0, values.count == (numItems + 1) * dimension else {
            throw LearnError.shapeMismatch("text table: \(values.count) values for \(numItems + 1) × \(dimension)")
        }
        var v = values
        for j in 0..<dimension { v[j] = 0 }
        self.numItems = numItems
        self.dimension = dimension
        self.values = v
    }

    /// Row `item` (a copy).
    public func row(_ item: Int) -> [Float] { Array(values[(item * dimension)..<((item + 1) * dimension)]) }

    /// Loads a 2-D `.npy` array (float32 or float16, little-endian, C order) of shape `[rows, dim]`;
    /// row i = item i. `numItems` nil = rows − 1; fewer rows than `numItems + 1` throw.
    public static func loadNPY(path: String, numItems: Int? = nil) throws -> TextTable {
        let (shape, values) = try NPY.readFloatMatrix(path: path)
        let n = numItems ?? (shape[0] - 1)
        guard shape[0] >= n + 1 else {
            throw LearnError.shapeMismatch("\(path): \(shape[0]) rows, need \(n + 1)")
        }
        return try TextTable(numItems: n, dimension: shape[1], values: Array(values[0..<((n + 1) * shape[1])]))
    }
}

/// Minimal reader for NumPy `.npy` files (format versions 1–3) holding 2-D float16/float32 arrays.
public enum NPY {
    /// Returns `(shape [rows, cols], values row-major)`.
    public static func readFloatMatrix(path: String) throws -> ([Int], [Float]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw LearnError.io("cannot read \(path)") }
        let bytes = [UInt8](data)
        guard bytes.count > 10, bytes[0] == 0x93, bytes[1...5].elementsEqual("NUMPY".utf8) else {
            throw LearnError.io("\(path): not an .npy file")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 { headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; headerStart = 10 }
        else { headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24; headerStart = 12 }
        guard let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: .ascii) else {
            throw LearnError.io("\(path): bad header")
        }
        let isF16 = header.contains("'<f2'"), isF32 = header.contains("'<f4'")
        guard isF16 || isF32 else { throw LearnError.io("\(path): only <f2/<f4 supported, header \(header)") }
        if header.contains("'fortran_order': True") { throw LearnError.io("\(path): Fortran order not supported") }
        guard let open = header.firstIndex(of: "("), let close = header.firstIndex(of: ")") else {
            throw LearnError.io("\(path): no shape")
        }
        let shape = header[header.index(after: open)..<close].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        guard shape.count == 2 else { throw LearnError.io("\(path): expected a 2-D array, shape \(shape)") }
        let count = shape[0] * shape[1]
        let start = headerStart + headerLength
        let width = isF16 ? 2 : 4
        guard bytes.count >= start + count * width else { throw LearnError.io("\(path): truncated") }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + start
            if isF16 {
                for i in 0..<count {
                    values[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            } else {
                for i in 0..<count { values[i] = base.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
            }
        }
        return (shape, values)
    }
}
