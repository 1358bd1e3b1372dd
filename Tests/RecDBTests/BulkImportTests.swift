import Foundation
import XCTest
@testable import RecDB

/// The format-3 event store and the bulk import path (issue #13): block encoding, the external sort
/// across spilled runs, merging into users that already have events, all-or-nothing after a spill,
/// the ledger, and the synthetic data generator.
final class BulkImportTests: DatabaseTestCase {
    /// A reference history: (user external id) → [(timestamp, item external id)] in (timestamp, line) order.
    func reference(_ rows: [(String, String, Int64)]) -> [String: [(Int64, String)]] {
        var out: [String: [(Int64, Int, String)]] = [:]
        for (line, row) in rows.enumerated() { out[row.0, default: []].append((row.2, line, row.1)) }
        return out.mapValues { $0.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { ($0.0, $0.2) } }
    }

    func histories(_ db: Database) throws -> [String: [(Int64, String)]] {
        try db.read { tx in
            var out: [String: [(Int64, String)]] = [:]
            try tx.forEachUser { user in
                let events = try tx.events(user: user.id)
                if !events.isEmpty { out[user.externalID] = try events.map { ($0.timestamp, try tx.item(id: $0.item)!.externalID) } }
                return true
            }
            return out
        }
    }

    func assertSameHistories(_ a: [String: [(Int64, String)]], _ b: [String: [(Int64, String)]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
        for (user, events) in a {
            XCTAssertEqual(events.map { "\($0.0):\($0.1)" }, b[user]?.map { "\($0.0):\($0.1)" }, "user \(user)", file: file, line: line)
        }
    }

    func csv(_ rows: [(String, String, Int64)]) -> String {
        "user,item,timestamp\n" + rows.map { "\($0.0),\($0.1),\($0.2)\n" }.joined()
    }

    /// Rows whose times are not in file order, with ties, for `users` users.
    func shuffledRows(count: Int, users: Int, items: Int, seed: UInt64, timeBase: Int64 = 1_000) -> [(String, String, Int64)] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            ("u\(rng.next() % UInt64(users))", "i\(rng.next() % UInt64(items))", timeBase + Int64(rng.next() % 500))
        }
    }

    func testEventBlocksRoundTripAndRejectDamage() throws {
        var rng = SplitMix64(seed: 7)
        var events: [StoredEvent] = []
        var ts: Int64 = -5_000, seq: UInt64 = 100
        for i in 0..<150 {
            ts += Int64(rng.next() % 3)  // ties included
            seq = i % 7 == 0 ? seq - 50 : seq + 1 + rng.next() % 1_000  // sequences not in time order
            events.append(StoredEvent(timestamp: ts, sequence: seq, item: UInt32(1 + rng.next() % 1_000_000),
                                      typeCode: i % 5 == 0 ? 3 : 0, value: i % 4 == 0 ? Float(i) / 3 : nil))
        }
        // Sorted by (timestamp, sequence) as a block requires.
        events.sort { $0.precedes($1) }
        var value: [UInt8] = []
        for slice in [Array(events.prefix(1)), Array(events.prefix(40)), events, events.map { StoredEvent(timestamp: $0.timestamp, sequence: $0.sequence, item: $0.item, typeCode: 0, value: nil) }] {
            slice.withUnsafeBufferPointer { EventBlock.encode(user: 42, $0, into: &value) }
            let key = EventBlock.key(user: 42, first: slice[0])
            let decoded = try key.withUnsafeBytes { k in try value.withUnsafeBytes { try EventBlock.decode(key: k, value: $0) } }
            XCTAssertEqual(decoded, slice)
            // Plain blocks store no type field: about 1 byte an event less.
            XCTAssertEqual(value[0] == EventBlock.plainFlag, slice.allSatisfy(\.isPlain))
        }
        // 150 plain events with ~1M item ids and 1000-wide sequence gaps: well under 8 bytes an event.
        XCTAssertLessThan(value.count, 150 * 8)
        // Every single-byte flip of value or key is a damaged error, never other events.
        let key = EventBlock.key(user: 42, first: events[0])
        for offset in stride(from: 0, to: value.count + key.count, by: 7) {
            var v = value, k = key
            if offset < v.count { v[offset] ^= 0x10 } else { k[offset - v.count] ^= 0x10 }
            XCTAssertThrowsError(try k.withUnsafeBytes { k in try v.withUnsafeBytes { try EventBlock.decode(key: k, value: $0) } }) { error in
                guard case RecDBError.damaged(let table, _, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(table, "user_events")
            }
        }
    }

    func testSorterMergesSpilledRunsInUserTimeOrderAndLeavesNoFiles() throws {
        let spill = path("spill")
        try FileManager.default.createDirectory(atPath: spill, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 3)
        var records: [EventRecord] = []
        for seq in 1...10_000 {
            records.append(EventRecord(timestamp: Int64(rng.next() % 300) - 100, sequence: UInt64(seq), user: UInt32(1 + rng.next() % 70_000),
                                       item: UInt32(1 + rng.next() % 9), valueBits: seq % 3 == 0 ? Float(seq).bitPattern : 0,
                                       typeCode: UInt16(seq % 2), hasValue: seq % 3 == 0))
        }
        let sorter = EventRunSorter(capacity: 777, directory: spill)
        for r in records { try sorter.add(r) }
        XCTAssertEqual(sorter.spilledRuns, 10_000 / 777)
        XCTAssertGreaterThan(sorter.spilledBytes, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spill), [], "spill files have no name")
        var merged: [EventRecord] = []
        try sorter.merge { merged.append($0) }
        let expected = records.sorted { $0.precedes($1) }
        XCTAssertEqual(merged.count, expected.count)
        XCTAssertTrue(zip(merged, expected).allSatisfy {
            $0.user == $1.user && $0.timestamp == $1.timestamp && $0.sequence == $1.sequence && $0.item == $1.item
                && $0.typeCode == $1.typeCode && $0.hasValue == $1.hasValue && $0.valueBits == $1.valueBits
        })
    }

    func testImportAcrossManySpilledRunsMatchesAReferenceAndVerifies() throws {
        let rows = shuffledRows(count: 5_000, users: 300, items: 200, seed: 11)
        let file = try writeFile("events.csv", csv(rows))
        let db = try makeDatabase()
        var options = InteractionImportOptions()
        options.runEvents = 97  // 51 runs
        let summary = try db.importInteractions(from: file, options: options)
        XCTAssertEqual(summary.events, 5_000)
        XCTAssertEqual(summary.createdUsers, 300)
        assertSameHistories(try histories(db), reference(rows))
        XCTAssertEqual(try db.read { try $0.eventCount() }, 5_000)
        // Sequences are the file's row order.
        let sequences = try db.read { tx -> [UInt64] in var s: [UInt64] = []; try tx.forEachEvent { s.append($0.sequence); return true }; return s }
        XCTAssertEqual(sequences, Array(1...5_000))
        let report = try db.verify()
        XCTAssertTrue(report.isClean, "\(report.problems)")
        XCTAssertEqual(report.checked["events"], 5_000)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("db")).sorted(), ["data.mdb", "lock.mdb"])
    }

    func testImportIntoUsersWithEventsMergesAndAppendsNewUsers() throws {
        let first = shuffledRows(count: 3_000, users: 100, items: 50, seed: 1)
        // Old users with events before, among and after their stored ones, and new users.
        let second = shuffledRows(count: 2_000, users: 160, items: 80, seed: 2, timeBase: 1_250)
        let db = try makeDatabase()
        var options = InteractionImportOptions()
        options.runEvents = 101
        try db.importInteractions(from: try writeFile("a.csv", csv(first)), options: options)
        // Events added one by one between the imports land in the same blocks.
        let single: [(String, String, Int64)] = (0..<300).map { ("u\($0 % 7)", "i\($0 % 11)", 1_100 + Int64($0 * 13 % 700)) }
        try db.write { tx in
            for (u, i, t) in single { try tx.appendEvent(user: try tx.userID(for: u)!, item: try tx.itemID(for: i)!, timestamp: t) }
        }
        let summary = try db.importInteractions(from: try writeFile("b.csv", csv(second)), options: options)
        XCTAssertEqual(summary.createdUsers, 60)
        assertSameHistories(try histories(db), reference(first + single + second))
        let report = try db.verify()
        XCTAssertTrue(report.isClean, "\(report.problems)")
        XCTAssertEqual(report.checked["events"], 5_300)
        // Latest items of a user with many blocks' worth of events.
        let expected = reference(first + single + second)["u3"]!.suffix(50).map(\.1)
        let recent = try db.read { tx in try tx.recentItems(user: try tx.userID(for: "u3")!, last: 50).map { try tx.item(id: $0)!.externalID } }
        XCTAssertEqual(recent, Array(expected))
    }

    /// Into a database holding ids, ids met for the first time are looked up in batches in key order
    /// (`UnseenIDs`) while their rows wait. New ids that sort between stored ones (odd numbers among
    /// stored even ones, long ids sharing an 8-byte prefix), old and new users and items mixed, across
    /// batch sizes from 1 id to the default and spilled sort runs: every stored id resolves to its own
    /// number, new ids are numbered in order of first sight (users and items apart), each event keeps its
    /// row's sequence, and the histories match a reference.
    func testBatchedIDLookupsResolveStoredAndNewIDsInterleavedInKeyOrder() throws {
        func userName(_ u: Int) -> String { u % 25 == 1 ? "u" + String(repeating: "x", count: 80) + "\(u)" : String(format: "u%04d", u) }
        func itemName(_ i: Int) -> String { String(format: "i%04d", i) }
        let first: [(String, String, Int64)] = (0..<600).map { r in (userName(2 * (r % 150)), itemName(2 * (r % 90)), Int64(r)) }
        var rng = SplitMix64(seed: 31)
        let second: [(String, String, Int64)] = (0..<4_000).map { _ in
            (userName(Int(rng.next() % 300)), itemName(Int(rng.next() % 180)), 10_000 + Int64(rng.next() % 1_000))
        }
        for batch in [1, 5, 64, 1 << 16] {
            let db = try makeDatabase("db-\(batch)")
            try db.importInteractions(from: try writeFile("a.csv", csv(first)))
            let (usersBefore, sequenceBefore) = try db.read { (try $0.userCount(), try $0.eventVersion()) }
            XCTAssertEqual(usersBefore, 150)
            let (expectedUsers, expectedItems) = try expectedIDs(db, storedUsers: (0..<150).map { userName(2 * $0) },
                                                                 storedItems: (0..<90).map { itemName(2 * $0) }, then: second)
            var options = InteractionImportOptions()
            options.idLookupBatch = batch
            options.runEvents = 257
            let summary = try db.importInteractions(from: try writeFile("b.csv", csv(second)), options: options)
            XCTAssertEqual(summary.events, 4_000, "batch \(batch)")
            XCTAssertEqual(summary.createdUsers, expectedUsers.count - 150, "batch \(batch)")
            XCTAssertEqual(summary.createdItems, expectedItems.count - 90, "batch \(batch)")
            try db.read { tx in
                for (name, id) in expectedUsers { XCTAssertEqual(try tx.userID(for: name), id, "batch \(batch), user \(name)") }
                for (name, id) in expectedItems { XCTAssertEqual(try tx.itemID(for: name), id, "batch \(batch), item \(name)") }
                var seen = 0
                try tx.forEachEvent(after: sequenceBefore) { e in
                    let row = second[Int(e.sequence - sequenceBefore) - 1]
                    XCTAssertEqual(e.user, expectedUsers[row.0], "batch \(batch), sequence \(e.sequence)")
                    XCTAssertEqual(e.item, expectedItems[row.1], "batch \(batch), sequence \(e.sequence)")
                    XCTAssertEqual(e.timestamp, row.2, "batch \(batch), sequence \(e.sequence)")
                    seen += 1
                    return true
                }
                XCTAssertEqual(seen, 4_000, "batch \(batch)")
            }
            assertSameHistories(try histories(db), reference(first + second))
            let report = try db.verify()
            XCTAssertTrue(report.isClean, "batch \(batch): \(report.problems)")
        }
    }

    /// The ids an import of `rows` into `db` must give: the stored names keep the ids `db` holds for them, and
    /// names first seen in `rows` are numbered after the stored ones in order of first sight.
    func expectedIDs(_ db: Database, storedUsers: [String], storedItems: [String], then rows: [(String, String, Int64)])
        throws -> (users: [String: UInt32], items: [String: UInt32]) {
        var users: [String: UInt32] = [:], items: [String: UInt32] = [:]
        var nextUser: UInt32 = 0, nextItem: UInt32 = 0
        try db.read { tx in
            for u in storedUsers { users[u] = try XCTUnwrap(tx.userID(for: u)) }
            for i in storedItems { items[i] = try XCTUnwrap(tx.itemID(for: i)) }
            nextUser = UInt32(try tx.userCount())
            nextItem = UInt32(try tx.itemCount())
        }
        for (u, i, _) in rows {
            if users[u] == nil { nextUser += 1; users[u] = nextUser }
            if items[i] == nil { nextItem += 1; items[i] = nextItem }
        }
        return (users, items)
    }

    /// A waiting id is held in the importer's id map as a tagged provisional number until its batch is
    /// looked up: rows naming it again while it waits (many times, with short inline ids and long arena
    /// ids), a sort buffer that fills and spills while ids wait, stored users of one batch alongside new
    /// ones, and a batch that is resolved between two rows of the same new id all give every event its
    /// own user's and item's id; new ids are numbered in order of first sight, stored ones keep theirs.
    func testWaitingIDsRepeatedAcrossSpillsAndBatchesResolveToOneIDEach() throws {
        func userName(_ u: Int) -> String { u % 3 == 0 ? "user-with-a-long-name-\(u)" : "u\(u)" }
        func itemName(_ i: Int) -> String { i % 4 == 0 ? "item-with-a-long-name-\(i)" : "i\(i)" }
        let first: [(String, String, Int64)] = (0..<200).map { r in (userName(2 * (r % 40)), itemName(2 * (r % 25)), Int64(r)) }
        // Users 0…79 and items 0…49: the even ones stored, the odd ones new; each named on many rows,
        // the same few in runs of rows (repeats while waiting), then all of them again.
        var second: [(String, String, Int64)] = []
        for r in 0..<600 { second.append((userName(r / 15 % 80), itemName(r / 9 % 50), 5_000 + Int64(r % 7))) }
        for r in 0..<600 { second.append((userName((r * 7) % 80), itemName((r * 11) % 50), 6_000 - Int64(r % 13))) }
        for (batch, runEvents) in [(3, 4), (17, 50), (1 << 16, 7), (1 << 16, 1 << 20)] {
            let db = try makeDatabase("db-\(batch)-\(runEvents)")
            try db.importInteractions(from: try writeFile("a.csv", csv(first)))
            let sequenceBefore = try db.read { try $0.eventVersion() }
            let (expectedUsers, expectedItems) = try expectedIDs(db, storedUsers: (0..<40).map { userName(2 * $0) },
                                                                 storedItems: (0..<25).map { itemName(2 * $0) }, then: second)
            var options = InteractionImportOptions()
            options.idLookupBatch = batch
            options.runEvents = runEvents
            let summary = try db.importInteractions(from: try writeFile("b.csv", csv(second)), options: options)
            let tag = "batch \(batch), run \(runEvents)"
            XCTAssertEqual(summary.events, 1_200, tag)
            XCTAssertEqual(summary.createdUsers, 40, tag)
            XCTAssertEqual(summary.createdItems, 25, tag)
            try db.read { tx in
                for (name, id) in expectedUsers { XCTAssertEqual(try tx.userID(for: name), id, "\(tag), user \(name)") }
                for (name, id) in expectedItems { XCTAssertEqual(try tx.itemID(for: name), id, "\(tag), item \(name)") }
                var seen = 0
                try tx.forEachEvent(after: sequenceBefore) { e in
                    let row = second[Int(e.sequence - sequenceBefore) - 1]
                    XCTAssertEqual(e.user, expectedUsers[row.0], "\(tag), sequence \(e.sequence)")
                    XCTAssertEqual(e.item, expectedItems[row.1], "\(tag), sequence \(e.sequence)")
                    seen += 1
                    return true
                }
                XCTAssertEqual(seen, 1_200, tag)
            }
            assertSameHistories(try histories(db), reference(first + second))
            let report = try db.verify()
            XCTAssertTrue(report.isClean, "\(tag): \(report.problems)")
            // The same rows as a sequence file (a line's user, then its items): waiting ids within one line.
            let lines = stride(from: 0, to: second.count, by: 6).map { s in
                "\(second[s].0) " + second[s..<min(s + 6, second.count)].map(\.1).joined(separator: " ") + "\n"
            }
            var sequenceOptions = InteractionImportOptions(format: .sequences)
            sequenceOptions.idLookupBatch = batch
            sequenceOptions.runEvents = runEvents
            let more = try db.importInteractions(from: try writeFile("c.txt", lines.joined()), options: sequenceOptions)
            XCTAssertEqual(more.createdUsers, 0, tag)
            XCTAssertEqual(more.createdItems, 0, tag)
            XCTAssertEqual(more.events, 1_200, tag)
            try db.read { tx in
                var seen = 0
                try tx.forEachEvent(after: sequenceBefore + 1_200) { e in
                    let k = Int(e.sequence - sequenceBefore - 1_200) - 1
                    XCTAssertEqual(e.user, expectedUsers[second[k / 6 * 6].0], "\(tag), sequence line \(k / 6 + 1)")
                    XCTAssertEqual(e.item, expectedItems[second[k].1], "\(tag), sequence \(e.sequence)")
                    seen += 1
                    return true
                }
                XCTAssertEqual(seen, 1_200, tag)
            }
        }
    }

    /// Waiting ids are filled in before their run is sorted or spilled: with runs of 2 and 3 events and
    /// batches of 1 to 4 ids, every run (the last in-memory one holding a single record with a new user
    /// and item, spilled runs, runs whose batches resolved at different times) ends with real ids, and the
    /// histories match a reference.
    func testWaitingIDsAreFilledInWhenEachRunIsSortedHoweverSmall() throws {
        let first = shuffledRows(count: 400, users: 40, items: 30, seed: 21)
        for (runEvents, batch) in [(2, 1), (2, 3), (3, 2), (3, 4)] {
            let db = try makeDatabase("db-\(runEvents)-\(batch)")
            try db.importInteractions(from: try writeFile("first.csv", csv(first)))
            // Old and new users and items; an odd count, and the last row names a new user and a new item.
            var second = shuffledRows(count: 201, users: 60, items: 45, seed: 22, timeBase: 1_200)
            second.append(("u-last", "i-last", 2_000))
            var options = InteractionImportOptions()
            options.runEvents = runEvents
            options.idLookupBatch = batch
            let summary = try db.importInteractions(from: try writeFile("second-\(runEvents)-\(batch).csv", csv(second)), options: options)
            XCTAssertEqual(summary.createdUsers, Set(second.map(\.0)).subtracting(first.map(\.0)).count, "runs of \(runEvents), batches of \(batch)")
            XCTAssertEqual(summary.createdItems, Set(second.map(\.1)).subtracting(first.map(\.1)).count)
            XCTAssertGreaterThan(summary.createdUsers, 10)
            assertSameHistories(try histories(db), reference(first + second))
            let report = try db.verify()
            XCTAssertTrue(report.isClean, "\(report.problems)")
            XCTAssertEqual(try db.read { tx in try tx.events(user: try tx.userID(for: "u-last")!).map { try tx.item(id: $0.item)!.externalID } }, ["i-last"])
        }
    }

    /// A failure while a lookup batch is open leaves the database unchanged and reports the file's
    /// first bad line: a bad item id on an earlier line than a bad user id of the same batch wins; a bad
    /// id still waiting for its batch wins over a later line that cannot be parsed; an empty id is
    /// refused as empty (never looked up); a damaged stored id entry is an error naming its row.
    func testAFailedLookupBatchReportsTheFilesFirstBadLineAndChangesNothing() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeFile("a.csv", csv(shuffledRows(count: 500, users: 50, items: 30, seed: 3))))
        let before = try fingerprint(db)
        // Lines 2…: stored and new ids mixed; line 38 a new item with a control character, line 40 a new user with one.
        var rows = (0..<60).map { r in "\(r % 3 == 0 ? "new\(r)" : "u\(r % 50)"),\(r % 4 == 0 ? "n\(r)" : "i\(r % 30)"),\(2_000 + r)\n" }
        rows[36] = "u1,i\u{7}x,2036\n"
        rows[38] = "u\u{1}y,i2,2038\n"
        for batch in [4, 1 << 16] {
            var options = InteractionImportOptions()
            options.idLookupBatch = batch
            let both = try writeFile("both-\(batch).csv", "user,item,timestamp\n" + rows.joined())
            assertImportError(file: both, line: 38, contains: "item id contains the control character U+0007") { try db.importInteractions(from: both, options: options) }
            let late = try writeFile("late-\(batch).csv", "user,item,timestamp\n" + rows[0..<38].joined() + rows[38] + "u1,i1,5\nu2,i2\n")
            assertImportError(file: late, line: 38, contains: "item id contains the control character") { try db.importInteractions(from: late, options: options) }
            let userFirst = try writeFile("user-\(batch).csv", "user,item,timestamp\n" + rows[0..<36].joined() + rows[38] + "u2,i2\n")
            assertImportError(file: userFirst, line: 38, contains: "user id contains the control character U+0001") { try db.importInteractions(from: userFirst, options: options) }
            let empty = try writeFile("empty-\(batch).csv", "user,item,timestamp\n" + rows[0..<10].joined() + ",i1,7\n" + rows[10..<20].joined())
            assertImportError(file: empty, line: 12, contains: "empty user id") { try db.importInteractions(from: empty, options: options) }
            XCTAssertEqual(try fingerprint(db), before, "batch \(batch)")
        }
        // A stored id entry of 3 bytes (damage): its first row's line, and nothing written.
        try db.write { tx in try tx.raw.put(.userIDs, key: Array("u7".utf8), value: [1, 2, 3]) }
        let damagedBefore = try fingerprint(db)
        var options = InteractionImportOptions()
        options.idLookupBatch = 4
        let damaged = try writeFile("damaged.csv", "user,item,timestamp\n" + rows[0..<7].joined() + "u7,i1,9\n" + rows[7..<30].joined())
        assertImportError(file: damaged, line: 9, contains: "an id entry of 3 bytes") { try db.importInteractions(from: damaged, options: options) }
        // A new invalid id on an earlier line of the same batch is the error (the damaged entry's lookup comes first).
        let both = try writeFile("damaged-late.csv", "user,item,timestamp\n" + rows[0..<3].joined() + "u3,i\u{7},8\n" + rows[3..<7].joined() + "u7,i1,9\n")
        options.idLookupBatch = 64
        assertImportError(file: both, line: 5, contains: "item id contains the control character") { try db.importInteractions(from: both, options: options) }
        XCTAssertEqual(try fingerprint(db), damagedBefore)
    }

    /// `Options.writeMap` (MDB_WRITEMAP, what `rdbctl import interactions` uses for large files): the same
    /// histories as the reference, a failed import leaves the contents unchanged, and data.mdb — as long
    /// as the map while open — is cut back to its used pages when the database closes.
    func testWriteMappedImportMatchesAndTheFileIsCutBackAtClose() throws {
        let rows = shuffledRows(count: 4_000, users: 200, items: 100, seed: 21)
        let file = try writeFile("events.csv", csv(rows))
        var options = InteractionImportOptions()
        options.runEvents = 333  // 12 runs
        let dir = path("mapped")
        var mapped = Database.Options(initialMapSize: 32 << 20, writeHeadroom: 1 << 20)
        mapped.writeMap = true
        func fileSize() throws -> Int { try FileManager.default.attributesOfItem(atPath: dir + "/data.mdb")[.size] as! Int }
        do {  // the database closes at the end of this scope
            let db = try Database(path: dir, options: mapped)
            XCTAssertTrue(db.environment.writesThroughMap)
            try db.importInteractions(from: file, options: options)
            assertSameHistories(try histories(db), reference(rows))
            XCTAssertEqual(try fileSize(), db.environment.mapSize, "LMDB sizes a write-mapped file to the map")
            XCTAssertGreaterThan(try fileSize(), db.environment.usedBytes)
            let before = try fingerprint(db)
            let bad = try writeFile("bad.csv", csv(shuffledRows(count: 2_000, users: 300, items: 100, seed: 22)) + "u1,i1,-\n")
            assertImportError(file: bad, line: 2_002, contains: "timestamp '-'") { try db.importInteractions(from: bad, options: options) }
            XCTAssertEqual(try fingerprint(db), before)
            let report = try db.verify()
            XCTAssertTrue(report.isClean, "\(report.problems)")
        }
        let closedSize = try fileSize()
        let db = try Database(path: dir)
        XCTAssertFalse(db.environment.writesThroughMap, "opened without asking for it")
        XCTAssertEqual(closedSize, db.environment.usedBytes, "cut back to the used pages at close")
        assertSameHistories(try histories(db), reference(rows))
        let report = try db.verify()
        XCTAssertTrue(report.isClean, "\(report.problems)")
        XCTAssertEqual(report.checked["events"], 4_000)
    }

    func testManySingleAppendsSplitBlocksAndKeepTimeOrder() throws {
        let db = try makeDatabase()
        var rng = SplitMix64(seed: 5)
        var expected: [(Int64, UInt64)] = []
        try db.write { tx in
            let u = try tx.upsertUser(externalID: "heavy")
            let other = try tx.upsertUser(externalID: "after")
            let item = try tx.upsertItem(ItemInput(externalID: "x"))
            for _ in 0..<3_000 {
                let t = Int64(rng.next() % 100_000) - 50_000
                let seq = try tx.appendEvent(user: u, item: item, timestamp: t, type: rng.next() % 3 == 0 ? "view" : nil, value: rng.next() % 2 == 0 ? 1.5 : nil)
                expected.append((t, seq))
                try tx.appendEvent(user: other, item: item, timestamp: t)
            }
        }
        expected.sort { $0 < $1 }
        let stored = try db.read { try $0.events(user: 1) }
        XCTAssertEqual(stored.map(\.timestamp), expected.map(\.0))
        XCTAssertEqual(stored.map(\.sequence), expected.map(\.1))
        let blocks = try db.read { try $0.raw.count(.userEvents) }
        XCTAssertGreaterThan(blocks, 4, "3000 events of a user cannot fit one block")
        XCTAssertEqual(try db.read { try $0.events(user: 1, last: 10) }.map(\.sequence), expected.suffix(10).map(\.1))
        let report = try db.verify()
        XCTAssertTrue(report.isClean, "\(report.problems)")
    }

    func testABadLineAfterSpilledRunsLeavesTheDatabaseUnchanged() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeFile("a.csv", csv(shuffledRows(count: 500, users: 20, items: 20, seed: 8))))
        let before = try fingerprint(db)
        var rows = csv(shuffledRows(count: 3_000, users: 50, items: 30, seed: 9))
        rows += "u1,i1,not-a-time\n"
        var options = InteractionImportOptions()
        options.runEvents = 64
        let bad = try writeFile("bad.csv", rows)
        assertImportError(file: bad, line: 3_002, contains: "timestamp 'not-a-time'") { try db.importInteractions(from: bad, options: options) }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertTrue(try db.verify().isClean)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("db")).sorted(), ["data.mdb", "lock.mdb"])
    }

    /// Rows are queued (`PendingRows`) and their ids resolved up to 16 rows after they are parsed: errors
    /// still name the row's own line, the file's first error wins over a later line's, and long ids
    /// (queued copies wider than the queue's first 64 bytes) keep their bytes.
    func testQueuedRowsReportTheirOwnLineAndKeepLongIDs() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        // A control character in a new user id on line 5; a line with too few fields on line 7 (parsed
        // before line 5's id is resolved).
        var text = "user,item,timestamp\nu1,i1,1\nu2,i2,2\nu3,i3,3\nu\u{01}x,i4,4\nu5,i5,5\nu6,i6\n"
        let bad = try writeFile("bad-id.csv", text)
        assertImportError(file: bad, line: 5, contains: "control character") { try db.importInteractions(from: bad) }
        // The bad id with 40 good rows after it: its line, not the last one parsed.
        text = "user,item,timestamp\nu1,i1,1\nu\u{01}x,i4,4\n" + (0..<40).map { "u\($0),i\($0),\($0)\n" }.joined()
        let late = try writeFile("late.csv", text)
        assertImportError(file: late, line: 3, contains: "control character") { try db.importInteractions(from: late) }
        XCTAssertEqual(try fingerprint(db), before)

        let long = String(repeating: "a", count: 300), middle = String(repeating: "b", count: 100)
        var rows: [(String, String, Int64)] = []
        for i in 0..<200 {
            let user = i % 3 == 0 ? "\(long)\(i % 7)" : i % 3 == 1 ? "\(middle)\(i % 5)" : "u\(i % 11)"
            let item = i % 4 == 0 ? "\(middle)\(long)\(i % 9)" : "i\(i % 13)"
            rows.append((user, item, Int64(i / 2)))
        }
        let summary = try db.importInteractions(from: try writeFile("long.csv", csv(rows)))
        XCTAssertEqual(summary.events, 200)
        assertSameHistories(try histories(db), reference(rows))
        XCTAssertTrue(try db.verify().isClean)
    }

    /// The id map through its growths, past 2 MiB of slots (the huge-page mapping): every key, short
    /// (inline) and long (arena), finds its id; absent keys find nothing.
    func testExternalIDMapFindsEveryKeyAcrossGrowthAndHugePageTables() {
        let map = ExternalIDMap()
        func key(_ i: Int) -> [UInt8] { Array((i % 3 == 0 ? "user-with-a-long-external-id-\(i)" : "u\(i)").utf8) }
        let n = 300_000  // 2^20 slots at the end: 16 MiB, mapped
        for i in 1...n {
            let k = key(i)
            k.withUnsafeBytes { b in
                XCTAssertNil(map.find(b, hash: ExternalIDMap.hash(b)))
                map.insert(b, hash: ExternalIDMap.hash(b), id: UInt32(i))
            }
        }
        XCTAssertEqual(map.count, n)
        var wrong = 0
        for i in 1...n {
            key(i).withUnsafeBytes { b in if map.find(b, hash: ExternalIDMap.hash(b)) != UInt32(i) { wrong += 1 } }
            key(n + i).withUnsafeBytes { b in if map.find(b, hash: ExternalIDMap.hash(b)) != nil { wrong += 1 } }
        }
        XCTAssertEqual(wrong, 0)
    }

    func testASpillThatCannotBeWrittenFailsCleanly() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        var options = InteractionImportOptions()
        options.runEvents = 10
        options.temporaryDirectory = path("no-such-directory")
        XCTAssertThrowsError(try db.importInteractions(from: try writeFile("e.csv", csv(shuffledRows(count: 100, users: 5, items: 5, seed: 1))), options: options)) { error in
            XCTAssertTrue("\(error)".contains("creating a temporary file in \(path("no-such-directory"))"), "\(error)")
        }
        XCTAssertEqual(try fingerprint(db), before)
    }

    func testTheLedgerRefusesTheSameFileAgainAfterASpilledImport() throws {
        let db = try makeDatabase()
        let file = try writeFile("e.csv", csv(shuffledRows(count: 1_000, users: 30, items: 30, seed: 4)))
        var options = InteractionImportOptions()
        options.runEvents = 50
        try db.importInteractions(from: file, options: options)
        XCTAssertThrowsError(try db.importInteractions(from: file, options: options)) { error in
            guard case RecDBError.alreadyImported = error else { return XCTFail("\(error)") }
        }
        options.allowDuplicateImport = true
        try db.importInteractions(from: file, options: options)
        XCTAssertEqual(try db.read { try $0.eventCount() }, 2_000)
        XCTAssertTrue(try db.verify().isClean)
    }

    func testSequenceFilesImportThroughTheSamePath() throws {
        let db = try makeDatabase()
        let file = try writeFile("s.txt", "a 1 2 3\n\nb 3\tx  y\nc 9\n")
        var options = InteractionImportOptions(format: .sequences)
        options.runEvents = 3
        try db.importInteractions(from: file, options: options)
        let h = try histories(db)
        XCTAssertEqual(h["a"]?.map { "\($0.0):\($0.1)" }, ["1:1", "2:2", "3:3"])
        XCTAssertEqual(h["b"]?.map { "\($0.0):\($0.1)" }, ["1:3", "2:x", "3:y"])
        XCTAssertEqual(h["c"]?.map { "\($0.0):\($0.1)" }, ["1:9"])
    }

    func testTheGeneratorIsDeterministicAndItsTwoFormatsHoldTheSameHistories() throws {
        var generator = SyntheticInteractions(rows: 20_000, users: 400, items: 3_000, clusters: 30, seed: 9)
        generator.minHistory = 3
        let summary = try generator.write(to: path("g.csv"), format: .csv)
        try generator.write(to: path("g2.csv"), format: .csv)
        try generator.write(to: path("g.txt"), format: .sequences)
        XCTAssertEqual(summary.rows, 20_000)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("g.csv"))), try Data(contentsOf: URL(fileURLWithPath: path("g2.csv"))))
        let lines = try String(contentsOfFile: path("g.csv"), encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertEqual(lines.count, 20_000)
        var lastTime: Int64 = 0
        var perUser: [String: [String]] = [:]
        var userTime: [String: Int64] = [:]
        var itemCounts: [String: Int] = [:]
        for line in lines {
            let f = line.split(separator: ",").map(String.init)
            let t = Int64(f[2])!
            XCTAssertGreaterThanOrEqual(t, lastTime, "rows in global time order")
            XCTAssertGreaterThan(t, userTime[f[0]] ?? 0, "times increase per user")
            lastTime = t
            userTime[f[0]] = t
            perUser[f[0], default: []].append(f[1])
            itemCounts[f[1], default: 0] += 1
        }
        XCTAssertEqual(perUser.count, 400)
        XCTAssertGreaterThanOrEqual(perUser.values.map(\.count).min()!, 3)
        // Lognormal lengths: a long tail (the longest history is several times the mean of 50).
        XCTAssertGreaterThan(perUser.values.map(\.count).max()!, 150)
        // Zipf popularity: the top 1 % of items take far more than 1 % of the events.
        let top = itemCounts.values.sorted(by: >).prefix(30).reduce(0, +)
        XCTAssertGreaterThan(Double(top) / 20_000, 0.1)
        XCTAssertGreaterThan(itemCounts.count, 1_000)
        let sequences = try String(contentsOfFile: path("g.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(sequences.count, 400)
        for line in sequences {
            let tokens = line.split(separator: " ").map(String.init)
            XCTAssertEqual(Array(tokens.dropFirst()), perUser[tokens[0]], "user \(tokens[0])")
        }
    }
}
