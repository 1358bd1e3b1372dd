import Foundation

/// What `mergeEventDelta` did.
public struct EventMergeSummary: Codable, Sendable {
    /// Blocks moved from `user_events_delta` into `user_events`.
    public var blocks: Int
    public var seconds: Double
}

extension Database {
    /// Moves every block of `user_events_delta` into `user_events`, in one write transaction (all or
    /// nothing). Reads are the same before and after (both tables are read as one); what changes is
    /// where the next bulk import writes: into an empty delta table it appends, while into one that
    /// already holds blocks of its users it inserts among them (README, "Data model").
    ///
    /// This is the deferred half of such imports: it rewrites the pages of `user_events` that the
    /// imports did not (one per user with blocks to move, at most), so run it when that cost suits
    /// (`rdbctl merge-events`). Blocks are moved byte for byte (their checksums do not depend on the
    /// table). A key already in `user_events` is damage: the merge fails and nothing changes.
    @discardableResult
    public func mergeEventDelta() throws -> EventMergeSummary {
        let start = Date()
        let blocks = try write { tx -> Int in
            guard tx.raw.hasTable(.userEventsDelta) else { return 0 }
            let cursor = try tx.raw.cursor(.userEventsDelta)
            var moved = 0
            var step = LMDBCursor.Move.first
            // The entry's key when user_events holds it already (nothing written), else nil.
            let moveBlock = { (k: UnsafeRawBufferPointer, v: UnsafeRawBufferPointer) throws -> [UInt8]? in
                try tx.raw.putNew(.userEvents, key: k, value: v) ? nil : Array(k)
            }
            while let refused = try cursor.move(step, moveBlock) {
                if let key = refused { throw EventsCursor.duplicate(key) }
                moved += 1
                step = .next
            }
            try tx.raw.clear(.userEventsDelta)
            return moved
        }
        return EventMergeSummary(blocks: blocks, seconds: Date().timeIntervalSince(start))
    }
}
