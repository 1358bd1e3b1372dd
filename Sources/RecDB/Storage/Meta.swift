import Foundation

/// Keys of the `meta` table.
enum MetaKey: String {
    case formatVersion = "format_version"
    case createdAt = "created_at"
    /// Last assigned internal item id (ids start at 1; 0 is the models' padding row).
    case lastItemID = "last_item_id"
    case lastUserID = "last_user_id"
    /// Last assigned global event sequence number: the database's event version.
    case lastEventSequence = "last_event_seq"
    case lastSpaceID = "last_space_id"
    /// Bumped whenever an item is created or changes (availability, deletion, fields): caches of
    /// item sets (unservable items, attribute matches) are valid for one value.
    case itemStateVersion = "item_state_version"
    /// Prefix of `event_type:<name>` → u16 code.
    case eventTypePrefix = "event_type:"
    /// Prefix of `import:<fingerprint>` → JSON record of an interactions import (the ledger that
    /// makes re-importing the same file a clear error instead of duplicated events).
    case importPrefix = "import:"
    /// Prefix of `dropped_model:<name>` → the next version number (decimal text) of a model that was
    /// dropped whole, so a model trained later under the same name never reuses a version number
    /// (a version is immutable: readers and caches may still hold the old one).
    case droppedModelPrefix = "dropped_model:"
}

/// Typed access to the `meta` table inside one transaction.
struct MetaStore {
    let raw: LMDBTransaction
    init(_ raw: LMDBTransaction) { self.raw = raw }

    func u64(_ key: MetaKey) throws -> UInt64? { try u64(key.rawValue) }
    func u64(_ key: String) throws -> UInt64? {
        let k = Array(key.utf8)
        return try raw.withValue(.meta, key: k) { buf -> UInt64 in
            // format_version is stored bare: every build must read it to report a mismatch.
            let body = key == MetaKey.formatVersion.rawValue ? buf : try Seal.open(buf, key: k, table: .meta)
            guard body.count == 8 else { throw RecDBError.damaged(table: Table.meta.rawValue, key: key, detail: "\(body.count) bytes, expected 8") }
            return UInt64(littleEndian: body.loadUnaligned(as: UInt64.self))
        }
    }
    /// A counter (last id or sequence): 0 only when it was never written, which is when the table it
    /// counts is still empty. A damaged key byte would otherwise make it read as 0: ids would start
    /// again at 1 (a new item overwriting item 1) and counts would be served as 0.
    func counter(_ key: MetaKey) throws -> UInt64 {
        if let value = try u64(key) { return value }
        let counted: Table? = switch key {
        case .lastItemID: .items
        case .lastUserID: .users
        case .lastEventSequence: .userEvents
        case .lastSpaceID: .spaces
        default: nil
        }
        // The first entry, not LMDB's entry count (which carries no checksum).
        if let counted, try raw.cursor(counted).move(.first, { _, _ in true }) != nil {
            throw RecDBError.damaged(table: Table.meta.rawValue, key: key.rawValue,
                                     detail: "the counter is missing although table \(counted.rawValue) has entries (run `rdbctl verify`; restore from a backup)")
        }
        return 0
    }
    func setU64(_ key: MetaKey, _ value: UInt64) throws { try setU64(key.rawValue, value) }
    func setU64(_ key: String, _ value: UInt64) throws {
        var w = ByteWriter(capacity: 12)
        withUnsafeBytes(of: value.littleEndian) { w.bytes.append(contentsOf: $0) }
        let k = Array(key.utf8)
        try raw.put(.meta, key: k, value: key == MetaKey.formatVersion.rawValue ? w.bytes : Seal.sealed(w.bytes, key: k, table: .meta))
    }
    func string(_ key: String) throws -> String? {
        try bytes(key).map { String(decoding: $0, as: UTF8.self) }
    }
    func setString(_ key: String, _ value: String) throws {
        try setBytes(key, Array(value.utf8))
    }
    /// The checked payload stored at `key`.
    func bytes(_ key: String) throws -> [UInt8]? {
        let k = Array(key.utf8)
        return try raw.withValue(.meta, key: k) { Array(try Seal.open($0, key: k, table: .meta)) }
    }
    func setBytes(_ key: String, _ value: [UInt8]) throws {
        let k = Array(key.utf8)
        try raw.put(.meta, key: k, value: Seal.sealed(value, key: k, table: .meta))
    }
    /// All (key suffix, value) pairs whose key starts with `prefix`.
    func scan(prefix: String) throws -> [(String, [UInt8])] {
        let cursor = try raw.cursor(.meta)
        let p = Array(prefix.utf8)
        var out: [(String, [UInt8])] = []
        let visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool = { k, v in
            guard k.starts(with: p) else { return false }
            out.append((String(decoding: k.dropFirst(p.count), as: UTF8.self), Array(try Seal.open(v, key: k, table: .meta))))
            return true
        }
        var more = try cursor.seek(p, visit) ?? false
        while more {
            more = try cursor.move(.next, visit) ?? false
        }
        return out
    }
}

/// In-process state derived from committed data: decoded models, live vector indexes.
/// Guarded by a lock; entries are keyed by what they were derived from, so a stale entry is never served.
// Unchecked: `entries` is read and written only under `lock`; the cached objects themselves are immutable.
final class RuntimeCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: AnyObject] = [:]

    func value<T: AnyObject>(_ key: String, as: T.Type) -> T? {
        lock.lock(); defer { lock.unlock() }
        return entries[key] as? T
    }
    func set(_ key: String, _ value: AnyObject?) {
        lock.lock(); defer { lock.unlock() }
        entries[key] = value
    }
    func removeAll(prefix: String) {
        lock.lock(); defer { lock.unlock() }
        for key in entries.keys where key.hasPrefix(prefix) { entries[key] = nil }
    }
}

extension ReadTransaction {
    /// Decodes the JSON record at `key`, reusing the process-wide decoded value while the stored bytes
    /// are unchanged (hot paths read the same catalogue records on every call).
    /// `sealed` records carry a checksum trailer (see `Seal`), checked on every read.
    func cachedJSON<T: Decodable & Sendable>(_ type: T.Type, table: Table, key: [UInt8], what: String, sealed: Bool = false) throws -> T? {
        let cacheKey = "json:\(table.rawValue):" + String(decoding: key, as: UTF8.self)
        return try raw.withValue(table, key: key) { stored -> T in
            let buf = sealed ? try Seal.open(stored, key: key, table: table) : stored
            if let cached = database.runtime.value(cacheKey, as: DecodedRecord<T>.self), cached.bytes.elementsEqual(buf) {
                return cached.value
            }
            let value: T
            do { value = try JSONDecoder().decode(T.self, from: Data(buf)) } catch { throw RecDBError.corrupt("\(what): \(error)") }
            database.runtime.set(cacheKey, DecodedRecord(bytes: Array(buf), value: value))
            return value
        }
    }
}
