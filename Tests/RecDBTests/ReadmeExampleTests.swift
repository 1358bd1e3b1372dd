import Foundation
import XCTest
import RecDB  // public API only, as an app sees it

// README-EXAMPLE-BEGIN
func readmeExample(directory: String) throws -> Recommendations {
    let db = try Database(path: directory)

    // Write: one transaction, committed when the closure returns, rolled back if it throws.
    try db.write { tx in
        let items = try (1...20).map { try tx.upsertItem(ItemInput(externalID: "sku-\($0)", title: "Product \($0)")) }
        for u in 1...50 {
            let user = try tx.upsertUser(externalID: "user-\(u)")
            for step in 0..<6 {  // everyone buys the catalogue in order, starting somewhere
                try tx.appendEvent(user: user, item: items[(u + step) % 20], timestamp: Int64(step), type: "purchase")
            }
        }
    }
    // Bulk imports are all or nothing, and their errors name file and line:
    // try db.importInteractions(from: "events.csv")

    // Train SASRec inside the store: a snapshot is read, the model trained, and the new version,
    // its item vectors and its index are committed in one transaction.
    var configuration = ModelConfiguration(architecture: .sasrec, items: .id)
    configuration.hiddenSize = 16
    configuration.maxEpochs = 5
    _ = try db.train(TrainingRequest(model: "shop", configuration: configuration))

    // Serve from the user's current history (events written after training count).
    return try db.recommend(user: "user-7", k: 3)
}
// README-EXAMPLE-END

final class ReadmeExampleTests: XCTestCase {
    /// Opt into the process-wide OpenBLAS set-up RecDB never does itself (see `Database.configureProcess()`).
    override class func setUp() { super.setUp(); Database.configureProcess() }
    func testTheReadmeExampleRunsAndIsWhatTheReadmeShows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try readmeExample(directory: dir)
        XCTAssertEqual(result.source, .sequence)
        XCTAssertEqual(result.items.count, 3)
        XCTAssertTrue(result.items.allSatisfy { $0.title?.hasPrefix("Product ") == true })

        // The README's Swift block must be this very code, so the documentation cannot rot.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let begin = try XCTUnwrap(source.range(of: "// README-EXAMPLE-BEGIN\n"))
        let end = try XCTUnwrap(source.range(of: "// README-EXAMPLE-END"))
        let example = String(source[begin.upperBound..<end.lowerBound])
        XCTAssertTrue(readme.contains("```swift\nimport RecDB\n\n" + example + "```"), "README.md's example differs from ReadmeExampleTests.swift")
    }
}
