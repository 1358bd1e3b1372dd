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

    /// `fragments`: an event loop's cache of the items' encoded JSON (the same bytes, see `ItemFragments`).
    static func encode(_ value: Recommendations, fragments: ItemFragments? = nil) throws -> [UInt8] {
        var w = ResponseJSON(capacity: 128 + 96 * value.items.count)
        try w.write(value, fragments: fragments)
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
    private mutating func write(_ r: Recommendations, fragments: ItemFragments? = nil) throws {
        raw("{\"items\":")
        if let fragments { try write(r.items, fragments) } else { try write(r.items) }
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
            if i > 0 { raw(",") }
            itemHead(item)
            try number(item.score)
            itemTail(item)
        }
        raw("]")
    }

    /// The same bytes as `write(_ items:)`, each item's text around its score taken from `fragments`.
    private mutating func write(_ items: [ScoredItem], _ fragments: ItemFragments) throws {
        raw("[")
        for (i, item) in items.enumerated() {
            if i > 0 { raw(",") }
            let entry = fragments.fragments(for: item)
            bytes.append(contentsOf: entry.head)
            try number(item.score)
            bytes.append(contentsOf: entry.tail)
        }
        raw("]")
    }

    /// An item's JSON before its score: `{"id":…,"item":"…","score":`.
    private mutating func itemHead(_ item: ScoredItem) {
        raw("{\"id\":")
        raw(String(item.id))
        raw(",\"item\":")
        string(item.item)
        raw(",\"score\":")
    }

    /// An item's JSON after its score: `,"title":"…"}` (or `}` without a title).
    private mutating func itemTail(_ item: ScoredItem) {
        if let title = item.title {
            raw(",\"title\":")
            string(title)
        }
        raw("}")
    }

    /// `itemHead` and `itemTail` on their own, for `ItemFragments`.
    fileprivate static func fragments(of item: ScoredItem) -> (head: [UInt8], tail: [UInt8]) {
        var head = ResponseJSON(capacity: 32 + item.item.utf8.count)
        head.itemHead(item)
        var tail = ResponseJSON(capacity: 16 + (item.title?.utf8.count ?? 0))
        tail.itemTail(item)
        return (head.bytes, tail.bytes)
    }

    private mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }

    /// JSONEncoder's spelling: the shortest round-trip description, without a trailing ".0".
    private mutating func number(_ f: Float) throws {
        guard f.isFinite else {
            throw EncodingError.invalidValue(f, .init(codingPath: [], debugDescription: "Unable to encode Float.\(f) directly in JSON."))
        }
        // Appended, then trimmed in place: the String's own suffix check and removal cost more than the digits.
        bytes.append(contentsOf: f.description.utf8)
        let n = bytes.count
        if n >= 2 && bytes[n - 2] == UInt8(ascii: ".") && bytes[n - 1] == UInt8(ascii: "0") { bytes.removeLast(2) }
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

/// The encoded JSON of the items an event loop's recommendations return, around their scores: a result's id,
/// external id and title are escaped and spelled once, not in every response that lists the item.
///
/// An entry is used only for an item with the same internal id, external id and title (compared as strings:
/// equal storage, the common case as the titles come from `ItemDescriptionCache`, compares in one step), so a
/// result from any snapshot is written as it is, whatever the entry was made from. Direct-mapped by internal
/// id (a colliding item replaces the entry): `capacity` entries at most, a few MiB. One per event loop (used
/// on the loop only, so it takes no lock).
final class ItemFragments {
    /// A class: handing out an entry is one reference count, not one for each of its strings and arrays.
    final class Entry {
        let id: UInt32
        let item: String
        let title: String?
        let head: [UInt8]
        let tail: [UInt8]

        init(id: UInt32, item: String, title: String?, head: [UInt8], tail: [UInt8]) {
            self.id = id
            self.item = item
            self.title = title
            self.head = head
            self.tail = tail
        }
    }

    private var slots: [Entry?]
    private let mask: Int

    /// `capacity`: a power of two.
    init(capacity: Int = 16_384) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "ItemFragments capacity must be a power of two")
        slots = Array(repeating: nil, count: capacity)
        mask = capacity - 1
    }

    func fragments(for item: ScoredItem) -> Entry {
        let slot = Int(item.id) & mask
        if let entry = slots[slot], entry.id == item.id, entry.item == item.item, entry.title == item.title {
            return entry
        }
        let (head, tail) = ResponseJSON.fragments(of: item)
        let entry = Entry(id: item.id, item: item.item, title: item.title, head: head, tail: tail)
        slots[slot] = entry
        return entry
    }
}
