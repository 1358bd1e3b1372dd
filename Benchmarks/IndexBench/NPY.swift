import Foundation

/// A minimal reader for 2-D little-endian float32/float16 `.npy` files (C order), local to this benchmark.
/// (RecDB's store has its own importer; this one exists so the benchmark depends only on `Index`.)
struct NPYMatrix {
    let rows: Int
    let columns: Int
    /// Row-major, `rows × columns`.
    let values: [Float]

    enum ReadError: Error, CustomStringConvertible {
        case malformed(String)
        var description: String { if case .malformed(let why) = self { return "malformed .npy: \(why)" }; return "" }
    }

    init(contentsOf url: URL) throws {
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        guard data.count > 10, data.prefix(6) == Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) else {
            throw ReadError.malformed("bad magic")
        }
        let major = data[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(data[8]) | Int(data[9]) << 8
            headerStart = 10
        } else {
            headerLength = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
            headerStart = 12
        }
        guard let header = String(data: data[headerStart..<(headerStart + headerLength)], encoding: .ascii) else {
            throw ReadError.malformed("header is not ASCII")
        }
        guard !header.contains("'fortran_order': True") else { throw ReadError.malformed("Fortran order") }
        let isFloat16: Bool
        if header.contains("'<f4'") { isFloat16 = false } else if header.contains("'<f2'") { isFloat16 = true } else {
            throw ReadError.malformed("dtype must be <f4 or <f2: \(header)")
        }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw ReadError.malformed("no shape")
        }
        let dims = header[open.upperBound..<close].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        guard dims.count == 2 else { throw ReadError.malformed("expected 2-D, shape \(dims)") }
        rows = dims[0]
        columns = dims[1]
        let count = rows * columns
        let body = headerStart + headerLength
        guard data.count - body == count * (isFloat16 ? 2 : 4) else { throw ReadError.malformed("size mismatch") }
        values = data.withUnsafeBytes { raw -> [Float] in
            let base = raw.baseAddress! + body
            if isFloat16 {
                return (0..<count).map { Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self).littleEndian)) }
            }
            return (0..<count).map { Float(bitPattern: base.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self).littleEndian) }
        }
    }
}
