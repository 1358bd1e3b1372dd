import Foundation
import Learn

/// A RecDB database: one LMDB environment in a directory.
///
/// Access goes through closures. `read` runs in a consistent snapshot; `write` runs in the single
/// write transaction, commits when the closure returns and rolls back when it throws:
///
/// ```swift
/// let db = try Database(path: "shop.recdb")
/// try db.write { tx in
///     let item = try tx.upsertItem(ItemInput(externalID: "sku-1", title: "Red lipstick"))
///     let user = try tx.upsertUser(externalID: "alice")
///     try tx.appendEvent(user: user, item: item, timestamp: 1_700_000_000)
/// }
/// let history = try db.read { try $0.events(user: $0.userID(for: "alice")!, last: 50) }
/// ```
///
/// - Concurrency: any number of threads and processes may read while one writes (LMDB's model:
///   readers never block and see the last committed state; writers are serialised by a lock in
///   `lock.mdb`, across processes too). A `Database` object may be shared between threads.
///   Open a directory once per process (LMDB forbids opening the same environment twice in one process).
/// - A write closure runs exactly once. RecDB makes room in the memory map before a write begins
///   (address space only; the file grows as data is written), so the map never has to grow inside it.
///   A single transaction that writes more than that room (by default as much again as the database
///   holds, at least 256 MiB; imports reserve their own estimate) is rolled back with
///   `RecDBError.mapFull`, after the map has grown: run it again.
/// - Transactions do not nest across writes: `write`, `train`, `buildIndex`, `embed` and imports throw
///   `RecDBError.nestedTransaction` at once when the calling thread is inside a transaction of the same
///   database (a second writer would wait for the first forever). Reads may nest inside reads and writes.
/// - warning: Long read closures keep old pages from being reused; copy out what you need and return.
public final class Database: Sendable {
    /// The on-disk format this build writes.
    public static let formatVersion = 4
    /// The formats it reads. Format 3 lacks `user_events_delta`: read-only it reads as empty; opened for
    /// writing, the table is created empty and the recorded version becomes 4 (so that an older build,
    /// which would not read the table, refuses the database instead of missing events).
    public static let readableFormatVersions: ClosedRange<Int> = 3...4

    public struct Options: Sendable {
        /// Open without write access (several processes may do this while one writes).
        public var readOnly = false
        /// Create the directory and tables when they do not exist.
        public var create = true
        /// The first memory-map size (address space, not disk); it grows automatically, before writes.
        public var initialMapSize = 1 << 30
        /// Free map room every write transaction starts with, beyond as much again as the database holds.
        /// A single transaction that writes more is rolled back with `RecDBError.mapFull` (imports reserve
        /// their own estimate; see `reserve(bytes:)`).
        public var writeHeadroom = 256 << 20
        /// Write transactions write pages straight into the file's memory map (LMDB's `MDB_WRITEMAP`), for
        /// processes that bulk-import: a large transaction's pages are then file-backed, so the process's
        /// anonymous memory does not grow with the import (otherwise LMDB keeps up to 512 MiB of them
        /// malloc'd until commit). Commits, rollbacks and `kill -9` keep LMDB's guarantees; but each write
        /// first reserves the map's unused tail on disk (an error, not a crash, when the disk is too full),
        /// data.mdb stays that long until the database is closed, and a rolled-back write may have reused
        /// free pages inside the file (the committed contents are unchanged, not every unused byte). Only
        /// one process at a time writes this way (a directory lock); others asking for it open normally,
        /// and other processes' writes wait until it closes — hold such a database only for the import.
        public var writeMap = false
        public init(readOnly: Bool = false, create: Bool = true, initialMapSize: Int = 1 << 30, writeHeadroom: Int = 256 << 20) {
            self.readOnly = readOnly
            self.create = create
            self.initialMapSize = initialMapSize
            self.writeHeadroom = writeHeadroom
        }
    }

    public let path: String
    let environment: LMDBEnvironment
    /// Per-process state derived from committed data (loaded indexes, models); see `Database+Serving`.
    let runtime = RuntimeCache()

    /// Opens the database at `path` (a directory), creating it when `options.create` is set.
    /// - throws: `RecDBError.notADatabase` when the directory holds no RecDB, `.formatVersion`
    ///   when it was written by an incompatible version, `.storage` for LMDB failures.
    public init(path: String, options: Options = Options()) throws {
        self.path = path
        // No process-wide set-up here (OpenBLAS kernels/threads belong to the host): see `Database.configureProcess()`.
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if !fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard options.create, !options.readOnly else {
                throw RecDBError.notADatabase(path: path, reason: "no such directory")
            }
            do {
                try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw RecDBError.storage(code: -1, message: "\(error.localizedDescription)", context: "creating \(path)")
            }
        } else if !isDirectory.boolValue {
            throw RecDBError.notADatabase(path: path, reason: "not a directory")
        }
        if !options.create && !fm.fileExists(atPath: path + "/data.mdb") {
            throw RecDBError.notADatabase(path: path, reason: "no data.mdb (run `rdbctl init \(path)` first)")
        }
        try DataFileCheck.check(directory: path, mayCreate: options.create && !options.readOnly)
        environment = try LMDBEnvironment(path: path, readOnly: options.readOnly, initialMapSize: options.initialMapSize,
                                          minimumHeadroom: options.writeHeadroom, writeMap: options.writeMap)
        // Read first: opening a database must not wait for another process's long write. Only a new
        // database needs the write that records its format.
        let recorded = try recordedFormat(missingIsError: options.readOnly)
        if recorded != Database.formatVersion && !options.readOnly {
            try environment.write { raw in
                let meta = MetaStore(raw)
                if let version = try meta.u64(.formatVersion) {  // another process may have initialised it meanwhile
                    guard Database.readableFormatVersions.contains(Int(clamping: version)) else {
                        throw RecDBError.formatVersion(found: Int(clamping: version), supported: Database.formatVersion)
                    }
                    // Format 3 → 4 for a file that already has user_events_delta (opening the tables upgrades a
                    // file that lacks it, in the transaction that creates it): record the version older builds refuse.
                    if version < UInt64(Database.formatVersion) { try meta.setU64(.formatVersion, UInt64(Database.formatVersion)) }
                } else {
                    try meta.setU64(.formatVersion, UInt64(Database.formatVersion))
                    try meta.setU64(.createdAt, UInt64(bitPattern: Clock.now()))
                }
            }
        }
    }

    /// The recorded format version, checked to be one this build reads; nil when none is recorded yet
    /// (a new database).
    private func recordedFormat(missingIsError: Bool) throws -> Int? {
        try environment.read { raw in
            let meta = MetaStore(raw)
            guard let version = try meta.u64(.formatVersion) else {
                if missingIsError { throw RecDBError.notADatabase(path: path, reason: "no format version recorded") }
                return nil
            }
            // A damaged version can exceed Int (found by the `store` fuzz target): clamp, never trap.
            guard Database.readableFormatVersions.contains(Int(clamping: version)) else {
                throw RecDBError.formatVersion(found: Int(clamping: version), supported: Database.formatVersion)
            }
            return Int(version)
        }
    }

    /// Runs `body` in a consistent read snapshot.
    public func read<T>(_ body: (ReadTransaction) throws -> T) throws -> T {
        try environment.read { raw in
            let tx = ReadTransaction(raw: raw, database: self)
            return try body(tx)
        }
    }

    /// Runs `body` in the write transaction: commits on return, rolls back on throw. `body` runs once.
    /// - throws: `RecDBError.nestedTransaction` at once when this thread is inside a transaction of this
    ///   database; `.mapFull` when the transaction outgrew the room made for it (rolled back; run it again).
    public func write<T>(_ body: (WriteTransaction) throws -> T) throws -> T {
        var committedHooks: [() -> Void] = []
        let result = try environment.write { raw in
            let tx = WriteTransaction(raw: raw, database: self)
            let value = try body(tx)
            try tx.flush()
            committedHooks = tx.afterCommit
            return value
        }
        // In-process caches (live indexes, loaded models) follow only committed state.
        for hook in committedHooks { hook() }
        return result
    }

    /// Size of the data file in bytes.
    public var fileSize: Int {
        (try? FileManager.default.attributesOfItem(atPath: path + "/data.mdb")[.size] as? Int) ?? 0
    }

    /// Makes room for about `bytes` more data in the next write (beyond the default headroom), so a
    /// large write does not end in `RecDBError.mapFull`.
    public func reserve(bytes: Int) throws { try environment.reserve(additionalBytes: bytes) }

    /// Throws `RecDBError.nestedTransaction` when this thread is inside a transaction of this database:
    /// long operations that end in a write check this first, so they fail at once instead of after the work.
    func requireNoTransaction(_ operation: String) throws {
        try environment.requireNoTransactionOnThisThread(operation)
    }

    /// Consistent, compacting copy into `destination` (a new or empty directory) while other
    /// threads and processes keep using the database.
    ///
    /// The copy is written into a temporary sibling directory (`DEST.tmp-…`), flushed to disk
    /// (file and directory) and only then renamed to `destination`: a backup that is killed or fails
    /// leaves no `destination` at all (and the temporary copy, whose length does not match its meta
    /// page until the copy is complete, is refused by `Database(path:)`); the temporary is removed on failure.
    public func backup(to destination: String, compact: Bool = true) throws {
        let fm = FileManager.default
        var destinationIsEmptyDirectory = false
        if fm.fileExists(atPath: destination) {
            let contents = (try? fm.contentsOfDirectory(atPath: destination)) ?? []
            guard contents.isEmpty else { throw RecDBError.invalidArgument("backup destination \(destination) is not empty") }
            destinationIsEmptyDirectory = true
        }
        let trimmed = destination.hasSuffix("/") && destination.count > 1 ? String(destination.dropLast()) : destination
        let parent = (trimmed as NSString).deletingLastPathComponent
        if !parent.isEmpty && !fm.fileExists(atPath: parent) {
            do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
                throw RecDBError.storage(code: -1, message: error.localizedDescription, context: "creating \(parent)")
            }
        }
        let temporary = trimmed + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do { try fm.createDirectory(atPath: temporary, withIntermediateDirectories: false) } catch {
            throw RecDBError.storage(code: -1, message: error.localizedDescription, context: "creating \(temporary)")
        }
        do {
            try environment.copy(to: temporary, compact: compact)
            try Database.syncPath(temporary + "/data.mdb")
            try Database.syncPath(temporary)
            if destinationIsEmptyDirectory, rmdir(trimmed) != 0 {
                throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "replacing the empty directory \(trimmed)")
            }
            guard rename(temporary, trimmed) == 0 else {
                throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "renaming \(temporary) to \(trimmed)")
            }
            try Database.syncPath(parent.isEmpty ? "." : parent)
        } catch {
            try? fm.removeItem(atPath: temporary)
            throw error
        }
    }

    /// fsync of a file or directory (a directory's entries — a rename — are durable only after it).
    private static func syncPath(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "opening \(path) to sync it") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "syncing \(path)") }
    }
}

/// Wall-clock helpers (seconds since 1970), kept in one place so tests can reason about them.
enum Clock {
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }
}
