import Foundation

/// External ids of one kind (users or items) that an import into a database holding ids has met for
/// the first time and not yet looked up in the id table: each gets a provisional number (its index, in
/// order of first sight) until `storedIDs` looks the whole batch up at once. The importer's id map holds
/// the provisional number, tagged (`provisionalTag`), until then: every row probes one map, whether its
/// id is stored, new or still waiting (a second map of the waiting ids cost each of their rows a second
/// probe — about 7 % of an import into a 50M-event database, perf).
///
/// Why batches: at 50M events the user and item id B-trees hold 1M and 500k keys, and the first sight
/// of each id in a 1M-row delta was a random descent of one of them — about 2 µs each (cache misses,
/// plus the hardened LMDB's page checks), 25 % of the import's time (perf). Looked up in key order
/// through one cursor, consecutive keys mostly fall in the leaf page the cursor already holds, which
/// LMDB searches without descending again (`mdb_cursor_set`), so each page is reached about once a batch.
final class UnseenIDs {
    /// Marks a provisional number in the importer's id maps. Ids stored or created beside provisional
    /// numbers stay below it (checked where they are read or made).
    static let provisionalTag: UInt32 = 1 << 31

    struct Entry {
        /// Where the key's bytes are in `arena`.
        var offset: Int
        var length: Int
        var hash: UInt32
        /// The file line of its first row (for errors, and to create new ids in file order).
        var line: Int
    }

    // Added to for every id the import meets first, from one thread: no dynamic exclusivity bookkeeping.
    @exclusivity(unchecked) private(set) var entries: [Entry] = []
    @exclusivity(unchecked) private var arena: [UInt8] = []
    /// One for the whole import: LMDB walks a write transaction's open cursors on every write to their
    /// table (to keep them valid), so a cursor a batch would cost each later put.
    private var cursor: LMDBCursor?

    var count: Int { entries.count }
    var arenaBytes: Int { arena.count }

    /// Adds `key` (not in the batch: the caller's map holds every id it has met) and returns its provisional number.
    @inline(__always)
    func add(_ key: UnsafeRawBufferPointer, hash: UInt32, line: Int) -> UInt32 {
        let index = UInt32(entries.count)
        // Unreachable: a batch is resolved at `idLookupBatch` ids or 16 MiB of their bytes, and the
        // sort buffer (whose places the rows take) is far smaller than 2^31.
        precondition(index < Self.provisionalTag, "a lookup batch below 2^31 ids")
        entries.append(Entry(offset: arena.count, length: key.count, hash: hash, line: line))
        arena.append(contentsOf: key)
        return index
    }

    /// Calls `body` with the bytes of entry `i` (valid only inside it).
    @inline(__always)
    func withKey<T>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let e = entries[i]
        return try arena.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[e.offset..<e.offset + e.length])) }
    }

    /// The stored id of every entry (0: not stored), found by walking `table` with one cursor in key
    /// order, and the error of each entry whose lookup failed (a damaged id entry, a store failure): the
    /// caller reports it when it reaches that entry's row, so an earlier row's error still comes first.
    func storedIDs(in table: Table, tx: WriteTransaction) throws -> (ids: [UInt32], failures: [Int: Error]) {
        var ids = [UInt32](repeating: 0, count: entries.count)
        var failures: [Int: Error] = [:]
        guard !entries.isEmpty else { return (ids, failures) }
        let cursor = try self.cursor ?? tx.raw.cursor(table)
        self.cursor = cursor
        arena.withUnsafeBytes { arena in
            let base = arena.baseAddress!
            // Sorted as LMDB's default comparator orders keys (bytes, then the shorter first) on the
            // first 8 bytes, big-endian and zero-padded, then all of them; only the speed depends on it.
            var order: [(prefix: UInt64, index: Int)] = entries.indices.map { i in
                let e = entries[i]
                var p: UInt64 = 0
                for j in 0..<8 { p = p << 8 | (j < e.length ? UInt64(arena[e.offset + j]) : 0) }
                return (p, i)
            }
            order.sort { a, b in
                if a.prefix != b.prefix { return a.prefix < b.prefix }
                let x = entries[a.index], y = entries[b.index]
                let c = memcmp(base + x.offset, base + y.offset, min(x.length, y.length))
                return c != 0 ? c < 0 : x.length < y.length
            }
            for (_, i) in order {
                let e = entries[i]
                // Never stored (ids are validated to 1…500 bytes when created), and LMDB refuses to
                // search for an empty or over-long key: left as new, for validation to name the problem.
                guard e.length > 0, e.length <= maxExternalIDBytes else { continue }
                let key = UnsafeRawBufferPointer(start: base + e.offset, count: e.length)
                do {
                    ids[i] = try cursor.seek(key) { k, v -> UInt32 in
                        guard k.count == key.count, memcmp(k.baseAddress!, key.baseAddress!, key.count) == 0 else { return 0 }
                        return try Keys.storedID(v, table: table, externalID: String(decoding: key, as: UTF8.self))
                    } ?? 0
                } catch {
                    failures[i] = error
                }
            }
        }
        return (ids, failures)
    }

    /// Forgets every entry (after its batch is resolved), keeping the memory: fresh memory each batch
    /// was more page faults than lookups saved.
    func removeAll() {
        entries.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: arena.count <= 64 << 20)
    }
}

/// A bit for each place of the import's sort buffer: the record there holds a provisional number (see
/// `UnseenIDs`) for one kind of id. A quarter of a megabyte for the default 2M-event buffer.
final class PlaceBits {
    private let words: UnsafeMutablePointer<UInt64>
    private let wordCount: Int
    /// The words with bits set are within lowest...highest (empty when highest < lowest).
    @exclusivity(unchecked) private var lowest = Int.max
    @exclusivity(unchecked) private var highest = -1

    init(places: Int) {
        wordCount = (places + 63) / 64
        words = .allocate(capacity: wordCount)
        words.initialize(repeating: 0, count: wordCount)
    }
    deinit { words.deallocate() }

    var isEmpty: Bool { highest < 0 }

    @inline(__always)
    func set(_ place: Int) {
        let w = place >> 6
        // Unreachable from input: places are below the sort buffer's capacity, which sized this.
        precondition(w < wordCount, "a place in the sort buffer")
        words[w] |= 1 << UInt64(place & 63)
        if w < lowest { lowest = w }
        if w > highest { highest = w }
    }

    /// Calls `body` with every place set, in ascending order, and clears them.
    func drain(_ body: (Int) -> Void) {
        guard highest >= lowest else { return }
        for w in lowest...highest {
            var bits = words[w]
            words[w] = 0
            while bits != 0 {
                body(w << 6 | bits.trailingZeroBitCount)
                bits &= bits - 1
            }
        }
        lowest = .max
        highest = -1
    }
}
