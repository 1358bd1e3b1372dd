// The only file that touches LMDB's C API. Everything above it sees `LMDBEnvironment`,
// `LMDBTransaction` and `LMDBCursor`, which speak in byte buffers and Swift errors.
//
// Rules from lmdb.h that this file encodes:
// - one write transaction at a time (LMDB serialises writers with a mutex in lock.mdb, across
//   processes). A second write on a thread that already holds one would wait for itself forever, so
//   nesting is detected per thread and refused with `RecDBError.nestedTransaction`;
// - values returned by get/cursor are valid only until the next write in that transaction or its end
//   (the borrowing accessors take a closure so the pointer cannot escape);
// - `mdb_env_set_mapsize` may only be called when this process has no active transaction
//   (guarded by `resizeLock`: transactions hold it shared, a resize holds it exclusive; the lock
//   prefers writers, so steady reads cannot starve a resize, and a thread already inside a
//   transaction never takes it twice, so that preference cannot deadlock it);
// - the map never has to grow inside a write: `write` makes room *before* the transaction begins
//   (headroom proportional to the data, plus what the caller reserved), so a closure runs once.
//   Should a transaction still outgrow the map it is rolled back, the map grown, and
//   `RecDBError.mapFull` thrown: no hidden second run;
// - another process may have grown the map: `MDB_MAP_RESIZED` at begin is answered by adopting the
//   size recorded in the file (`mdb_env_set_mapsize(env, 0)`) and beginning again;
// - the environment is opened with MDB_NOTLS so read transactions are not tied to a thread;
// - dbi handles are opened once at open time and never closed (no `mdb_dbi_close` in deinit);
// - a failed `mdb_env_open` still needs exactly one `mdb_env_close`;
// - reader slots of processes that died are cleared (`mdb_reader_check`) at open and periodically;
// - MDB_WRITEMAP (opt-in, `writeMap`, for bulk imports): LMDB sizes the file to the map
//   (`ftruncate`, sparse) and writes pages straight into the shared mapping, so a transaction's dirty
//   pages are file-backed instead of malloc'd (up to 512 MiB of anonymous memory otherwise). Three
//   hazards are handled here: a page written into a hole on a full disk would be SIGBUS, so every write
//   transaction first allocates the map's unused tail on disk (`posix_fallocate`: a clean ENOSPC
//   error before anything is written); LMDB ftruncates the file to its own map size at open and at
//   every resize, outside any transaction, which could cut off pages another process is writing past
//   that size, so the map writer holds an exclusive `flock` on the directory for its whole life and
//   every other write (resize, pages, commit) runs under a shared one (a process that cannot get the
//   exclusive lock at once opens normally); and the file is cut back to its used pages when the
//   environment closes (inside a write transaction; readers never touch pages past the last committed one).
//
// Damaged files: LMDB is built from source with RecDB's page checks (Sources/CLMDB/patches), so a damaged
// page is `MDB_CORRUPTED` instead of a read outside the page; it becomes `RecDBError.damaged`. As a second
// line, every key and value LMDB hands out is bounded here by the mapped file before Swift sees it. (With
// MDB_WRITEMAP a write transaction's own dirty pages are in the map and marked dirty; the patch skips them.)
import CLMDB
import Foundation

/// One LMDB environment (a database directory with data.mdb and lock.mdb).
// Unchecked: the handle and the dbi table are immutable after init, LMDB's environment is safe to share
// between threads with MDB_NOTLS, and the mutable state is guarded by `resizeLock` and `stateLock`.
final class LMDBEnvironment: @unchecked Sendable {
    private let env: OpaquePointer
    /// Each table's handle by `Table.ordinal` (nil: a table a format-3 database lacks). An array, not a
    /// dictionary: every read looks one up, and hashing the table's name showed in the serving profile.
    private let dbis: [MDB_dbi?]
    /// Shared by transactions, exclusive for `mdb_env_set_mapsize`. Heap-allocated: a pthread lock must not move.
    private let resizeLock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Per thread: which transactions of this environment the thread is inside (see `ThreadState`).
    private let threadKey: pthread_key_t
    /// Guards `lastReaderCheck` and `reservedBytes`.
    private let stateLock = NSLock()
    private var lastReaderCheck = Date()
    private var reservedBytes = 0
    let path: String
    let readOnly: Bool
    /// The directory's descriptor holding the exclusive `flock` of the one map-writing process, or -1.
    private let mapWriterLock: Int32
    /// Write transactions write pages straight into the map (MDB_WRITEMAP; see the notes at the top).
    var writesThroughMap: Bool { mapWriterLock >= 0 }

    /// Free space every write starts with, at least: growing the map means waiting for every
    /// transaction of the process to end, so it is done rarely and in large steps (address space, not disk).
    let minimumHeadroom: Int
    /// How often (seconds) a writer clears the reader slots of dead processes.
    static let readerCheckInterval: TimeInterval = 10

    /// Opens (and with `create`, creates) the environment and every table in `Table.allCases`.
    /// `writeMap`: write through the memory map when this process can be the only one doing so (else normally).
    init(path: String, readOnly: Bool, initialMapSize: Int, minimumHeadroom: Int = 256 << 20, writeMap: Bool = false) throws {
        self.path = path
        self.readOnly = readOnly
        self.minimumHeadroom = max(0, minimumHeadroom)
        let mapLock = writeMap && !readOnly ? LMDBEnvironment.takeMapWriterLock(path) : -1
        let env: OpaquePointer
        do {
            env = try LMDBEnvironment.openEnvironment(path: path, readOnly: readOnly, initialMapSize: initialMapSize, writeMap: mapLock >= 0)
        } catch {
            if mapLock >= 0 { close(mapLock) }
            throw error
        }
        let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
        var key = pthread_key_t()
        let keyStatus = pthread_key_create(&key, nil)
        let tables: [Table: MDB_dbi]
        do {
            guard keyStatus == 0 else {
                throw RecDBError.storage(code: keyStatus, message: String(cString: strerror(keyStatus)), context: "creating a thread key for \(path)")
            }
            var stale: Int32 = 0
            mdb_reader_check(env, &stale)
            tables = try LMDBEnvironment.openTables(env, path: path, readOnly: readOnly)
        } catch {
            // Nothing of `self` exists yet, so deinit will not run: release everything here, once.
            if keyStatus == 0 { pthread_key_delete(key) }
            pthread_rwlock_destroy(lock)
            lock.deallocate()
            mdb_env_close(env)
            if mapLock >= 0 { close(mapLock) }
            throw error
        }
        self.mapWriterLock = mapLock
        self.env = env
        self.resizeLock = lock
        self.threadKey = key
        var byOrdinal = [MDB_dbi?](repeating: nil, count: Table.allCases.count)
        for (table, dbi) in tables { byOrdinal[table.ordinal] = dbi }
        self.dbis = byOrdinal
    }

    deinit {
        if writesThroughMap { shrinkToUsedPages() }
        mdb_env_close(env)
        // Released after the file has its final length, so the next map writer cannot race the cut.
        if mapWriterLock >= 0 { close(mapWriterLock) }
        pthread_key_delete(threadKey)
        pthread_rwlock_destroy(resizeLock)
        resizeLock.deallocate()
    }

    /// The exclusive, non-blocking `flock` on the database directory that lets one process write through
    /// the map; -1 when another process holds it (this one then writes the ordinary way).
    private static func takeMapWriterLock(_ path: String) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return -1 }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return -1
        }
        return fd
    }

    /// A shared `flock` on the directory for one write of a process that does not write through the map:
    /// waits while a map writer lives (it would wait for LMDB's writer lock anyway: imports are one transaction).
    private func takeSharedWriterLock() throws -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "opening \(path) to lock it for a write")
        }
        while flock(fd, LOCK_SH) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(fd)
            throw RecDBError.storage(code: code, message: String(cString: strerror(code)), context: "locking \(path) for a write")
        }
        return fd
    }

    /// The data file's descriptor (LMDB's own).
    private var dataFile: Int32? {
        var fd: Int32 = -1
        guard mdb_env_get_fd(env, &fd) == 0, fd >= 0 else { return nil }
        return fd
    }

    /// Map-writing only, inside a write transaction: backs the map's unused tail with disk blocks, so no
    /// page this transaction writes can land in a hole (a full disk would otherwise be SIGBUS, not an error).
    private func allocateMapTail() throws {
        guard let fd = dataFile else {
            throw RecDBError.storage(code: -1, message: "no file descriptor", context: "reserving disk for a write through the map of \(path)")
        }
        let used = usedBytes, size = mapSize
        guard size > used else { return }
        let rc = posix_fallocate(fd, off_t(used), off_t(size - used))
        guard rc == 0 else {
            throw RecDBError.storage(code: rc, message: String(cString: strerror(rc)),
                                     context: "reserving \(size - used) bytes of disk in \(path)/data.mdb up front for a write through the memory map")
        }
    }

    /// Map-writing only, at close: cuts data.mdb back from the map's size to its used pages (LMDB
    /// extended it to the map). Done inside a write transaction, so no other writer is active; readers
    /// only read pages up to the last committed one. Best effort: a file left longer is still valid.
    private func shrinkToUsedPages() {
        var txn: OpaquePointer?
        guard mdb_txn_begin(env, nil, 0, &txn) == 0, let txn else { return }
        defer { mdb_txn_abort(txn) }
        guard let fd = dataFile else { return }
        var st = stat()
        let used = usedBytes
        guard fstat(fd, &st) == 0, Int(st.st_size) > used else { return }
        _ = ftruncate(fd, off_t(used))
    }

    /// Creates, configures and opens the LMDB handle; on failure it is closed (once) and the error thrown.
    private static func openEnvironment(path: String, readOnly: Bool, initialMapSize: Int, writeMap: Bool) throws -> OpaquePointer {
        var envPtr: OpaquePointer?
        try check(mdb_env_create(&envPtr), "mdb_env_create")
        guard let env = envPtr else { throw RecDBError.storage(code: -1, message: "mdb_env_create returned no handle", context: path) }
        do {
            try check(mdb_env_set_maxdbs(env, MDB_dbi(Table.allCases.count + 8)), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, 510), "mdb_env_set_maxreaders")
            try check(mdb_env_set_mapsize(env, max(initialMapSize, 1 << 20)), "mdb_env_set_mapsize")
            var flags = UInt32(MDB_NOTLS | MDB_NORDAHEAD)
            if readOnly { flags |= UInt32(MDB_RDONLY) }
            if writeMap { flags |= UInt32(MDB_WRITEMAP) }
            let rc = mdb_env_open(env, path, flags, 0o644)
            if rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH {
                throw RecDBError.notADatabase(path: path, reason: "data.mdb is not an LMDB file of a supported version (\(String(cString: mdb_strerror(rc))))")
            }
            try check(rc, "opening \(path)")
        } catch {
            mdb_env_close(env)
            throw error
        }
        return env
    }

    /// Opens every table's dbi handle. A read transaction is enough when they all exist, so opening a
    /// database never waits for another process's writer; only a database that lacks tables (new, or
    /// written by an older build) needs the write transaction that creates them.
    private static func openTables(_ env: OpaquePointer, path: String, readOnly: Bool) throws -> [Table: MDB_dbi] {
        let recorded = try recordedFormatVersion(env, path: path)
        func open(write: Bool) throws -> [Table: MDB_dbi]? {
            while true {
                var txnPtr: OpaquePointer?
                let rc = mdb_txn_begin(env, nil, write ? 0 : UInt32(MDB_RDONLY), &txnPtr)
                if rc == MDB_MAP_RESIZED {
                    try check(mdb_env_set_mapsize(env, 0), "adopting a map size grown by another process")
                    continue
                }
                try check(rc, write ? "beginning a write transaction" : "beginning a read transaction")
                guard let txn = txnPtr else { throw RecDBError.storage(code: -1, message: "no transaction handle", context: path) }
                var dbis: [Table: MDB_dbi] = [:]
                for table in Table.allCases {
                    var dbi = MDB_dbi()
                    let rc = mdb_dbi_open(txn, table.rawValue, write ? UInt32(MDB_CREATE) : 0, &dbi)
                    if rc == MDB_NOTFOUND && !write {
                        // A format-3 database has no user_events_delta: read-only, it reads as empty (and a read
                        // checks that no writer has upgraded the file since: `EventsCursor`). A later format
                        // without it is damage: "a table is missing".
                        if readOnly && table.isAbsentBeforeFormat4 && recorded == 3 { continue }
                        mdb_txn_abort(txn)
                        return nil
                    }
                    if rc != 0 {
                        mdb_txn_abort(txn)
                        if rc == MDB_INCOMPATIBLE {
                            throw RecDBError.notADatabase(path: path, reason: "'\(table.rawValue)' is not a RecDB table")
                        }
                        try check(rc, "opening table \(table.rawValue)", file: path)
                    }
                    // RecDB opens every table with no flags; stored flags (duplicates, integer keys) mean a
                    // damaged table record, which would change how LMDB reads the table.
                    var flags: UInt32 = 0
                    if mdb_dbi_flags(txn, dbi, &flags) != 0 || flags != 0 {
                        mdb_txn_abort(txn)
                        throw RecDBError.damaged(table: "(file)", key: path + "/data.mdb",
                                                 detail: "the record of table \(table.rawValue) has flags \(flags), which RecDB never sets")
                    }
                    dbis[table] = dbi
                }
                // Format 3 → 4 in the transaction that created user_events_delta: the table and the version
                // that tells older builds to refuse the file are committed together.
                if write, recorded == 3 {
                    var value = UInt64(Database.formatVersion).littleEndian
                    let rc = Array(MetaKey.formatVersion.rawValue.utf8).withUnsafeBytes { key in
                        withUnsafeMutableBytes(of: &value) { v -> Int32 in
                            var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
                            var d = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                            return mdb_put(txn, dbis[.meta]!, &k, &d, 0)
                        }
                    }
                    if rc != 0 { mdb_txn_abort(txn) }
                    if rc == MDB_MAP_FULL { throw RecDBError.mapFull(path: path, mapSize: 0) }
                    try check(rc, "upgrading \(path) to format \(Database.formatVersion)")
                }
                // Committed even when read-only: dbi handles opened in a transaction that is aborted are closed with it.
                let crc = mdb_txn_commit(txn)
                if crc == MDB_MAP_FULL { throw RecDBError.mapFull(path: path, mapSize: 0) }
                try check(crc, "opening the tables of \(path)")
                return dbis
            }
        }
        if let dbis = try open(write: false) { return dbis }
        // A table is missing. A version this build does not read says more than that (and creating the
        // tables would write a file it then refuses: a failed open leaves the file as it was).
        if let version = recorded, !Database.readableFormatVersions.contains(Int(clamping: version)) {
            throw RecDBError.formatVersion(found: Int(clamping: version), supported: Database.formatVersion)
        }
        guard !readOnly else {
            throw RecDBError.notADatabase(path: path, reason: "a table is missing (run `rdbctl init` first)")
        }
        return try open(write: true)!
    }

    /// meta's `format_version` (u64 LE, no checksum) read before the tables are opened; nil when the
    /// database has no meta table or no version yet (a new database). A value of another size is damage.
    private static func recordedFormatVersion(_ env: OpaquePointer, path: String) throws -> UInt64? {
        var txnPtr: OpaquePointer?
        while true {
            let rc = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txnPtr)
            if rc == MDB_MAP_RESIZED {
                try check(mdb_env_set_mapsize(env, 0), "adopting a map size grown by another process")
                continue
            }
            try check(rc, "beginning a read transaction")
            break
        }
        guard let txn = txnPtr else { throw RecDBError.storage(code: -1, message: "no transaction handle", context: path) }
        defer { mdb_txn_abort(txn) }
        var dbi = MDB_dbi()
        let opened = mdb_dbi_open(txn, Table.meta.rawValue, 0, &dbi)
        if opened == MDB_NOTFOUND { return nil }
        try check(opened, "opening table meta", file: path)
        let name = Array(MetaKey.formatVersion.rawValue.utf8)
        return try name.withUnsafeBytes { key -> UInt64? in
            var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, dbi, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try check(rc, "reading meta format_version", file: path)
            guard v.mv_size == 8, let data = v.mv_data else {
                throw RecDBError.damaged(table: Table.meta.rawValue, key: MetaKey.formatVersion.rawValue, detail: "\(v.mv_size) bytes, expected 8")
            }
            return UInt64(littleEndian: data.loadUnaligned(as: UInt64.self))
        }
    }

    // MARK: - Transactions

    /// What the calling thread is inside of, for this environment: a bit for the write transaction and
    /// a count of read transactions (nested reads are allowed; they never take `resizeLock` again).
    private struct ThreadState {
        var writing: Bool
        var reads: Int
        var isIdle: Bool { !writing && reads == 0 }
    }

    private var threadState: ThreadState {
        get {
            let raw = Int(bitPattern: pthread_getspecific(threadKey))
            return ThreadState(writing: raw & 1 != 0, reads: raw >> 1)
        }
        set {
            pthread_setspecific(threadKey, UnsafeRawPointer(bitPattern: (newValue.reads << 1) | (newValue.writing ? 1 : 0)))
        }
    }

    /// Throws when the calling thread is inside a transaction of this database: `operation` (training,
    /// an import, a write) would need the write lock this thread already holds, or a snapshot it cannot take.
    func requireNoTransactionOnThisThread(_ operation: String) throws {
        let state = threadState
        guard state.isIdle else {
            let inside = state.writing ? "a write transaction" : "a read transaction"
            throw RecDBError.nestedTransaction("\(operation) cannot run inside \(inside) of the same database on the same thread: "
                + "LMDB has one writer per database and a thread that holds a transaction must end it first (\(path))")
        }
    }

    /// Runs `body` in a read-only snapshot. The snapshot is consistent: it sees exactly the
    /// transactions committed before it began. Reads may nest (inside a read or a write on the same thread).
    func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        let outer = threadState
        if !outer.isIdle {
            // This thread already holds `resizeLock` shared through its outer transaction: taking it again
            // could deadlock behind a waiting resize, and a resize cannot happen under our own transaction.
            guard let txn = try beginTransaction(readOnly: true) else {
                throw RecDBError.nestedTransaction("another process grew the database while this thread holds a transaction of it; "
                    + "end the outer transaction and read again (\(path))")
            }
            threadState = ThreadState(writing: outer.writing, reads: outer.reads + 1)
            defer { threadState = outer }
            return try run(txn, readOnly: true, body)
        }
        let txn = try beginHoldingResizeLock(readOnly: true)
        threadState = ThreadState(writing: false, reads: 1)
        defer {
            threadState = outer
            pthread_rwlock_unlock(resizeLock)
        }
        return try run(txn, readOnly: true, body)
    }

    /// Runs `body` in the write transaction, committing when it returns and aborting when it throws.
    /// `body` runs exactly once: room is made in the map before the transaction begins. A transaction
    /// that still outgrows it is rolled back and `RecDBError.mapFull` thrown (the map has grown by then,
    /// so running it again succeeds); reserve room for large writes with `reserve(additionalBytes:)`.
    func write<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        if readOnly { throw RecDBError.readOnly(path: path) }
        try requireNoTransactionOnThisThread("a write")
        // Its own descriptor per write: a flock belongs to the open file, so threads cannot release each other's.
        let sharedLock = writesThroughMap ? -1 : try takeSharedWriterLock()
        defer { if sharedLock >= 0 { close(sharedLock) } }
        clearStaleReadersPeriodically()
        try ensureHeadroom()
        let txn = try beginHoldingResizeLock(readOnly: false)
        if writesThroughMap {
            do {
                try allocateMapTail()
            } catch {
                mdb_txn_abort(txn)
                pthread_rwlock_unlock(resizeLock)
                throw error
            }
        }
        threadState = ThreadState(writing: true, reads: 0)
        let outcome: Result<T, Error>
        do {
            outcome = .success(try run(txn, readOnly: false, body))
        } catch {
            outcome = .failure(error)
        }
        threadState = ThreadState(writing: false, reads: 0)
        pthread_rwlock_unlock(resizeLock)
        if case .failure(let error) = outcome, let full = error as? MapFull {
            let grown = try grow(toAtLeast: full.mapSize * 2)
            throw RecDBError.mapFull(path: path, mapSize: grown)
        }
        return try outcome.get()
    }

    /// Begins an outermost transaction and returns it with `resizeLock` held shared (the caller unlocks
    /// after ending it). When another process grew the map, its size is adopted (and, for a write, room
    /// made again) and the transaction begun anew.
    private func beginHoldingResizeLock(readOnly: Bool) throws -> OpaquePointer {
        while true {
            pthread_rwlock_rdlock(resizeLock)
            do {
                if let txn = try beginTransaction(readOnly: readOnly) { return txn }
            } catch {
                pthread_rwlock_unlock(resizeLock)
                throw error
            }
            pthread_rwlock_unlock(resizeLock)
            try adoptGrownMap()
            if !readOnly { try ensureHeadroom() }
        }
    }

    /// Internal signal: LMDB reported MDB_MAP_FULL in this write (the transaction is unusable).
    private struct MapFull: Error { let mapSize: Int }

    /// Begins a transaction; nil means another process grew the map (adopt its size, then begin again).
    private func beginTransaction(readOnly: Bool) throws -> OpaquePointer? {
        var txnPtr: OpaquePointer?
        let rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txnPtr)
        if rc == MDB_MAP_RESIZED { return nil }
        try LMDBEnvironment.check(rc, readOnly ? "beginning a read transaction" : "beginning a write transaction")
        guard let txn = txnPtr else { throw RecDBError.storage(code: -1, message: "no transaction handle", context: path) }
        return txn
    }

    /// Runs `body` on a begun transaction and ends it: commit (writes), abort (reads, and on any throw).
    private func run<T>(_ txn: OpaquePointer, readOnly: Bool, _ body: (LMDBTransaction) throws -> T) throws -> T {
        let t = LMDBTransaction(txn: txn, environment: self, readOnly: readOnly)
        let result: T
        do {
            result = try body(t)
            if t.hitMapFull { throw MapFull(mapSize: mapSize) }
        } catch {
            t.end()
            mdb_txn_abort(txn)
            if t.hitMapFull && !(error is MapFull) { throw MapFull(mapSize: mapSize) }
            throw error
        }
        t.end()
        if readOnly {
            mdb_txn_abort(txn)  // a read transaction has nothing to commit; abort releases its slot
            return result
        }
        let crc = mdb_txn_commit(txn)  // commit frees the handle even when it fails
        if crc == MDB_MAP_FULL { throw MapFull(mapSize: mapSize) }
        try LMDBEnvironment.check(crc, "committing")
        return result
    }

    // MARK: - Map size

    /// Adopts the size another process recorded after growing the map (size 0 means "use the file's").
    private func adoptGrownMap() throws {
        pthread_rwlock_wrlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        try LMDBEnvironment.check(mdb_env_set_mapsize(env, 0), "adopting a map size grown by another process")
    }

    /// Grows the map to at least `bytes` (rounded up to a power-of-two multiple of 1 MiB); returns the new size.
    @discardableResult
    private func grow(toAtLeast bytes: Int) throws -> Int {
        pthread_rwlock_wrlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        var size = max(mapSize, 1 << 20)
        guard size < bytes else { return size }
        while size < bytes {
            let (doubled, overflow) = size.multipliedReportingOverflow(by: 2)
            guard !overflow else { throw RecDBError.mapFull(path: path, mapSize: size) }
            size = doubled
        }
        try LMDBEnvironment.check(mdb_env_set_mapsize(env, size), "growing the map to \(size) bytes")
        return size
    }

    /// Before a write: makes sure the map has room for the data doubling, at least `minimumHeadroom`,
    /// plus what was reserved for the next write. Growing the map is only address space (the file grows
    /// as pages are written), so being generous costs nothing and keeps closures from running twice.
    private func ensureHeadroom() throws {
        let reserved = stateLock.withLock { () -> Int in
            defer { reservedBytes = 0 }
            return reservedBytes
        }
        let used = usedBytes
        let wanted = used.addingReportingOverflow(max(used, minimumHeadroom)).partialValue
            .addingReportingOverflow(reserved).partialValue
        if wanted > mapSize { try grow(toAtLeast: wanted) }
    }

    /// Makes sure the next write has at least `bytes` of free map (used before large imports).
    func reserve(additionalBytes bytes: Int) throws {
        stateLock.withLock { reservedBytes = max(reservedBytes, max(0, bytes)) }
    }

    private func clearStaleReadersPeriodically() {
        let due = stateLock.withLock { () -> Bool in
            guard Date().timeIntervalSince(lastReaderCheck) >= LMDBEnvironment.readerCheckInterval else { return false }
            lastReaderCheck = Date()
            return true
        }
        if due { clearStaleReaders() }
    }

    /// Releases the reader slots of processes that died inside a read transaction; returns how many.
    @discardableResult
    func clearStaleReaders() -> Int {
        var stale: Int32 = 0
        mdb_reader_check(env, &stale)
        return Int(stale)
    }

    /// Reader slots in use (live and stale), from the lock file.
    var readerSlotsInUse: Int {
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        return Int(info.me_numreaders)
    }

    /// Process ids of the live and stale reader slots in the lock file (`mdb_reader_list`).
    func readerSlotProcessIDs() -> [Int32] {
        final class Lines { var text = "" }
        let lines = Lines()
        let context = Unmanaged.passUnretained(lines).toOpaque()
        mdb_reader_list(env, { message, context in
            guard let message, let context else { return 0 }
            Unmanaged<Lines>.fromOpaque(context).takeUnretainedValue().text += String(cString: message)
            return 0
        }, context)
        // Lines are "    pid     thread     txnid" after a header line; "(no active readers)" when empty.
        return lines.text.split(separator: "\n").compactMap { line in
            line.split(separator: " ").first.flatMap { Int32($0) }
        }
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

    /// Consistent copy of the environment into `directory` (which must exist and be empty), made
    /// from a read snapshot while other processes keep using the database. With `compact` free
    /// pages are omitted and the copy is renumbered.
    func copy(to directory: String, compact: Bool) throws {
        try LMDBEnvironment.check(mdb_env_copy2(env, directory, compact ? UInt32(MDB_CP_COMPACT) : 0), "copying to \(directory)")
    }

    func dbi(_ table: Table) -> MDB_dbi { dbis[table.ordinal]! }

    /// False only for a table a format-3 database lacks, opened read-only (see `openTables`).
    func hasTable(_ table: Table) -> Bool { dbis[table.ordinal] != nil }

    /// Throws for a non-zero LMDB status. With `file` (operations inside a transaction), a damaged page is
    /// `RecDBError.damaged` naming the file, and so is `MDB_BAD_TXN`: RecDB ends a transaction at its first
    /// LMDB error, so a transaction LMDB calls bad met an error LMDB swallowed itself — opening a cursor
    /// refreshes the table's root and ignores a damaged root page, which the next call reports this way.
    static func check(_ rc: Int32, _ context: @autoclosure () -> String, file: String? = nil) throws {
        guard rc != 0 else { return }
        let message = String(cString: mdb_strerror(rc))
        // A damaged page (the page checks) or a page number beyond the snapshot: the file, not the call, is wrong.
        if let file, rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_BAD_TXN {
            throw RecDBError.damaged(table: "(file)", key: file + "/data.mdb",
                                     detail: "LMDB met a damaged page while \(context()) (\(message))")
        }
        throw RecDBError.storage(code: rc, message: message, context: context())
    }
}

/// A live LMDB transaction. Valid only inside the closure that received it.
final class LMDBTransaction {
    fileprivate var txn: OpaquePointer?
    /// Strong: an `unowned` reference costs two atomic updates of the environment's count on every use, and
    /// all threads share the environment (the environment holds no transaction: no cycle).
    let environment: LMDBEnvironment
    let readOnly: Bool
    /// Set when LMDB reported MDB_MAP_FULL: the transaction is then unusable and must be rolled back
    /// even if the caller's closure swallowed the error.
    fileprivate var hitMapFull = false
    /// Cursors opened in this transaction: closed before it ends (LMDB frees a write transaction's
    /// cursors itself at commit, so a cursor object that outlived it must not close it again).
    private var cursors: [LMDBCursor] = []
    /// Where LMDB's answers may lie (`mdb_txn_map_bounds`, from RecDB's LMDB patch): a read snapshot's
    /// keys and values are all in the map, before the end of its last page; a write transaction's are
    /// there (up to the end of the map, where spilled pages can be) or in its dirty pages on the heap.
    /// The map cannot move while this process has a transaction (`resizeLock`).
    private let mapStart: UInt, mapEnd: UInt

    fileprivate init(txn: OpaquePointer, environment: LMDBEnvironment, readOnly: Bool) {
        self.txn = txn
        self.environment = environment
        self.readOnly = readOnly
        var base: UnsafeMutableRawPointer?
        var length = 0
        mdb_txn_map_bounds(txn, &base, &length)  // cannot fail for a live transaction
        self.mapStart = UInt(bitPattern: base)
        self.mapEnd = UInt(bitPattern: base) &+ UInt(length)
    }

    /// `v` as a buffer, once it is known to lie inside the mapped file (or, in a write transaction, in a
    /// dirty page of its own): a key or value that runs past the file is damage, never bytes to read.
    @inline(__always)
    fileprivate func bounded(_ v: MDB_val, _ table: Table, _ key: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        let start = UInt(bitPattern: v.mv_data), size = UInt(v.mv_size)
        let inMap = start >= mapStart && start < mapEnd
        if inMap ? size > mapEnd - start : (readOnly && size > 0) {
            throw RecDBError.damaged(table: table.rawValue, key: key(),
                                     detail: "LMDB returned \(size) bytes at an address outside the file's \(mapEnd - mapStart)-byte mapping")
        }
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    /// Closes the cursors and makes every later use a trap instead of a use-after-free.
    fileprivate func end() {
        for cursor in cursors { cursor.close() }
        cursors.removeAll()
        txn = nil
    }

    private var handle: OpaquePointer {
        // A programmer error, not input: a transaction escaped the closure it was lent to.
        guard let txn else { preconditionFailure("a RecDB transaction was used outside its closure") }
        return txn
    }

    /// Borrowing read: `body` sees LMDB's own memory (zero copy); the buffer must not escape.
    func withValue<T>(_ table: Table, key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(handle, environment.dbi(table), &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBEnvironment.check(rc, "reading \(table.rawValue)", file: environment.path)
        return try body(bounded(v, table, key.map { String(format: "%02x", $0) }.joined()))
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
        try checkWrite(rc, "writing \(table.rawValue)")
    }

    /// Writes a key the table must not hold yet: false (and nothing written) when it does.
    func putNew(_ table: Table, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let rc = mdb_put(handle, environment.dbi(table), &k, &v, UInt32(MDB_NOOVERWRITE))
        if rc == MDB_KEYEXIST { return false }
        try checkWrite(rc, "writing \(table.rawValue)")
        return true
    }

    private func checkWrite(_ rc: Int32, _ context: @autoclosure () -> String) throws {
        if rc == MDB_MAP_FULL { hitMapFull = true }
        try LMDBEnvironment.check(rc, context(), file: environment.path)
    }

    /// Reserves `count` bytes for the value and lets `fill` write them in place (MDB_RESERVE).
    func putReserved(_ table: Table, key: UnsafeRawBufferPointer, count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: count, mv_data: nil)
        let rc = mdb_put(handle, environment.dbi(table), &k, &v, UInt32(MDB_RESERVE))
        try checkWrite(rc, "writing \(table.rawValue)")
        // LMDB reserved `count` bytes in a dirty page or fresh overflow pages of this transaction.
        try fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    @discardableResult
    func delete(_ table: Table, key: UnsafeRawBufferPointer) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let rc = mdb_del(handle, environment.dbi(table), &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try checkWrite(rc, "deleting from \(table.rawValue)")
        return true
    }

    /// Removes every entry of `table` (keeps the table).
    func clear(_ table: Table) throws {
        try checkWrite(mdb_drop(handle, environment.dbi(table), 0), "clearing \(table.rawValue)")
    }

    func count(_ table: Table) throws -> Int {
        var stat = MDB_stat()
        try LMDBEnvironment.check(mdb_stat(handle, environment.dbi(table), &stat), "stat \(table.rawValue)", file: environment.path)
        return stat.ms_entries
    }

    func hasTable(_ table: Table) -> Bool { environment.hasTable(table) }

    func cursor(_ table: Table) throws -> LMDBCursor {
        var c: OpaquePointer?
        try LMDBEnvironment.check(mdb_cursor_open(handle, environment.dbi(table), &c), "opening a cursor on \(table.rawValue)", file: environment.path)
        let cursor = LMDBCursor(cursor: c!, table: table, transaction: self)
        cursors.append(cursor)
        return cursor
    }

    fileprivate func noteMapFull(_ rc: Int32) { if rc == MDB_MAP_FULL { hitMapFull = true } }
}

/// A cursor over one table. Closed when its transaction ends (or on deinit, if that comes first).
final class LMDBCursor {
    private var cursor: OpaquePointer?
    private unowned let transaction: LMDBTransaction
    let table: Table

    fileprivate init(cursor: OpaquePointer, table: Table, transaction: LMDBTransaction) {
        self.cursor = cursor
        self.table = table
        self.transaction = transaction
    }

    deinit { close() }

    fileprivate func close() {
        if let cursor { mdb_cursor_close(cursor) }
        cursor = nil
    }

    private var handle: OpaquePointer {
        // A programmer error, not input: a cursor kept past the transaction that owns it.
        guard let cursor else { preconditionFailure("a RecDB cursor was used after its transaction ended") }
        return cursor
    }

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
        let rc = mdb_cursor_get(handle, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBEnvironment.check(rc, "moving a cursor on \(table.rawValue)", file: transaction.environment.path)
        return try body(transaction.bounded(k, table, "(a key under a cursor)"), transaction.bounded(v, table, "(a value under a cursor)"))
    }

    /// Positions at the first key ≥ `key` and hands it to `body`; nil when there is none.
    func seek<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_cursor_get(handle, &k, &v, MDB_SET_RANGE)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBEnvironment.check(rc, "seeking a cursor on \(table.rawValue)", file: transaction.environment.path)
        return try body(transaction.bounded(k, table, "(a key under a cursor)"), transaction.bounded(v, table, "(a value under a cursor)"))
    }

    /// Deletes the entry under the cursor.
    func deleteCurrent() throws {
        let rc = mdb_cursor_del(handle, 0)
        transaction.noteMapFull(rc)
        try LMDBEnvironment.check(rc, "deleting through a cursor on \(table.rawValue)", file: transaction.environment.path)
    }
}
