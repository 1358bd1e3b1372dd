import Foundation
import XCTest
@testable import RecDB

/// Damaged files and values are errors that name what is damaged — never a crash, never a result.
final class IntegrityTests: DatabaseTestCase {
    // MARK: - CRC-32C

    func testCRC32CMatchesTheStandardCheckValueOnBothPaths() {
        let check = Array("123456789".utf8)
        XCTAssertEqual(CRC32C.checksum(check), 0xE306_9283)  // the published CRC-32C check value
        XCTAssertEqual(check.withUnsafeBytes { CRC32C.softwareUpdate(0, $0) }, 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)  // RFC 3720 B.4
        // Every length and alignment, and chaining: the hardware path equals the table path.
        var g = SplitMix(seed: 7)
        let data = (0..<300).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        data.withUnsafeBytes { all in
            for start in 0..<9 {
                for end in stride(from: start, through: all.count, by: 7) {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<end])
                    let whole = CRC32C.update(0, slice)
                    XCTAssertEqual(whole, CRC32C.softwareUpdate(0, slice))
                    let mid = start + (end - start) / 3
                    let chained = CRC32C.update(CRC32C.update(0, UnsafeRawBufferPointer(rebasing: all[start..<mid])),
                                                UnsafeRawBufferPointer(rebasing: all[mid..<end]))
                    XCTAssertEqual(chained, whole)
                }
            }
        }
    }

    // MARK: - data.mdb before LMDB maps it

    /// A counter whose key is damaged reads as missing; that is an error when its table has entries
    /// (found by `make corruption`: `stats` said 0 items), never 0 — a write would reuse id 1.
    func testAMissingCounterIsDamageWhenItsTableHasEntries() throws {
        let db = try makeDatabase()
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "a", title: "A"))
            _ = try tx.upsertUser(externalID: "u")
        }
        XCTAssertEqual(try db.stats().items, 1)
        try db.write { tx in
            for key in [MetaKey.lastItemID, .lastUserID] {
                _ = try Array(key.rawValue.utf8).withUnsafeBytes { try tx.raw.delete(.meta, key: $0) }
            }
        }
        for (what, body) in [("stats", { _ = try db.stats() }), ("a new item", { try db.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "b", title: "B")) } }),
                             ("a new user", { try db.write { tx in _ = try tx.upsertUser(externalID: "v") } })] as [(String, () throws -> Void)] {
            XCTAssertThrowsError(try body(), what) { error in
                guard case let RecDBError.damaged(table, key, detail) = error else { return XCTFail("\(what): \(error)") }
                XCTAssertEqual(table, "meta")
                XCTAssertTrue(key == "last_item_id" || key == "last_user_id", key)
                XCTAssertTrue(detail.contains("has entries"), detail)
            }
        }
        XCTAssertEqual(try db.read { try $0.item(externalID: "a")?.title }, "A", "item 1 was not overwritten")
        // A new database has no counters and no entries: 0, not damage.
        XCTAssertEqual(try makeDatabase("empty").stats().items, 0)
    }

    /// The external-id tables' values carry no checksum: a value that is not a 4-byte id (or holds id 0) is damage
    /// named by table and id — for a lookup, for recommend and for an import that meets it — never id 0 used as an id.
    func testADamagedExternalIDEntryIsAnErrorNotIDZero() throws {
        let db = try makeDatabase()
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "a", title: "A"))
            _ = try tx.upsertUser(externalID: "u")
        }
        for (table, external, value) in [(Table.itemIDs, "a", [UInt8]([0, 1])), (.userIDs, "u", [0, 0, 0, 0])] {
            try db.write { tx in try tx.raw.put(table, key: Array(external.utf8), value: value) }
            let lookup: () throws -> UInt32? = table == .itemIDs ? { try db.read { try $0.itemID(for: external) } }
                                                                 : { try db.read { try $0.userID(for: external) } }
            XCTAssertThrowsError(try lookup()) { error in
                guard case let RecDBError.damaged(t, key, detail) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(t, table.rawValue)
                XCTAssertEqual(key, external)
                XCTAssertTrue(detail.contains("\(value.count) bytes"), detail)
            }
        }
        let before = try fingerprint(db)
        let file = try writeFile("e.csv", "user,item,timestamp\nu,a,5\n")
        XCTAssertThrowsError(try db.importInteractions(from: file)) { error in
            XCTAssertTrue("\(error)".contains("_ids"), "\(error)")
        }
        XCTAssertEqual(try fingerprint(db), before)
    }

    func testAFileThatIsNotLMDBIsRefusedWithoutTouchingIt() throws {
        let dir = path("x")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "hello\n".write(toFile: dir + "/data.mdb", atomically: false, encoding: .utf8)
        for options in [Database.Options(readOnly: true, create: false), Database.Options(create: false), Database.Options()] {
            XCTAssertThrowsError(try Database(path: dir, options: options)) { error in
                guard case RecDBError.notADatabase(let p, let reason) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(p, dir)
                XCTAssertTrue(reason.contains("data.mdb has 6 bytes, too short for an LMDB file"), reason)
            }
        }
        // A page-sized file of garbage: no LMDB magic.
        try Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: dir + "/data.mdb"))
        XCTAssertThrowsError(try Database(path: dir, options: .init(create: false))) { error in
            XCTAssertTrue("\(error)".contains("is not an LMDB file"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/data.mdb")).count, 8192)
    }

    func testTruncatedAndZeroedDataFilesAreClearErrors() throws {
        var db: Database? = try makeDatabase()
        try populate(db!)
        db = nil
        let file = path("db") + "/data.mdb"
        let original = try Data(contentsOf: URL(fileURLWithPath: file))
        let pageSize = 4096
        XCTAssertGreaterThan(original.count, 8 * pageSize)
        // Cut at every kind of place: inside a meta page, between the metas, inside the tree.
        for cut in [100, pageSize + 10, 2 * pageSize, 2 * pageSize + 1, original.count / 2, original.count - 1] {
            try original.prefix(cut).write(to: URL(fileURLWithPath: file))
            XCTAssertThrowsError(try Database(path: path("db"), options: .init(readOnly: true, create: false)), "cut at \(cut)") { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(file) || text.contains(path("db")), text)
                XCTAssertTrue(text.contains("truncated") || text.contains("too short") || text.contains("cannot read the meta page"), text)
            }
        }
        // Zero-filled from the third page on (the length is right, the pages are gone).
        var zeroed = original
        zeroed.replaceSubrange((2 * pageSize)..<zeroed.count, with: [UInt8](repeating: 0, count: zeroed.count - 2 * pageSize))
        try zeroed.write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try Database(path: path("db"), options: .init(readOnly: true, create: false)))
        // Entirely zero: not an LMDB file.
        try Data(count: original.count).write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try Database(path: path("db"), options: .init(create: false))) { error in
            XCTAssertTrue("\(error)".contains("is not an LMDB file"), "\(error)")
        }
        // An empty data.mdb is a new database only when creating.
        try Data().write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try Database(path: path("db"), options: .init(create: false)))
        XCTAssertEqual(try Database(path: path("db")).stats().items, 0)
    }

    func testTheCommandLineReportsDamagedFilesAndNeverDiesOfASignal() throws {
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"))
        let dir = path("x")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "hello\n".write(toFile: dir + "/data.mdb", atomically: false, encoding: .utf8)
        for args in [["stats", dir], ["verify", dir], ["recommend", dir, "u", "-k", "3"], ["import", "interactions", dir, dir + "/data.mdb"]] {
            let (status, _, err) = try runProcess(rdbctl, args)
            XCTAssertEqual(status, 1, "\(args): \(err)")
            XCTAssertTrue(err.contains("is not a RecDB database") && err.contains("too short for an LMDB file"), "\(args): \(err)")
        }
        var db: Database? = try makeDatabase()
        try populate(db!)
        db = nil
        let file = path("db") + "/data.mdb"
        let original = try Data(contentsOf: URL(fileURLWithPath: file))
        try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: file))
        for args in [["stats", path("db")], ["verify", path("db")], ["show", "user", path("db"), "u1"]] {
            let (status, _, err) = try runProcess(rdbctl, args)
            XCTAssertEqual(status, 1, "\(args): \(err)")
            XCTAssertTrue(err.contains("damaged data") && err.contains("truncated"), "\(args): \(err)")
        }
    }

    // MARK: - Format version

    func testOlderFormatDatabasesAreRefusedWithAClearErrorAndLeftUnchanged() throws {
        // Format 1 had no checksums; format 2 stored one B-tree entry per event and a global event log.
        for old in [1, 2] {
            var db: Database? = try makeDatabase("db\(old)")
            try db!.write { tx in try tx.meta.setU64(.formatVersion, UInt64(old)) }
            db = nil
            let before = try Data(contentsOf: URL(fileURLWithPath: path("db\(old)") + "/data.mdb"))
            for options in [Database.Options(), Database.Options(readOnly: true, create: false)] {
                XCTAssertThrowsError(try Database(path: path("db\(old)"), options: options)) { error in
                    XCTAssertEqual(error as? RecDBError, .formatVersion(found: old, supported: 4))
                    XCTAssertEqual("\(error)", "database format version \(old) is not supported (this build writes version 4 and reads versions 3–4)")
                }
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("db\(old)") + "/data.mdb")), before)
        }
    }

    // MARK: - Checksums on load

    func testAFlippedVectorIsAnErrorEverywhereItIsRead() throws {
        let db = try makeDatabase()
        try populate(db)
        try db.buildIndex(space: "emb")
        try flipValue(db, .vectors, key: Keys.pair(1, 3), at: 5)
        for read in [{ _ = try db.read { try $0.vector(space: "emb", entity: 3) } },
                     { _ = try db.read { tx in try tx.forEachVector(space: "emb") { _, _ in true } } },
                     { try db.buildIndex(space: "emb") }] {
            XCTAssertThrowsError(try read()) { error in
                XCTAssertEqual(error as? RecDBError, .damaged(table: "vectors", key: "emb/#3", detail: "checksum mismatch"))
            }
        }
        let report = try db.verify()
        XCTAssertEqual(report.problems, ["vectors #1/#3: damaged data in table vectors, key emb/#3: checksum mismatch (run `rdbctl verify`; restore from a backup)"])
    }

    func testFlippedRecordsEventsAndCountersAreErrors() throws {
        let db = try makeDatabase()
        try populate(db)
        try flipValue(db, .items, key: Keys.u32(2), at: 1)  // the flags byte: a deleted item must not come back
        XCTAssertThrowsError(try db.read { try $0.isServable(item: 2) }) { XCTAssertEqual(($0 as? RecDBError).map { "\($0)" }?.contains("table items, key #2"), true) }
        XCTAssertThrowsError(try db.read { try $0.item(id: 2) })
        let user = try db.read { try $0.userID(for: "u1") }!
        let eventKey = try db.read { tx -> [UInt8] in
            let c = try tx.raw.cursor(.userEvents)
            return try c.seek(Keys.u32(user)) { k, _ in Array(k) }!
        }
        var flippedKey = eventKey
        flippedKey[10] ^= 0x01  // the timestamp: the event would silently move in the history
        try db.write { tx in
            let value = try tx.raw.get(.userEvents, key: eventKey)!
            try tx.raw.delete(.userEvents, key: eventKey)
            try tx.raw.put(.userEvents, key: flippedKey, value: value)
        }
        XCTAssertThrowsError(try db.read { try $0.recentItems(user: user, last: 50) }) { error in
            guard case RecDBError.damaged(let table, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(table, "user_events")
        }
        try flipValue(db, .meta, key: Array(MetaKey.lastItemID.rawValue.utf8), at: 0)
        XCTAssertThrowsError(try db.read { try $0.itemCount() }) { error in
            XCTAssertEqual(error as? RecDBError, .damaged(table: "meta", key: "last_item_id", detail: "checksum mismatch"))
        }
        let report = try db.verify()
        XCTAssertTrue(report.problems.contains { $0.hasPrefix("items #2: damaged data in table items") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.hasPrefix("user_events ") && $0.contains("checksum mismatch") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.hasPrefix("meta last_item_id: damaged") }, "\(report.problems)")
    }

    func testAFlippedModelWeightIsAnErrorNotARecommendation() throws {
        let db = try makeDatabase()
        try populate(db)
        var configuration = ModelConfiguration(architecture: .sasrec, items: .id)
        configuration.hiddenSize = 8
        configuration.maxEpochs = 1
        _ = try db.train(TrainingRequest(model: "m", configuration: configuration))
        XCTAssertEqual(try db.recommend(user: "u1", k: 3).items.count, 3)
        let tensorKey = try db.read { tx in try tx.keys(in: .models, prefix: ModelKeys.tensorPrefix("m", 1)) }
            .first { !String(decoding: $0, as: UTF8.self).contains("@") }!
        try flipValue(db, .models, key: tensorKey, at: 40)
        XCTAssertThrowsError(try db.read { tx in try tx.parameters(model: "m", version: 1) }) { error in
            guard case RecDBError.damaged(let table, let key, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(table, "models")
            XCTAssertTrue(key.hasPrefix("t/m/\\x00\\x00\\x00\\x01/"), key)
        }
        XCTAssertThrowsError(try db.evaluate(model: "m"))
        XCTAssertFalse(try db.verify().isClean)
    }

    // MARK: - Backup

    func testBackupIsAtomicAndLeavesNoTemporaryBehind() throws {
        let db = try makeDatabase()
        try populate(db)
        let parent = path("backups")
        try db.backup(to: parent + "/one")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), ["one"])
        let copy = try Database(path: parent + "/one", options: .init(readOnly: true, create: false))
        XCTAssertTrue(try copy.verify().isClean)
        XCTAssertEqual(try copy.stats().interactions, try db.stats().interactions)
        // An empty existing directory is replaced; a non-empty one is refused and left as it was.
        try FileManager.default.createDirectory(atPath: parent + "/two", withIntermediateDirectories: true)
        try db.backup(to: parent + "/two")
        XCTAssertTrue(FileManager.default.fileExists(atPath: parent + "/two/data.mdb"))
        XCTAssertThrowsError(try db.backup(to: parent + "/one"))
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: parent)), ["one", "two"])
    }

    func testAnInterruptedBackupCopyDoesNotOpenAsADatabase() throws {
        // What a killed `backup` leaves: the temporary directory with a partial copy (meta pages
        // written first, the tree cut short). It must never open as a database.
        let db = try makeDatabase()
        try populate(db)
        try db.backup(to: path("full"))
        let full = try Data(contentsOf: URL(fileURLWithPath: path("full") + "/data.mdb"))
        let partial = path("dest.tmp-1-2")
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
        for cut in [8192, full.count / 2, full.count - 4096] {
            try full.prefix(cut).write(to: URL(fileURLWithPath: partial + "/data.mdb"))
            XCTAssertThrowsError(try Database(path: partial, options: .init(readOnly: true, create: false)), "cut at \(cut)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("dest")))
    }

    // MARK: - Helpers

    /// Items, users, events, profiles and an item space.
    func populate(_ db: Database) throws {
        try db.write { tx in
            for i in 1...30 {
                try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)", attributesJSON: "{\"c\": \"\(i % 3)\"}"))
            }
            for u in 1...20 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                for s in 0..<8 { try tx.appendEvent(user: user, item: UInt32(1 + (u * 3 + s) % 30), timestamp: Int64(s), type: s % 2 == 0 ? "view" : nil) }
                if u % 4 == 0 { try tx.putProfile(user: user, text: "likes \(u)") }
            }
            try tx.createSpace(EmbeddingSpace(name: "emb", kind: .item, dimension: 8))
            for i in 1...30 { try tx.putVector(space: "emb", entity: UInt32(i), (0..<8).map { Float(sin(Double(i * 8 + $0))) }) }
        }
    }

    /// XORs one byte of a stored value in place (as a flipped bit on disk would), bypassing the checks.
    func flipValue(_ db: Database, _ table: Table, key: [UInt8], at offset: Int) throws {
        try db.write { tx in
            var value = try XCTUnwrap(tx.raw.get(table, key: key))
            value[offset] ^= 0x10
            try tx.raw.put(table, key: key, value: value)
        }
        db.runtime.removeAll(prefix: "")  // what another process, which never decoded it, would see
    }
}

/// Deterministic test randomness.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
