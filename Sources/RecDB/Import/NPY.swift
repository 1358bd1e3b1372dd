import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Streams the rows of a 2-D NumPy `.npy` file (format 1.0–3.0, C order, little-endian float32 or
/// float16) without loading it whole.
final class NPYReader {
    let path: String
    let rows: Int
    let columns: Int
    let dtype: VectorDType
    private let fd: Int32
    private let dataOffset: Int
    private var rowBuffer: [UInt8]
    private(set) var row = -1
    /// numpy writes headers of a few hundred bytes; anything larger is damage.
    static let maximumHeaderBytes = 1 << 20
    /// Widest vector accepted (the store's own limit on a space's dimension is checked later).
    static let maximumColumns = 1 << 16

    init(path: String) throws {
        self.path = path
        let handle = open(path, O_RDONLY)
        guard handle >= 0 else { throw NPYReader.fail(path, nil, "cannot open: \(String(cString: strerror(errno)))") }
        fd = handle
        var st = stat()
        fstat(handle, &st)
        let fileSize = Int(st.st_size)
        func readExactly(_ n: Int, at offset: Int) -> [UInt8]? {
            guard n > 0 else { return n == 0 ? [] : nil }  // an empty array may have no base address
            var out = [UInt8](repeating: 0, count: n)
            let got = out.withUnsafeMutableBytes { pread(handle, $0.baseAddress!, n, off_t(offset)) }
            return got == n ? out : nil
        }
        guard let magic = readExactly(10, at: 0), magic[0] == 0x93, Array(magic[1...5]) == Array("NUMPY".utf8) else {
            close(handle)
            throw NPYReader.fail(path, nil, "not a .npy file (bad magic)")
        }
        let major = magic[6]
        var headerLength: Int
        var headerStart: Int
        if major == 1 {
            headerLength = Int(magic[8]) | Int(magic[9]) << 8
            headerStart = 10
        } else if major == 2 || major == 3 {
            guard let more = readExactly(12, at: 0) else { close(handle); throw NPYReader.fail(path, nil, "truncated header") }
            headerLength = Int(more[8]) | Int(more[9]) << 8 | Int(more[10]) << 16 | Int(more[11]) << 24
            headerStart = 12
        } else {
            close(handle)
            throw NPYReader.fail(path, nil, "unsupported .npy format version \(major)")
        }
        // The header length comes from the file: check it against the file before reading (a v2 header
        // may claim 4 GB), and against the format's own sanity bound.
        guard headerLength <= Self.maximumHeaderBytes, headerLength <= fileSize - headerStart,
              let headerBytes = readExactly(headerLength, at: headerStart) else {
            close(handle); throw NPYReader.fail(path, nil, "truncated or oversized header (\(headerLength) bytes declared, file has \(fileSize))")
        }
        let header = String(decoding: headerBytes, as: UTF8.self)
        func value(of key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descr = value(of: "descr") else { close(handle); throw NPYReader.fail(path, nil, "header has no descr") }
        if descr.hasPrefix("'<f4'") || descr.hasPrefix("'float32'") {
            dtype = .f32
        } else if descr.hasPrefix("'<f2'") || descr.hasPrefix("'float16'") {
            dtype = .f16
        } else {
            close(handle)
            throw NPYReader.fail(path, nil, "dtype \(descr.prefix(8)) is not supported (float32 '<f4' or float16 '<f2')")
        }
        guard let fortran = value(of: "fortran_order"), fortran.hasPrefix("False") else {
            close(handle); throw NPYReader.fail(path, nil, "Fortran-order arrays are not supported; save with C order")
        }
        guard let shapeText = value(of: "shape"), let open = shapeText.firstIndex(of: "("), let shut = shapeText.firstIndex(of: ")"), open < shut else {
            close(handle); throw NPYReader.fail(path, nil, "header has no shape")
        }
        let dims = shapeText[shapeText.index(after: open)..<shut].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard dims.count == 2, let r = Int(dims[0]), let c = Int(dims[1]) else {
            close(handle); throw NPYReader.fail(path, nil, "expected a 2-D array, shape is (\(dims.joined(separator: ", ").prefix(80)))")
        }
        // Every size below comes from the file: negative or absurd values are refused, and the product
        // is overflow-checked, before anything is allocated from them.
        guard r >= 0, (1...Self.maximumColumns).contains(c) else {
            close(handle); throw NPYReader.fail(path, nil, "shape (\(r), \(c)) is not usable: rows must be ≥ 0 and columns in 1...\(Self.maximumColumns)")
        }
        rows = r
        columns = c
        dataOffset = headerStart + headerLength
        let rowBytes = c * dtype.byteWidth  // ≤ maximumColumns × 2: cannot overflow
        let (dataBytes, overflow) = r.multipliedReportingOverflow(by: rowBytes)
        let available = fileSize - dataOffset
        if overflow || dataBytes > available {
            let complete = available / rowBytes
            close(handle)
            throw NPYReader.fail(path, complete, "truncated: the header promises \(rows) rows of \(columns) \(dtype.rawValue) but the file ends in row \(complete) (\(fileSize) bytes, \(available) of them data)")
        }
        rowBuffer = [UInt8](repeating: 0, count: columns * dtype.byteWidth)
    }

    deinit { close(fd) }

    static func fail(_ path: String, _ row: Int?, _ problem: String) -> RecDBError {
        .importFailed(ImportError(file: path, line: row, problem: problem))
    }

    /// Reads row `index` into `out` (as Float) and checks every component is finite.
    func read(row index: Int, into out: inout [Float]) throws {
        let bytes = columns * dtype.byteWidth
        let got = rowBuffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, bytes, off_t(dataOffset + index * bytes)) }
        guard got == bytes else { throw NPYReader.fail(path, index, "truncated row") }
        if out.count != columns { out = [Float](repeating: 0, count: columns) }
        rowBuffer.withUnsafeBytes { raw in
            let view = VectorView(dtype: dtype, raw: raw)
            out.withUnsafeMutableBufferPointer { view.copy(into: $0) }
        }
        for (i, v) in out.enumerated() where !v.isFinite {
            throw NPYReader.fail(path, index, "component \(i) is \(v)")
        }
    }
}
