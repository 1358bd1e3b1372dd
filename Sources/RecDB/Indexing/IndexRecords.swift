import Foundation

/// Metadata of a stored vector index (the `h/<owner>` record of the `indexes` table).
public struct IndexInfo: Codable, Sendable, Equatable {
    /// The embedding space the index serves.
    public var space: String
    /// Faiss factory string ("Flat", "HNSW32", "IVF256,Flat", …).
    public var factory: String
    public var metric: VectorMetric
    public var dimension: Int
    public var builtAt: Int64
    /// The space version (vector log position) the stored bytes reflect; later vector writes are
    /// applied from the `vector_log` when the index is loaded, so no rebuild is needed.
    public var spaceVersion: UInt64
    /// The database's event version when the index was built.
    public var eventVersion: UInt64
    /// Vectors in the stored bytes.
    public var vectors: Int
    /// Size and FNV-1a 64 checksum of the stored bytes; a mismatch refuses the blob.
    public var bytes: Int
    public var checksum: String
    /// Search-time defaults stored with the index.
    public var efSearch: Int?
    public var nprobe: Int?
}

enum IndexKeys {
    static func header(space: String) -> [UInt8] { Array("h/space:\(space)".utf8) }
    static func blob(space: String) -> [UInt8] { Array("b/space:\(space)".utf8) }
    static let headerPrefix: [UInt8] = Array("h/".utf8)
}

enum Checksum {
    static func fnv1a64(_ bytes: UnsafeRawBufferPointer) -> String {
        var h: UInt64 = 0xcbf29ce484222325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return String(format: "%016llx", h)
    }
}

extension ReadTransaction {
    /// The stored index of `space`, if any.
    public func indexInfo(space: String) throws -> IndexInfo? {
        try cachedJSON(IndexInfo.self, table: .indexes, key: IndexKeys.header(space: space), what: "index header of \(space)", sealed: true)
    }

    /// All stored indexes.
    public func indexes() throws -> [IndexInfo] {
        try keys(in: .indexes, prefix: IndexKeys.headerPrefix).compactMap { key in
            try raw.withValue(.indexes, key: key) { try JSONDecoder().decode(IndexInfo.self, from: Data(try Seal.open($0, key: key, table: .indexes))) }
        }
    }
}

extension WriteTransaction {
    func storeIndex(_ info: IndexInfo, bytes: UnsafeRawBufferPointer) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let headerKey = IndexKeys.header(space: info.space)  // the header is sealed (see `Seal`); the blob has its own checksum
        try raw.put(.indexes, key: headerKey, value: Seal.sealed(Array(try encoder.encode(info)), key: headerKey, table: .indexes))
        try IndexKeys.blob(space: info.space).withUnsafeBytes { key in
            try raw.putReserved(.indexes, key: key, count: bytes.count) { out in
                out.copyMemory(from: bytes)
            }
        }
    }

    /// Removes the stored index of `space`. Returns whether there was one.
    @discardableResult
    public func dropIndex(space: String) throws -> Bool {
        let had = try raw.delete(.indexes, key: IndexKeys.header(space: space))
        try raw.delete(.indexes, key: IndexKeys.blob(space: space))
        if had { onCommit { [database] in database.runtime.set("index:\(space)", nil) } }
        return had
    }
}
