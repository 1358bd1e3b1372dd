// The only file that touches LMDB's C API. Everything above it sees `LMDBEnvironment`,
// `LMDBTransaction` and `LMDBCursor`, which speak in byte buffers and Swift errors.
//
// Rules from lmdb.h that this file encodes:
// - one write transaction at a time (LMDB serialises writers with a mutex in lock.mdb);
// - values returned by get/cursor are valid only until the next write in that transaction or its end
//   (the borrowing accessors take a closure so the pointer cannot escape);
// - `mdb_env_set_mapsize` may only be called when this process has no active transaction
//   (guarded by `resizeLock`: transactions hold it shared, a resize holds it exclusive);
// - the environment is opened with MDB_NOTLS so read transactions are not tied to a thread;
// - dbi handles are opened once at open time and never closed (no `mdb_dbi_close` in deinit).
import CLMDB
import Foundation

/// One LMDB environment (a database directory with data.mdb and lock.mdb).
final class LMDBEnvironment: @unchecked Sendable {
    private let env: OpaquePointer
    private var dbis: [Table: MDB_dbi] = [:]
    private var resizeLock = pthread_rwlock_t()
    let path: String
    let readOnly: Bool

    /// Opens (and with `create`, creates) the environment and every table in `Table.allCases`.
    init(path: String, readOnly: Bool, initialMapSize: Int) throws {
        self.path = path
        self.readOnly = readOnly
        var envPtr: OpaquePointer?
        try LMDBEnvironment.check(mdb_env_create(&envPtr), "mdb_env_create")
        guard let envPtr else { throw RecDBError.storage(code: -1, message: "mdb_env_create returned no handle", context: path) }
        env = envPtr
        pthread_rwlock_init(&resizeLock, nil)
        do {
            try LMDBEnvironment.check(mdb_env_set_maxdbs(env, MDB_dbi(Table.allCases.count + 8)), "mdb_env_set_maxdbs")
            try LMDBEnvironment.check(mdb_env_set_maxreaders(env, 510), "mdb_env_set_maxreaders")
            try LMDBEnvironment.check(mdb_env_set_mapsize(env, initialMapSize), "mdb_env_set_mapsize")
            var flags = UInt32(MDB_NOTLS | MDB_NORDAHEAD)
            if readOnly { flags |= UInt32(MDB_RDONLY) }
            try LMDBEnvironment.check(mdb_env_open(env, path, flags, 0o644), "opening \(path)")
            try openTables()
        } catch {
            // No mdb_env_close here: every stored property is set, so a throw from here on still runs
            // deinit, which closes the environment (closing it here too was a double free, found by
            // fuzzing with an empty data.mdb).
            throw error
        }
    }

    deinit {
        mdb_env_close(env)
        pthread_rwlock_destroy(&resizeLock)
    }

    private func openTables() throws {
        // Tables are created by the first writable open; a read-only open requires them to exist.
        // Committed even when read-only: dbi handles opened in a transaction that is aborted are closed with it.
        try withRawTransaction(readOnly: readOnly, commit: true) { txn in
            for table in Table.allCases {
                var dbi = MDB_dbi()
                let flags = readOnly ? 0 : UInt32(MDB_CREATE)
                let rc = mdb_dbi_open(txn, table.rawValue, flags, &dbi)
                if rc == MDB_NOTFOUND {
                    throw RecDBError.notADatabase(path: path, reason: "table \(table.rawValue) is missing (run `rdbctl init` first)")
                }
                try LMDBEnvironment.check(rc, "opening table \(table.rawValue)")
                dbis[table] = dbi
            }
        }
    }

    // MARK: - Transactions

    /// Runs `body` in a read-only snapshot. The snapshot is consistent: it sees exactly the
    /// transactions committed before it began.
    func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        while true {
            do {
                return try withRawTransaction(readOnly: true) { txn in
                    let t = LMDBTransaction(txn: txn, environment: self, readOnly: true)
                    defer { t.invalidate() }
                    return try body(t)
                }
            } catch let error as MapSignal {
                try handle(error)
            }
        }
    }

    /// Runs `body` in the write transaction, committing when it returns and aborting when it throws.
    /// When the map is full the transaction is aborted, the map is doubled and `body` runs again,
    /// so `body` must have no effects outside the transaction.
    func write<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        if readOnly { throw RecDBError.readOnly(path: path) }
        while true {
            do {
                return try withRawTransaction(readOnly: false) { txn in
                    let t = LMDBTransaction(txn: txn, environment: self, readOnly: false)
                    defer { t.invalidate() }
                    let result = try body(t)
                    if t.hitMapFull { throw MapSignal.full }
                    return result
                }
            } catch let error as MapSignal {
                try handle(error)
            }
        }
    }

    /// Internal signal: the map must grow (or adopt another process's size) before retrying.
    enum MapSignal: Error { case full, resized }

    private func handle(_ signal: MapSignal) throws {
        pthread_rwlock_wrlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        switch signal {
        case .resized:
            // Another process grew the map: adopt its size (size 0 means "use the current file's").
            try LMDBEnvironment.check(mdb_env_set_mapsize(env, 0), "adopting a map size grown by another process")
        case .full:
            let current = mapSize
            let grown = current < (1 << 30) ? current * 2 : current + (1 << 30)
            try LMDBEnvironment.check(mdb_env_set_mapsize(env, grown), "growing the map to \(grown) bytes")
        }
    }

    private func withRawTransaction<T>(readOnly: Bool, commit: Bool = false, _ body: (OpaquePointer) throws -> T) throws -> T {
        pthread_rwlock_rdlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        var txnPtr: OpaquePointer?
        let rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txnPtr)
        if rc == MDB_MAP_RESIZED { throw MapSignal.resized }
        try LMDBEnvironment.check(rc, readOnly ? "beginning a read transaction" : "beginning a write transaction")
        guard let txn = txnPtr else { throw RecDBError.storage(code: -1, message: "no transaction handle", context: path) }
        let result: T
        do {
            result = try body(txn)
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        if readOnly && !commit {
            mdb_txn_abort(txn)  // a read transaction has nothing to commit; abort releases its slot
        } else {
            let crc = mdb_txn_commit(txn)  // commit frees the handle even when it fails
            if crc == MDB_MAP_FULL { throw MapSignal.full }
            try LMDBEnvironment.check(crc, "committing")
        }
        return result
    }

    // MARK: - Environment facts

    var mapSize: Int {
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        return info.me_mapsize
    }

    /// Bytes in use: last used page × page size.
    var usedBytes: Int {
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        var stat = MDB_stat()
        mdb_env_stat(env, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// Makes sure at least `bytes` more can be written without a retry (used before large imports).
    func reserve(additionalBytes bytes: Int) throws {
        let needed = usedBytes + bytes
        guard needed > mapSize else { return }
        pthread_rwlock_wrlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        var size = mapSize
        while size < needed { size *= 2 }
        try LMDBEnvironment.check(mdb_env_set_mapsize(env, size), "growing the map to \(size) bytes")
    }

    /// Consistent copy of the environment into `directory` (which must exist and be empty), made
    /// from a read snapshot while other processes keep using the database. With `compact` free
    /// pages are omitted and the copy is renumbered.
    func copy(to directory: String, compact: Bool) throws {
        try LMDBEnvironment.check(mdb_env_copy2(env, directory, compact ? UInt32(MDB_CP_COMPACT) : 0), "copying to \(directory)")
    }

    func dbi(_ table: Table) -> MDB_dbi { dbis[table]! }

    static func check(_ rc: Int32, _ context: @autoclosure () -> String) throws {
        guard rc != 0 else { return }
        if rc == MDB_MAP_FULL { throw MapSignal.full }
        if rc == MDB_MAP_RESIZED { throw MapSignal.resized }
        let message = String(cString: mdb_strerror(rc))
        throw RecDBError.storage(code: rc, message: message, context: context())
    }
}

/// A live LMDB transaction. Valid only inside the closure that received it.
final class LMDBTransaction {
    fileprivate var txn: OpaquePointer?
    unowned let environment: LMDBEnvironment
    let readOnly: Bool
    /// Set when LMDB reported MDB_MAP_FULL: the transaction is then unusable and must be retried
    /// in a bigger map even if the caller's closure swallowed the error.
    fileprivate var hitMapFull = false

    fileprivate init(txn: OpaquePointer, environment: LMDBEnvironment, readOnly: Bool) {
        self.txn = txn
        self.environment = environment
        self.readOnly = readOnly
    }

    fileprivate func invalidate() { txn = nil }

    private var handle: OpaquePointer {
        guard let txn else { preconditionFailure("a RecDB transaction was used outside its closure") }
        return txn
    }

    /// Borrowing read: `body` sees LMDB's own memory (zero copy); the buffer must not escape.
    func withValue<T>(_ table: Table, key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(handle, environment.dbi(table), &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBEnvironment.check(rc, "reading \(table.rawValue)")
        return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    func contains(_ table: Table, key: UnsafeRawBufferPointer) throws -> Bool {
        try withValue(table, key: key) { _ in true } ?? false
    }

    /// Copying read.
    func get(_ table: Table, key: UnsafeRawBufferPointer) throws -> [UInt8]? {
        try withValue(table, key: key) { Array($0) }
    }

    func put(_ table: Table, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, append: Bool = false) throws {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let rc = mdb_put(handle, environment.dbi(table), &k, &v, append ? UInt32(MDB_APPEND) : 0)
        try checkWrite(rc, table)
    }

    private func checkWrite(_ rc: Int32, _ table: Table) throws {
        if rc == MDB_MAP_FULL { hitMapFull = true }
        try LMDBEnvironment.check(rc, "writing \(table.rawValue)")
    }

    /// Reserves `count` bytes for the value and lets `fill` write them in place (MDB_RESERVE).
    func putReserved(_ table: Table, key: UnsafeRawBufferPointer, count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: count, mv_data: nil)
        let rc = mdb_put(handle, environment.dbi(table), &k, &v, UInt32(MDB_RESERVE))
        try checkWrite(rc, table)
        try fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    @discardableResult
    func delete(_ table: Table, key: UnsafeRawBufferPointer) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let rc = mdb_del(handle, environment.dbi(table), &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try LMDBEnvironment.check(rc, "deleting from \(table.rawValue)")
        return true
    }

    /// Removes every entry of `table` (keeps the table).
    func clear(_ table: Table) throws {
        try LMDBEnvironment.check(mdb_drop(handle, environment.dbi(table), 0), "clearing \(table.rawValue)")
    }

    func count(_ table: Table) throws -> Int {
        var stat = MDB_stat()
        try LMDBEnvironment.check(mdb_stat(handle, environment.dbi(table), &stat), "stat \(table.rawValue)")
        return stat.ms_entries
    }

    func cursor(_ table: Table) throws -> LMDBCursor {
        var c: OpaquePointer?
        try LMDBEnvironment.check(mdb_cursor_open(handle, environment.dbi(table), &c), "opening a cursor on \(table.rawValue)")
        return LMDBCursor(cursor: c!, table: table)
    }
}

/// A cursor over one table. Closed on deinit; must not outlive its transaction.
final class LMDBCursor {
    private let cursor: OpaquePointer
    let table: Table

    fileprivate init(cursor: OpaquePointer, table: Table) {
        self.cursor = cursor
        self.table = table
    }

    deinit { mdb_cursor_close(cursor) }

    enum Move { case first, last, next, previous, current }

    /// Moves and hands the borrowed (key, value) to `body`; returns nil at either end.
    func move<T>(_ move: Move, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        let op: MDB_cursor_op
        switch move {
        case .first: op = MDB_FIRST
        case .last: op = MDB_LAST
        case .next: op = MDB_NEXT
        case .previous: op = MDB_PREV
        case .current: op = MDB_GET_CURRENT
        }
        var k = MDB_val(), v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBEnvironment.check(rc, "moving a cursor on \(table.rawValue)")
        return try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                        UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// Positions at the first key ≥ `key` and hands it to `body`; nil when there is none.
    func seek<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBEnvironment.check(rc, "seeking a cursor on \(table.rawValue)")
        return try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                        UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// Deletes the entry under the cursor.
    func deleteCurrent() throws {
        try LMDBEnvironment.check(mdb_cursor_del(cursor, 0), "deleting through a cursor on \(table.rawValue)")
    }
}
