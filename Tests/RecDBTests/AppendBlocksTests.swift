import Foundation
import XCTest
@testable import RecDB

/// A bulk import into users with events never rewrites their blocks in `user_events`: it writes the new
/// events as blocks of their own in `user_events_delta` (issue #13), where a short last block is merged
/// with short new events (neither side holding `UserBlockWriter.appendMinEvents`). New events that reach
/// back before stored ones re-pack the blocks from there (into the delta table). These tests read every
/// history back through every reader (both tables as one), check the block layout the rule promises,
/// and that a failed import after appending leaves the file as it was.
final class AppendBlocksTests: DatabaseTestCase {
    /// One expected event: what every reader must return, in (timestamp, sequence) order.
    struct Expected: Equatable, CustomStringConvertible {
        var timestamp: Int64, sequence: UInt64, item: String, type: String, value: Float?
        var description: String { "\(timestamp)/\(sequence)/\(item)/\(type)/\(value.map { "\($0)" } ?? "-")" }
    }

    struct Row { var user: String, item: String, timestamp: Int64, type: String?, value: Float? }

    /// A CSV of `rows` (with type and value columns when any row has one) and the expected histories
    /// after importing it with sequences from `firstSequence` (file order).
    func csv(_ rows: [Row]) -> String {
        let typed = rows.contains { $0.type != nil || $0.value != nil }
        var text = typed ? "user,item,timestamp,type,value\n" : "user,item,timestamp\n"
        for r in rows {
            text += "\(r.user),\(r.item),\(r.timestamp)"
            if typed { text += ",\(r.type ?? ""),\(r.value.map { "\($0)" } ?? "")" }
            text += "\n"
        }
        return text
    }

    func add(_ rows: [Row], firstSequence: UInt64, to expected: inout [String: [Expected]]) {
        for (i, r) in rows.enumerated() {
            expected[r.user, default: []].append(Expected(timestamp: r.timestamp, sequence: firstSequence + UInt64(i), item: r.item,
                                                          type: r.type.flatMap { $0.isEmpty ? nil : $0 } ?? defaultEventType, value: r.value))
        }
        for u in expected.keys { expected[u]!.sort { ($0.timestamp, $0.sequence) < ($1.timestamp, $1.sequence) } }
    }

    typealias Block = (key: [UInt8], value: [UInt8], count: Int, table: Table)

    /// The raw blocks of `user` in key order, from both event tables: (key, value, events, table).
    func blocks(_ db: Database, _ external: String) throws -> [Block] {
        try db.read { tx in
            let user = try XCTUnwrap(try tx.userID(for: external))
            var out: [Block] = []
            let cursor = try EventsCursor(tx.raw)
            var more = try Keys.u32(user).withUnsafeBytes { k in
                try cursor.seek(k) { key, value -> Bool in
                    guard Keys.readU32(key) == user else { return false }
                    out.append((Array(key), Array(value), try EventBlock.decode(key: key, value: value).count, cursor.currentTable!))
                    return true
                }
            } ?? false
            while more {
                more = try cursor.move(.next) { key, value -> Bool in
                    guard Keys.readU32(key) == user else { return false }
                    out.append((Array(key), Array(value), try EventBlock.decode(key: key, value: value).count, cursor.currentTable!))
                    return true
                } ?? false
            }
            return out
        }
    }

    /// Every reader returns exactly `expected` for every user: the full history (backwards scan), the
    /// latest n for several n, the serving hot path's recent items, the forward scan, the training
    /// snapshot, the catch-up scan by sequence, and a CSV export; and verify is clean.
    func assertEveryReaderSees(_ expected: [String: [Expected]], in db: Database, file: StaticString = #filePath, line: UInt = #line) throws {
        try db.read { tx in
            var ids: [UInt32: String] = [:]
            for (external, events) in expected {
                let user = try XCTUnwrap(try tx.userID(for: external), file: file, line: line)
                ids[user] = external
                func named(_ e: Event) throws -> Expected {
                    Expected(timestamp: e.timestamp, sequence: e.sequence, item: try tx.item(id: e.item)!.externalID, type: e.type, value: e.value)
                }
                XCTAssertEqual(try tx.events(user: user).map(named), events, "full history of \(external)", file: file, line: line)
                for n in [1, 3, 49, 50, 51, 61, 1_000] {
                    XCTAssertEqual(try tx.events(user: user, last: n).map(named), Array(events.suffix(n)), "last \(n) of \(external)", file: file, line: line)
                    XCTAssertEqual(try tx.recentItems(user: user, last: n).map { try tx.item(id: $0)!.externalID }, events.suffix(n).map(\.item),
                                   "recent \(n) items of \(external)", file: file, line: line)
                }
                var forwards: [UInt64] = []
                try tx.forEachStoredEvent(user: user) { forwards.append($0.sequence); return true }
                XCTAssertEqual(forwards, events.map(\.sequence), "forward scan of \(external)", file: file, line: line)
            }
            let snapshot = try tx.trainingSnapshot(textSpace: nil, profileSpace: nil)
            XCTAssertEqual(snapshot.userIDs.count, expected.count, file: file, line: line)
            for (row, user) in snapshot.userIDs.enumerated() {
                let events = try XCTUnwrap(expected[try XCTUnwrap(ids[user], file: file, line: line)], file: file, line: line)
                XCTAssertEqual(try snapshot.dataset.sequences[row].map { try tx.item(id: UInt32($0))!.externalID }, events.map(\.item),
                               "training sequence of \(ids[user]!)", file: file, line: line)
                XCTAssertEqual(snapshot.dataset.timestamps?[row], events.map(\.timestamp), file: file, line: line)
            }
            var bySequence: [UInt64] = []
            try tx.forEachEvent(after: 0) { bySequence.append($0.sequence); return true }
            XCTAssertEqual(bySequence, expected.values.flatMap { $0.map(\.sequence) }.sorted(), file: file, line: line)
        }
        let export = path("export-\(UUID().uuidString).csv")
        try db.exportInteractions(to: export, format: .csv)
        var exported: [String: [String]] = [:]
        for row in try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n").dropFirst() {
            let f = row.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            exported[f[0], default: []].append("\(f[2])/\(f[1])/\(f[3])/\(f[4])")
        }
        XCTAssertEqual(exported, expected.mapValues { $0.map { "\($0.timestamp)/\($0.item)/\($0.type)/\($0.value.map { "\($0)" } ?? "")" } },
                       "export", file: file, line: line)
        let report = try db.verify()
        XCTAssertTrue(report.isClean, "\(report.problems)", file: file, line: line)
        XCTAssertEqual(report.checked["events"], expected.values.reduce(0) { $0 + $1.count }, file: file, line: line)
    }

    func rows(_ user: String, _ count: Int, from time: Int64, item: (Int) -> String = { "i\($0 % 23)" },
              type: String? = nil, value: Float? = nil) -> [Row] {
        (0..<count).map { Row(user: user, item: item($0), timestamp: time + Int64($0), type: type, value: value) }
    }

    /// Rows of several users in a seeded shuffled order (each user's times stay as given: the sort orders them).
    func shuffled(_ rows: [Row], seed: UInt64) -> [Row] {
        var rng = SplitMix64(seed: seed)
        var out = rows
        for i in stride(from: out.count - 1, to: 0, by: -1) { out.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return out
    }

    func testImportAppendsAfterStoredLastBlocksAndEveryReaderSeesTheSameHistories() throws {
        let db = try makeDatabase()
        let k = UserBlockWriter.appendMinEvents
        XCTAssertEqual(k, 50)
        let first = shuffled(rows("big", 60, from: 100) + rows("small", 10, from: 100) + rows("grow", 10, from: 100)
            + rows("overlap", 60, from: 100) + rows("idle", 5, from: 100) + rows("tie", 60, from: 100)
            + rows("edge", k - 1, from: 100), seed: 1)
        var expected: [String: [Expected]] = [:]
        try db.importInteractions(from: try writeFile("a.csv", csv(first)))
        add(first, firstSequence: 1, to: &expected)
        try assertEveryReaderSees(expected, in: db)
        let before = try ["big", "small", "grow", "overlap", "tie", "edge"].reduce(into: [String: [Block]]()) {
            $0[$1] = try blocks(db, $1)
        }
        XCTAssertEqual(before.values.map(\.count), Array(repeating: 1, count: 6), "each history starts as one block")
        XCTAssertEqual(Set(before.values.map { $0[0].table }), [.userEvents], "a new user's blocks are appended to user_events")

        // Typed events with values after plain ones (the appended blocks are not plain), new times after
        // the stored ones except for `overlap`; `tie` starts at its last stored time (a later sequence).
        let second = shuffled(rows("big", 3, from: 200, type: "view", value: 2.5) + rows("small", 5, from: 200)
            + rows("grow", 60, from: 200, item: { "j\($0 % 7)" }, type: "buy") + rows("overlap", 20, from: 150)
            + rows("tie", 2, from: 159) + rows("edge", 1, from: 200) + rows("fresh", 30, from: 10), seed: 2)
        try db.importInteractions(from: try writeFile("b.csv", csv(second)))
        add(second, firstSequence: UInt64(first.count + 1), to: &expected)
        try assertEveryReaderSees(expected, in: db)

        let after = try ["big", "small", "grow", "overlap", "tie", "edge"].reduce(into: [String: [Block]]()) {
            $0[$1] = try blocks(db, $1)
        }
        // The stored block in user_events is left byte for byte, however short, and the new events follow
        // it in a block of their own in user_events_delta.
        for user in ["big", "grow", "tie", "small", "edge"] {
            XCTAssertEqual(after[user]!.count, 2, user)
            XCTAssertEqual(after[user]![0].key, before[user]![0].key, user)
            XCTAssertEqual(after[user]![0].value, before[user]![0].value, "\(user)'s stored block is untouched")
            XCTAssertEqual(after[user]!.map(\.table), [.userEvents, .userEventsDelta], user)
        }
        XCTAssertEqual(after["big"]!.map(\.count), [60, 3])
        XCTAssertEqual(after["grow"]!.map(\.count), [10, 60])
        XCTAssertEqual(after["tie"]!.map(\.count), [60, 2])
        XCTAssertEqual(after["small"]!.map(\.count), [10, 5])
        XCTAssertEqual(after["edge"]!.map(\.count), [k - 1, 1])
        // New events before stored ones: the blocks from there are re-packed, into the delta table.
        XCTAssertEqual(after["overlap"]!.map(\.count), [80])
        XCTAssertEqual(after["overlap"]!.map(\.table), [.userEventsDelta])
        // The third import: `small`'s and `edge`'s short blocks in the delta table take short new events.
        let third = shuffled(rows("small", 4, from: 300) + rows("edge", 2, from: 300), seed: 3)
        try db.importInteractions(from: try writeFile("c.csv", csv(third)))
        add(third, firstSequence: UInt64(first.count + second.count + 1), to: &expected)
        try assertEveryReaderSees(expected, in: db)
        XCTAssertEqual(try blocks(db, "small").map(\.count), [10, 9])
        XCTAssertEqual(try blocks(db, "edge").map(\.count), [k - 1, 3])
        XCTAssertEqual(try blocks(db, "small")[0].value, before["small"]![0].value)
    }

    /// Many imports into the same users with new-event counts around the threshold (and one import
    /// reaching back before stored events): after each, every reader sees the reference; in each event
    /// table no two neighbouring blocks of a user both hold fewer than 50 events unless one is full; and a
    /// user's latest 50 events are in their last three blocks (two of the delta table, or its one and the
    /// last two of user_events).
    func testRepeatedImportsIntoTheSameUsersKeepTheLatest50InThreeBlocks() throws {
        let db = try makeDatabase()
        let counts: [[Int]] = [[1, 60, 49, 120], [55, 1, 1, 3], [3, 49, 50, 2], [70, 2, 0, 400], [49, 50, 1, 1], [50, 0, 49, 49], [2, 80, 3, 1]]
        var expected: [String: [Expected]] = [:]
        var sequence: UInt64 = 1
        var time: Int64 = 1_000
        for (round, perUser) in counts.enumerated() {
            var batch: [Row] = []
            for (u, n) in perUser.enumerated() {
                // u3 reaches back among its stored events in round 4 (the blocks from there are re-packed).
                let start = u == 3 && round == 4 ? time - 800 : time
                batch += rows("u\(u)", n, from: start, item: { "i\(($0 * 7 + round) % 31)" }, type: round % 3 == 2 && u == 1 ? "like" : nil)
            }
            batch = shuffled(batch, seed: UInt64(round))
            try db.importInteractions(from: try writeFile("r\(round).csv", csv(batch)))
            add(batch, firstSequence: sequence, to: &expected)
            sequence += UInt64(batch.count)
            time += 1_000
            try assertEveryReaderSees(expected, in: db)
            for u in 0..<4 {
                let layout = try blocks(db, "u\(u)")
                let full = layout.map { $0.value.count > EventBlock.maxValueBytes - 64 }
                for i in layout.indices.dropFirst() where layout[i - 1].table == layout[i].table {
                    XCTAssertTrue(layout[i - 1].count >= 50 || layout[i].count >= 50 || full[i - 1] || full[i],
                                  "round \(round), u\(u): neighbouring blocks of \(layout[i - 1].count) and \(layout[i].count) events")
                }
                if layout.count >= 3, expected["u\(u)"]!.count >= 50 {
                    XCTAssertGreaterThanOrEqual(layout.suffix(3).reduce(0) { $0 + $1.count }, 50, "round \(round), u\(u): latest 50 in three blocks")
                }
                XCTAssertEqual(layout.map(\.table), layout.indices.map { $0 == 0 ? .userEvents : .userEventsDelta }, "round \(round), u\(u)")
            }
        }
        // The layouts the rule gives: the first import's block stays in user_events; in the delta table a
        // stored block of ≥ 50 events, or ≥ 50 new ones, is followed by the new events' own block, and
        // otherwise the two are merged. (u2: 49 | 1, then 50 appended, 1 appended, 49 merged into that 1, 3.)
        XCTAssertEqual(try blocks(db, "u0").map(\.count), [1, 55, 3, 70, 49, 50, 2])
        XCTAssertEqual(try blocks(db, "u1").map(\.count), [60, 50, 2, 50, 80])
        XCTAssertEqual(try blocks(db, "u2").map(\.count), [49, 1, 50, 50, 3])
    }

    /// `mergeEventDelta` moves the delta table's blocks into user_events byte for byte: every reader sees
    /// the same histories, the delta table is empty, and the next import into those users appends to
    /// it again. A key in both tables fails the merge and changes nothing.
    func testMergingTheDeltaTableChangesNoReadAndEmptiesIt() throws {
        let db = try makeDatabase()
        var expected: [String: [Expected]] = [:]
        let first = shuffled(rows("a", 60, from: 0) + rows("b", 10, from: 0) + rows("c", 5, from: 0), seed: 5)
        try db.importInteractions(from: try writeFile("a.csv", csv(first)))
        add(first, firstSequence: 1, to: &expected)
        let second = shuffled(rows("a", 70, from: 100) + rows("b", 3, from: 100) + rows("c", 2, from: 1), seed: 6)
        try db.importInteractions(from: try writeFile("b.csv", csv(second)))
        add(second, firstSequence: UInt64(first.count + 1), to: &expected)
        let layout = try ["a", "b", "c"].map { try blocks(db, $0) }
        XCTAssertEqual(layout.map { $0.map(\.table) }, [[.userEvents, .userEventsDelta], [.userEvents, .userEventsDelta], [.userEventsDelta]])

        XCTAssertEqual(try db.mergeEventDelta().blocks, 3)
        try assertEveryReaderSees(expected, in: db)
        let merged = try ["a", "b", "c"].map { try blocks(db, $0) }
        XCTAssertEqual(merged.map { $0.map(\.key) }, layout.map { $0.map(\.key) }, "the same blocks")
        XCTAssertEqual(merged.map { $0.map(\.value) }, layout.map { $0.map(\.value) }, "byte for byte")
        XCTAssertEqual(Set(merged.flatMap { $0.map(\.table) }), [.userEvents])
        XCTAssertEqual(try db.read { try $0.raw.count(.userEventsDelta) }, 0)
        XCTAssertEqual(try db.mergeEventDelta().blocks, 0, "nothing left to merge")

        let third = rows("a", 4, from: 300)
        try db.importInteractions(from: try writeFile("c.csv", csv(third)))
        add(third, firstSequence: UInt64(first.count + second.count + 1), to: &expected)
        try assertEveryReaderSees(expected, in: db)
        XCTAssertEqual(try blocks(db, "a").map(\.table), [.userEvents, .userEvents, .userEventsDelta])

        // Damage: a's delta block copied into user_events under its own key. The merge refuses, and the file is unchanged.
        try db.write { tx in
            let cursor = try tx.raw.cursor(.userEventsDelta)
            let (key, value) = try XCTUnwrap(try cursor.move(.first) { (Array($0), Array($1)) })
            try key.withUnsafeBytes { k in try value.withUnsafeBytes { try tx.raw.put(.userEvents, key: k, value: $0) } }
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path("db/data.mdb")))
        XCTAssertThrowsError(try db.mergeEventDelta()) { error in
            guard case RecDBError.damaged(_, _, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(detail, "the block's key is in user_events too")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("db/data.mdb"))), bytes)
    }

    /// An import that fails after it appended blocks to users with events — refused by the ledger after
    /// every event was written, or stopped by a bad last line — leaves data.mdb byte for byte as it was.
    func testAFailedImportAfterAppendingLeavesTheFileByteForByteUnchanged() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeFile("a.csv", csv(rows("p", 80, from: 0) + rows("q", 60, from: 0))))
        let append = try writeFile("b.csv", csv(shuffled(rows("p", 70, from: 500) + rows("q", 3, from: 500) + rows("new", 5, from: 1), seed: 3)))
        try db.importInteractions(from: append)
        XCTAssertEqual(try blocks(db, "p").map(\.count), [80, 70])
        XCTAssertEqual(try blocks(db, "q").map(\.count), [60, 3])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path("db/data.mdb")))
        let reference = try fingerprint(db)

        // The same file again: every event is appended before the ledger refuses it, then all is rolled back.
        XCTAssertThrowsError(try db.importInteractions(from: append)) { error in
            guard case RecDBError.alreadyImported = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("db/data.mdb"))), bytes)
        // A bad timestamp on the last line: the import stops before writing, and nothing changes either.
        let bad = try writeFile("c.csv", csv(rows("p", 90, from: 900) + rows("q", 2, from: 900)) + "q,i1,soon\n")
        assertImportError(file: bad, line: 94, contains: "timestamp 'soon'") { try db.importInteractions(from: bad) }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("db/data.mdb"))), bytes)
        XCTAssertEqual(try fingerprint(db), reference)
        XCTAssertTrue(try db.verify().isClean)
    }
}
