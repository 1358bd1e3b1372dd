import Foundation

/// Items' external ids and titles as search and recommendation results show them, kept per process for one
/// item-state version (`ReadTransaction.itemStateVersion`, which every write of an item record changes, in any
/// process). A result's ten items otherwise cost ten B-tree lookups, checksums and string copies a request.
///
/// Only read transactions fill it (a write transaction's counter can be rolled back and its number reused);
/// a transaction whose snapshot has another version neither reads nor fills it, so a reader sees exactly its
/// snapshot's titles. It holds at most `capacityBytes` (32 MiB) of strings: past that, items are read from the store.
// Unchecked: `version`, `entries` and `bytes` are read and written only under `lock`.
final class ItemDescriptionCache: @unchecked Sendable {
    struct Description {
        let externalID: String
        let title: String?
    }

    /// At most this many bytes of strings (plus 48 a description) are kept.
    let capacityBytes: Int

    init(capacityBytes: Int = 32 << 20) { self.capacityBytes = capacityBytes }

    private let lock = NSLock()
    private var version: UInt64 = .max
    private var entries: [UInt32: Description] = [:]
    private var bytes = 0

    /// The cached descriptions of `ids` at `version` (nil where not cached).
    func lookup(_ ids: [UInt32], at version: UInt64) -> [Description?] {
        lock.lock(); defer { lock.unlock() }
        guard version == self.version else { return ids.map { _ in nil } }
        return ids.map { entries[$0] }
    }

    /// Adds descriptions read from a read transaction's snapshot at `version`; a newer version replaces the
    /// cache, an older one (a reader of an old snapshot) leaves it alone.
    func store(_ found: [(UInt32, Description)], at version: UInt64) {
        lock.lock(); defer { lock.unlock() }
        if version != self.version {
            guard self.version == .max || version > self.version else { return }
            self.version = version
            entries.removeAll(keepingCapacity: true)
            bytes = 0
        }
        for (id, description) in found {
            let size = description.externalID.utf8.count + (description.title?.utf8.count ?? 0) + 48
            guard bytes + size <= capacityBytes else { return }
            if entries.updateValue(description, forKey: id) == nil { bytes += size }
        }
    }
}

extension Database {
    /// External ids and titles of `ids` in the snapshot `tx` (nil for an id with no item record).
    func itemDescriptions(_ tx: ReadTransaction, _ ids: [UInt32]) throws -> [ItemDescriptionCache.Description?] {
        func read(_ id: UInt32) throws -> ItemDescriptionCache.Description? {
            try tx.raw.withValue(.items, key: Keys.u32(id)) {
                let (external, title) = try ItemRecord.externalIDAndTitle(id: id, $0, title: true)
                return ItemDescriptionCache.Description(externalID: external, title: title)
            }
        }
        if tx is WriteTransaction { return try ids.map(read) }
        let version = try tx.itemStateVersion()
        let cache = itemDescriptionCache()
        var descriptions = cache.lookup(ids, at: version)
        var found: [(UInt32, ItemDescriptionCache.Description)] = []
        for (i, id) in ids.enumerated() where descriptions[i] == nil {
            descriptions[i] = try read(id)
            if let description = descriptions[i] { found.append((id, description)) }
        }
        if !found.isEmpty { cache.store(found, at: version) }
        return descriptions
    }

    private func itemDescriptionCache() -> ItemDescriptionCache {
        if let cache = runtime.value("item-descriptions", as: ItemDescriptionCache.self) { return cache }
        let cache = ItemDescriptionCache()
        runtime.set("item-descriptions", cache)  // a concurrent first use may replace it: only cached entries are lost
        return cache
    }
}
