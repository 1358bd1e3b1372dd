import Foundation
import Index

extension Database {
    /// How many vector-log entries a space keeps beyond its stored index (or in all, without an
    /// index) before the log is compacted: the replay a process start does is bounded by it.
    static let vectorLogBound = 1024

    /// Bounds the vector log of every space written in `tx` (runs at commit, after embedding and cold
    /// start wrote their vectors):
    /// - a space with a stored index keeps only the entries after the index's version; when more than
    ///   `max(vectorLogBound, vectors / 8)` accumulated, the index is re-saved at the transaction's
    ///   version first, so a loading process replays at most that many (the re-save costs one index
    ///   copy per that many writes);
    /// - a space without an index needs no log: it is cleared once it exceeds `vectorLogBound` (an
    ///   index being built meanwhile notices the gap and rebuilds in its commit, see `buildIndex`).
    ///
    /// Readers are unaffected: a snapshot keeps its own log and index blob, and a reader whose snapshot
    /// has the new index header loads that generation.
    func compactVectorLogs(_ tx: WriteTransaction) throws {
        for name in tx.changedVectors.keys.sorted() {
            guard let space = try tx.space(named: name), let first = try tx.firstLoggedVersion(space) else { continue }
            if let info = try tx.indexInfo(space: name) {
                let bound = UInt64(max(Database.vectorLogBound, info.vectors / 8))
                if space.version > info.spaceVersion &+ bound {
                    try resaveIndex(tx, space: space, info: info)
                    try tx.pruneVectorLog(space, through: space.version)
                } else if info.spaceVersion >= first, info.spaceVersion - first + 1 > bound {
                    try tx.pruneVectorLog(space, through: info.spaceVersion)
                }
            } else if space.version - first + 1 > UInt64(Database.vectorLogBound) {
                try tx.pruneVectorLog(space, through: space.version)
            }
        }
    }

    /// Stores the index of `space` as of `tx`: the stored blob, checksum-verified, with the log applied.
    private func resaveIndex(_ tx: WriteTransaction, space: EmbeddingSpace, info: IndexInfo) throws {
        let index = try loadStoredIndex(tx, info: info)
        try Self.apply(try LiveIndex.changes(tx, space: space, after: info.spaceVersion), of: space, from: tx, to: index)
        // Replaced rows of a Flat index are tombstones that every search still skips: drop them while
        // the index is being rewritten anyway. (HNSW would rebuild its graph: left to `index build`.)
        if info.factory == "Flat", index.deadFraction > 0.25 { try wrapIndex { try index.compact() } }
        _ = try tx.storeIndex(index, space: space.name, factory: info.factory, metric: info.metric, dimension: info.dimension,
                              spaceVersion: space.version, eventVersion: info.eventVersion, vectors: index.count,
                              defaults: index.defaultSearchParameters)
    }
}
