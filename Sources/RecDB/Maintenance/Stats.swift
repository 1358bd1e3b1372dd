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
                models: try tx.modelNames().count,
                indexes: try tx.indexes().count,
                eventVersion: try tx.eventVersion(),
                fileBytes: size,
                formatVersion: Database.formatVersion)
        }
    }
}
