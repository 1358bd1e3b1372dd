import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Streams a text file line by line with bounded memory (one read buffer, grown only for a line
/// longer than it). Lines are handed out as byte buffers valid until the next call.
final class LineReader {
    let path: String
    private let fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var start = 0   // first unread byte in buffer
    private var end = 0     // one past the last valid byte
    private var eof = false
    /// 1-based number of the line last returned.
    private(set) var lineNumber = 0
    /// Bytes consumed so far (for progress).
    private(set) var bytesConsumed = 0
    let totalBytes: Int

    init(path: String, bufferSize: Int = 1 << 20) throws {
        self.path = path
        fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw RecDBError.importFailed(ImportError(file: path, line: nil, problem: "cannot open: \(String(cString: strerror(errno)))"))
        }
        var st = stat()
        fstat(fd, &st)
        totalBytes = Int(st.st_size)
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// Reads more bytes, keeping the unread tail at the front; grows the buffer when it is full.
    private func fill() throws {
        if start > 0 {
            let n = end - start
            if n > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + start, n) }
            end = n
            start = 0
        }
        if end == buffer.count {
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count * 2, alignment: 16)
            bigger.copyMemory(from: UnsafeRawBufferPointer(buffer))
            buffer.deallocate()
            buffer = bigger
        }
        let n = Glibc.read(fd, buffer.baseAddress! + end, buffer.count - end)
        if n < 0 {
            throw RecDBError.importFailed(ImportError(file: path, line: lineNumber + 1, problem: "read failed: \(String(cString: strerror(errno)))"))
        }
        if n == 0 { eof = true }
        end += n
    }

    /// The next line without its `\n` (and without a trailing `\r`), or nil at the end of the file.
    func next() throws -> UnsafeRawBufferPointer? {
        var scanFrom = start
        while true {
            if let nl = memchr(buffer.baseAddress! + scanFrom, 0x0A, end - scanFrom) {
                let nlIndex = buffer.baseAddress!.distance(to: UnsafeMutableRawPointer(nl))
                var lineEnd = nlIndex
                if lineEnd > start && buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeRawBufferPointer(start: buffer.baseAddress! + start, count: lineEnd - start)
                bytesConsumed += nlIndex + 1 - start
                start = nlIndex + 1
                lineNumber += 1
                return line
            }
            if eof {
                guard end > start else { return nil }
                var lineEnd = end
                if buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeRawBufferPointer(start: buffer.baseAddress! + start, count: lineEnd - start)
                bytesConsumed += end - start
                start = end
                lineNumber += 1
                return line
            }
            let scanned = end - start
            try fill()
            scanFrom = start + scanned
        }
    }

    func error(_ problem: String, line: Int? = nil) -> RecDBError {
        .importFailed(ImportError(file: path, line: line ?? lineNumber, problem: problem))
    }
}

enum UTF8Check {
    /// True when `bytes` is valid UTF-8 (fast path for ASCII).
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var ascii = true
        for b in bytes where b >= 0x80 { ascii = false; break }
        if ascii { return true }
        var it = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

/// Splits delimited lines into fields. TSV and whitespace splitting are plain; CSV follows RFC 4180
/// quoting (`"a, b"`, `""` for a quote) within a line.
struct FieldSplitter {
    enum Style { case csv, tsv, whitespace }
    let style: Style

    /// Fields of `line` as Strings (the line must already be valid UTF-8).
    func split(_ line: UnsafeRawBufferPointer, into fields: inout [String]) throws {
        fields.removeAll(keepingCapacity: true)
        switch style {
        case .tsv:
            var s = 0
            for i in 0..<line.count where line[i] == 0x09 {
                fields.append(String(decoding: UnsafeRawBufferPointer(rebasing: line[s..<i]), as: UTF8.self))
                s = i + 1
            }
            fields.append(String(decoding: UnsafeRawBufferPointer(rebasing: line[s..<line.count]), as: UTF8.self))
        case .whitespace:
            var s = -1
            for i in 0...line.count {
                let isSpace = i == line.count || line[i] == 0x20 || line[i] == 0x09
                if isSpace {
                    if s >= 0 { fields.append(String(decoding: UnsafeRawBufferPointer(rebasing: line[s..<i]), as: UTF8.self)); s = -1 }
                } else if s < 0 { s = i }
            }
        case .csv:
            var i = 0
            let n = line.count
            while true {
                if i < n && line[i] == 0x22 {  // quoted field
                    var bytes: [UInt8] = []
                    i += 1
                    var closed = false
                    while i < n {
                        if line[i] == 0x22 {
                            if i + 1 < n && line[i + 1] == 0x22 { bytes.append(0x22); i += 2; continue }
                            i += 1; closed = true; break
                        }
                        bytes.append(line[i]); i += 1
                    }
                    guard closed else { throw FieldError.unterminatedQuote }
                    guard i == n || line[i] == 0x2C else { throw FieldError.textAfterQuote }
                    fields.append(String(decoding: bytes, as: UTF8.self))
                } else {
                    var j = i
                    while j < n && line[j] != 0x2C { j += 1 }
                    fields.append(String(decoding: UnsafeRawBufferPointer(rebasing: line[i..<j]), as: UTF8.self))
                    i = j
                }
                if i >= n { break }
                i += 1  // skip the comma
                if i == n { fields.append(""); break }
            }
        }
    }

    enum FieldError: Error, CustomStringConvertible {
        case unterminatedQuote, textAfterQuote
        var description: String {
            switch self {
            case .unterminatedQuote: return "unterminated quoted field"
            case .textAfterQuote: return "text after a closing quote"
            }
        }
    }
}
