import RecDB

/// JSON for the serving responses (recommendations, item lists), written directly into bytes.
///
/// Why not `JSONEncoder`: on the recommendation route it cost more than the recommendation itself
/// (a keyed container per item, boxing every value, sorting keys on every call). The output is the
/// same bytes `JSONEncoder` writes with `.sortedKeys` and `.withoutEscapingSlashes` (keys in sorted
/// order, nil fields left out, the same string escapes and number spelling); `ResponseJSONTests`
/// compares the two on awkward values.
struct ResponseJSON {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 1024) { bytes.reserveCapacity(capacity) }

    static func encode(_ value: Recommendations) throws -> [UInt8] {
        var w = ResponseJSON(capacity: 128 + 96 * value.items.count)
        try w.write(value)
        return w.bytes
    }

    static func encode(results: [Recommendations]) throws -> [UInt8] {
        var w = ResponseJSON(capacity: 16 + results.reduce(0) { $0 + 128 + 96 * $1.items.count })
        w.raw("{\"results\":[")
        for (i, r) in results.enumerated() {
            if i > 0 { w.raw(",") }
            try w.write(r)
        }
        w.raw("]}")
        return w.bytes
    }

    static func encode(items: [ScoredItem]) throws -> [UInt8] {
        var w = ResponseJSON(capacity: 16 + 96 * items.count)
        w.raw("{\"items\":")
        try w.write(items)
        w.raw("}")
        return w.bytes
    }

    // Keys in sorted order, as `.sortedKeys` writes them.
    private mutating func write(_ r: Recommendations) throws {
        raw("{\"items\":")
        try write(r.items)
        raw(",\"model\":")
        string(r.model)
        raw(",\"source\":")
        string(r.source.rawValue)
        if let user = r.user {
            raw(",\"user\":")
            string(user)
        }
        raw(",\"version\":")
        raw(String(r.version))
        raw("}")
    }

    private mutating func write(_ items: [ScoredItem]) throws {
        raw("[")
        for (i, item) in items.enumerated() {
            raw(i == 0 ? "{\"id\":" : ",{\"id\":")
            raw(String(item.id))
            raw(",\"item\":")
            string(item.item)
            raw(",\"score\":")
            try number(item.score)
            if let title = item.title {
                raw(",\"title\":")
                string(title)
            }
            raw("}")
        }
        raw("]")
    }

    private mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }

    /// JSONEncoder's spelling: the shortest round-trip description, without a trailing ".0".
    private mutating func number(_ f: Float) throws {
        guard f.isFinite else {
            throw EncodingError.invalidValue(f, .init(codingPath: [], debugDescription: "Unable to encode Float.\(f) directly in JSON."))
        }
        var s = f.description
        if s.hasSuffix(".0") { s.removeLast(2) }
        raw(s)
    }

    /// RFC 8259 escapes as JSONEncoder writes them: `"` and `\`, the short forms for \b \f \n \r \t,
    /// `\u00XX` for the other control characters; everything else (slashes, non-ASCII) as UTF-8.
    /// Runs between escapes are copied whole: a byte-by-byte append (a capacity and uniqueness check per
    /// byte) was the costliest part of a recommendation response, whose titles rarely need an escape.
    private mutating func string(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var run = 0
            for i in utf8.indices {
                let b = utf8[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<i]))
                escape(b)
                run = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ b: UInt8) {
        switch b {
        case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
        case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
        case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
        case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
        case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
        case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
        case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
        default:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xF)]])
        }
    }
}
