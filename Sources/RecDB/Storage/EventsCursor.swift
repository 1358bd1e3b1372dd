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
    private let main: LMDBCursor
    /// nil when the table does not exist: a format-3 database opened read-only.
    private let delta: LMDBCursor?
    /// The key each table's cursor stands at, if it stands at one in the current direction.
    private var mainKey: [UInt8] = [], deltaKey: [UInt8] = []
    private var mainValid = false, deltaValid = false
    private var forward = true
    /// The table of the entry under the cursor (nil: none).
    private(set) var currentTable: Table?

    init(_ raw: LMDBTransaction) throws {
        main = try raw.cursor(.userEvents)
        delta = raw.hasTable(.userEventsDelta) ? try raw.cursor(.userEventsDelta) : nil
        mainKey.reserveCapacity(EventBlock.keyBytes)
        deltaKey.reserveCapacity(EventBlock.keyBytes)
    }

    /// Positions at the first key ≥ `key` and hands it to `body`; nil when there is none.
    func seek<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        mainValid = try main.seek(key) { k, _ in remember(k, in: &mainKey) } != nil
        deltaValid = try delta?.seek(key) { k, _ in remember(k, in: &deltaKey) } != nil
        forward = true
        return try settle(body)
    }

    func seek<T>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        try key.withUnsafeBytes { try seek($0, body) }
    }

    /// Moves and hands the (key, value) under the cursor to `body`; nil at either end.
    func move<T>(_ move: LMDBCursor.Move, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        switch move {
        case .first, .last:
            mainValid = try main.move(move) { k, _ in remember(k, in: &mainKey) } != nil
            deltaValid = try delta?.move(move) { k, _ in remember(k, in: &deltaKey) } != nil
            forward = move == .first
        case .current:
            guard let table = currentTable else { return nil }
            return try (table == .userEvents ? main : delta!).move(.current, body)
        case .next, .previous:
            guard let table = currentTable else { return nil }
            let wantForward = move == .next
            if wantForward != forward {
                // The other table's cursor stands on the wrong side of the current key: put it on the right one.
                let key = table == .userEvents ? mainKey : deltaKey
                if table == .userEvents { try reposition(delta, after: wantForward, key, &deltaKey, &deltaValid) }
                else { try reposition(main, after: wantForward, key, &mainKey, &mainValid) }
                forward = wantForward
            }
            if table == .userEvents {
                mainValid = try main.move(move) { k, _ in remember(k, in: &mainKey) } != nil
            } else {
                deltaValid = try delta!.move(move) { k, _ in remember(k, in: &deltaKey) } != nil
            }
        }
        return try settle(body)
    }

    private func remember(_ key: UnsafeRawBufferPointer, in stored: inout [UInt8]) {
        stored.removeAll(keepingCapacity: true)
        stored.append(contentsOf: key)
    }

    /// Stands `cursor` at the first key after `key` (`after`) or the last key before it; valid = false when none.
    private func reposition(_ cursor: LMDBCursor?, after: Bool, _ key: [UInt8], _ stored: inout [UInt8], _ valid: inout Bool) throws {
        guard let cursor else { valid = false; return }
        let atOrAfter = try key.withUnsafeBytes { k in try cursor.seek(k) { found, _ -> Bool in
            let equal = Self.compare(found, k) == 0
            if !equal { remember(found, in: &stored) }
            return equal
        } }
        if atOrAfter == true { throw Self.duplicate(key) }
        if after {
            valid = atOrAfter != nil
        } else {
            // The entry before the first key ≥ `key`, or the table's last when there is none. (A failed
            // MDB_PREV leaves the cursor where it was: its nil is read as "none", never as a position.)
            valid = try cursor.move(atOrAfter == nil ? .last : .previous) { k, _ in remember(k, in: &stored) } != nil
        }
    }

    /// Chooses the entry under the cursor from the two tables' and hands it to `body`.
    private func settle<T>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        switch (mainValid, deltaValid) {
        case (false, false): currentTable = nil; return nil
        case (true, false): currentTable = .userEvents
        case (false, true): currentTable = .userEventsDelta
        case (true, true):
            let order = mainKey.withUnsafeBytes { m in deltaKey.withUnsafeBytes { t in Self.compare(m, t) } }
            if order == 0 { throw Self.duplicate(mainKey) }
            currentTable = (order < 0) == forward ? .userEvents : .userEventsDelta
        }
        return try (currentTable == .userEvents ? main : delta!).move(.current, body)
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

    static func duplicate(_ key: [UInt8]) -> RecDBError {
        .damaged(table: Table.userEventsDelta.rawValue, key: describeKey(key), detail: "the block's key is in user_events too")
    }
}
