import Foundation
import XCTest
@testable import Learn

/// `evaluationUsers`: validation and test on a fixed seeded sample of users (the same users for both and for
/// every later evaluation), each still ranked exactly; small data keeps evaluating every user.
final class EvaluationUsersTests: XCTestCase {
    func testSampleIsTheSameUsersForValidationAndTestAndDeterministic() throws {
        let data = try syntheticDataset(users: 300, items: 40, length: 1...14)
        let whole = DatasetSplit.leaveOneOut(data)
        let eligible = data.sequences.filter { $0.count >= 3 }.count
        XCTAssertLessThan(eligible, 300, "some users are too short to evaluate, so eligibility is exercised")
        XCTAssertEqual(whole.evaluationUserCount, eligible)
        let a = whole.restrictingEvaluation(toUsers: 50), b = whole.restrictingEvaluation(toUsers: 50)
        XCTAssertEqual(a.valid.count, 50); XCTAssertEqual(a.test.count, 50)
        XCTAssertEqual(a.validUsers, a.testUsers, "the same users for validation and test")
        XCTAssertEqual(a.validUsers, b.validUsers, "deterministic")
        XCTAssertEqual(a.valid, b.valid); XCTAssertEqual(a.test, b.test)
        XCTAssertEqual(a.validUsers, a.validUsers.sorted(), "cases keep the user order")
        XCTAssertEqual(Set(a.validUsers).count, 50)
        for (c, u) in zip(a.test, a.testUsers) {
            let s = data.sequences[u]
            XCTAssertEqual(c, EvaluationCase(history: Array(s.dropLast()), target: s.last!), "each case is its user's own")
        }
        XCTAssertEqual(a.train, whole.train, "training data is never sampled")
        // Not the first 50 users: a random sample spread over the ordinals.
        XCTAssertNotEqual(a.validUsers, Array(whole.validUsers.prefix(50)))
        XCTAssertGreaterThan(a.validUsers.last!, whole.validUsers[whole.validUsers.count / 2])
        // 0, or at least every eligible user, leaves the split as it is.
        for n in [0, eligible, eligible + 7] {
            let same = whole.restrictingEvaluation(toUsers: n)
            XCTAssertEqual(same.valid, whole.valid); XCTAssertEqual(same.test, whole.test); XCTAssertEqual(same.testUsers, whole.testUsers)
        }
        // Temporal: one sample of users drives both lists (valid and test eligibility differ).
        let timed = try syntheticDataset(users: 300, items: 40, timestamps: true)
        let t = try DatasetSplit.temporal(timed, validQuantile: 0.8, testQuantile: 0.9)
        XCTAssertNotEqual(t.validUsers, t.testUsers)
        let ts = t.restrictingEvaluation(toUsers: 40)
        let chosen = Set(ts.validUsers).union(ts.testUsers)
        XCTAssertEqual(chosen.count, 40)
        XCTAssertEqual(ts.validUsers, t.validUsers.filter(chosen.contains))
        XCTAssertEqual(ts.testUsers, t.testUsers.filter(chosen.contains))
    }

    func testAutoEvaluatesEveryUserOnSmallDataAndSamplesLargeOnes() throws {
        let c = ModelConfiguration()
        XCTAssertNil(c.evaluationUsers)
        // Beauty (22,363 users × 12,101 items) and ml-100k: every user.
        XCTAssertEqual(c.resolvedEvaluationUsers(eligibleUsers: 22_363, numItems: 12_101), 0)
        XCTAssertEqual(c.resolvedEvaluationUsers(eligibleUsers: 943, numItems: 1_682), 0)
        // Above 2^32 user × item scores: max(10,000, 2^32 / items) users.
        XCTAssertEqual(c.resolvedEvaluationUsers(eligibleUsers: 1_000_000, numItems: 1_000_000), 10_000)
        XCTAssertEqual(c.resolvedEvaluationUsers(eligibleUsers: 1_000_000, numItems: 50_000), (1 << 32) / 50_000)
        XCTAssertEqual(c.resolvedEvaluationUsers(eligibleUsers: (1 << 32) / 50_000, numItems: 50_000), 0, "at the budget: all")
        var set = c
        set.evaluationUsers = 0
        XCTAssertEqual(set.resolvedEvaluationUsers(eligibleUsers: 1_000_000, numItems: 1_000_000), 0)
        set.evaluationUsers = 123
        XCTAssertEqual(set.resolvedEvaluationUsers(eligibleUsers: 5, numItems: 5), 123)
        set.evaluationUsers = -1
        XCTAssertThrowsError(try set.validate())
        // Absent in JSON = auto; the key round-trips.
        XCTAssertNil(try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"seed":3}"#.utf8)).evaluationUsers)
        set.evaluationUsers = 77
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(set)).evaluationUsers, 77)
    }

    func testTrainingValidatesAndTestsOnTheSampleAndRecordsIt() throws {
        let data = try syntheticDataset(users: 300, items: 40)
        var c = smallConfiguration(.sasrec); c.maxEpochs = 2; c.patience = 5
        // Small data, auto: every user, recorded as 0; the metrics equal an evaluation of every case.
        let all = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(all.model.configuration.evaluationUsers, 0)
        XCTAssertEqual(all.report.configuration.evaluationUsers, 0)
        XCTAssertEqual(all.report.test.users, 300)
        XCTAssertEqual(all.report.test, all.model.evaluate(DatasetSplit.leaveOneOut(data).test))
        c.evaluationUsers = 0
        let explicit = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(explicit.report.test, all.report.test)
        XCTAssertEqual(explicit.report.valid, all.report.valid)
        // A sample of 60: both splits evaluate exactly those users, and re-evaluating the model reproduces it.
        c.evaluationUsers = 60
        let sampled = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(sampled.report.valid.users, 60)
        XCTAssertEqual(sampled.report.test.users, 60)
        XCTAssertEqual(sampled.model.configuration.evaluationUsers, 60)
        let again = try sampled.model.evaluate(dataset: data)
        XCTAssertEqual(again.test, sampled.report.test)
        let cases = DatasetSplit.leaveOneOut(data).restrictingEvaluation(toUsers: 60).test
        XCTAssertEqual(sampled.model.evaluate(cases), sampled.report.test)
        XCTAssertNotEqual(sampled.model.evaluate(DatasetSplit.leaveOneOut(data).test).ndcg10, sampled.report.test.ndcg10,
                          "the sample's metric differs from the whole population's (else the test could not tell them apart)")
        // Sampling users does not change training: same weights as the run that evaluated everyone would
        // have at the same epochs (only validation differs, which can change the kept epoch, not the steps).
        c.maxEpochs = 1; c.evaluationUsers = 60
        let one = try Trainer.train(dataset: data, configuration: c)
        c.evaluationUsers = 0
        XCTAssertEqual(one.model.exportParameters(), try Trainer.train(dataset: data, configuration: c).model.exportParameters())
    }
}
