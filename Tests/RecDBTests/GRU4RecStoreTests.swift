import Foundation
import XCTest
import Learn
@testable import RecDB

/// GRU4Rec through the store: train (text+id items), eval, serve the current history with filters,
/// cold-start items through the adapter, resume on new items and events. Item i is followed by i+1 (mod 40).
final class GRU4RecStoreTests: DatabaseTestCase {
    func fill(_ db: Database) throws {
        var rng = SeededGenerator(seed: 7)
        try db.write { tx in
            for i in 1...40 {
                try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)", attributesJSON: #"{"parity": "\#(i % 2)"}"#))
            }
            try tx.createSpace(EmbeddingSpace(name: "text", kind: .item, dimension: 12))
            for i in 1...40 { try tx.putVector(space: "text", entity: UInt32(i), (0..<12).map { _ in Float.random(in: -1...1, using: &rng) }) }
            for u in 0..<300 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                var item = Int.random(in: 1...40, using: &rng)
                for t in 0..<Int.random(in: 6...14, using: &rng) {
                    try tx.appendEvent(user: user, item: UInt32(item), timestamp: Int64(t))
                    item = item % 40 + 1
                }
            }
        }
    }

    func configuration(epochs: Int = 8) -> ModelConfiguration {
        var c = ModelConfiguration(architecture: .gru4rec, items: .textAndID)
        c.hiddenSize = 16; c.gruHiddenSize = 24; c.maxLength = 10; c.batchSize = 64; c.maxEpochs = epochs
        c.learningRate = 5e-3; c.dropout = 0.1; c.seed = 1
        return c
    }

    func testTrainEvalServeColdStartAndResume() throws {
        let db = try makeDatabase()
        try fill(db)
        var request = TrainingRequest(model: "gru", configuration: configuration())
        request.textSpace = "text"
        let outcome = try db.train(request)
        XCTAssertGreaterThan(outcome.test.recall10, 0.5, "the +1 pattern is easy: \(outcome.test)")
        let evaluated = try db.evaluate(model: "gru")
        XCTAssertEqual(evaluated.test, outcome.test, "eval reproduces the stored version's metrics")
        let summary = try XCTUnwrap(db.models().first)
        XCTAssertEqual(summary.versions.first?.configuration.architecture, .gru4rec)
        XCTAssertEqual(summary.versions.first?.configuration.resolvedGRUHiddenSize, 24)

        // The current history, events written after training included.
        _ = try db.write { tx in
            let u = try tx.upsertUser(externalID: "probe")
            for (t, i) in [17, 18, 19].enumerated() { try tx.appendEvent(user: u, item: UInt32(i), timestamp: Int64(t)) }
        }
        XCTAssertEqual(try db.recommend(user: "probe", k: 1).items.first?.item, "i20")
        _ = try db.write { tx in try tx.appendEvent(user: tx.userID(for: "probe")!, item: 20, timestamp: 100) }
        XCTAssertEqual(try db.recommend(user: "probe", k: 1).items.first?.item, "i21")
        let odd = try db.recommend(sequence: ["i3", "i4", "i5"], k: 3, options: RecommendOptions(filter: SearchFilter(attributes: ["parity": "1"])))
        XCTAssertEqual(odd.items.count, 3)
        XCTAssertTrue(odd.items.allSatisfy { Int($0.item.dropFirst())! % 2 == 1 }, "\(odd.items)")

        // Cold start: an item with only a text vector is recommendable at once (adapter(text)).
        let twin = try db.read { try $0.vector(space: "text", entity: 7)! }
        try db.write { tx in
            let id = try tx.upsertItem(ItemInput(externalID: "fresh", title: "Fresh item"))
            try tx.putVector(space: "text", entity: id, twin)
        }
        XCTAssertNotNil(try db.read { tx in try tx.vector(space: "gru@1", entity: tx.itemID(for: "fresh")!) })
        let rec = try db.recommend(user: "u3", k: 1, options: RecommendOptions(filter: SearchFilter(allowItems: ["fresh"])))
        XCTAssertEqual(rec.items.map(\.item), ["fresh"])

        // Resume on the grown catalogue.
        _ = try db.write { tx in
            let u = try tx.upsertUser(externalID: "late")
            for (t, i) in [38, 39, 40, 41, 38, 39].enumerated() { try tx.appendEvent(user: u, item: UInt32(i), timestamp: Int64(t)) }
        }
        var again = TrainingRequest(model: "gru", configuration: configuration(epochs: 2))
        again.textSpace = "text"; again.resume = true
        let resumed = try db.train(again)
        XCTAssertEqual(resumed.version, 2)
        XCTAssertEqual(resumed.items, 41)
        XCTAssertEqual(try db.read { try $0.modelVersion("gru") }.resumedFrom, 1)
        XCTAssertEqual(try db.recommend(user: "late", k: 3).source, .sequence)
        var other = again; other.configuration.architecture = .sasrec
        XCTAssertThrowsError(try db.train(other), "resume needs the same architecture")
        XCTAssertTrue(try db.verify().isClean)
    }

    /// rdbctl: `--arch gru4rec` takes GRU4Rec's defaults (also under a --config file that leaves the
    /// architecture open), `--gru-hidden` sets the state size, and `models` shows it.
    func testCommandLine() throws {
        let db = try makeDatabase()
        try fill(db)
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"), "rdbctl is built with the tests")
        let config = path("run.json")
        try Data(#"{"hiddenSize": 16, "maxLength": 10, "batchSize": 64}"#.utf8).write(to: URL(fileURLWithPath: config))
        let (status, out, err) = try runProcess(rdbctl, ["train", path("db"), "--model", "g", "--arch", "gru4rec", "--config", config,
                                                         "--gru-hidden", "20", "--epochs", "1", "--threads", "1", "--json"])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(out.contains("\"version\":1") || out.contains("\"version\" : 1"), out)
        let c = try XCTUnwrap(db.models().first?.versions.first?.configuration)
        XCTAssertEqual(c.architecture, .gru4rec)
        XCTAssertEqual(c.blocks, 1); XCTAssertEqual(c.dropout, 0.3); XCTAssertEqual(c.gruHiddenSize, 20); XCTAssertEqual(c.hiddenSize, 16)
        let (_, listing, _) = try runProcess(rdbctl, ["models", path("db")])
        XCTAssertTrue(listing.contains("gru4rec(H=20, L=1) id d=16"), listing)
        let (recommendStatus, recommended, recommendErr) = try runProcess(rdbctl, ["recommend", path("db"), "u1", "-k", "3", "--model", "g"])
        XCTAssertEqual(recommendStatus, 0, recommendErr)
        XCTAssertFalse(recommended.isEmpty)
    }
}
