import Foundation
import Index

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A readers-writer lock whose pthread lock lives in its own allocation (it must never move); writers
/// are preferred, so waiting readers cannot starve a writer.
// Unchecked: the only state is the pthread rwlock, made to be shared between threads (heap-allocated, never moves).
final class SharedExclusiveLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        defer { pthread_rwlockattr_destroy(&attributes) }
        #if os(Linux)
        // glibc prefers readers by default: a steady stream of overlapping searches (batch
        // recommendations on every core) could starve a catch-up forever. Nothing takes the shared
        // lock recursively, so the non-recursive writer preference is safe.
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        #endif
        let status = pthread_rwlock_init(lock, &attributes)
        // Not input: pthread_rwlock_init fails only when the system is out of resources.
        precondition(status == 0, "pthread_rwlock_init failed: \(status)")
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deinitialize(count: 1)
        lock.deallocate()
    }

    @inline(__always)
    func shared<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    @inline(__always)
    func exclusive<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

/// One generation of a space's index in this process: the stored index that `info` describes, loaded
/// once and moved forward along the space's vector log.
///
/// Readers of different snapshots share it. It only ever moves forward (to the newest snapshot that
/// searched it), so it may hold vectors a reader's snapshot does not have yet. It remembers which
/// entity every applied log version changed (`applied`), so a search can tell exactly which rows of
/// the index differ from its own snapshot: those written after the snapshot's space version. The
/// search leaves them out of the index search and scores their snapshot vectors exactly instead
/// (`Database.search`). A snapshot at the index's own version — the common case — pays only the
/// shared lock.
// Unchecked: `index` is a thread-safe VectorIndex; `appliedVersion` and `applied` change only under `lock` held exclusively.
final class LiveIndex: @unchecked Sendable {
    let info: IndexInfo
    let index: VectorIndex
    /// Shared: a search (the stale-row computation and the index search together, so no catch-up
    /// slips in between). Exclusive: catching up.
    private let lock = SharedExclusiveLock()
    /// `applied[i]` is the entity whose vector changed at space version `info.spaceVersion + 1 + i`;
    /// the index holds every version up to `info.spaceVersion + applied.count`. Guarded by `lock`.
    private var applied: [UInt32] = []
    /// Set when a catch-up failed half-way: the rows no longer match `applied`, the generation must be
    /// reloaded. Guarded by `lock`.
    private var isBroken = false
    var broken: Bool { lock.shared { isBroken } }

    init(info: IndexInfo, index: VectorIndex) {
        self.info = info
        self.index = index
    }

    /// The space version the index reflects.
    var appliedVersion: UInt64 { lock.shared { info.spaceVersion + UInt64(applied.count) } }

    /// Runs `body` with the entities whose rows in the index differ from the snapshot `tx` (empty in
    /// the common case), while no catch-up can change the index.
    ///
    /// A committed snapshot newer than the index first moves the index forward to it. A write
    /// transaction's own (uncommitted) vectors are never applied to the shared index — they would
    /// stay there if the transaction rolled back — but reported as differing rows instead.
    func withSnapshot<R>(_ tx: ReadTransaction, space: EmbeddingSpace, _ body: ([UInt32]) throws -> R) throws -> R {
        // One shared lock in the common case; a snapshot ahead of the index catches up first.
        while true {
            let outcome = try lock.shared { () throws -> SnapshotOutcome<R> in
                guard !isBroken else { throw RecDBError.index("the in-memory index of space '\(space.name)' failed to update; retry") }
                let appliedVersion = info.spaceVersion + UInt64(applied.count)
                if space.version == appliedVersion { return .done(try body([])) }
                if space.version < appliedVersion {
                    // Vectors this process applied after the snapshot was taken.
                    guard space.version >= info.spaceVersion else {
                        throw RecDBError.index("space '\(space.name)' at version \(space.version) is older than its index (\(info.spaceVersion))")
                    }
                    return .done(try body(Array(applied[Int(space.version - info.spaceVersion)...])))
                }
                guard tx is WriteTransaction else { return .behind }
                // A write transaction ahead of the index: the vectors written since are pending.
                return .done(try body(try Self.changes(tx, space: space, after: appliedVersion)))
            }
            switch outcome {
            case .done(let result): return result
            case .behind: try lock.exclusive { try catchUp(tx, space: space) }
            }
        }
    }

    private enum SnapshotOutcome<R> {
        case done(R)
        case behind
    }

    /// Applies the snapshot's vectors written after the index's version. Runs under the exclusive lock.
    private func catchUp(_ tx: ReadTransaction, space: EmbeddingSpace) throws {
        let from = info.spaceVersion + UInt64(applied.count)
        guard !isBroken, space.version > from else { return }
        let changes = try Self.changes(tx, space: space, after: from)
        var seen = Set<UInt32>()
        do {
            for entity in changes.reversed() where seen.insert(entity).inserted {
                guard let v = try tx.vector(space: space.name, entity: entity) else { continue }
                do { try index.update(id: entity, vector: v) } catch { throw RecDBError.index("updating \(space.name)/#\(entity): \(error)") }
            }
        } catch {
            isBroken = true
            throw error
        }
        applied.append(contentsOf: changes)
    }

    /// The entities of the log versions `after+1 ... space.version` of the snapshot `tx`, oldest first.
    /// - throws: `.corrupt` when the log misses a version (it is never pruned past a stored index's version).
    static func changes(_ tx: ReadTransaction, space: EmbeddingSpace, after version: UInt64) throws -> [UInt32] {
        let changes = try tx.vectorChanges(space: space.name, after: version)
        guard UInt64(changes.count) == space.version &- version else {
            throw RecDBError.corrupt("the vector log of space '\(space.name)' holds \(changes.count) entries after version \(version), expected \(space.version &- version); rebuild its index with `rdbctl index build DB --space \(space.name)`")
        }
        return changes
    }
}

/// The loaded generations of one space's index in this process, most recently used first. Two are
/// kept so that readers of snapshots from both sides of an index rebuild or re-save are served
/// without reloading on every alternate request.
// Unchecked: the list of generations is read and written only under `lock`.
final class IndexGenerations: @unchecked Sendable {
    static let capacity = 2
    private let lock = NSLock()
    private var generations: [LiveIndex] = []

    init(_ first: LiveIndex? = nil) { if let first { generations = [first] } }

    func find(_ info: IndexInfo) -> LiveIndex? {
        lock.lock(); defer { lock.unlock() }
        guard let i = generations.firstIndex(where: { $0.info == info }) else { return nil }
        if i > 0 { generations.insert(generations.remove(at: i), at: 0) }
        return generations[0]
    }

    func insert(_ live: LiveIndex) {
        lock.lock(); defer { lock.unlock() }
        generations.removeAll { $0.info == live.info }
        generations.insert(live, at: 0)
        if generations.count > Self.capacity { generations.removeLast(generations.count - Self.capacity) }
    }
}
