// Parity of the Swift sentence encoder with sentence-transformers (PyTorch) on all-MiniLM-L6-v2:
// token ids identical and cosine ≥ 0.9999 for 200 real Beauty titles
// (`../shared/fixtures/minilm_parity_beauty200.json`, produced by the reference pipeline with batch size 1).

import Foundation
import XCTest
@testable import Learn

/// Locates `../shared` relative to the package root (this file is Tests/LearnTests/…).
enum SentenceEncoderTestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = packageRoot.appendingPathComponent("../shared").standardizedFileURL
    static let miniLM = shared.appendingPathComponent("models/all-MiniLM-L6-v2")
    static let parityFixture = shared.appendingPathComponent("fixtures/minilm_parity_beauty200.json")

    static func requireMiniLM() throws {
        guard FileManager.default.fileExists(atPath: miniLM.appendingPathComponent("model.safetensors").path) else {
            throw XCTSkip("all-MiniLM-L6-v2 not found at \(miniLM.path) (../shared is absent); skipping encoder parity")
        }
    }
}

final class SentenceEncoderParityTests: XCTestCase {
    /// Opt into the process-wide OpenBLAS set-up the library never does itself (see `LearnEngine`).
    override class func setUp() { super.setUp(); LearnEngine.configureProcess() }
    struct Item { var text: String; var ids: [Int]; var embedding: [Float] }

    /// The encoder is loaded once for the whole class (90 MB of weights).
    static let loadedEncoder = Result { try SentenceEncoder(modelDirectory: SentenceEncoderTestPaths.miniLM) }
    func encoder() throws -> SentenceEncoder { try Self.loadedEncoder.get() }

    func fixture() throws -> [Item] {
        try SentenceEncoderTestPaths.requireMiniLM()
        guard FileManager.default.fileExists(atPath: SentenceEncoderTestPaths.parityFixture.path) else {
            throw XCTSkip("parity fixture not found at \(SentenceEncoderTestPaths.parityFixture.path); skipping")
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: SentenceEncoderTestPaths.parityFixture)) as! [String: Any]
        let items = json["items"] as! [[String: Any]]
        return items.map { item in
            Item(text: item["text"] as! String, ids: (item["input_ids"] as! [NSNumber]).map(\.intValue),
                 embedding: (item["embedding"] as! [NSNumber]).map(\.floatValue))
        }
    }

    func testConfigurationReadFromFolder() throws {
        try SentenceEncoderTestPaths.requireMiniLM()
        let e = try encoder()
        XCTAssertEqual(e.dimension, 384)
        XCTAssertEqual(e.configuration.maxSequenceLength, 256)
        XCTAssertEqual(e.configuration.pooling, SentenceEncoderPooling(meanTokens: true))
        XCTAssertTrue(e.configuration.normalize)
        XCTAssertEqual(e.configuration.bert.layerCount, 6)
        XCTAssertEqual(e.configuration.bert.headCount, 12)
        XCTAssertTrue(e.configuration.tokenizer.lowercase)
    }

    func testTokenIDsMatchReferenceForAll200Titles() throws {
        let items = try fixture()
        XCTAssertEqual(items.count, 200)
        let e = try encoder()
        var mismatches = 0
        for item in items where e.tokenIDs(item.text) != item.ids {
            mismatches += 1
            XCTFail("token ids differ for \(item.text.debugDescription): \(e.tokenIDs(item.text)) vs reference \(item.ids)")
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testEmbeddingsMatchReferenceForAll200Titles() throws {
        let items = try fixture()
        let e = try encoder()
        // Batched (several workers, sorted and packed) — the production path.
        let batched = try e.encode(items.map(\.text), batchSize: 32)
        // One batch holding everything — the intra-batch parallel path (multithreaded BLAS, parallel attention).
        let single = try e.encode(Array(items.prefix(40)).map(\.text), batchSize: 64)
        var worst: Float = 1
        for (index, item) in items.enumerated() {
            let cosine = Self.cosine(batched[index], item.embedding)
            worst = min(worst, cosine)
            XCTAssertGreaterThanOrEqual(cosine, 0.9999, "cosine \(cosine) for \(item.text.debugDescription)")
            // The folder has a Normalize module: vectors are unit length.
            XCTAssertEqual(Self.norm(batched[index]), 1, accuracy: 1e-4)
            if index < single.count {
                XCTAssertGreaterThanOrEqual(Self.cosine(single[index], item.embedding), 0.9999, "single-batch path, \(item.text.debugDescription)")
            }
        }
        print("SentenceEncoder parity: worst cosine over \(items.count) titles = \(String(format: "%.8f", worst)) (1 - cos = \(String(format: "%.2e", 1 - worst)))")
    }

    func testBatchingDoesNotChangeResults() throws {
        let items = try fixture()
        let e = try encoder()
        let texts = Array(items.prefix(24)).map(\.text)
        let a = try e.encode(texts, batchSize: 1)
        let b = try e.encode(texts, batchSize: 7)
        for i in texts.indices {
            for j in 0 ..< e.dimension { XCTAssertEqual(a[i][j], b[i][j], accuracy: 2e-5) }
        }
        var reported: [(Int, Int)] = []
        _ = try e.encode(texts, batchSize: 10) { done, total in reported.append((done, total)) }
        // Three batches (10, 10, 4 sentences) finish in some order; counts accumulate to 24.
        XCTAssertEqual(reported.count, 3)
        XCTAssertEqual(reported.last?.0, 24)
        let increments = zip(reported.map(\.0), [0] + reported.map(\.0)).map { $0 - $1 }
        XCTAssertEqual(increments.sorted(), [4, 10, 10])
        XCTAssertTrue(reported.allSatisfy { $0.1 == 24 })
    }

    func testEmptyAndLongTexts() throws {
        try SentenceEncoderTestPaths.requireMiniLM()
        let e = try encoder()
        XCTAssertEqual(e.tokenIDs(""), [101, 102])
        let long = Array(repeating: "moisturizer", count: 400).joined(separator: " ")
        XCTAssertEqual(e.tokenIDs(long).count, 256)
        let vectors = try e.encode(["", long, "shampoo"])
        XCTAssertEqual(vectors.count, 3)
        for v in vectors { XCTAssertEqual(Self.norm(v), 1, accuracy: 1e-4) }
        XCTAssertEqual(try e.encode([]).count, 0)
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        var dot: Double = 0, na: Double = 0, nb: Double = 0
        for i in a.indices { dot += Double(a[i]) * Double(b[i]); na += Double(a[i] * a[i]); nb += Double(b[i] * b[i]) }
        return Float(dot / (na.squareRoot() * nb.squareRoot()))
    }

    static func norm(_ a: [Float]) -> Float { a.reduce(0) { $0 + $1 * $1 }.squareRoot() }
}
