import Foundation
import XCTest
import RecDB  // public API only, as an app sees it

// README-EXAMPLE-BEGIN
func readmeExample(directory: String) throws -> [String] {
    let db = try Database(path: directory)

    // Write: one transaction, committed when the closure returns, rolled back if it throws.
    try db.write { tx in
        let lipstick = try tx.upsertItem(ItemInput(externalID: "sku-1", title: "Red lipstick",
                                                   attributesJSON: #"{"category": "lips"}"#))
        let mascara = try tx.upsertItem(ItemInput(externalID: "sku-2", title: "Black mascara"))
        let alice = try tx.upsertUser(externalID: "alice")
        try tx.appendEvent(user: alice, item: lipstick, timestamp: 1_700_000_000, type: "view")
        try tx.appendEvent(user: alice, item: mascara, timestamp: 1_700_000_060, type: "purchase", value: 12.5)
    }

    // Bulk import: all or nothing, errors name file and line.
    // try db.importInteractions(from: "events.csv")

    // Read: a consistent snapshot.
    return try db.read { tx in
        guard let alice = try tx.userID(for: "alice") else { return [] }
        return try tx.events(user: alice, last: 50).compactMap { try tx.item(id: $0.item)?.title }
    }
}
// README-EXAMPLE-END

final class ReadmeExampleTests: XCTestCase {
    func testTheReadmeExampleRunsAndIsWhatTheReadmeShows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try readmeExample(directory: dir), ["Red lipstick", "Black mascara"])

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
