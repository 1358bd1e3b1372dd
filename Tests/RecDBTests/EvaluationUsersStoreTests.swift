import Foundation
import XCTest
import Learn
@testable import RecDB

/// `evaluationUsers` in the store: the version records the resolved count, `evaluate` reproduces the
/// recorded metrics on the same sampled users, and can be asked for every user instead.
final class EvaluationUsersStoreTests: DatabaseTestCase {
    func testSampledEvaluationIsRecordedAndReproduced() throws {
        let db = try makeSequenceDatabase(items: 30, users: 120, length: { 4 + $0 % 6 }, item: { u, t in (u * 7 + t) % 30 + 1 })
        var c = ModelConfiguration(); c.hiddenSize = 16; c.blocks = 1; c.maxLength = 8; c.batchSize = 32
        c.maxEpochs = 2; c.threads = 1
        c.evaluationUsers = 25
        let outcome = try db.train(TrainingRequest(model: "e", configuration: c))
        XCTAssertEqual(outcome.valid.users, 25)
        XCTAssertEqual(outcome.test.users, 25)
        let info = try db.read { try $0.modelVersion("e") }
        XCTAssertEqual(info.configuration.evaluationUsers, 25)
        let again = try db.evaluate(model: "e")
        XCTAssertEqual(again.test, outcome.test, "the same sampled users: recorded metrics reproduce")
        XCTAssertEqual(again.valid, outcome.valid)
        let every = try db.evaluate(model: "e", evaluationUsers: 0)
        XCTAssertEqual(every.test.users, 120)
        XCTAssertThrowsError(try db.evaluate(model: "e", evaluationUsers: -1))
        // Auto on small data: every user, recorded as 0.
        c.evaluationUsers = nil
        let auto = try db.train(TrainingRequest(model: "a", configuration: c))
        XCTAssertEqual(auto.test.users, 120)
        XCTAssertEqual(try db.read { try $0.modelVersion("a") }.configuration.evaluationUsers, 0)
        XCTAssertEqual(try db.evaluate(model: "a").test, auto.test)
    }
}
