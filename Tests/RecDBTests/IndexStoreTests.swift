import Foundation
import XCTest
@testable import RecDB

/// Space indexes stored in LMDB: build, persistence, corruption, live catch-up, filters.
final class IndexStoreTests: DatabaseTestCase {
    /// 300 items in 6 clusters of dimension 8; item i belongs to cluster i % 6.
    func makeSpace(_ db: Database, items: Int = 300) throws {
        var rng = SeededGenerator(seed: 5)
        var centers: [[Float]] = []
        for _ in 0..<6 { centers.append((0..<8).map { _ in Float.random(in: -1...1, using: &rng) }) }
        try db.write { tx in
            try tx.createSpace(EmbeddingSpace(name: "emb", kind: .item, dimension: 8, metric: .cosine))
            for i in 1...items {
                let id = try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)",
                                                     attributesJSON: #"{"cluster": "\#(i % 6)", "tags": ["t\#(i % 2)"]}"#))
                let v = centers[i % 6].map { $0 + Float.random(in: -0.1...0.1, using: &rng) }
                try tx.putVector(space: "emb", entity: id, v)
            }
        }
    }

    func cosine(_ a: [Float], _ b: [Float]) -> Float {
        let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
        let na = a.reduce(0) { $0 + $1 * $1 }.squareRoot(), nb = b.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return dot / (na * nb)
    }

    func testFlatIndexGivesExactCosineNeighboursAndSurvivesReopen() throws {
        var db: Database? = try makeDatabase()
        try makeSpace(db!)
        let info = try db!.buildIndex(space: "emb")
        XCTAssertEqual(info.factory, "Flat")
        XCTAssertEqual(info.vectors, 300)
        let results = try db!.similarItems(to: "i7", k: 10, space: "emb")
        // Brute force over the stored vectors. Scores are compared with a tolerance, so that two items whose
        // cosines differ only in the last float bits may come in either order.
        let (expected, exact) = try db!.read { tx -> ([(String, Float)], [String: Float]) in
            let q = try tx.vector(space: "emb", entity: 7)!
            var scored: [(String, Float)] = []
            for i in 1...300 where i != 7 { scored.append(("i\(i)", cosine(q, try tx.vector(space: "emb", entity: UInt32(i))!))) }
            return (Array(scored.sorted { $0.1 > $1.1 }.prefix(10)), Dictionary(uniqueKeysWithValues: scored))
        }
        XCTAssertEqual(results.count, 10)
        for (got, want) in zip(results, expected) {
            XCTAssertEqual(got.score, want.1, accuracy: 1e-5)          // the k best scores, in order
            XCTAssertEqual(got.score, exact[got.item]!, accuracy: 1e-5)  // and each is that item's true cosine
        }
        XCTAssertFalse(results.contains { $0.item == "i7" })
        XCTAssertEqual(results.first?.title, "Item \(Int(results[0].item.dropFirst())!)")
        XCTAssertTrue(results.allSatisfy { Int($0.item.dropFirst())! % 6 == 1 })  // same cluster as i7

        db = nil  // close
        let reopened = try Database(path: path("db"))
        XCTAssertEqual(try reopened.similarItems(to: "i7", k: 10, space: "emb"), results)
        XCTAssertEqual(try reopened.read { try $0.indexes() }.map(\.space), ["emb"])
    }

    func testHNSWAndIVFFactoriesWork() throws {
        let db = try makeDatabase()
        try makeSpace(db)
        for factory in ["HNSW32", "IVF4,Flat"] {
            try db.buildIndex(space: "emb", factory: factory)
            let r = try db.similarItems(to: "i12", k: 5, space: "emb")
            XCTAssertEqual(r.count, 5, factory)
            XCTAssertTrue(r.allSatisfy { Int($0.item.dropFirst())! % 6 == 0 }, "\(factory): \(r.map(\.item))")
        }
        XCTAssertThrowsError(try db.buildIndex(space: "emb", factory: "NoSuchIndex")) { error in
            guard case RecDBError.index(let message) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
        }
    }

    func testACorruptedBlobIsRefusedClearlyAndCanBeRebuilt() throws {
        var db: Database? = try makeDatabase()
        try makeSpace(db!)
        try db!.buildIndex(space: "emb")
        try db!.write { tx in
            var blob = try tx.raw.get(.indexes, key: IndexKeys.blob(space: "emb"))!
            blob[blob.count / 2] ^= 0xFF
            try tx.raw.put(.indexes, key: IndexKeys.blob(space: "emb"), value: blob)
        }
        db = nil
        let reopened = try Database(path: path("db"))
        XCTAssertThrowsError(try reopened.similarItems(to: "i1", k: 3, space: "emb")) { error in
            guard case RecDBError.index(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("damaged"), message)
            XCTAssertTrue(message.contains("rdbctl index build"), message)
        }
        // The database is otherwise usable, verify names the damaged index, and a rebuild repairs it.
        XCTAssertEqual(try reopened.stats().items, 300)
        let damaged = try reopened.verify()
        XCTAssertEqual(damaged.problems.count, 1, "\(damaged.problems)")
        XCTAssertTrue(damaged.problems.first?.hasPrefix("index of emb: stored bytes") == true, "\(damaged.problems)")
        try reopened.buildIndex(space: "emb")
        XCTAssertEqual(try reopened.similarItems(to: "i1", k: 3, space: "emb").count, 3)
        XCTAssertTrue(try reopened.verify().isClean)
    }

    func testVectorsWrittenAfterTheBuildAreFoundAndDeletedItemsNeverAre() throws {
        var db: Database? = try makeDatabase()
        try makeSpace(db!)
        try db!.buildIndex(space: "emb", factory: "HNSW32")
        let q = try db!.read { try $0.vector(space: "emb", entity: 5)! }
        // A new item placed exactly on item 5 must come first, without a rebuild.
        try db!.write { tx in
            let id = try tx.upsertItem(ItemInput(externalID: "new", title: "Brand new"))
            try tx.putVector(space: "emb", entity: id, q)
        }
        XCTAssertEqual(try db!.similarItems(to: "i5", k: 3, space: "emb").first?.item, "new")
        // Deleted and unavailable items never come back.
        try db!.write { tx in
            try tx.deleteItem(id: try tx.itemID(for: "new")!)
            try tx.setAvailability(item: try tx.itemID(for: "i11")!, false)
        }
        let after = try db!.similarItems(to: "i5", k: 60, space: "emb")
        XCTAssertFalse(after.contains { $0.item == "new" || $0.item == "i11" })
        XCTAssertEqual(after.count, 60)
        // After reopening, the stored blob (built before "new") catches up from the vector log.
        _ = try db!.write { tx in try tx.upsertItem(ItemInput(externalID: "new")) }  // revive
        db = nil
        let reopened = try Database(path: path("db"))
        XCTAssertEqual(try reopened.similarItems(to: "i5", k: 1, space: "emb").first?.item, "new")
    }

    func testFiltersAndNearest() throws {
        let db = try makeDatabase()
        try makeSpace(db)
        try db.buildIndex(space: "emb")
        let q = try db.read { try $0.vector(space: "emb", entity: 1)! }
        let inCluster = try db.nearest(to: q, k: 5, space: "emb", filter: SearchFilter(attributes: ["cluster": "2"]))
        XCTAssertEqual(inCluster.count, 5)
        XCTAssertTrue(inCluster.allSatisfy { Int($0.item.dropFirst())! % 6 == 2 })
        let tagged = try db.nearest(to: q, k: 300, space: "emb", filter: SearchFilter(attributes: ["tags": "t0"]))
        XCTAssertEqual(tagged.count, 150)
        let allowed = try db.nearest(to: q, k: 10, space: "emb", filter: SearchFilter(allowItems: ["i2", "i3", "i200"]))
        XCTAssertEqual(Set(allowed.map(\.item)), ["i2", "i3", "i200"])
        let excluded = try db.nearest(to: q, k: 3, space: "emb", filter: SearchFilter(excludeItems: ["i1"]))
        XCTAssertFalse(excluded.contains { $0.item == "i1" })
        XCTAssertEqual(try db.nearest(to: [q, q], k: 2, space: "emb").count, 2)
        XCTAssertThrowsError(try db.nearest(to: [1, 2], k: 3, space: "emb")) {
            XCTAssertEqual($0 as? RecDBError, .dimensionMismatch(space: "emb", expected: 8, got: 2))
        }
        XCTAssertThrowsError(try db.similarItems(to: "i1", k: 3, space: "nope")) { XCTAssertEqual($0 as? RecDBError, .unknownSpace("nope")) }
        _ = try db.write { tx in try tx.dropIndex(space: "emb") }
        XCTAssertThrowsError(try db.similarItems(to: "i1", k: 3, space: "emb")) {
            guard case .unknownIndex = $0 as? RecDBError else { return XCTFail("\($0)") }
        }
    }
}
