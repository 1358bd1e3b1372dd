import Foundation
import XCTest
@testable import RecDB

final class StoreTests: DatabaseTestCase {
    func testItemsAndUsersGetDenseIDsFromOneAndRoundTrip() throws {
        let db = try makeDatabase()
        let (a, b, u) = try db.write { tx in
            (try tx.upsertItem(ItemInput(externalID: "sku-a", title: "Red lipstick", text: "matte", attributesJSON: #"{"brand":"X","price":9.5}"#)),
             try tx.upsertItem(ItemInput(externalID: "sku-b", title: "Blue mascara")),
             try tx.upsertUser(externalID: "alice", attributesJSON: #"{"age":30}"#))
        }
        XCTAssertEqual(a, 1)
        XCTAssertEqual(b, 2)
        XCTAssertEqual(u, 1)
        let item = try db.read { try $0.item(externalID: "sku-a") }
        XCTAssertEqual(item?.title, "Red lipstick")
        XCTAssertEqual(item?.text, "matte")
        XCTAssertEqual(item?.attributes["brand"] as? String, "X")
        XCTAssertEqual(item?.isAvailable, true)
        // Upsert keeps the id and the fields not given.
        let again = try db.write { try $0.upsertItem(ItemInput(externalID: "sku-a", title: "Red lipstick 2")) }
        XCTAssertEqual(again, 1)
        let updated = try db.read { try $0.item(id: 1) }
        XCTAssertEqual(updated?.title, "Red lipstick 2")
        XCTAssertEqual(updated?.text, "matte")
        XCTAssertEqual(try db.read { try $0.user(externalID: "alice")?.attributesJSON }, #"{"age":30}"#)
        XCTAssertNil(try db.read { try $0.item(externalID: "nope") })
    }

    func testWriteRollsBackWhenTheClosureThrows() throws {
        let db = try makeDatabase()
        struct Boom: Error {}
        XCTAssertThrowsError(try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "x"))
            throw Boom()
        })
        XCTAssertEqual(try db.stats().items, 0)
        XCTAssertEqual(try db.read { try $0.itemCount() }, 0)
        // The id counter was rolled back too: the next item still gets id 1.
        XCTAssertEqual(try db.write { try $0.upsertItem(ItemInput(externalID: "y")) }, 1)
    }

    func testEventsAreKeptInTimeOrderPerUserAndNumberedGlobally() throws {
        let db = try makeDatabase()
        try db.write { tx in
            let u = try tx.upsertUser(externalID: "u")
            let v = try tx.upsertUser(externalID: "v")
            let items = try (0..<5).map { try tx.upsertItem(ItemInput(externalID: "i\($0)")) }
            // Written out of time order on purpose.
            try tx.appendEvent(user: u, item: items[2], timestamp: 300)
            try tx.appendEvent(user: v, item: items[0], timestamp: 50, type: "click")
            try tx.appendEvent(user: u, item: items[0], timestamp: 100, type: "purchase", value: 19.99)
            try tx.appendEvent(user: u, item: items[1], timestamp: 200)
            try tx.appendEvent(user: v, item: items[4], timestamp: 60)
        }
        let (all, last2, recent, seqs) = try db.read { tx in
            (try tx.events(user: 1), try tx.events(user: 1, last: 2), try tx.recentItems(user: 1, last: 10),
             try { () -> [UInt64] in var s: [UInt64] = []; try tx.forEachEvent(after: 2) { s.append($0.sequence); return true }; return s }())
        }
        XCTAssertEqual(all.map(\.timestamp), [100, 200, 300])
        XCTAssertEqual(all.map(\.item), [1, 2, 3])
        XCTAssertEqual(all[0].type, "purchase")
        XCTAssertEqual(all[0].value, 19.99)
        XCTAssertEqual(all[1].type, "interaction")
        XCTAssertNil(all[1].value)
        XCTAssertEqual(last2.map(\.timestamp), [200, 300])
        XCTAssertEqual(recent, [1, 2, 3])
        XCTAssertEqual(seqs, [3, 4, 5])
        XCTAssertEqual(try db.read { try $0.recentItems(user: 2, last: 1) }, [5])
        XCTAssertEqual(try db.read { try $0.events(user: 2).map(\.type) }, ["click", "interaction"])
        XCTAssertEqual(try db.read { try $0.eventVersion() }, 5)
        XCTAssertEqual(try db.read { try $0.recentItems(user: 99, last: 5) }, [])
    }

    func testAppendEventRejectsUnknownIDsAndNonFiniteValues() throws {
        let db = try makeDatabase()
        try db.write { tx in
            try tx.upsertUser(externalID: "u")
            try tx.upsertItem(ItemInput(externalID: "i"))
        }
        XCTAssertThrowsError(try db.write { try $0.appendEvent(user: 1, item: 7, timestamp: 0) }) {
            XCTAssertEqual($0 as? RecDBError, .unknownItem("#7"))
        }
        XCTAssertThrowsError(try db.write { try $0.appendEvent(user: 3, item: 1, timestamp: 0) }) {
            XCTAssertEqual($0 as? RecDBError, .unknownUser("#3"))
        }
        XCTAssertThrowsError(try db.write { try $0.appendEvent(user: 1, item: 1, timestamp: 0, value: .nan) })
        XCTAssertEqual(try db.stats().interactions, 0)
    }

    func testVectorsInF32AndF16WithZeroCopyViewsAndChecks() throws {
        let db = try makeDatabase()
        let values: [Float] = [0.5, -1.25, 3.0, 0.1]
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "a"))
            try tx.upsertItem(ItemInput(externalID: "b"))
            try tx.createSpace(EmbeddingSpace(name: "full", kind: .item, dimension: 4, dtype: .f32))
            try tx.createSpace(EmbeddingSpace(name: "half", kind: .item, dimension: 4, dtype: .f16))
            try tx.createSpace(EmbeddingSpace(name: "unit", kind: .item, dimension: 4, normalized: true))
            try tx.putVector(space: "full", entity: 1, values)
            try tx.putVector(space: "half", entity: 1, values)
            try tx.putVector(space: "half", entity: 2, values.map { $0 * 2 })
            try tx.putVector(space: "unit", entity: 1, [3, 0, 4, 0])
        }
        try db.read { tx in
            XCTAssertEqual(try tx.vector(space: "full", entity: 1), values)
            let half = try tx.vector(space: "half", entity: 1)!
            for (a, b) in zip(half, values) { XCTAssertEqual(a, b, accuracy: 1e-3) }
            XCTAssertNotEqual(half[3], values[3])  // 0.1 is not exact in f16: proves it was stored as f16
            // The borrowed view reads LMDB's bytes directly: 2 bytes per component for f16.
            let bytes = try tx.withVector(space: "half", entity: 1) { $0.raw.count }
            XCTAssertEqual(bytes, 8)
            XCTAssertEqual(try tx.withVector(space: "full", entity: 1) { $0[1] }, -1.25)
            XCTAssertEqual(try tx.vector(space: "unit", entity: 1), [0.6, 0, 0.8, 0])
            XCTAssertNil(try tx.vector(space: "full", entity: 2))
            XCTAssertEqual(try tx.space(named: "half")?.count, 2)
            XCTAssertEqual(try tx.vectorChanges(space: "half", after: 1), [2])
        }
        XCTAssertThrowsError(try db.write { try $0.putVector(space: "full", entity: 1, [1, 2, 3]) }) {
            XCTAssertEqual($0 as? RecDBError, .dimensionMismatch(space: "full", expected: 4, got: 3))
        }
        XCTAssertThrowsError(try db.write { try $0.putVector(space: "full", entity: 1, [1, .nan, 3, 4]) })
        XCTAssertThrowsError(try db.write { try $0.putVector(space: "full", entity: 9, [1, 2, 3, 4]) }) {
            XCTAssertEqual($0 as? RecDBError, .unknownItem("#9"))
        }
        XCTAssertThrowsError(try db.write { try $0.putVector(space: "nope", entity: 1, [1]) }) {
            XCTAssertEqual($0 as? RecDBError, .unknownSpace("nope"))
        }
        XCTAssertEqual(try db.read { try $0.space(named: "full")?.count }, 1)
    }

    func testProfilesAndAvailability() throws {
        let db = try makeDatabase()
        try db.write { tx in
            let u = try tx.upsertUser(externalID: "u")
            try tx.putProfile(user: u, text: "Likes red lipstick.", timestamp: 42)
            let i = try tx.upsertItem(ItemInput(externalID: "i"))
            try tx.setAvailability(item: i, false)
        }
        XCTAssertEqual(try db.read { try $0.profile(user: 1) }, Profile(user: 1, text: "Likes red lipstick.", updatedAt: 42))
        XCTAssertEqual(try db.read { try $0.isServable(item: 1) }, false)
        try db.write { try $0.setAvailability(item: 1, true) }
        XCTAssertEqual(try db.read { try $0.isServable(item: 1) }, true)
        try db.write { try $0.deleteItem(id: 1) }
        XCTAssertEqual(try db.read { try $0.isServable(item: 1) }, false)
        XCTAssertThrowsError(try db.write { try $0.putProfile(user: 5, text: "x") })
    }

    func testAWriteRunsOnceAndAnOutgrownMapIsARolledBackError() throws {
        // A 256 KiB map with 1 MiB of headroom per write; the write below needs about 3 MB.
        let db = try Database(path: path("db"), options: .init(initialMapSize: 256 << 10, writeHeadroom: 1 << 20))
        var runs = 0
        func bigWrite(_ tx: WriteTransaction) throws {
            runs += 1
            if try tx.space(named: "big") == nil { try tx.createSpace(EmbeddingSpace(name: "big", kind: .item, dimension: 256)) }
            for i in 0..<2_000 {
                let id = try tx.upsertItem(ItemInput(externalID: "item-\(i)", title: String(repeating: "t", count: 100)))
                try tx.putVector(space: "big", entity: id, [Float](repeating: Float(i), count: 256))
            }
        }
        let before = db.environment.mapSize
        XCTAssertThrowsError(try db.write(bigWrite)) { error in
            guard case let RecDBError.mapFull(path: _, mapSize: size) = error else { return XCTFail("expected .mapFull, got \(error)") }
            XCTAssertGreaterThan(size, before)
        }
        XCTAssertEqual(runs, 1, "the closure must never run twice")
        XCTAssertEqual(try db.stats().items, 0, "the outgrown transaction is rolled back whole")
        XCTAssertNil(try db.read { try $0.space(named: "big") })
        XCTAssertGreaterThan(db.environment.mapSize, before)
        // Reserved room: the same write now succeeds in one run.
        try db.reserve(bytes: 8 << 20)
        try db.write(bigWrite)
        XCTAssertEqual(runs, 2)
        XCTAssertEqual(try db.stats().items, 2_000)
        XCTAssertEqual(try db.read { try $0.vector(space: "big", entity: 2_000)?.first }, 1_999)
        XCTAssertTrue(try db.verify().isClean)
    }

    func testWritesMakeRoomBeforeTheyBegin() throws {
        // With the default headroom a write much bigger than the first map never fails: room is made first.
        let db = try makeDatabase(initialMapSize: 256 << 10)
        var runs = 0
        try db.write { tx in
            runs += 1
            try tx.createSpace(EmbeddingSpace(name: "big", kind: .item, dimension: 256))
            for i in 0..<2_000 {
                let id = try tx.upsertItem(ItemInput(externalID: "item-\(i)"))
                try tx.putVector(space: "big", entity: id, [Float](repeating: Float(i), count: 256))
            }
        }
        XCTAssertEqual(runs, 1)
        XCTAssertGreaterThanOrEqual(db.environment.mapSize, 256 << 20)
        XCTAssertEqual(try db.stats().items, 2_000)
    }

    func testReadOnlyOpenAndErrors() throws {
        do { _ = try makeDatabase() }
        let ro = try Database(path: path("db"), options: .init(readOnly: true, create: false))
        XCTAssertEqual(try ro.stats().items, 0)
        XCTAssertThrowsError(try ro.write { _ in }) { XCTAssertEqual($0 as? RecDBError, .readOnly(path: self.path("db"))) }
        XCTAssertThrowsError(try Database(path: path("missing"), options: .init(create: false))) {
            guard case .notADatabase = $0 as? RecDBError else { return XCTFail("\($0)") }
        }
        try writeFile("file", "x")
        XCTAssertThrowsError(try Database(path: path("file"))) {
            guard case .notADatabase = $0 as? RecDBError else { return XCTFail("\($0)") }
        }
    }

    func testVerifyFindsBrokenInvariants() throws {
        let db = try makeDatabase()
        try db.write { tx in
            let u = try tx.upsertUser(externalID: "u")
            let i = try tx.upsertItem(ItemInput(externalID: "i"))
            try tx.appendEvent(user: u, item: i, timestamp: 1)
        }
        XCTAssertTrue(try db.verify().isClean)
        // Break the item id map behind the API's back.
        _ = try db.write { tx in try tx.raw.delete(.itemIDs, key: Array("i".utf8)) }
        let report = try db.verify()
        XCTAssertFalse(report.isClean)
        XCTAssertTrue(report.problems.contains { $0.contains("not mapped back by item_ids") }, "\(report.problems)")
    }

    func testBackupIsAConsistentUsableCopy() throws {
        let db = try makeDatabase()
        try db.write { tx in
            for i in 0..<100 { try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "t\(i)")) }
        }
        try db.backup(to: path("copy"))
        let copy = try Database(path: path("copy"), options: .init(readOnly: true, create: false))
        XCTAssertEqual(try copy.stats().items, 100)
        XCTAssertEqual(try copy.read { try $0.item(externalID: "i42")?.title }, "t42")
        XCTAssertThrowsError(try db.backup(to: path("copy")))  // not empty
    }

    func testExportRoundTripsThroughImport() throws {
        let db = try makeDatabase()
        let csv = try writeFile("in.csv", "user,item,timestamp,type,value\nu1,\"a,b\",10,click,\nu1,c,20,purchase,2.5\nu2,c,5,click,\n")
        try db.importInteractions(from: csv)
        let out = path("out.csv")
        XCTAssertEqual(try db.exportInteractions(to: out, format: .csv), 3)
        let db2 = try makeDatabase("db2")
        try db2.importInteractions(from: out)
        let events = try db2.read { tx in try tx.events(user: try tx.userID(for: "u1")!) }
        XCTAssertEqual(events.map(\.timestamp), [10, 20])
        XCTAssertEqual(events.map(\.type), ["click", "purchase"])
        XCTAssertEqual(events.map(\.value), [nil, 2.5])
        XCTAssertEqual(try db2.read { try $0.item(id: events[0].item)?.externalID }, "a,b")
        let jsonl = path("out.jsonl")
        XCTAssertEqual(try db.exportInteractions(to: jsonl, format: .jsonl), 3)
        let db3 = try makeDatabase("db3")
        XCTAssertEqual(try db3.importInteractions(from: jsonl).events, 3)
        XCTAssertEqual(try db.exportItems(to: path("items.jsonl"), format: .jsonl), 2)
    }
}
