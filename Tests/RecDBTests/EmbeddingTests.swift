import Foundation
import XCTest
@testable import RecDB
import Learn
import TestSupport

/// In-store text embedding: the `embed` pipeline (templates, batches, resume), embed-on-insert, and
/// the closed loop new title → vector → model space → recommendable. Encoder numerics are tested in
/// LearnTests; here a tiny synthetic BERT keeps the pipeline fast, and MiniLM runs when ../shared exists.
final class EmbeddingTests: DatabaseTestCase {
    /// A tiny random BERT sentence-transformers folder (see `TinyEncoder`).
    func makeTinyEncoder() throws -> String { try TinyEncoder.write(in: directory) }

    /// Overwrites element 3 of `tensor` in the folder's model.safetensors with NaN.
    func poison(_ folder: String, tensor: String) throws {
        let url = URL(fileURLWithPath: folder).appendingPathComponent("model.safetensors")
        var data = try Data(contentsOf: url)
        let file = try SafeTensorsFile(data: data, fileName: url.path)
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let at = 8 + headerLength + file.entries[tensor]!.dataRange.lowerBound + 3 * 4
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { data.replaceSubrange(at..<at + 4, with: $0) }
        try data.write(to: url)
    }

    func testNaNWeightsNameTheTensorAndFileAndLeaveNothingBehind() throws {
        let encoderPath = try makeTinyEncoder()
        try poison(encoderPath, tensor: "encoder.layer.0.intermediate.dense.weight")
        let db = try makeDatabase()
        _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "a", title: "red lipstick")) }
        let before = try fingerprint(db)
        XCTAssertThrowsError(try db.embed(EmbedRequest(space: "tiny", encoderDirectory: encoderPath))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("tensor 'encoder.layer.0.intermediate.dense.weight' holds a non-finite value (nan) at element 3"), text)
            XCTAssertTrue(text.contains(encoderPath + "/model.safetensors"), text)
        }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertNil(try db.read { try $0.space(named: "tiny") })
    }

    func testTextsWithoutLettersAreEmbeddedAndOnlyBlankOnesSkipped() throws {
        let encoderPath = try makeTinyEncoder()
        let db = try makeDatabase()
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "p", title: "!!!???...,,,;;;"))
            try tx.upsertItem(ItemInput(externalID: "m", title: "∑ ∫ √ ∞ ≈ ≠ ≤ ≥"))
            try tx.upsertItem(ItemInput(externalID: "w", title: " \t "))
            try tx.upsertItem(ItemInput(externalID: "n"))
        }
        var request = EmbedRequest(space: "tiny", encoderDirectory: encoderPath)
        request.template = "{title}. {category}"
        let outcome = try db.embed(request)
        XCTAssertEqual(outcome.embedded, 2)
        XCTAssertEqual(outcome.skipped, 2)  // whitespace-only title and no title: every field blank
        let encoder = try SentenceEncoder(modelDirectory: URL(fileURLWithPath: encoderPath))
        let stored = try XCTUnwrap(db.read { tx in try tx.vector(space: "tiny", entity: tx.itemID(for: "m")!) })
        for (x, y) in zip(stored, try encoder.encode(["∑ ∫ √ ∞ ≈ ≠ ≤ ≥."])[0]) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        XCTAssertEqual(TextTemplate.render("{title}", item: nil, profile: nil), nil)
        XCTAssertEqual(TextTemplate.render("just text", item: nil, profile: nil), "just text")
        XCTAssertEqual(TextTemplate.render("{profile}", item: nil, profile: "?!"), "?!")
    }

    func testEmbedFillsASpaceResumesAndEmbedsOnInsert() throws {
        let encoderPath = try makeTinyEncoder()
        let db = try makeDatabase()
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "a", title: "red lipstick", attributesJSON: #"{"category": "lips"}"#))
            try tx.upsertItem(ItemInput(externalID: "b", title: "blue gloss"))
            try tx.upsertItem(ItemInput(externalID: "c"))  // no title: no text, no vector
        }
        var request = EmbedRequest(space: "tiny", encoderDirectory: encoderPath)
        request.template = "{title} {category}"
        request.batchSize = 1
        var progress: [Int] = []
        request.progress = { done, _ in progress.append(done) }
        let outcome = try db.embed(request)
        XCTAssertEqual(outcome.embedded, 2)
        XCTAssertEqual(outcome.skipped, 1)
        XCTAssertEqual(outcome.dimension, 8)
        XCTAssertEqual(progress, [0, 1, 2])
        let encoder = try SentenceEncoder(modelDirectory: URL(fileURLWithPath: encoderPath))
        let expected = try encoder.encode(["red lipstick lips"])[0]
        let stored = try XCTUnwrap(db.read { try $0.vector(space: "tiny", entity: 1) })
        for (x, y) in zip(stored, expected) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        XCTAssertEqual(try db.read { try $0.space(named: "tiny")?.encoder?.template }, "{title} {category}")

        // Resume: nothing left to do.
        XCTAssertEqual(try db.embed(request).embedded, 0)
        // Embed on insert: a new item gets its vector in the same transaction.
        _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "d", title: "hair oil")) }
        let d = try XCTUnwrap(db.read { tx in try tx.vector(space: "tiny", entity: tx.itemID(for: "d")!) })
        for (x, y) in zip(d, try encoder.encode(["hair oil"])[0]) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        // A wrong folder is a clear error.
        XCTAssertThrowsError(try db.embed(EmbedRequest(space: "x", encoderDirectory: path("nowhere"))))
    }

    func testANewTitleBecomesRecommendableThroughTheEncoderAndTheAdapter() throws {
        let encoderPath = try makeTinyEncoder()
        let db = try makeDatabase()
        let words = ["red", "blue", "lip", "stick", "gloss", "hair", "oil"]
        try db.write { tx in
            for i in 1...30 { try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "\(words[i % 7]) \(words[(i / 7) % 7]) item")) }
            var g = SeededGenerator(seed: 3)
            for u in 0..<200 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                var item = Int.random(in: 1...30, using: &g)
                for t in 0..<8 { try tx.appendEvent(user: user, item: UInt32(item), timestamp: Int64(t)); item = item % 30 + 1 }
            }
        }
        _ = try db.embed(EmbedRequest(space: "tiny", encoderDirectory: encoderPath))
        var configuration = ModelConfiguration(architecture: .sasrec, items: .text)
        configuration.hiddenSize = 16; configuration.blocks = 1; configuration.maxLength = 8; configuration.maxEpochs = 2; configuration.batchSize = 64
        var request = TrainingRequest(model: "txt", configuration: configuration)
        request.textSpace = "tiny"
        _ = try db.train(request)
        // Only a title: embedded on insert, mapped by the adapter, indexed, recommendable.
        _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "brand-new", title: "new red gloss")) }
        XCTAssertNotNil(try db.read { tx in try tx.vector(space: "txt@1", entity: tx.itemID(for: "brand-new")!) })
        let rec = try db.recommend(user: "u1", k: 1, options: RecommendOptions(filter: SearchFilter(allowItems: ["brand-new"])))
        XCTAssertEqual(rec.items.map(\.item), ["brand-new"])
        XCTAssertTrue(try db.similarItems(to: "brand-new", k: 5, space: "txt@1").count == 5)
    }

    func testMiniLMEmbeddingsMatchTheSharedReferenceVectors() throws {
        let model = sharedPath("models/all-MiniLM-L6-v2")
        guard FileManager.default.fileExists(atPath: model + "/model.safetensors") else {
            throw XCTSkip("../shared/models/all-MiniLM-L6-v2 is absent")
        }
        let db = try makeDatabase()
        // Beauty item 1's title and its reference MiniLM vector (row 1 of beauty_minilm.npy).
        let tsv = try String(contentsOfFile: sharedPath("data/amazon-beauty/beauty_items.tsv"), encoding: .utf8)
        let line = tsv.split(separator: "\n").first { $0.hasPrefix("1\t") }!
        let title = String(line.split(separator: "\t", omittingEmptySubsequences: false)[2])
        _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "1", title: title)) }
        _ = try db.embed(EmbedRequest(space: "minilm", encoderDirectory: model))
        try db.importEmbeddings(from: sharedPath("emb/beauty_minilm.npy"), options: EmbeddingImportOptions(space: "reference", kind: .item))
        let (ours, reference) = try db.read { (try $0.vector(space: "minilm", entity: 1)!, try $0.vector(space: "reference", entity: 1)!) }
        let cosine = zip(ours, reference).reduce(0) { $0 + $1.0 * $1.1 }
        XCTAssertGreaterThan(cosine, 0.9999)
    }
}
