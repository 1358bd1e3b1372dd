import Foundation
import Learn

/// Everything a training or evaluation run needs, copied out of one read transaction (which is then
/// closed: training never holds a read transaction open).
struct TrainingSnapshot {
    /// Chronological sequences of internal item ids; row r belongs to `userIDs[r]`.
    var dataset: SequenceDataset
    var userIDs: [UInt32]
    /// Items 1...numItems existed at the snapshot.
    var numItems: Int
    /// The last event the snapshot contains.
    var eventVersion: UInt64
    /// Frozen text table for `text` / `text+id` items (rows of items without a vector are zeros).
    var textTable: TextTable?
    var itemsWithoutText: Int
    /// Profile embeddings per dataset row, for distillation.
    var profiles: ProfileTable?
    /// Interaction count of each item (index = item id), for the popularity fallback.
    var popularity: [Float]
}

extension ReadTransaction {
    /// Visits (user, item, timestamp, sequence) in (user, time) order.
    func forEachUserEventWithSequence(_ body: (UInt32, UInt32, Int64, UInt64) throws -> Void) throws {
        try forEachStoredEvent { user, e in
            try body(user, e.item, e.timestamp, e.sequence)
            return true
        }
    }

    /// Reads the vectors of `space` for entities 1...count into a dense `(count + 1) × dim` table.
    func denseTable(space name: String, count: Int) throws -> (values: [Float], dimension: Int, missing: Int) {
        let space = try requireSpace(name)
        let d = space.dimension
        var values = [Float](repeating: 0, count: (count + 1) * d)
        var present = 0
        try values.withUnsafeMutableBufferPointer { out in
            try forEachVector(space: name) { entity, view in
                guard Int(entity) <= count else { return false }
                view.copy(into: UnsafeMutableBufferPointer(rebasing: out[Int(entity) * d..<(Int(entity) + 1) * d]))
                present += 1
                return true
            }
        }
        return (values, d, count - present)
    }

    /// Builds the training snapshot. Events after `upToEvent` (when given) are left out, so a stored
    /// model can be re-evaluated on exactly the data it was trained on.
    func trainingSnapshot(textSpace: String?, profileSpace: String?, upToEvent: UInt64? = nil, numItems fixedItems: Int? = nil) throws -> TrainingSnapshot {
        let eventVersion = try upToEvent ?? self.eventVersion()
        let numItems = try fixedItems ?? itemCount()
        var sequences: [[Int32]] = []
        var timestamps: [[Int64]] = []
        var userIDs: [UInt32] = []
        var popularity = [Float](repeating: 0, count: numItems + 1)
        var currentUser: UInt32 = 0
        var seq: [Int32] = [], ts: [Int64] = []
        func closeUser() {
            if !seq.isEmpty { sequences.append(seq); timestamps.append(ts); userIDs.append(currentUser) }
            seq.removeAll(keepingCapacity: true); ts.removeAll(keepingCapacity: true)
        }
        try forEachUserEventWithSequence { user, item, timestamp, sequence in
            guard sequence <= eventVersion, Int(item) <= numItems else { return }
            if user != currentUser { closeUser(); currentUser = user }
            seq.append(Int32(item))
            ts.append(timestamp)
            popularity[Int(item)] += 1
        }
        closeUser()
        guard !sequences.isEmpty else { throw RecDBError.training("the database has no interactions to train on") }
        let dataset: SequenceDataset
        do { dataset = try SequenceDataset(sequences: sequences, numItems: numItems, timestamps: timestamps) } catch {
            throw RecDBError.training("\(error)")
        }
        var textTable: TextTable?
        var missing = 0
        if let textSpace {
            let space = try requireSpace(textSpace)
            guard space.kind == .item else { throw RecDBError.training("space '\(textSpace)' holds user vectors; text items need an item space") }
            let (values, d, m) = try denseTable(space: textSpace, count: numItems)
            missing = m
            do { textTable = try TextTable(numItems: numItems, dimension: d, values: values) } catch { throw RecDBError.training("\(error)") }
        }
        var profiles: ProfileTable?
        if let profileSpace {
            let space = try requireSpace(profileSpace)
            guard space.kind == .user else { throw RecDBError.training("space '\(profileSpace)' holds item vectors; distillation needs user profiles") }
            var rows: [[Float]?] = []
            rows.reserveCapacity(userIDs.count)
            for user in userIDs { rows.append(try vector(space: profileSpace, entity: user)) }
            do { profiles = try ProfileTable(dimension: space.dimension, profiles: rows) } catch { throw RecDBError.training("\(error)") }
        }
        return TrainingSnapshot(dataset: dataset, userIDs: userIDs, numItems: numItems, eventVersion: eventVersion,
                                textTable: textTable, itemsWithoutText: missing, profiles: profiles, popularity: popularity)
    }
}
