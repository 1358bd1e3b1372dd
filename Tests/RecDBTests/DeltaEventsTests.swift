import CLMDB
import Foundation
import XCTest
@testable import RecDB

/// `user_events` and `user_events_delta` read as one table (`EventsCursor`), and what the second table
/// changes around it: single events, damage across the two tables, and databases of format 3, which
/// lack the second table. The import paths that write it are in `AppendBlocksTests`.
final class DeltaEventsTests: DatabaseTestCase {
    /// Random keys split at random between the two tables; random walks of seeks (both ways), firsts,
    /// lasts, nexts and previouses (direction changes included) land where they land in the sorted union.
    func testTheMergedCursorWalksTheUnionOfBothTablesInKeyOrder() throws {
        var rng = SplitMix64(seed: 42)
        for round in 0..<8 {
            let db = try makeDatabase("db\(round)")
            // Few distinct bytes, so keys share prefixes and interleave; sizes 1…6 bytes test LMDB's order of prefixes.
            var keys = Set<[UInt8]>()
            let count = [0, 1, 2, 40, 40, 200, 200, 200][round]
            while keys.count < count { keys.insert((0..<Int(1 + rng.next() % 6)).map { _ in UInt8(rng.next() % 3) }) }
            let inDelta = Dictionary(uniqueKeysWithValues: keys.map { ($0, round == 3 ? true : round == 4 ? false : rng.next() % 2 == 0) })
            try db.write { tx in
                for (key, delta) in inDelta {
                    let value: [UInt8] = delta ? [1] + key : [0] + key
                    try key.withUnsafeBytes { k in try value.withUnsafeBytes { try tx.raw.put(delta ? .userEventsDelta : .userEvents, key: k, value: $0) } }
                }
            }
            let sorted = keys.sorted { a, b in a.withUnsafeBytes { x in b.withUnsafeBytes { EventsCursor.compare(x, $0) < 0 } } }
            try db.read { tx in
                let cursor = try EventsCursor(tx.raw)
                var at: Int?  // the reference position in `sorted`
                func check(_ got: [UInt8]?, _ what: String) {
                    XCTAssertEqual(got, at.map { sorted[$0] }, "round \(round): \(what)")
                    if let got, let at {
                        XCTAssertEqual(cursor.currentTable, inDelta[got]! ? .userEventsDelta : .userEvents)
                        XCTAssertEqual(try cursor.move(.current) { _, v in Array(v) }, [inDelta[got]! ? 1 : 0] + sorted[at], "value under the cursor")
                    }
                }
                for _ in 0..<600 {
                    let pick = rng.next() % 10
                    if at == nil || pick < 2 {
                        let probe = (0..<Int(1 + rng.next() % 6)).map { _ in UInt8(rng.next() % 3) }
                        at = sorted.firstIndex { k in k.withUnsafeBytes { x in probe.withUnsafeBytes { EventsCursor.compare(x, $0) >= 0 } } }
                        check(try cursor.seek(probe) { k, _ in Array(k) }, "seek \(probe)")
                    } else if pick == 2 {
                        at = sorted.isEmpty ? nil : 0
                        check(try cursor.move(.first) { k, _ in Array(k) }, "first")
                    } else if pick == 3 {
                        at = sorted.isEmpty ? nil : sorted.count - 1
                        check(try cursor.move(.last) { k, _ in Array(k) }, "last")
                    } else if pick == 9 {
                        let probe = (0..<Int(1 + rng.next() % 6)).map { _ in UInt8(rng.next() % 3) }
                        at = sorted.lastIndex { k in k.withUnsafeBytes { x in probe.withUnsafeBytes { EventsCursor.compare(x, $0) < 0 } } }
                        check(try cursor.seekBefore(probe) { k, _ in Array(k) }, "seekBefore \(probe)")
                    } else if pick < 7 {
                        at = at! + 1 < sorted.count ? at! + 1 : nil
                        check(try cursor.move(.next) { k, _ in Array(k) }, "next")
                    } else {
                        at = at! > 0 ? at! - 1 : nil
                        check(try cursor.move(.previous) { k, _ in Array(k) }, "previous")
                    }
                }
            }
        }
    }

    /// A single event goes into the block it falls into, in the table that holds that block: a user
    /// whose history continues in the delta table keeps growing there, one with only user_events there.
    func testSingleEventsArePackedIntoTheBlockTheyFallIntoInItsTable() throws {
        let db = try makeDatabase()
        let first = (0..<60).map { "a,i\($0 % 9),\($0)" } + (0..<60).map { "b,i\($0 % 9),\($0)" }
        try db.importInteractions(from: try writeFile("a.csv", "user,item,timestamp\n" + first.joined(separator: "\n") + "\n"))
        try db.importInteractions(from: try writeFile("b.csv", "user,item,timestamp\n" + (0..<5).map { "a,i1,\(100 + $0)" }.joined(separator: "\n") + "\n"))
        try db.write { tx in
            let (a, b, item) = (try tx.userID(for: "a")!, try tx.userID(for: "b")!, try tx.itemID(for: "i2")!)
            try tx.appendEvent(user: a, item: item, timestamp: 200)   // after a's block in the delta table
            try tx.appendEvent(user: a, item: item, timestamp: 102)   // inside it
            try tx.appendEvent(user: a, item: item, timestamp: 30)    // inside a's block in user_events
            try tx.appendEvent(user: b, item: item, timestamp: 500)   // b has no delta blocks
        }
        try db.read { tx in
            let (a, b) = (try tx.userID(for: "a")!, try tx.userID(for: "b")!)
            XCTAssertEqual(try tx.events(user: a).map(\.timestamp), Array(0..<30) + [30] + Array(30..<60) + [100, 101, 102, 102, 103, 104, 200])
            XCTAssertEqual(try tx.events(user: b).map(\.timestamp), Array(0..<60) + [500])
            func counts(_ table: Table, _ user: UInt32) throws -> [Int] {
                var out: [Int] = []
                let cursor = try tx.raw.cursor(table)
                var more = try cursor.move(.first) { k, v -> Bool in
                    if Keys.readU32(k) == user { out.append(try EventBlock.decode(key: k, value: v).count) }
                    return true
                } ?? false
                while more { more = try cursor.move(.next) { k, v -> Bool in
                    if Keys.readU32(k) == user { out.append(try EventBlock.decode(key: k, value: v).count) }
                    return true
                } ?? false }
                return out
            }
            XCTAssertEqual(try counts(.userEvents, a), [61])
            XCTAssertEqual(try counts(.userEventsDelta, a), [7])
            XCTAssertEqual(try counts(.userEvents, b), [61])
            XCTAssertEqual(try counts(.userEventsDelta, b), [])
        }
        XCTAssertTrue(try db.verify().isClean)
    }

    /// A block whose key is in both tables, or a delta block overlapping the user_events block before it,
    /// is damage: reads throw `damaged`, and verify lists it.
    func testAKeyInBothTablesOrAnOverlapAcrossThemIsDamage() throws {
        for damage in ["duplicate", "overlap"] {
            let db = try makeDatabase(damage)
            try db.importInteractions(from: try writeFile("a-\(damage).csv", "user,item,timestamp\n" + (0..<60).map { "a,i\($0 % 9),\($0)" }.joined(separator: "\n") + "\n"))
            try db.write { tx in
                let cursor = try tx.raw.cursor(.userEvents)
                let (key, value) = try XCTUnwrap(try cursor.move(.first) { (Array($0), Array($1)) })
                if damage == "duplicate" {
                    try key.withUnsafeBytes { k in try value.withUnsafeBytes { try tx.raw.put(.userEventsDelta, key: k, value: $0) } }
                } else {
                    // The same events under a key one sequence later: a block of its own, overlapping the first.
                    var later = key
                    later[19] &+= 1
                    let user = key.withUnsafeBytes { Keys.readU32($0) }
                    var events = try key.withUnsafeBytes { k in try value.withUnsafeBytes { try EventBlock.decode(key: k, value: $0) } }
                    events = events.map { StoredEvent(timestamp: $0.timestamp, sequence: $0.sequence + 1, item: $0.item, typeCode: $0.typeCode, value: $0.value) }
                    var block: [UInt8] = []
                    events.withUnsafeBufferPointer { EventBlock.encode(user: user, $0, into: &block) }
                    XCTAssertEqual(EventBlock.key(user: user, first: events[0]), later)
                    try later.withUnsafeBytes { k in try block.withUnsafeBytes { try tx.raw.put(.userEventsDelta, key: k, value: $0) } }
                }
            }
            let report = try db.verify()
            XCTAssertFalse(report.isClean, damage)
            if damage == "duplicate" {
                XCTAssertTrue(report.problems.contains { $0.contains("the block's key is in user_events too") }, "\(report.problems)")
                XCTAssertThrowsError(try db.read { tx in try tx.events(user: 1) }) { error in
                    guard case RecDBError.damaged(let table, _, let detail) = error else { return XCTFail("\(error)") }
                    XCTAssertEqual(table, "user_events_delta")
                    XCTAssertEqual(detail, "the block's key is in user_events too")
                }
            } else {
                XCTAssertTrue(report.problems.contains { $0.contains("overlaps the block before it (the two event tables read together)") }, "\(report.problems)")
            }
        }
    }

    /// A database of format 3 (no user_events_delta): read-only it opens and reads, and `verify` finds it
    /// clean; opened for writing it gains the table, records format 4, and takes imports into the delta
    /// table. A version this build does not read is refused before anything is written.
    func testAFormat3DatabaseIsReadAndUpgradedWhenWritten() throws {
        var db: Database? = try makeDatabase("old")
        try db!.importInteractions(from: try writeFile("a.csv", "user,item,timestamp\n" + (0..<60).map { "a,i\($0 % 9),\($0)" }.joined(separator: "\n") + "\n"))
        db = nil
        try rewriteAsFormat3(path("old"))
        let before = try Data(contentsOf: URL(fileURLWithPath: path("old/data.mdb")))

        do {  // one Database of a directory at a time in a process (LMDB's rule); each closes at the end of its scope
            let reader = try Database(path: path("old"), options: .init(readOnly: true, create: false))
            XCTAssertEqual(try reader.read { tx in try tx.events(user: 1).count }, 60)
            XCTAssertEqual(try reader.stats().formatVersion, 3)
            let report = try reader.verify()
            XCTAssertTrue(report.isClean, "\(report.problems)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("old/data.mdb"))), before, "read-only leaves the file as it was")

        // A reader that opened it as format 3 while another process upgrades it and imports into user 1:
        // its next reads of events refuse (they would miss the new table), and verify says why.
        let upgraded = try copyDirectory("old", to: "raced")
        do {
            let reader = try Database(path: upgraded, options: .init(readOnly: true, create: false))
            XCTAssertEqual(try reader.read { tx in try tx.events(user: 1).count }, 60)
            let rdbctl = try XCTUnwrap(builtProduct("rdbctl"), "rdbctl is built with the tests")
            let late = try writeFile("late.csv", "user,item,timestamp\n" + (0..<3).map { "a,i1,\(100 + $0)" }.joined(separator: "\n") + "\n")
            let (status, _, stderr) = try runProcess(rdbctl, ["import", "interactions", upgraded, late])
            XCTAssertEqual(status, 0, stderr)
            XCTAssertThrowsError(try reader.read { tx in try tx.events(user: 1) }) { error in
                XCTAssertTrue("\(error)".contains("a writer upgraded it to format 4"), "\(error)")
            }
            XCTAssertTrue(try reader.verify().problems.contains { $0.contains("a writer upgraded it to format 4") })
        }
        XCTAssertEqual(try Database(path: upgraded, options: .init(readOnly: true, create: false)).read { tx in try tx.events(user: 1).count }, 63,
                       "opened again, it reads both tables")

        // Format 4 without the table is damage: read-only it is refused, not read as empty.
        let damaged = try copyDirectory("old", to: "tableless")
        try rewriteAsFormat3(damaged, version: 4)
        XCTAssertThrowsError(try Database(path: damaged, options: .init(readOnly: true, create: false))) { error in
            guard case RecDBError.notADatabase(_, let reason)? = error as? RecDBError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("a table is missing"), reason)
        }
        do {
            let writer = try Database(path: path("old"))
            XCTAssertEqual(try writer.stats().formatVersion, 4)
            try writer.importInteractions(from: try writeFile("b.csv", "user,item,timestamp\n" + (0..<3).map { "a,i1,\(100 + $0)" }.joined(separator: "\n") + "\n"))
            XCTAssertEqual(try writer.read { tx in try tx.raw.count(.userEventsDelta) }, 1)
            XCTAssertEqual(try writer.read { tx in try tx.events(user: 1).map(\.timestamp) }, Array(0..<60) + [100, 101, 102])
            XCTAssertTrue(try writer.verify().isClean)
        }

        // Format 5 is refused, and the refused open creates nothing (the table would be missing again).
        try rewriteAsFormat3(path("old"), version: 5)
        let refused = try Data(contentsOf: URL(fileURLWithPath: path("old/data.mdb")))
        for options in [Database.Options(), Database.Options(readOnly: true, create: false)] {
            XCTAssertThrowsError(try Database(path: path("old"), options: options)) { error in
                XCTAssertEqual(error as? RecDBError, .formatVersion(found: 5, supported: 4))
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("old/data.mdb"))), refused)
        }
    }

    func copyDirectory(_ name: String, to copy: String) throws -> String {
        try FileManager.default.copyItem(atPath: path(name), toPath: path(copy))
        try? FileManager.default.removeItem(atPath: path(copy) + "/lock.mdb")
        return path(copy)
    }

    /// What a format-3 build left: no user_events_delta, and format_version 3 (u64 LE, no checksum),
    /// written with LMDB directly (RecDB itself never removes a table).
    func rewriteAsFormat3(_ directory: String, version: UInt64 = 3) throws {
        var env: OpaquePointer?
        XCTAssertEqual(mdb_env_create(&env), 0)
        defer { mdb_env_close(env) }
        XCTAssertEqual(mdb_env_set_maxdbs(env, 32), 0)
        XCTAssertEqual(mdb_env_set_mapsize(env, 64 << 20), 0)
        XCTAssertEqual(mdb_env_open(env, directory, UInt32(MDB_NOTLS), 0o644), 0)
        var txn: OpaquePointer?
        XCTAssertEqual(mdb_txn_begin(env, nil, 0, &txn), 0)
        var dbi = MDB_dbi()
        if mdb_dbi_open(txn, "user_events_delta", 0, &dbi) == 0 {
            XCTAssertEqual(mdb_drop(txn, dbi, 1), 0)
        }
        XCTAssertEqual(mdb_dbi_open(txn, "meta", 0, &dbi), 0)
        var versionBytes = version.littleEndian
        let name = Array("format_version".utf8)
        name.withUnsafeBytes { n in
            withUnsafeMutableBytes(of: &versionBytes) { v in
                var k = MDB_val(mv_size: n.count, mv_data: UnsafeMutableRawPointer(mutating: n.baseAddress))
                var value = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                XCTAssertEqual(mdb_put(txn, dbi, &k, &value, 0), 0)
            }
        }
        XCTAssertEqual(mdb_txn_commit(txn), 0)
    }
}
