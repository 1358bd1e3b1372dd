import Foundation

/// A consistent snapshot of the database, valid only inside the `Database.read` (or `write`)
/// closure that received it. Typed accessors for items, users, events, vectors and profiles live
/// in the `ReadTransaction+*.swift` files.
public class ReadTransaction {
    let raw: LMDBTransaction
    /// Strong, for the same reason as `LMDBTransaction.environment` (the database holds no transaction).
    let database: Database
    /// Spaces read in this transaction (and, for writes, changed but not yet flushed).
    var spaceCache: [String: EmbeddingSpace] = [:]
    var eventTypeNames: [UInt16: String]?

    init(raw: LMDBTransaction, database: Database) {
        self.raw = raw
        self.database = database
    }

    var meta: MetaStore { MetaStore(raw) }

    /// The global event version: the sequence number of the last event written (0 when none).
    public func eventVersion() throws -> UInt64 { try meta.counter(.lastEventSequence) }

    /// Number of items ever created (the largest internal item id).
    public func itemCount() throws -> Int { Int(try meta.counter(.lastItemID)) }
    /// Number of users ever created (the largest internal user id).
    public func userCount() throws -> Int { Int(try meta.counter(.lastUserID)) }
    /// Number of stored events: sequences are dense from 1 and events are never removed (`verify` checks both).
    public func eventCount() throws -> Int { Int(try eventVersion()) }
    /// When the database was created (seconds since 1970).
    public func createdAt() throws -> Int64 { Int64(bitPattern: try meta.u64(.createdAt) ?? 0) }
}

/// The write transaction: everything a `ReadTransaction` can do, plus writes. Commits when the
/// `Database.write` closure returns; rolls back when it throws.
public final class WriteTransaction: ReadTransaction {
    /// Counters are read once and written back at commit, so bulk writes do not rewrite `meta` per row.
    private var counters: [MetaKey: UInt64] = [:]
    private var dirtyCounters: Set<MetaKey> = []
    var dirtySpaces: Set<String> = []
    /// Items created, revived, or whose embedding text (title, text, attributes) changed in this
    /// transaction: embed-on-insert embeds them at commit. Availability alone changes no text.
    var changedItems: Set<UInt32> = []
    /// Users whose profile text was written in this transaction.
    var changedProfiles: Set<UInt32> = []
    /// (space name, entity) vectors written in this transaction.
    var changedVectors: [String: Set<UInt32>] = [:]
    /// Work to run after a successful commit (cache updates that must follow committed state only).
    var afterCommit: [() -> Void] = []
    /// The one events cursor event writes reuse: LMDB fixes up every open cursor of a write
    /// transaction on each put and delete, so a cursor per event made bulk merges quadratic.
    private var userEventsCursor: EventsCursor?

    func eventsCursor() throws -> EventsCursor {
        if let userEventsCursor { return userEventsCursor }
        let cursor = try EventsCursor(raw)
        userEventsCursor = cursor
        return cursor
    }

    func counter(_ key: MetaKey) throws -> UInt64 {
        if let v = counters[key] { return v }
        let v = try meta.counter(key)
        counters[key] = v
        return v
    }

    func nextCounter(_ key: MetaKey) throws -> UInt64 {
        let v = try counter(key) + 1
        counters[key] = v
        dirtyCounters.insert(key)
        return v
    }

    /// Moves a counter forward to `value` (bulk paths number their rows themselves, then record the last).
    func advanceCounter(_ key: MetaKey, to value: UInt64) throws {
        let current = try counter(key)
        // Unreachable from input: callers pass the counter read in this transaction plus what they added.
        precondition(value >= current, "counters only grow")
        counters[key] = value
        dirtyCounters.insert(key)
    }

    override public func eventVersion() throws -> UInt64 { try counter(.lastEventSequence) }
    override public func itemCount() throws -> Int { Int(try counter(.lastItemID)) }
    override public func userCount() throws -> Int { Int(try counter(.lastUserID)) }

    /// Registers work that runs only if this transaction commits.
    public func onCommit(_ hook: @escaping () -> Void) { afterCommit.append(hook) }

    func itemCreated(_ id: UInt32) throws {
        changedItems.insert(id)
        _ = try nextCounter(.itemStateVersion)
    }

    func flush() throws {
        // Order matters: embedding new items writes text vectors, which cold start turns into
        // model-space vectors.
        try database.embedOnInsert(self)
        try database.applyColdStart(self)
        try database.compactVectorLogs(self)  // after every vector write of the transaction
        for key in dirtyCounters { try meta.setU64(key, counters[key]!) }
        dirtyCounters.removeAll()
        for name in dirtySpaces {
            if let space = spaceCache[name] { try storeSpace(space) }
        }
        dirtySpaces.removeAll()
    }
}
