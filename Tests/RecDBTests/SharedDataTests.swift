import Foundation
import XCTest
@testable import RecDB

/// The "must show" commands on the real Amazon Beauty data in ../shared (skipped without it).
final class SharedDataTests: DatabaseTestCase {
    func testBeautyImportThroughRdbctlReportsTheKnownCounts() throws {
        let beauty = sharedPath("data/amazon-beauty/Beauty.txt")
        guard FileManager.default.fileExists(atPath: beauty) else {
            throw XCTSkip("../shared/data/amazon-beauty is absent: the Beauty import check needs the shared data set")
        }
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"))
        let db = path("beauty")
        let commands: [[String]] = [
            ["init", db],
            ["import", "interactions", db, beauty, "--format", "sequences"],
            ["import", "items", db, sharedPath("data/amazon-beauty/beauty_items.tsv"), "--format", "tsv", "--id-column", "item_id", "--title-column", "title"],
            ["import", "embeddings", db, sharedPath("emb/beauty_minilm.npy"), "--space", "minilm", "--kind", "item"],
        ]
        for command in commands {
            let (status, _, err) = try runProcess(rdbctl, command)
            XCTAssertEqual(status, 0, "\(command): \(err)")
        }
        let (status, out, err) = try runProcess(rdbctl, ["stats", db, "--json"])
        XCTAssertEqual(status, 0, err)
        let stats = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        XCTAssertEqual(stats["users"] as? Int, 22_363)
        XCTAssertEqual(stats["items"] as? Int, 12_101)
        XCTAssertEqual(stats["interactions"] as? Int, 198_502)
        let spaces = try XCTUnwrap(stats["spaces"] as? [[String: Any]])
        XCTAssertEqual(spaces.count, 1)
        XCTAssertEqual(spaces[0]["name"] as? String, "minilm")
        XCTAssertEqual(spaces[0]["kind"] as? String, "item")
        XCTAssertEqual(spaces[0]["dim"] as? Int, 384)
        XCTAssertEqual(spaces[0]["count"] as? Int, 12_101)

        // Item "1" of the sequence file carries its title and its MiniLM vector (row 1 of the .npy).
        let database = try Database(path: db, options: .init(readOnly: true, create: false))
        try database.read { tx in
            let id = try XCTUnwrap(tx.itemID(for: "1"))
            XCTAssertNotNil(try tx.item(id: id)?.title)
            let v = try XCTUnwrap(tx.vector(space: "minilm", entity: id))
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(norm, 1, accuracy: 1e-4)  // MiniLM vectors are L2-normalised
        }
        XCTAssertTrue(try database.verify().isClean)
    }
}
