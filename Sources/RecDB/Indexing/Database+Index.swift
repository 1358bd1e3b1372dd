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
        try buildIndex(space: name, factory: factory, metric: metric, searchParameters: searchParameters, whileBuilding: nil)
    }

    /// `whileBuilding` runs between the snapshot and the commit (tests write there).
    func buildIndex(space name: String, factory: String?, metric: VectorMetric?, searchParameters: SearchParameters?,
                    whileBuilding: (() throws -> Void)?) throws -> IndexInfo {
        try requireNoTransaction("building an index")
        let (space, ids, vectors, eventVersion) = try read { tx -> (EmbeddingSpace, [UInt32], [Float], UInt64) in
            let space = try tx.requireSpace(name)
            let (ids, vectors) = try Self.allVectors(tx, space: space)
            return (space, ids, vectors, try tx.eventVersion())
        }
        let chosen = factory ?? Database.defaultIndexFactory(vectorCount: ids.count)
        let chosenMetric = metric ?? space.metric
        var index = try makeIndex(factory: chosen, dimension: space.dimension, metric: chosenMetric, ids: ids, vectors: vectors)
        if let searchParameters { try wrapIndex { try index.setDefaultSearchParameters(searchParameters) } }
        // Room for the serialized index (its vectors and graph links), so the commit cannot outgrow the map.
        try reserve(bytes: 2 * (vectors.count * MemoryLayout<Float>.stride + ids.count * 512) + (16 << 20))
        try whileBuilding?()
        return try write { tx in
            guard let current = try tx.space(named: name), current.id == space.id else { throw RecDBError.unknownSpace(name) }
            // Vectors written while the index was built are applied here, so the stored index is
            // current and needs no log before this transaction. When the log was pruned meanwhile
            // (spaces without an index keep a bounded log), the index is rebuilt from this transaction.
            if current.version != space.version {
                let changes = try tx.vectorChanges(space: name, after: space.version)
                if UInt64(changes.count) == current.version - space.version {
                    try Self.apply(changes, of: current, from: tx, to: index)
                } else {
                    let (ids, vectors) = try Self.allVectors(tx, space: current)
                    index = try makeIndex(factory: chosen, dimension: space.dimension, metric: chosenMetric, ids: ids, vectors: vectors)
                    if let searchParameters { try wrapIndex { try index.setDefaultSearchParameters(searchParameters) } }
                }
            }
            return try tx.storeIndex(index, space: space.name, factory: chosen, metric: chosenMetric, dimension: space.dimension,
                                     spaceVersion: current.version, eventVersion: eventVersion, vectors: index.count,
                                     defaults: index.defaultSearchParameters)
        }
    }

    /// Every vector of `space` in the snapshot `tx`: ids ascending and their rows.
    static func allVectors(_ tx: ReadTransaction, space: EmbeddingSpace) throws -> ([UInt32], [Float]) {
        var ids: [UInt32] = []
        var vectors: [Float] = []
        ids.reserveCapacity(space.count)
        vectors.reserveCapacity(space.count * space.dimension)
        let d = space.dimension
        try tx.forEachVector(space: space.name) { entity, view in
            guard view.count == d else {
                throw RecDBError.corrupt("vector \(space.name)/#\(entity) has \(view.count) components, expected \(d)")
            }
            ids.append(entity)
            let start = vectors.count
            vectors.append(contentsOf: repeatElement(0, count: d))
            vectors.withUnsafeMutableBufferPointer { view.copy(into: UnsafeMutableBufferPointer(rebasing: $0[start..<(start + d)])) }
            return true
        }
        return (ids, vectors)
    }

    /// Sets the rows of `changes` (log entities, oldest first) to their vectors in `tx`.
    static func apply(_ changes: [UInt32], of space: EmbeddingSpace, from tx: ReadTransaction, to index: VectorIndex) throws {
        var seen = Set<UInt32>()
        for entity in changes.reversed() where seen.insert(entity).inserted {
            guard let v = try tx.vector(space: space.name, entity: entity) else { continue }
            do { try index.update(id: entity, vector: v) } catch { throw RecDBError.index("updating \(space.name)/#\(entity): \(error)") }
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

    /// The generation of `space`'s index that the snapshot `tx` stores: loaded (and checksum-verified)
    /// on first use. Readers of a snapshot taken before a rebuild keep the generation of their snapshot.
    func liveIndex(space: EmbeddingSpace, tx: ReadTransaction) throws -> LiveIndex {
        guard let info = try tx.indexInfo(space: space.name) else {
            throw RecDBError.unknownIndex("space '\(space.name)' (build one with `rdbctl index build DB --space \(space.name)`)")
        }
        let key = "index:\(space.name)"
        let generations: IndexGenerations
        if let existing = runtime.value(key, as: IndexGenerations.self) {
            generations = existing
            if let live = generations.find(info), !live.broken { return live }
        } else {
            generations = IndexGenerations()
            runtime.set(key, generations)
        }
        let live = LiveIndex(info: info, index: try loadStoredIndex(tx, info: info))
        generations.insert(live)
        return live
    }

    /// Deserializes the index blob `info` describes from `tx`, refusing it when size or checksum differ.
    func loadStoredIndex(_ tx: ReadTransaction, info: IndexInfo) throws -> VectorIndex {
        let loaded = try tx.raw.withValue(.indexes, key: IndexKeys.blob(space: info.space)) { bytes -> VectorIndex in
            let sum = Checksum.fnv1a64(bytes)
            guard bytes.count == info.bytes, sum == info.checksum else {
                throw RecDBError.index("the stored index of space '\(info.space)' is damaged (\(bytes.count) bytes, checksum \(sum); expected \(info.bytes) bytes, \(info.checksum)); rebuild it with `rdbctl index build DB --space \(info.space)`")
            }
            return try wrapIndex { try VectorIndex(serializedBuffer: bytes) }
        }
        guard let loaded else { throw RecDBError.index("the index of space '\(info.space)' has a header but no data; rebuild it") }
        return loaded
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

    /// One filtered search in the snapshot `tx`: the results are those of the snapshot's own vectors,
    /// whatever the shared index has applied since (see `LiveIndex`).
    func search(_ tx: ReadTransaction, space: EmbeddingSpace, query: [Float], k: Int, filter: SearchFilter,
                extraExcluded: [UInt32], titles: Bool) throws -> [ScoredItem] {
        guard k > 0 else { throw RecDBError.invalidArgument("k must be positive") }
        let live = try liveIndex(space: space, tx: tx)
        let parts = try filterParts(tx, kind: space.kind, filter: filter, extraExcluded: extraExcluded)
        let hits = try live.withSnapshot(tx, space: space) { stale -> [(UInt32, Float)] in
            if stale.isEmpty {
                // No search returns more than the snapshot can hold: an absurd k must not size any buffer.
                let k = min(k, max(1, live.index.count))
                return try wrapIndex { try live.index.search(query, k: k, filter: parts.filter()) }.map { ($0.id, $0.score) }
            }
            return try searchBesideStaleRows(tx, live, space: space, query: query, k: k, parts: parts, stale: stale)
        }
        return try describe(tx, kind: space.kind, hits, titles: titles)
    }

    /// Searches of one space in the snapshot `tx`, each with its own query, k, filter, exclusions and titles
    /// choice: each result is what `search(_:space:query:k:filter:extraExcluded:titles:)` gives alone, and one
    /// query's error is its own result. The index is searched for all of them at once (a flat index scans its
    /// rows once for each group of queries).
    func search(_ tx: ReadTransaction, space: EmbeddingSpace, queries: [[Float]], ks: [Int], filters: [SearchFilter],
                extraExcluded: [[UInt32]], titles: [Bool]) -> [Result<[ScoredItem], Error>] {
        let n = queries.count
        let live: LiveIndex
        do { live = try liveIndex(space: space, tx: tx) } catch { return queries.map { _ in .failure(error) } }
        var results = [Result<[ScoredItem], Error>?](repeating: nil, count: n)
        var parts = [FilterParts?](repeating: nil, count: n)
        for q in 0..<n {
            do {
                guard ks[q] > 0 else { throw RecDBError.invalidArgument("k must be positive") }
                guard queries[q].count == space.dimension else {
                    throw RecDBError.invalidArgument("query has \(queries[q].count) values, space '\(space.name)' has dimension \(space.dimension)")
                }
                parts[q] = try filterParts(tx, kind: space.kind, filter: filters[q], extraExcluded: extraExcluded[q])
            } catch {
                results[q] = .failure(error)
            }
        }
        let searched = (0..<n).filter { results[$0] == nil }
        do {
            let hits = try live.withSnapshot(tx, space: space) { stale -> [[(UInt32, Float)]] in
                if stale.isEmpty {
                    let found = try wrapIndex {
                        try live.index.search(batch: searched.flatMap { queries[$0] }, ks: searched.map { min(ks[$0], max(1, live.index.count)) },
                                              filters: searched.map { parts[$0]!.filter() })
                    }
                    return found.map { $0.map { ($0.id, $0.score) } }
                }
                return try searched.map { q in
                    try searchBesideStaleRows(tx, live, space: space, query: queries[q], k: ks[q], parts: parts[q]!, stale: stale)
                }
            }
            for (q, found) in zip(searched, hits) { results[q] = Result { try describe(tx, kind: space.kind, found, titles: titles[q]) } }
        } catch {
            for q in searched { results[q] = .failure(error) }
        }
        return results.map { $0! }
    }

    /// One search when the shared index holds rows written after the snapshot (`stale`): they are left out of
    /// the index search, and scored from the snapshot's own vectors (an exact Flat scan of those few rows, with
    /// the index's metric, so scores are computed as the index computes them).
    private func searchBesideStaleRows(_ tx: ReadTransaction, _ live: LiveIndex, space: EmbeddingSpace, query: [Float], k: Int,
                                       parts: FilterParts, stale: [UInt32]) throws -> [(UInt32, Float)] {
        // No search returns more than the snapshot can hold: an absurd k must not size any buffer.
        let k = min(k, max(1, live.index.count + stale.count))
        let idFilter = parts.filter()
        let fromIndex = try wrapIndex { try live.index.search(query, k: k, filter: parts.filter(alsoExcluding: stale)) }
        var ids: [UInt32] = []
        var rows: [Float] = []
        for entity in Set(stale).sorted() where idFilter?.permits(entity) ?? true {
            guard let v = try tx.vector(space: space.name, entity: entity) else { continue }  // not in the snapshot
            ids.append(entity)
            rows += v
        }
        var fromSnapshot: [Neighbor] = []
        if !ids.isEmpty {
            let exact = try makeIndex(factory: "Flat", dimension: space.dimension, metric: live.info.metric, ids: ids, vectors: rows)
            fromSnapshot = try wrapIndex { try exact.search(query, k: min(k, ids.count)) }
        }
        return Self.merge(fromIndex, fromSnapshot, k: k, ascending: live.info.metric == .l2)
    }

    /// The best `k` of two best-first lists (ties: the first list first).
    static func merge(_ a: [Neighbor], _ b: [Neighbor], k: Int, ascending: Bool) -> [(UInt32, Float)] {
        var out: [(UInt32, Float)] = []
        out.reserveCapacity(min(k, a.count + b.count))
        var i = 0, j = 0
        while out.count < k && (i < a.count || j < b.count) {
            let takeA: Bool
            if i == a.count { takeA = false } else if j == b.count { takeA = true } else {
                takeA = ascending ? a[i].score <= b[j].score : a[i].score >= b[j].score
            }
            if takeA { out.append((a[i].id, a[i].score)); i += 1 } else { out.append((b[j].id, b[j].score)); j += 1 }
        }
        return out
    }

    func describe(_ tx: ReadTransaction, kind: EntityKind, _ hits: [(UInt32, Float)], titles: Bool) throws -> [ScoredItem] {
        switch kind {
        case .item:
            let descriptions = try itemDescriptions(tx, hits.map(\.0))
            return zip(hits, descriptions).map { hit, description in
                ScoredItem(item: description?.externalID ?? "#\(hit.0)", id: hit.0, score: hit.1, title: titles ? description?.title : nil)
            }
        case .user:
            return try hits.map { id, score in ScoredItem(item: try tx.user(id: id)?.externalID ?? "#\(id)", id: id, score: score, title: nil) }
        }
    }

    /// Combines "never serve deleted/unavailable items", explicit exclusions, allow-lists and
    /// attribute filters into one Faiss id filter (applied inside the search, no over-fetching).
    /// `extraExcluded` may repeat ids.
    func makeFilter(_ tx: ReadTransaction, kind: EntityKind, filter: SearchFilter, extraExcluded: [UInt32]) throws -> IDFilter? {
        try filterParts(tx, kind: kind, filter: filter, extraExcluded: extraExcluded).filter()
    }

    /// The parts of a search filter, gathered from the snapshot `tx`. Exclusions are gathered in an
    /// array (the filter sorts and deduplicates them once): building a hash set per request cost more
    /// than the rest of the filter.
    func filterParts(_ tx: ReadTransaction, kind: EntityKind, filter: SearchFilter, extraExcluded: [UInt32]) throws -> FilterParts {
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
        return FilterParts(excluded: excluded, allowed: allowed)
    }
}

/// Exclusions and allow-list of one search, before they become a Faiss filter.
struct FilterParts {
    var excluded: [UInt32]
    var allowed: Set<UInt32>?

    func filter(alsoExcluding more: [UInt32] = []) -> IDFilter? {
        if let allowed {
            let out = excluded.isEmpty && more.isEmpty ? allowed : allowed.subtracting(excluded).subtracting(more)
            return .allowing(out)
        }
        if more.isEmpty { return excluded.isEmpty ? nil : .excluding(excluded) }
        return .excluding(excluded + more)
    }
}
