import Foundation
import XCTest
@testable import RecDB

/// `schemas/` is the machine-readable contract of the file layout and the import formats.
final class SchemaTests: DatabaseTestCase {
    func loadJSON(_ relative: String) throws -> [String: Any] {
        let data = try Data(contentsOf: packageRoot.appendingPathComponent("schemas").appendingPathComponent(relative))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testEveryTableTheCodeOpensIsDescribedAndViceVersa() throws {
        let tables = try loadJSON("tables.json")
        XCTAssertEqual(tables["format_version"] as? Int, Database.formatVersion)
        let described = Set((tables["tables"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String })
        XCTAssertEqual(described, Set(Table.allCases.map(\.rawValue)))
    }

    /// The environment finds a table's handle by its ordinal: each table has its own, in `allCases` order.
    func testTableOrdinalsAreTheirPlacesInAllCases() {
        XCTAssertEqual(Table.allCases.map(\.ordinal), Array(0..<Table.allCases.count))
    }

    func testFixedSizeKeysAndValuesMatchWhatTheCodeWrites() throws {
        let tables = try loadJSON("tables.json")
        let byName = Dictionary(uniqueKeysWithValues: (tables["tables"] as! [[String: Any]]).map { ($0["name"] as! String, $0) })
        func declaredBytes(_ table: String, _ part: String) -> Int? { (byName[table]?[part] as? [String: Any])?["bytes"] as? Int }

        let db = try makeDatabase()
        try db.write { tx in
            let u = try tx.upsertUser(externalID: "u")
            let i = try tx.upsertItem(ItemInput(externalID: "i"))
            try tx.appendEvent(user: u, item: i, timestamp: 7, value: 1)
            try tx.createSpace(EmbeddingSpace(name: "s", kind: .item, dimension: 2))
            try tx.putVector(space: "s", entity: i, [1, 2])
        }
        try db.read { tx in
            for table in Table.allCases {
                let cursor = try tx.raw.cursor(table)
                var step = LMDBCursor.Move.first
                while let (k, v) = try cursor.move(step, { (Array($0), Array($1)) }) {
                    step = .next
                    if let bytes = declaredBytes(table.rawValue, "key") { XCTAssertEqual(k.count, bytes, "key of \(table)") }
                    if let bytes = declaredBytes(table.rawValue, "value") { XCTAssertEqual(v.count, bytes, "value of \(table)") }
                }
            }
        }
    }

    func testBundledSchemasAreExactlyTheFilesInSchemas() throws {
        let root = packageRoot.appendingPathComponent("schemas")
        let files = FileManager.default.enumerator(atPath: root.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".json") }
        XCTAssertEqual(Set(files), Set(BundledSchemas.files.keys), "run tools/bundle-schemas.sh")
        for file in files {
            let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            XCTAssertEqual(BundledSchemas.files[file].map { $0 + "\n" }, text, "\(file) changed: run tools/bundle-schemas.sh")
        }
    }

    func testSpaceRecordsConformToTheirSchema() throws {
        let db = try makeDatabase()
        try db.write { tx in
            var space = EmbeddingSpace(name: "s", kind: .user, dimension: 8, dtype: .f16, metric: .l2, provenance: "test")
            space.encoder = EncoderBinding(modelDirectory: "/m", template: "{title}")
            try tx.createSpace(space)
        }
        let raw = try db.read { try $0.raw.get(.spaces, key: Array("s".utf8)) }!
        let object = try JSONSerialization.jsonObject(with: Data(raw.dropLast(Seal.size)))  // the JSON before its checksum
        XCTAssertNil(try JSONSchema.bundled("space.schema.json").violation(of: object))
        // And the validator does reject what the schema forbids.
        var broken = object as! [String: Any]
        broken["dtype"] = "f64"
        XCTAssertEqual(try JSONSchema.bundled("space.schema.json").violation(of: broken), "$.dtype must be one of f32, f16, is f64")
    }

    func testValidatorCoversTheKeywordsTheSchemasUse() throws {
        let items = try JSONSchema.bundled("import/items.jsonl.schema.json")
        XCTAssertNil(items.violation(of: ["item": "a", "title": "x"]))
        XCTAssertNotNil(items.violation(of: ["title": "x"]))
        XCTAssertNotNil(items.violation(of: ["item": ["nested"]]))
        let embeddings = try JSONSchema.bundled("import/embeddings.json.schema.json")
        XCTAssertNil(embeddings.violation(of: ["u": [0.5, 1]]))
        XCTAssertEqual(embeddings.violation(of: ["u": [0.5, "x"]]), "$.u[1] must be number, is string")
        XCTAssertEqual(embeddings.violation(of: ["u": [Double]()]), "$.u needs at least 1 items, has 0")
        XCTAssertEqual(try JSONSchema.bundled("import/profiles.json.schema.json").violation(of: ["u": 3]), "$.u must be string, is integer")
    }
}
