import Foundation
import XCTest
import Learn
@testable import RecDB

/// The store side of whole-history training: the configuration (windows, cadence) is stored with
/// the version, `train` reports the curve and steps, and `evaluate` takes evaluation options.
final class HistoryTrainingStoreTests: DatabaseTestCase {
    func testWindowsAndCadenceAreStoredAndEvaluationOptionsApply() throws {
        // Histories longer than maxLength 8, each user walking the items in order from its own start.
        let db = try makeSequenceDatabase(items: 30, users: 40, length: { 20 + $0 % 7 }, item: { u, t in (u + t) % 30 + 1 })
        var c = ModelConfiguration(); c.hiddenSize = 16; c.blocks = 1; c.maxLength = 8; c.batchSize = 16
        c.maxEpochs = 2; c.windows = .all; c.evaluateEvery = 4; c.threads = 1
        let outcome = try db.train(TrainingRequest(model: "w", configuration: c))
        // Training parts of 18...24 items → ends every 8 from the newest while ≥ 2: 3 windows each.
        XCTAssertEqual(outcome.trainExamples, 40 * 3)
        XCTAssertEqual(outcome.steps, 2 * (120 / 16 + 1))
        XCTAssertEqual(outcome.curve.map { $0[4] }, [4, 8, 12, 16])
        let stored = try db.read { try $0.modelVersion("w") }
        XCTAssertEqual(stored.configuration.windows, .all)
        XCTAssertEqual(stored.configuration.evaluateEvery, 4)
        let plain = try db.evaluate(model: "w")
        XCTAssertEqual(plain.test, outcome.test, "evaluation reproduces the recorded metrics")
        let extra = try db.evaluate(model: "w", options: EvaluationOptions(cutoffs: [1, 10], coverage: true))
        XCTAssertEqual(extra.test.atK[10]!.hit, outcome.test.recall10, accuracy: 1e-12)
        XCTAssertNotNil(extra.test.coverage[1])
        let seen = try db.evaluate(model: "w", options: EvaluationOptions(excludeSeen: true))
        XCTAssertGreaterThanOrEqual(seen.test.recall20, outcome.test.recall20)
        XCTAssertThrowsError(try db.evaluate(model: "w", options: EvaluationOptions(cutoffs: [31])))
    }
}
