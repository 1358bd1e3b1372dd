import Foundation
import XCTest
import Learn
@testable import RecDB

/// `train` with the sampled loss inside the store: the version records the loss it was trained with
/// (`auto` resolved), evaluation reproduces its metrics, and it serves.
final class SampledLossStoreTests: DatabaseTestCase {
    func testSampledLossVersionRecordsItsLossAndServes() throws {
        let db = try makeSequenceDatabase(items: 40, users: 200, length: { 6 + $0 % 8 }, item: { u, t in (u + t) % 40 + 1 })
        var c = ModelConfiguration(architecture: .sasrec, items: .id)
        c.hiddenSize = 16; c.blocks = 1; c.maxLength = 10; c.batchSize = 64; c.maxEpochs = 12; c.patience = 12
        c.learningRate = 5e-3; c.dropout = 0.1; c.threads = 2
        c.loss = .sampled; c.negatives = 16
        let outcome = try db.train(TrainingRequest(model: "s", configuration: c))
        XCTAssertGreaterThan(outcome.test.recall10, 0.5, "the +1 pattern is easy: \(outcome.test)")
        let info = try db.read { try $0.modelVersionInfo("s", outcome.version) }
        XCTAssertEqual(info?.configuration.loss, .sampled)
        XCTAssertEqual(info?.configuration.negatives, 16)
        let evaluated = try db.evaluate(model: "s")
        XCTAssertEqual(evaluated.test, outcome.test)
        XCTAssertEqual(try db.recommend(user: "u3", k: 5).items.count, 5)
        // auto on 40 items resolves to full CE, and the version says so.
        c.loss = .auto; c.maxEpochs = 1
        let auto = try db.train(TrainingRequest(model: "a", configuration: c))
        XCTAssertEqual(try db.read { try $0.modelVersionInfo("a", auto.version) }?.configuration.loss, .ce)
    }
}
