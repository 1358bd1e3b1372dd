import Foundation

/// What `verify` found. `problems` is empty for a sound database.
public struct VerifyReport: Codable, Sendable {
    public var checked: [String: Int]
    public var problems: [String]
    public var isClean: Bool { problems.isEmpty }
}

extension Database {
    /// Checks the structural invariants in one snapshot: id maps are bijective, every event refers to
    /// an existing user and item and appears in both the per-user table and the global log, every
    /// vector has its space's byte size and refers to an existing entity, counters cover every id.
    /// At most `maxProblems` problems are listed.
    public func verify(maxProblems: Int = 100) throws -> VerifyReport {
        try read { tx in
            var problems: [String] = []
            var checked: [String: Int] = [:]
            func problem(_ text: String) { if problems.count < maxProblems { problems.append(text) } }
            let raw = tx.raw
            let lastItem = UInt32(try tx.meta.u64(.lastItemID) ?? 0)
            let lastUser = UInt32(try tx.meta.u64(.lastUserID) ?? 0)

            // Items ↔ item_ids.
            var itemCount = 0
            try tx.forEachItem { item in
                itemCount += 1
                if item.id == 0 || item.id > lastItem { problem("item #\(item.id) is beyond the id counter \(lastItem)") }
                if try tx.itemID(for: item.externalID) != item.id { problem("item #\(item.id) '\(item.externalID)' is not mapped back by item_ids") }
                return true
            }
            if try raw.count(.itemIDs) != itemCount { problem("item_ids has \(try raw.count(.itemIDs)) entries but items has \(itemCount)") }
            checked["items"] = itemCount

            var userCount = 0
            try tx.forEachUser { user in
                userCount += 1
                if user.id == 0 || user.id > lastUser { problem("user #\(user.id) is beyond the id counter \(lastUser)") }
                if try tx.userID(for: user.externalID) != user.id { problem("user #\(user.id) '\(user.externalID)' is not mapped back by user_ids") }
                return true
            }
            if try raw.count(.userIDs) != userCount { problem("user_ids has \(try raw.count(.userIDs)) entries but users has \(userCount)") }
            checked["users"] = userCount

            // Events: both tables agree and refer to existing rows.
            var perUser = 0
            let lastSeq = try tx.meta.u64(.lastEventSequence) ?? 0
            try tx.forEachUserEvent { user, item, _ in
                perUser += 1
                if user == 0 || user > lastUser { problem("an event refers to unknown user #\(user)") }
                if item == 0 || item > lastItem { problem("an event of user #\(user) refers to unknown item #\(item)") }
                return problems.count < maxProblems
            }
            var logged = 0
            try tx.forEachEvent { event in
                logged += 1
                if event.sequence > lastSeq { problem("event \(event.sequence) is beyond the sequence counter \(lastSeq)") }
                let key = EventKeys.userEvent(user: event.user, timestamp: event.timestamp, sequence: event.sequence)
                if try !raw.contains(.userEvents, key: key) { problem("event \(event.sequence) is in the log but not in user \(event.user)'s history") }
                return problems.count < maxProblems
            }
            if logged != perUser { problem("event_log has \(logged) events but user_events has \(perUser)") }
            checked["events"] = logged

            // Vectors.
            var vectors = 0
            for space in try tx.spaces() {
                var n = 0
                let limit = space.kind == .item ? lastItem : lastUser
                try tx.forEachVector(space: space.name) { entity, view in
                    n += 1
                    if view.raw.count != space.bytesPerVector { problem("vector \(space.name)/#\(entity) has \(view.raw.count) bytes, expected \(space.bytesPerVector)") }
                    if entity == 0 || entity > limit { problem("vector \(space.name)/#\(entity) refers to an unknown \(space.kind.rawValue)") }
                    return true
                }
                if n != space.count { problem("space \(space.name) records \(space.count) vectors but holds \(n)") }
                vectors += n
            }
            checked["vectors"] = vectors

            var profiles = 0
            try tx.forEachProfile { p in
                profiles += 1
                if p.user == 0 || p.user > lastUser { problem("a profile refers to unknown user #\(p.user)") }
                return true
            }
            checked["profiles"] = profiles

            try tx.verifyModelsAndIndexes(problem: problem, checked: &checked)
            return VerifyReport(checked: checked, problems: problems)
        }
    }
}
