import Foundation
import Index

/// A search result: an entity of the space (item or user), its score and, for items, the title.
public struct ScoredItem: Codable, Sendable, Equatable {
    /// External id.
    public var item: String
    /// Internal id.
    public var id: UInt32
    /// Similarity (inner product / cosine: higher is better; l2: squared distance, lower is better).
    public var score: Float
    public var title: String?
}

/// Restricts a search. Deleted and unavailable items never come back, whatever the filter.
public struct SearchFilter: Sendable {
    /// External ids that must not be returned.
    public var excludeItems: [String] = []
    /// When set, only these external ids may be returned.
    public var allowItems: [String]?
    /// Attribute equality: an item passes when, for every pair, its attribute equals the value
    /// (or, for an array attribute, contains it). Compared as text.
    public var attributes: [String: String] = [:]
    public init(excludeItems: [String] = [], allowItems: [String]? = nil, attributes: [String: String] = [:]) {
        self.excludeItems = excludeItems
        self.allowItems = allowItems
        self.attributes = attributes
    }
}

/// The in-process, searchable copy of a stored index, kept up to date with the space's vector log.
final class LiveIndex: @unchecked Sendable {
    let info: IndexInfo
    let index: VectorIndex
    private let lock = NSLock()
    private(set) var appliedVersion: UInt64

    init(info: IndexInfo, index: VectorIndex) {
        self.info = info
        self.index = index
        appliedVersion = info.spaceVersion
    }

    /// Applies every vector written after `appliedVersion` up to the snapshot's space version.
    func catchUp(_ tx: ReadTransaction, space: EmbeddingSpace) throws {
        guard space.version > appliedVersion else { return }
        lock.lock(); defer { lock.unlock() }
        guard space.version > appliedVersion else { return }
        var seen = Set<UInt32>()
        for entity in try tx.vectorChanges(space: space.name, after: appliedVersion).reversed() where seen.insert(entity).inserted {
            guard let v = try tx.vector(space: space.name, entity: entity) else { continue }
            do { try index.update(id: entity, vector: v) } catch { throw RecDBError.index("updating \(space.name)/#\(entity): \(error)") }
        }
        appliedVersion = space.version
    }
}

extension VectorMetric {
    var indexMetric: Metric {
        switch self {
        case .cosine: return .cosine
        case .innerProduct: return .innerProduct
        case .l2: return .l2
        }
    }
}

extension Database {
    /// The factory used when none is given: exact search for small catalogues, HNSW above ~50k.
    public static func defaultIndexFactory(vectorCount: Int) -> String {
        vectorCount < 50_000 ? "Flat" : "HNSW32"
    }

    /// Builds the vector index of `space` from a snapshot of its vectors and stores it, with its
    /// metadata and checksum, in one write transaction. Vectors written while it builds are applied
    /// from the vector log when the index is loaded.
    /// - Parameters:
    ///   - factory: a Faiss factory string; nil picks `defaultIndexFactory`.
    ///   - metric: nil uses the space's metric.
    @discardableResult
    public func buildIndex(space name: String, factory: String? = nil, metric: VectorMetric? = nil,
                           searchParameters: SearchParameters? = nil) throws -> IndexInfo {
        let (space, ids, vectors, eventVersion) = try read { tx -> (EmbeddingSpace, [UInt32], [Float], UInt64) in
            let space = try tx.requireSpace(name)
            var ids: [UInt32] = []
            var vectors: [Float] = []
            ids.reserveCapacity(space.count)
            vectors.reserveCapacity(space.count * space.dimension)
            try tx.forEachVector(space: name) { entity, view in
                ids.append(entity)
                for i in 0..<view.count { vectors.append(view[i]) }
                return true
            }
            return (space, ids, vectors, try tx.eventVersion())
        }
        let chosen = factory ?? Database.defaultIndexFactory(vectorCount: ids.count)
        let chosenMetric = metric ?? space.metric
        let index = try makeIndex(factory: chosen, dimension: space.dimension, metric: chosenMetric, ids: ids, vectors: vectors)
        if let searchParameters { try wrapIndex { try index.setDefaultSearchParameters(searchParameters) } }
        let defaults = index.defaultSearchParameters
        return try write { tx in
            guard let current = try tx.space(named: name), current.id == space.id else { throw RecDBError.unknownSpace(name) }
            let info = try tx.storeIndex(index, space: space.name, factory: chosen, metric: chosenMetric, dimension: space.dimension,
                                          spaceVersion: space.version, eventVersion: eventVersion, vectors: ids.count, defaults: defaults)
            return info
        }
    }

    func makeIndex(factory: String, dimension: Int, metric: VectorMetric, ids: [UInt32], vectors: [Float]) throws -> VectorIndex {
        try wrapIndex {
            let index = try VectorIndex(factory: factory, dimension: dimension, metric: metric.indexMetric)
            if !index.isTrained {
                guard !ids.isEmpty else { throw RecDBError.index("'\(factory)' needs training vectors, the space is empty") }
                try index.train(vectors: vectors)
            }
            if !ids.isEmpty { try index.add(ids: ids, vectors: vectors) }
            return index
        }
    }

    /// The live index of `space` for the snapshot `tx`: loaded (and checksum-verified) on first use,
    /// reloaded when another build replaced it, caught up with vectors written since it was stored.
    func liveIndex(space: EmbeddingSpace, tx: ReadTransaction) throws -> LiveIndex {
        guard let info = try tx.indexInfo(space: space.name) else {
            throw RecDBError.unknownIndex("space '\(space.name)' (build one with `rdbctl index build DB --space \(space.name)`)")
        }
        let key = "index:\(space.name)"
        var live = runtime.value(key, as: LiveIndex.self)
        if live == nil || live!.info != info {
            let loaded = try tx.raw.withValue(.indexes, key: IndexKeys.blob(space: space.name)) { bytes -> VectorIndex in
                let sum = Checksum.fnv1a64(bytes)
                guard bytes.count == info.bytes, sum == info.checksum else {
                    throw RecDBError.index("the stored index of space '\(space.name)' is damaged (\(bytes.count) bytes, checksum \(sum); expected \(info.bytes) bytes, \(info.checksum)); rebuild it with `rdbctl index build DB --space \(space.name)`")
                }
                return try wrapIndex { try VectorIndex(serializedBuffer: bytes) }
            }
            guard let loaded else { throw RecDBError.index("the index of space '\(space.name)' has a header but no data; rebuild it") }
            live = LiveIndex(info: info, index: loaded)
            runtime.set(key, live)
        }
        try live!.catchUp(tx, space: space)
        return live!
    }

    func wrapIndex<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as IndexError { throw RecDBError.index(error.message) }
    }

    // MARK: - Queries

    /// The `k` items most similar to `item` in `space` (the item itself excluded).
    public func similarItems(to item: String, k: Int, space: String, filter: SearchFilter = SearchFilter(), titles: Bool = true) throws -> [ScoredItem] {
        try similarItems(to: [item], k: k, space: space, filter: filter, titles: titles)[0]
    }

    /// Batch variant: one result list per item.
    public func similarItems(to items: [String], k: Int, space name: String, filter: SearchFilter = SearchFilter(), titles: Bool = true) throws -> [[ScoredItem]] {
        try read { tx in
            let space = try tx.requireSpace(name)
            return try items.map { external in
                let id: UInt32?
                switch space.kind {
                case .item: id = try tx.itemID(for: external)
                case .user: id = try tx.userID(for: external)
                }
                guard let id else { throw space.kind == .item ? RecDBError.unknownItem(external) : RecDBError.unknownUser(external) }
                guard let query = try tx.vector(space: name, entity: id) else {
                    throw RecDBError.invalidArgument("\(space.kind.rawValue) '\(external)' has no vector in space '\(name)'")
                }
                var f = filter
                f.excludeItems.append(external)
                return try search(tx, space: space, query: query, k: k, filter: f, extraExcluded: [id], titles: titles)
            }
        }
    }

    /// The `k` entities of `space` nearest to `vector`.
    public func nearest(to vector: [Float], k: Int, space: String, filter: SearchFilter = SearchFilter(), titles: Bool = true) throws -> [ScoredItem] {
        try nearest(to: [vector], k: k, space: space, filter: filter, titles: titles)[0]
    }

    /// Batch variant: one result list per vector.
    public func nearest(to vectors: [[Float]], k: Int, space name: String, filter: SearchFilter = SearchFilter(), titles: Bool = true) throws -> [[ScoredItem]] {
        try read { tx in
            let space = try tx.requireSpace(name)
            return try vectors.map { v in
                guard v.count == space.dimension else { throw RecDBError.dimensionMismatch(space: name, expected: space.dimension, got: v.count) }
                return try search(tx, space: space, query: v, k: k, filter: filter, extraExcluded: [], titles: titles)
            }
        }
    }

    /// One filtered search in the snapshot `tx`.
    func search(_ tx: ReadTransaction, space: EmbeddingSpace, query: [Float], k: Int, filter: SearchFilter,
                extraExcluded: [UInt32], titles: Bool) throws -> [ScoredItem] {
        guard k > 0 else { throw RecDBError.invalidArgument("k must be positive") }
        let live = try liveIndex(space: space, tx: tx)
        let idFilter = try makeFilter(tx, kind: space.kind, filter: filter, extraExcluded: extraExcluded)
        // No search returns more than the index holds: an absurd k must not size any buffer.
        let neighbors = try wrapIndex { try live.index.search(query, k: min(k, max(1, live.index.count)), filter: idFilter) }
        return try describe(tx, kind: space.kind, neighbors.map { ($0.id, $0.score) }, titles: titles)
    }

    func describe(_ tx: ReadTransaction, kind: EntityKind, _ hits: [(UInt32, Float)], titles: Bool) throws -> [ScoredItem] {
        try hits.map { id, score in
            switch kind {
            case .item:
                let fields = try tx.raw.withValue(.items, key: Keys.u32(id)) { try ItemRecord.externalIDAndTitle(id: id, $0, title: titles) }
                return ScoredItem(item: fields?.0 ?? "#\(id)", id: id, score: score, title: fields?.1)
            case .user:
                return ScoredItem(item: try tx.user(id: id)?.externalID ?? "#\(id)", id: id, score: score, title: nil)
            }
        }
    }

    /// Combines "never serve deleted/unavailable items", explicit exclusions, allow-lists and
    /// attribute filters into one Faiss id filter (applied inside the search, no over-fetching).
    /// `extraExcluded` may repeat ids. Exclusions are gathered in an array (the filter sorts and deduplicates
    /// them once): building a hash set per request cost more than the rest of the filter.
    func makeFilter(_ tx: ReadTransaction, kind: EntityKind, filter: SearchFilter, extraExcluded: [UInt32]) throws -> IDFilter? {
        var excluded = extraExcluded
        var allowed: Set<UInt32>?
        if kind == .item {
            excluded.append(contentsOf: try unservableItems(tx))
            for external in filter.excludeItems { if let id = try tx.itemID(for: external) { excluded.append(id) } }
            if let allow = filter.allowItems {
                allowed = Set(try allow.compactMap { try tx.itemID(for: $0) })
            }
            if !filter.attributes.isEmpty {
                let matching = try itemsMatching(tx, attributes: filter.attributes)
                allowed = allowed.map { $0.intersection(matching) } ?? matching
            }
        } else {
            for external in filter.excludeItems { if let id = try tx.userID(for: external) { excluded.append(id) } }
            if let allow = filter.allowItems { allowed = Set(try allow.compactMap { try tx.userID(for: $0) }) }
        }
        if let allowed { return .allowing(excluded.isEmpty ? allowed : allowed.subtracting(excluded)) }
        return excluded.isEmpty ? nil : .excluding(excluded)
    }
}
