import Foundation
import Index

/// Cached sets of item ids, each valid for one item-state version. The two most recent versions are
/// kept, so readers of an older snapshot (which must be filtered by their own snapshot's items) and of
/// the newest one do not evict each other's set on every request.
// Unchecked: `entries` is read and written only under `lock`.
final class ItemSetCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(version: UInt64, ids: Set<UInt32>)] = []

    func ids(at version: UInt64) -> Set<UInt32>? {
        lock.lock(); defer { lock.unlock() }
        return entries.first { $0.version == version }?.ids
    }

    func store(_ ids: Set<UInt32>, at version: UInt64) {
        lock.lock(); defer { lock.unlock() }
        entries.removeAll { $0.version == version }
        entries.insert((version, ids), at: 0)
        if entries.count > 2 { entries.removeLast(entries.count - 2) }
    }
}

extension ReadTransaction {
    /// Changes whenever an item is created, updated, made (un)available or deleted — in any process.
    func itemStateVersion() throws -> UInt64 {
        if let w = self as? WriteTransaction { return try w.counter(.itemStateVersion) }
        return try meta.counter(.itemStateVersion)
    }
}

extension Database {
    /// Ids of items that must never be served (unavailable or deleted), cached per item-state version.
    func unservableItems(_ tx: ReadTransaction) throws -> Set<UInt32> {
        let version = try tx.itemStateVersion()
        let cache = itemSetCache("unservable")
        if let cached = cache.ids(at: version) { return cached }
        var ids = Set<UInt32>()
        let cursor = try tx.raw.cursor(.items)
        var step = LMDBCursor.Move.first
        while let (id, flags) = try cursor.move(step, { k, v in (Keys.readU32(k), try ItemRecord.flags(id: Keys.readU32(k), v)) }) {
            if flags & ItemRecord.availableFlag == 0 || flags & ItemRecord.deletedFlag != 0 { ids.insert(id) }
            step = .next
        }
        if !(tx is WriteTransaction) { cache.store(ids, at: version) }
        return ids
    }

    /// Items whose attributes match every (key, value) pair, cached per item-state version.
    func itemsMatching(_ tx: ReadTransaction, attributes: [String: String]) throws -> Set<UInt32> {
        let version = try tx.itemStateVersion()
        let key = "attrs:" + attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{1}")
        let cache = itemSetCache(key)
        if let cached = cache.ids(at: version) { return cached }
        var ids = Set<UInt32>()
        try tx.forEachItem { item in
            let attrs = item.attributes
            if attributes.allSatisfy({ name, wanted in Self.attribute(attrs[name], matches: wanted) }) { ids.insert(item.id) }
            return true
        }
        if !(tx is WriteTransaction) { cache.store(ids, at: version) }
        return ids
    }

    private func itemSetCache(_ key: String) -> ItemSetCache {
        if let cache = runtime.value(key, as: ItemSetCache.self) { return cache }
        let cache = ItemSetCache()
        runtime.set(key, cache)  // a concurrent first use may replace it: only a cached set is lost
        return cache
    }

    static func attribute(_ value: Any?, matches wanted: String) -> Bool {
        switch value {
        case nil: return false
        case let s as String: return s == wanted || s.split(separator: "|").contains { $0 == wanted }
        case let array as [Any]: return array.contains { attribute($0, matches: wanted) }
        default:
            if let n = jsonNumber(value) { return Double(wanted) == n }
            return "\(value!)" == wanted
        }
    }
}

extension WriteTransaction {
    /// Serializes `index` and stores it with its header; returns the header.
    func storeIndex(_ index: VectorIndex, space: String, factory: String, metric: VectorMetric, dimension: Int,
                    spaceVersion: UInt64, eventVersion: UInt64, vectors: Int, defaults: SearchParameters) throws -> IndexInfo {
        try database.wrapIndex {
            try index.withSerializedBytes { bytes in
                let info = IndexInfo(space: space, factory: factory, metric: metric, dimension: dimension, builtAt: Clock.now(),
                                     spaceVersion: spaceVersion, eventVersion: eventVersion, vectors: vectors,
                                     bytes: bytes.count, checksum: Checksum.fnv1a64(bytes),
                                     efSearch: defaults.efSearch, nprobe: defaults.nprobe)
                try storeIndex(info, bytes: bytes)
                let live = LiveIndex(info: info, index: index)
                onCommit { [database] in
                    if let generations = database.runtime.value("index:\(space)", as: IndexGenerations.self) {
                        generations.insert(live)
                    } else {
                        database.runtime.set("index:\(space)", IndexGenerations(live))
                    }
                }
                return info
            }
        }
    }
}
