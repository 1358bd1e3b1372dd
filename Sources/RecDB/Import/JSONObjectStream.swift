import Foundation

/// Reads a top-level JSON object `{"key": value, ...}` entry by entry from a memory-mapped file, so
/// memory does not grow with the file (the mapping's pages are the kernel's to evict). Values are
/// either strings (`{"user": "profile text"}`) or arrays of numbers (`{"id": [0.1, 0.2]}`, the layout
/// of the ECIR'26 profile embeddings). Line numbers are tracked for error messages.
struct JSONObjectStream {
    enum Value {
        case string(String)
        case numbers([Float])
    }

    /// The widest embedding space the store accepts.
    static let maximumComponents = 65_536

    let path: String
    private let data: Data
    private var offset = 0
    private(set) var line = 1
    private var started = false
    private var finished = false

    init(path: String) throws {
        self.path = path
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw RecDBError.importFailed(ImportError(file: path, line: nil, problem: "cannot read: \(error.localizedDescription)"))
        }
    }

    var bytesConsumed: Int { offset }
    var totalBytes: Int { data.count }

    func fail(_ problem: String) -> RecDBError {
        .importFailed(ImportError(file: path, line: line, problem: problem))
    }

    private mutating func skipWhitespace(_ p: UnsafeRawBufferPointer) {
        while offset < p.count {
            let c = p[offset]
            if c == 0x0A { line += 1 } else if c != 0x20 && c != 0x09 && c != 0x0D { return }
            offset += 1
        }
    }

    /// The next (key, value), or nil after the closing brace.
    mutating func next() throws -> (key: String, value: Value, line: Int)? {
        guard !finished else { return nil }
        return try data.withUnsafeBytes { (p: UnsafeRawBufferPointer) -> (String, Value, Int)? in
            skipWhitespace(p)
            if !started {
                guard offset < p.count, p[offset] == 0x7B else { throw fail("expected a JSON object starting with '{'") }
                offset += 1
                started = true
                skipWhitespace(p)
                // An empty object is the whole file too (found by the jsonvectors fuzz target: `{}}}…` was read as `{}`).
                if offset < p.count, p[offset] == 0x7D { offset += 1; finished = true; try expectEnd(p); return nil }
            } else {
                guard offset < p.count else { throw fail("unexpected end of file inside the object (truncated?)") }
                if p[offset] == 0x7D { offset += 1; finished = true; try expectEnd(p); return nil }
                guard p[offset] == 0x2C else { throw fail("expected ',' or '}' between entries") }
                offset += 1
                skipWhitespace(p)
            }
            let entryLine = line
            let key = try parseString(p)
            skipWhitespace(p)
            guard offset < p.count, p[offset] == 0x3A else { throw fail("expected ':' after key \"\(key.prefix(40))\"") }
            offset += 1
            skipWhitespace(p)
            guard offset < p.count else { throw fail("unexpected end of file after key \"\(key.prefix(40))\"") }
            let value: Value
            switch p[offset] {
            case 0x22: value = .string(try parseString(p))
            case 0x5B: value = .numbers(try parseNumbers(p, key: key))
            default: throw fail("value of \"\(key.prefix(40))\" must be a string or an array of numbers")
            }
            return (key, value, entryLine)
        }
    }

    private mutating func expectEnd(_ p: UnsafeRawBufferPointer) throws {
        skipWhitespace(p)
        if offset < p.count { throw fail("unexpected text after the closing '}'") }
    }

    private mutating func parseString(_ p: UnsafeRawBufferPointer) throws -> String {
        guard offset < p.count, p[offset] == 0x22 else { throw fail("expected a string") }
        offset += 1
        var bytes: [UInt8] = []
        while true {
            guard offset < p.count else { throw fail("unterminated string (truncated file?)") }
            let c = p[offset]
            if c == 0x22 { offset += 1; break }
            if c == 0x0A { throw fail("newline inside a string") }
            if c == 0x5C {
                offset += 1
                guard offset < p.count else { throw fail("unterminated escape") }
                let e = p[offset]
                offset += 1
                switch e {
                case 0x22: bytes.append(0x22)
                case 0x5C: bytes.append(0x5C)
                case 0x2F: bytes.append(0x2F)
                case 0x62: bytes.append(0x08)
                case 0x66: bytes.append(0x0C)
                case 0x6E: bytes.append(0x0A)
                case 0x72: bytes.append(0x0D)
                case 0x74: bytes.append(0x09)
                case 0x75:
                    var scalar = try hex4(p)
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard offset + 1 < p.count, p[offset] == 0x5C, p[offset + 1] == 0x75 else { throw fail("lone surrogate in \\u escape") }
                        offset += 2
                        let low = try hex4(p)
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("bad surrogate pair in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                    bytes.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("invalid escape \\\(Character(Unicode.Scalar(e)))")
                }
                continue
            }
            bytes.append(c)
            offset += 1
        }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    private mutating func hex4(_ p: UnsafeRawBufferPointer) throws -> UInt32 {
        guard offset + 4 <= p.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = p[offset]
            offset += 1
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
        }
        return v
    }

    private mutating func parseNumbers(_ p: UnsafeRawBufferPointer, key: String) throws -> [Float] {
        offset += 1  // '['
        var out: [Float] = []
        var token = [CChar](repeating: 0, count: 64)
        skipWhitespace(p)
        if offset < p.count, p[offset] == 0x5D { offset += 1; return out }
        while true {
            skipWhitespace(p)
            var n = 0
            while offset < p.count, n < 63 {
                let c = p[offset]
                let isNumberChar = (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2B || c == 0x2E || c == 0x65 || c == 0x45
                // NaN and Infinity are not JSON, but Python's json.dump writes them: read them to reject them clearly.
                let isWordChar = (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                guard isNumberChar || isWordChar else { break }
                token[n] = CChar(bitPattern: c)
                n += 1
                offset += 1
            }
            guard n > 0 else { throw fail("expected a number in the vector of \"\(key.prefix(40))\"") }
            token[n] = 0
            let text = token.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }  // NUL-terminated above
            guard let v = Float(text) else { throw fail("'\(text)' is not a number (vector of \"\(key.prefix(40))\", component \(out.count))") }
            guard v.isFinite else { throw fail("component \(out.count) of \"\(key.prefix(40))\" is \(text)") }
            // No space is wider than this: stop before a damaged file grows one vector without bound.
            guard out.count < Self.maximumComponents else {
                throw fail("the vector of \"\(key.prefix(40))\" has more than \(Self.maximumComponents) components")
            }
            out.append(v)
            skipWhitespace(p)
            guard offset < p.count else { throw fail("unexpected end of file inside a vector (truncated?)") }
            if p[offset] == 0x2C { offset += 1; continue }
            if p[offset] == 0x5D { offset += 1; return out }
            throw fail("expected ',' or ']' in the vector of \"\(key.prefix(40))\"")
        }
    }
}
