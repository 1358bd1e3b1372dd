import Foundation
import Index

/// A cached set of item ids, valid for one item-state version.
final class ItemSetCache: @unchecked Sendable {
    let version: UInt64
    let ids: Set<UInt32>
    init(version: UInt64, ids: Set<UInt32>) { self.version = version; self.ids = ids }
}

extension ReadTransaction {
    /// Changes whenever an item is created, updated, made (un)available or deleted — in any process.
    func itemStateVersion() throws -> UInt64 {
        if let w = self as? WriteTransaction { return try w.counter(.itemStateVersion) }
        return try meta.u64(.itemStateVersion) ?? 0
    }
}

extension Database {
    /// Ids of items that must never be served (unavailable or deleted), cached per item-state version.
    func unservableItems(_ tx: ReadTransaction) throws -> Set<UInt32> {
        let version = try tx.itemStateVersion()
        if let cached = runtime.value("unservable", as: ItemSetCache.self), cached.version == version { return cached.ids }
        var ids = Set<UInt32>()
        let cursor = try tx.raw.cursor(.items)
        var step = LMDBCursor.Move.first
        while let (id, flags) = try cursor.move(step, { k, v in (Keys.readU32(k), try ItemRecord.flags(id: Keys.readU32(k), v)) }) {
            if flags & ItemRecord.availableFlag == 0 || flags & ItemRecord.deletedFlag != 0 { ids.insert(id) }
            step = .next
        }
        if !(tx is WriteTransaction) { runtime.set("unservable", ItemSetCache(version: version, ids: ids)) }
        return ids
    }

    /// Items whose attributes match every (key, value) pair, cached per item-state version.
    func itemsMatching(_ tx: ReadTransaction, attributes: [String: String]) throws -> Set<UInt32> {
        let version = try tx.itemStateVersion()
        let key = "attrs:" + attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{1}")
        if let cached = runtime.value(key, as: ItemSetCache.self), cached.version == version { return cached.ids }
        var ids = Set<UInt32>()
        try tx.forEachItem { item in
            let attrs = item.attributes
            if attributes.allSatisfy({ name, wanted in Self.attribute(attrs[name], matches: wanted) }) { ids.insert(item.id) }
            return true
        }
        if !(tx is WriteTransaction) { runtime.set(key, ItemSetCache(version: version, ids: ids)) }
        return ids
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
                onCommit { [database] in database.runtime.set("index:\(space)", live) }
                return info
            }
        }
    }
}
