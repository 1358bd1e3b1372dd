import Foundation

/// Counts and sizes, as `rdbctl stats` prints them.
public struct DatabaseStats: Codable, Equatable, Sendable {
    public struct Space: Codable, Equatable, Sendable {
        public var name: String
        public var kind: EntityKind
        public var dim: Int
        public var dtype: VectorDType
        public var metric: VectorMetric
        public var count: Int
    }
    public var users: Int
    public var items: Int
    public var interactions: Int
    public var profiles: Int
    public var spaces: [Space]
    public var models: Int
    public var indexes: Int
    public var eventVersion: UInt64
    public var fileBytes: Int
    public var formatVersion: Int

    enum CodingKeys: String, CodingKey {
        case users, items, interactions, profiles, spaces, models, indexes
        case eventVersion = "event_version", fileBytes = "file_bytes", formatVersion = "format_version"
    }
}

extension Database {
    public func stats() throws -> DatabaseStats {
        let size = fileSize
        return try read { tx in
            DatabaseStats(
                // From the checksummed counters (ids are dense and never reused, events never removed),
                // not LMDB's per-table entry counts, which carry no checksum; `verify` checks they agree.
                users: try tx.userCount(),
                items: try tx.itemCount(),
                interactions: Int(try tx.eventVersion()),
                profiles: try tx.profileCount(),
                spaces: try tx.spaces().map {
                    .init(name: $0.name, kind: $0.kind, dim: $0.dimension, dtype: $0.dtype, metric: $0.metric, count: $0.count)
                },
                models: try tx.countKeys(.models, prefix: "m/", known: ["m/", "v/", "t/"]),
                indexes: try tx.countKeys(.indexes, prefix: "h/", known: ["h/", "b/"]),
                eventVersion: try tx.eventVersion(),
                fileBytes: size,
                formatVersion: Int(clamping: try MetaStore(tx.raw).u64(.formatVersion) ?? UInt64(Database.formatVersion)))
        }
    }
}

extension ReadTransaction {
    /// Keys of `table` starting with `prefix`, after checking that every key has one of the `known`
    /// prefixes: a flipped prefix byte would otherwise hide a model or an index from the count.
    func countKeys(_ table: Table, prefix: String, known: [String]) throws -> Int {
        let p = Array(prefix.utf8), forms = known.map { Array($0.utf8) }
        let cursor = try raw.cursor(table)
        var n = 0
        var step = LMDBCursor.Move.first
        while let matched = try cursor.move(step, { k, _ -> Bool in
            guard forms.contains(where: { k.starts(with: $0) }) else {
                throw RecDBError.damaged(table: table.rawValue, key: describeKey(k), detail: "a key of no known form")
            }
            return k.starts(with: p)
        }) {
            if matched { n += 1 }
            step = .next
        }
        return n
    }
}
