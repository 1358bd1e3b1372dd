import XCTest
@testable import Learn

/// schemas/model-configuration.schema.json against the Codable configuration.
final class ConfigurationTests: XCTestCase {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func schema() throws -> [String: Any] {
        let url = Self.packageRoot.appendingPathComponent("schemas/model-configuration.schema.json")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    func testSchemaPropertiesAreTheCodableKeys() throws {
        let s = try schema()
        let props = s["properties"] as! [String: Any]
        XCTAssertEqual(Set(props.keys), Set(ModelConfiguration.CodingKeys.allCases.map(\.stringValue)))
        let distill = ((s["$defs"] as! [String: Any])["distillation"] as! [String: Any])["properties"] as! [String: Any]
        XCTAssertEqual(Set(distill.keys), Set(DistillationConfiguration.CodingKeys.allCases.map(\.stringValue)))
    }

    func testSchemaDefaultsAndEnumsMatchTheCode() throws {
        let s = try schema()
        let props = s["properties"] as! [String: [String: Any]]
        // The default configuration, encoded, equals the schema defaults (null for absent optionals).
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ModelConfiguration())) as! [String: Any]
        for (key, p) in props {
            let def = p["default"]
            let value = encoded[key]
            if def is NSNull { XCTAssertNil(value, key); continue }
            XCTAssertEqual("\(def!)", "\(value!)", "default of \(key)")
        }
        XCTAssertEqual(props["architecture"]!["enum"] as! [String], ModelConfiguration.Architecture.allCases.map(\.rawValue))
        XCTAssertEqual(props["items"]!["enum"] as! [String], ModelConfiguration.ItemRepresentation.allCases.map(\.rawValue))
        XCTAssertEqual(props["split"]!["enum"] as! [String], ModelConfiguration.Split.allCases.map(\.rawValue))
        let d = ((s["$defs"] as! [String: Any])["distillation"] as! [String: Any])["properties"] as! [String: [String: Any]]
        XCTAssertEqual(d["pooling"]!["enum"] as! [String], DistillationConfiguration.Pooling.allCases.map(\.rawValue))
        XCTAssertEqual(d["loss"]!["enum"] as! [String], DistillationConfiguration.Loss.allCases.map(\.rawValue))
        XCTAssertEqual(d["profileTargets"]!["enum"] as! [String], DistillationConfiguration.ProfileTargets.allCases.map(\.rawValue))
        let dEncoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(DistillationConfiguration())) as! [String: Any]
        for (key, p) in d where !(p["default"] is NSNull) {
            XCTAssertEqual("\(p["default"]!)", "\(dEncoded[key]!)", "distillation default of \(key)")
        }
    }

    func testDecodingFillsDefaultsAndRoundTrips() throws {
        let c = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"architecture":"bert4rec","items":"text+id","seed":7}"#.utf8))
        XCTAssertEqual(c.architecture, .bert4rec)
        XCTAssertEqual(c.items, .textAndID)
        XCTAssertEqual(c.seed, 7)
        XCTAssertEqual(c.hiddenSize, 64)
        XCTAssertEqual(c.resolvedHeads, 2)
        XCTAssertEqual(c.resolvedFeedForwardMultiplier, 4)
        XCTAssertEqual(c.resolvedActivation, .gelu)
        XCTAssertEqual(ModelConfiguration().resolvedActivation, .relu)
        var full = c
        full.distillation = DistillationConfiguration()
        full.gradientClipNorm = 5
        let back = try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(full))
        XCTAssertEqual(back, full)
        XCTAssertEqual(back.distillation?.profileRecommendationWeight, 1, "new configurations train the profile path")
        // A distillation configuration stored before the profile-path loss existed was trained without it.
        let old = try JSONDecoder().decode(DistillationConfiguration.self, from: Data(#"{"alpha":0.4,"distillEpochs":10}"#.utf8))
        XCTAssertEqual(old.profileRecommendationWeight, 0)
        XCTAssertEqual(old.alpha, 0.4)
    }

    func testValidationRejectsBadValues() {
        var c = ModelConfiguration(); c.hiddenSize = 10; c.heads = 3
        XCTAssertThrowsError(try c.validate())
        c = ModelConfiguration(); c.dropout = 1
        XCTAssertThrowsError(try c.validate())
        c = ModelConfiguration(); c.activation = "tanh"
        XCTAssertThrowsError(try c.validate())
        c = ModelConfiguration(); var d = DistillationConfiguration(); d.reconstructionLayer = 3; c.distillation = d
        XCTAssertThrowsError(try c.validate())
        XCTAssertNoThrow(try ModelConfiguration().validate())
    }
}
