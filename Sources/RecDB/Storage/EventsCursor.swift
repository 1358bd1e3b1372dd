import Foundation

/// `user_events` and `user_events_delta` read as one table: the union of their entries in key order.
///
/// Why two tables: a bulk import into users that already have events writes their new blocks to
/// `user_events_delta` instead of beside their older blocks in `user_events`. Inserting there rewrote
/// (copy-on-write) a page of every such user — at 50M events, 13,000 existing pages for a 1M-row
/// import, which made it 15–20 % slower than the same rows into an empty database (README, "Into an
/// existing database"). An empty delta table takes those users in ascending order: the import appends.
///
/// A block's key (user, first timestamp, first sequence) is unique across both tables, and every
/// reader goes through this cursor, so where a block lives never changes what is read: a user's blocks
/// are the union of the user's key range in both tables, in key order.
///
/// A merging cursor over two LMDB cursors (as LevelDB's merging iterator): each stands at its own next
/// entry in the current direction, and this cursor at the smaller (forward) or larger (backward) of the
/// two. Changing direction repositions the other table's cursor explicitly by key, so nothing relies on
/// where LMDB leaves a cursor that ran off an end. Two equal keys are damage.
///
/// Every walk starts with `seek` or `move(.first/.last)`; `next`, `previous` and `current` continue it
/// (a write between them may move LMDB's cursors: callers position again after writing).
final class EventsCursor {
    private typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
    private let main: LMDBCursor
    /// nil when the table does not exist: a format-3 database opened read-only.
    private let delta: LMDBCursor?
    /// The entry each table's cursor stands at, if it stands at one in the current direction. Borrowed
    /// from LMDB, as its cursor handed it over: valid until that cursor moves again or the transaction
    /// writes (pointers into the map or into the write transaction's pages), which is what lets a step
    /// cost no copy and no second lookup.
    private var mainEntry: Entry?, deltaEntry: Entry?
    private var forward = true
    /// The table of the entry under the cursor (nil: none).
    private(set) var currentTable: Table?

    init(_ raw: LMDBTransaction) throws {
        main = try raw.cursor(.userEvents)
        if raw.hasTable(.userEventsDelta) {
            delta = try raw.cursor(.userEventsDelta)
        } else {
            // Opened read-only as format 3, without the table. A writer may have upgraded the file since
            // (and written blocks there, or moved blocks there): then refuse, never return part of a history.
            try Self.checkStillFormat3(raw)
            delta = nil
        }
    }

    /// Throws when the recorded format is no longer 3 in this snapshot of a database opened without
    /// `user_events_delta` (see `init`).
    static func checkStillFormat3(_ raw: LMDBTransaction) throws {
        guard let version = try MetaStore(raw).u64(.formatVersion), version > 3 else { return }
        throw RecDBError.storage(code: -1, message: "a writer upgraded it to format \(version) (a second event table) after this process opened it read-only as format 3: open it again",
                                 context: "reading the events of \(raw.environment.path)")
    }

    /// Positions at the first key ≥ `key` and hands it to `body`; nil when there is none.
    func seek<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        mainEntry = try main.seek(key, Self.borrow)
        deltaEntry = try delta?.seek(key, Self.borrow) ?? nil
        forward = true
        return try settle(body)
    }

    func seek<T>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        try key.withUnsafeBytes { try seek($0, body) }
    }

    /// Positions at the last key < `key` (a backwards walk's start) and hands it to `body`; nil when there is none.
    func seekBefore<T>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        try key.withUnsafeBytes { k in
            mainEntry = try Self.lastBefore(k, in: main)
            deltaEntry = try delta.map { try Self.lastBefore(k, in: $0) } ?? nil
        }
        forward = false
        return try settle(body)
    }

    /// Moves and hands the (key, value) under the cursor to `body`; nil at either end.
    func move<T>(_ move: LMDBCursor.Move, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        switch move {
        case .first, .last:
            mainEntry = try main.move(move, Self.borrow)
            deltaEntry = try delta?.move(move, Self.borrow) ?? nil
            forward = move == .first
        case .current:
            guard let entry = currentTable == .userEvents ? mainEntry : currentTable == .userEventsDelta ? deltaEntry : nil else { return nil }
            return try body(entry.key, entry.value)
        case .next, .previous:
            guard let table = currentTable else { return nil }
            let wantForward = move == .next
            if wantForward != forward {
                // The other table's cursor stands on the wrong side of the current key: put it on the right one.
                if table == .userEvents {
                    if let delta { deltaEntry = try Self.reposition(delta, after: wantForward, mainEntry!.key) }
                } else {
                    mainEntry = try Self.reposition(main, after: wantForward, deltaEntry!.key)
                }
                forward = wantForward
            }
            if table == .userEvents { mainEntry = try main.move(move, Self.borrow) } else { deltaEntry = try delta!.move(move, Self.borrow) }
        }
        return try settle(body)
    }

    private static func borrow(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Entry { (key, value) }

    /// The entry with the last key < `key`: the one before the first key ≥ it, or the table's last when
    /// there is none. (A failed MDB_PREV leaves the cursor where it was: its nil is read as "none".)
    private static func lastBefore(_ key: UnsafeRawBufferPointer, in cursor: LMDBCursor) throws -> Entry? {
        try cursor.seek(key) { _, _ in () } == nil ? try cursor.move(.last, borrow) : try cursor.move(.previous, borrow)
    }

    /// Stands `cursor` at the first key after `key` (`after`) or the last key before it.
    private static func reposition(_ cursor: LMDBCursor, after: Bool, _ key: UnsafeRawBufferPointer) throws -> Entry? {
        guard after else {
            let entry = try lastBefore(key, in: cursor)
            if let entry, compare(entry.key, key) == 0 { throw duplicate(key) }  // cannot be: < key
            return entry
        }
        let entry = try cursor.seek(key, borrow)
        if let entry, compare(entry.key, key) == 0 { throw duplicate(key) }
        return entry
    }

    /// Chooses the entry under the cursor from the two tables' and hands it to `body`.
    private func settle<T>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        let entry: Entry
        switch (mainEntry, deltaEntry) {
        case (nil, nil): currentTable = nil; return nil
        case (let m?, nil): currentTable = .userEvents; entry = m
        case (nil, let d?): currentTable = .userEventsDelta; entry = d
        case (let m?, let d?):
            let order = Self.compare(m.key, d.key)
            if order == 0 { throw Self.duplicate(m.key) }
            let mainFirst = (order < 0) == forward
            currentTable = mainFirst ? .userEvents : .userEventsDelta
            entry = mainFirst ? m : d
        }
        return try body(entry.key, entry.value)
    }

    /// LMDB's default key order: bytes compared unsigned, a prefix first.
    static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let n = min(a.count, b.count)
        if n > 0, let pa = a.baseAddress, let pb = b.baseAddress {
            let c = memcmp(pa, pb, n)
            if c != 0 { return c < 0 ? -1 : 1 }
        }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    }

    static func duplicate(_ key: UnsafeRawBufferPointer) -> RecDBError {
        .damaged(table: Table.userEventsDelta.rawValue, key: describeKey(key), detail: "the block's key is in user_events too")
    }

    static func duplicate(_ key: [UInt8]) -> RecDBError { key.withUnsafeBytes { duplicate($0) } }
}
