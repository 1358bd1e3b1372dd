import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Streams a text file line by line with bounded memory: one read buffer, grown only for a line
/// longer than it and never beyond `maxLineBytes` (so `/dev/zero` or a file without line breaks is
/// an error naming the line, not an allocation that grows until the process aborts). Lines end at
/// `\n`, `\r\n` or a lone `\r` (classic Mac files would otherwise read as one header line and import
/// nothing). Lines are handed out as byte buffers valid until the next call.
final class LineReader {
    /// Default cap on one line's length (1 MiB): far above any real CSV/JSONL row, small enough that a
    /// parser's per-line working set stays bounded.
    static let defaultMaxLineBytes = 1 << 20
    /// Hard ceiling for a configured cap (1 GiB), so the buffer size arithmetic cannot overflow.
    static let maximumMaxLineBytes = 1 << 30

    let path: String
    private let fd: Int32
    // Read for every line by one thread at a time: no dynamic exclusivity bookkeeping per access.
    @exclusivity(unchecked) private var buffer: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var start = 0   // first unread byte in buffer
    @exclusivity(unchecked) private var end = 0     // one past the last valid byte
    @exclusivity(unchecked) private var eof = false
    /// 1-based number of the line last returned.
    @exclusivity(unchecked) private(set) var lineNumber = 0
    /// Bytes consumed so far (for progress).
    @exclusivity(unchecked) private(set) var bytesConsumed = 0
    let totalBytes: Int
    let maxLineBytes: Int

    init(path: String, maxLineBytes: Int = LineReader.defaultMaxLineBytes, bufferSize: Int = 1 << 20) throws {
        self.path = path
        guard (1...Self.maximumMaxLineBytes).contains(maxLineBytes) else {
            throw RecDBError.invalidArgument("the maximum line length must be in 1...\(Self.maximumMaxLineBytes) bytes, got \(maxLineBytes)")
        }
        self.maxLineBytes = maxLineBytes
        fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw RecDBError.importFailed(ImportError(file: path, line: nil, problem: "cannot open: \(String(cString: strerror(errno)))"))
        }
        var st = stat()
        fstat(fd, &st)
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw RecDBError.importFailed(ImportError(file: path, line: nil, problem: "is a directory, not a file"))
        }
        totalBytes = Int(st.st_size)
        // A line plus its CR LF must fit; no need for more than that.
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(max(bufferSize, 1), maxLineBytes + 2), alignment: 16)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// The most bytes the buffer may hold: the longest allowed line and its CR LF.
    private var bufferLimit: Int { maxLineBytes + 2 }

    /// Reads more bytes, keeping the unread tail at the front; grows the buffer (up to `bufferLimit`)
    /// when it is full. Throws when the current line already exceeds `maxLineBytes`.
    private func fill() throws {
        if start > 0 {
            let n = end - start
            if n > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + start, n) }
            end = n
            start = 0
        }
        // A partial line may end in a CR whose LF is still unread, hence the + 1.
        if end > maxLineBytes + 1 { throw tooLong() }
        if end == buffer.count {
            let size = min(buffer.count * 2, bufferLimit)
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
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

    private func tooLong() -> RecDBError {
        error("line is longer than \(maxLineBytes) bytes (the limit; raise it with --max-line-bytes / maxLineBytes if the file is right)",
              line: lineNumber + 1)
    }

    /// Hands out bytes `start..<lineEnd` as the next line and moves past the terminator ending at `next`.
    private func take(lineEnd: Int, next: Int) throws -> UnsafeRawBufferPointer {
        guard lineEnd - start <= maxLineBytes else { throw tooLong() }
        let line = UnsafeRawBufferPointer(start: buffer.baseAddress! + start, count: lineEnd - start)
        bytesConsumed += next - start
        start = next
        lineNumber += 1
        return line
    }

    /// The next line without its terminator (`\n`, `\r\n` or `\r`), or nil at the end of the file.
    func next() throws -> UnsafeRawBufferPointer? {
        var scanFrom = start
        while true {
            let base = buffer.baseAddress!
            let nl = memchr(base + scanFrom, 0x0A, end - scanFrom).map { base.distance(to: UnsafeMutableRawPointer($0)) }
            // A CR before the first LF (or anywhere in the scanned bytes when there is none) ends the line
            // by itself unless an LF follows it directly.
            let crLimit = nl ?? end
            if let crPointer = memchr(base + scanFrom, 0x0D, crLimit - scanFrom) {
                let cr = base.distance(to: UnsafeMutableRawPointer(crPointer))
                if cr + 1 < end || eof {
                    let crlf = cr + 1 < end && buffer[cr + 1] == 0x0A
                    return try take(lineEnd: cr, next: crlf ? cr + 2 : cr + 1)
                }
                // The CR is the last byte read: whether an LF follows is not known yet.
            } else if let nl {
                return try take(lineEnd: nl, next: nl + 1)
            }
            if eof {
                guard end > start else { return nil }
                return try take(lineEnd: end, next: end)
            }
            // Rescan the last byte when it is a CR (its LF may arrive with the next read).
            let scanned = max(0, end - start - 1)
            try fill()
            scanFrom = start + scanned
        }
    }

    func error(_ problem: String, line: Int? = nil) -> RecDBError {
        .importFailed(ImportError(file: path, line: line ?? lineNumber, problem: problem))
    }

    /// A header's columns for an error message: at most 20, each quoted with control characters
    /// escaped and cut to 40 characters (a binary or endless first line must not flood the terminal).
    static func describe(columns header: [String]) -> String {
        var shown = header.prefix(20).map { name -> String in
            let quoted = name.debugDescription
            return quoted.count > 42 ? String(quoted.prefix(40)) + "…\"" : quoted
        }
        if header.count > 20 { shown.append("… \(header.count - 20) more") }
        return shown.joined(separator: ", ")
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
