import Foundation
import XCTest
import Learn
@testable import RecDB

/// In-store training, versions, serving, cold start. Small synthetic data: item i is followed by
/// item i+1 (mod 40), so a sequential model learns it in a few epochs.
final class TrainingTests: DatabaseTestCase {
    static let itemCount = 40

    func fill(_ db: Database, users: Int = 300, textSpace: Bool = false) throws {
        var rng = SeededGenerator(seed: 7)
        try db.write { tx in
            for i in 1...Self.itemCount {
                try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)", attributesJSON: #"{"parity": "\#(i % 2)"}"#))
            }
            if textSpace {
                try tx.createSpace(EmbeddingSpace(name: "text", kind: .item, dimension: 12))
                for i in 1...Self.itemCount {
                    try tx.putVector(space: "text", entity: UInt32(i), (0..<12).map { _ in Float.random(in: -1...1, using: &rng) })
                }
            }
            for u in 0..<users {
                let user = try tx.upsertUser(externalID: "u\(u)")
                var item = Int.random(in: 1...Self.itemCount, using: &rng)
                for t in 0..<Int.random(in: 6...14, using: &rng) {
                    try tx.appendEvent(user: user, item: UInt32(item), timestamp: Int64(t))
                    item = item % Self.itemCount + 1
                }
            }
        }
    }

    func smallConfiguration(items: ModelConfiguration.ItemRepresentation = .id, epochs: Int = 6, seed: UInt64 = 1) -> ModelConfiguration {
        var c = ModelConfiguration(architecture: .sasrec, items: items)
        c.hiddenSize = 16
        c.blocks = 1
        c.maxLength = 10
        c.batchSize = 64
        c.maxEpochs = epochs
        c.dropout = 0.1
        c.learningRate = 5e-3
        c.seed = seed
        return c
    }

    func testTrainingStoresAVersionThatEvalReproducesAndServes() throws {
        let db = try makeDatabase()
        try fill(db)
        let outcome = try db.train(TrainingRequest(model: "seq", configuration: smallConfiguration()))
        XCTAssertEqual(outcome.version, 1)
        XCTAssertEqual(outcome.items, Self.itemCount)
        XCTAssertEqual(outcome.users, 300)
        XCTAssertEqual(outcome.itemSpace, "seq@1")
        XCTAssertGreaterThan(outcome.test.recall10, 0.5, "the +1 pattern is easy: \(outcome.test)")
        let evaluated = try db.evaluate(model: "seq")
        XCTAssertEqual(evaluated.test, outcome.test)
        XCTAssertEqual(evaluated.valid, outcome.valid)
        let stats = try db.stats()
        XCTAssertEqual(stats.models, 1)
        XCTAssertEqual(stats.spaces.first { $0.name == "seq@1" }?.count, Self.itemCount)
        XCTAssertEqual(try db.read { try $0.indexInfo(space: "seq@1")?.factory }, "Flat")
        XCTAssertTrue(try db.verify().isClean)

        // Serving follows the user's current history, including events written after training.
        let before = try db.recommend(user: "u0", k: 5)
        XCTAssertEqual(before.source, .sequence)
        XCTAssertEqual(before.items.count, 5)
        let seen = Set(try db.read { tx in try tx.events(user: tx.userID(for: "u0")!).map { "i\($0.item)" } })
        XCTAssertTrue(before.items.allSatisfy { !seen.contains($0.item) })
        _ = try db.write { tx in
            let u = try tx.upsertUser(externalID: "probe")
            for (t, i) in [17, 18, 19].enumerated() { try tx.appendEvent(user: u, item: UInt32(i), timestamp: Int64(t)) }
        }
        XCTAssertEqual(try db.recommend(user: "probe", k: 1).items.first?.item, "i20")
        _ = try db.write { tx in try tx.appendEvent(user: tx.userID(for: "probe")!, item: 20, timestamp: 100) }
        XCTAssertEqual(try db.recommend(user: "probe", k: 1).items.first?.item, "i21", "an event written after training changes the next recommendation")
        let session = try db.recommend(sequence: ["i3", "i4", "i5"], k: 1)
        XCTAssertEqual(session.items.first?.item, "i6")
        XCTAssertNil(session.user)

        // Filters: parity attribute, explicit exclusion, unavailable items.
        let odd = try db.recommend(sequence: ["i3", "i4", "i5"], k: 3, options: RecommendOptions(filter: SearchFilter(attributes: ["parity": "1"])))
        XCTAssertTrue(odd.items.allSatisfy { Int($0.item.dropFirst())! % 2 == 1 }, "\(odd.items)")
        try db.write { try $0.setAvailability(item: 6, false) }
        let without6 = try db.recommend(sequence: ["i3", "i4", "i5"], k: 3)
        XCTAssertFalse(without6.items.contains { $0.item == "i6" })

        // A user without events gets popularity, labelled as such.
        _ = try db.write { tx in try tx.upsertUser(externalID: "newcomer") }
        let cold = try db.recommend(user: "newcomer", k: 3)
        XCTAssertEqual(cold.source, .popularity)
        XCTAssertEqual(cold.items.count, 3)
        XCTAssertGreaterThanOrEqual(cold.items[0].score, cold.items[1].score)
        XCTAssertFalse(cold.items.contains { $0.item == "i6" })

        // Batch recommendation gives the same answers as one by one.
        let batch = try db.recommend(users: ["u1", "u2", "u3"], k: 4)
        XCTAssertEqual(batch.map { $0.items.map(\.item) }, try ["u1", "u2", "u3"].map { try db.recommend(user: $0, k: 4).items.map(\.item) })
    }

    /// `recommend(_:)` answers a batch from one snapshot with one forward pass per model version: each answer
    /// is the one its request gets alone (scores to float rounding), and one request's error stays its own.
    func testABatchAnswersEachRequestAsAloneAndKeepsErrorsApart() throws {
        let db = try makeDatabase()
        try fill(db)
        _ = try db.train(TrainingRequest(model: "seq", configuration: smallConfiguration(epochs: 2)))
        _ = try db.train(TrainingRequest(model: "seq", configuration: smallConfiguration(epochs: 1, seed: 2)))
        var gru = smallConfiguration(epochs: 1, seed: 3)
        gru.architecture = .gru4rec
        _ = try db.train(TrainingRequest(model: "gru", configuration: gru))
        _ = try db.write { tx in try tx.upsertUser(externalID: "newcomer") }
        try db.write { try $0.setAvailability(item: 7, false) }

        var requests: [RecommendationRequest] = []
        for u in 0..<40 {
            var options = RecommendOptions(model: u % 3 == 0 ? "gru" : "seq")
            if u % 5 == 1 { options.version = 1 }
            if u % 7 == 2 { options.excludeSeen = false }
            if u % 4 == 3 { options.filter = SearchFilter(attributes: ["parity": "0"]) }
            if u % 6 == 5 { options.titles = false }
            requests.append(RecommendationRequest(user: "u\(u)", k: 1 + u % 6, options: options))
        }
        requests.insert(RecommendationRequest(user: "newcomer", k: 3, options: RecommendOptions(model: "seq")), at: 5)
        requests.insert(RecommendationRequest(user: "nobody", k: 3, options: RecommendOptions(model: "seq")), at: 9)
        requests.insert(RecommendationRequest(user: "u1", k: 0, options: RecommendOptions(model: "seq")), at: 13)
        requests.insert(RecommendationRequest(user: "u2", k: 3, options: RecommendOptions(model: "missing")), at: 17)
        requests.insert(RecommendationRequest(user: "u3", k: 3, options: RecommendOptions(model: "seq", version: 9)), at: 21)
        requests.insert(RecommendationRequest(user: "u4", k: 3), at: 25)  // two models: naming none is an error

        let answers = db.recommend(requests)
        XCTAssertEqual(answers.count, requests.count)
        var failures = 0, sources: [RecommendationSource: Int] = [:]
        for (request, answer) in zip(requests, answers) {
            let alone = Result { try db.recommend(user: request.user, k: request.k, options: request.options) }
            switch (answer, alone) {
            case let (.success(batched), .success(single)):
                XCTAssertEqual(batched.items.map(\.item), single.items.map(\.item), request.user)
                XCTAssertEqual(batched.items.map(\.title), single.items.map(\.title), request.user)
                for (b, s) in zip(batched.items, single.items) { XCTAssertEqual(b.score, s.score, accuracy: 1e-4, request.user) }
                XCTAssertEqual([batched.model, String(batched.version), batched.source.rawValue, batched.user ?? ""],
                               [single.model, String(single.version), single.source.rawValue, single.user ?? ""])
                XCTAssertFalse(batched.items.contains { $0.item == "i7" }, "an unavailable item is never served")
                sources[batched.source, default: 0] += 1
            case let (.failure(batched), .failure(single)):
                XCTAssertEqual("\(batched)", "\(single)")
                failures += 1
            default:
                XCTFail("\(request.user): batched \(answer), alone \(alone)")
            }
        }
        XCTAssertEqual(failures, 5)
        XCTAssertEqual(sources[.popularity], 1)
        XCTAssertEqual(sources[.sequence], 40)
        XCTAssertEqual(db.recommend([]).count, 0)
    }

    /// A version is immutable, so its number is never given to other weights: not even after the whole
    /// model was dropped and a new one trained under the same name (readers and caches may hold the old one).
    func testAModelDroppedWholeNeverReusesItsVersionNumbers() throws {
        let db = try makeDatabase()
        try fill(db)
        XCTAssertEqual(try db.train(TrainingRequest(model: "gone", configuration: smallConfiguration(epochs: 1))).version, 1)
        try db.dropModel("gone")
        XCTAssertTrue(try db.models().isEmpty)
        XCTAssertEqual(try db.train(TrainingRequest(model: "gone", configuration: smallConfiguration(epochs: 1))).version, 2)
        XCTAssertEqual(try db.models().first?.versions.map(\.version), [2])
        XCTAssertTrue(try db.verify().isClean)
    }

    func testVersionsActivateRollbackDropAndResume() throws {
        let db = try makeDatabase()
        try fill(db)
        _ = try db.train(TrainingRequest(model: "seq", configuration: smallConfiguration(epochs: 2)))
        _ = try db.train(TrainingRequest(model: "seq", configuration: smallConfiguration(epochs: 2, seed: 2)))
        XCTAssertEqual(try db.models().first?.activeVersion, 2)
        XCTAssertEqual(try db.recommend(user: "u1", k: 2).version, 2)
        XCTAssertEqual(try db.rollback(model: "seq"), 1)
        XCTAssertEqual(try db.recommend(user: "u1", k: 2).version, 1)
        XCTAssertThrowsError(try db.dropModel("seq", version: 1))  // active, and another exists
        try db.activate(model: "seq", version: 2)
        try db.dropModel("seq", version: 1)
        XCTAssertEqual(try db.models().first?.versions.map(\.version), [2])
        XCTAssertNil(try db.read { try $0.space(named: "seq@1") })
        XCTAssertTrue(try db.verify().isClean)

        // Warm start on new items and events.
        _ = try db.write { tx in
            for i in 41...45 { try tx.upsertItem(ItemInput(externalID: "i\(i)")) }
            let u = try tx.upsertUser(externalID: "late")
            for (t, i) in [41, 42, 43, 44, 45, 41, 42].enumerated() { try tx.appendEvent(user: u, item: UInt32(i), timestamp: Int64(t)) }
        }
        var request = TrainingRequest(model: "seq", configuration: smallConfiguration(epochs: 2))
        request.resume = true
        let resumed = try db.train(request)
        XCTAssertEqual(resumed.version, 3)
        XCTAssertEqual(resumed.items, 45)
        let info = try db.read { try $0.modelVersion("seq") }
        XCTAssertEqual(info.resumedFrom, 2)
        XCTAssertEqual(info.numItems, 45)
        XCTAssertEqual(try db.recommend(user: "late", k: 3).source, .sequence)
        XCTAssertThrowsError(try db.train(TrainingRequest(model: "bad/name")))
    }

    func testColdStartItemsBecomeRecommendableWithoutRetraining() throws {
        let db = try makeDatabase()
        try fill(db, textSpace: true)
        var request = TrainingRequest(model: "txt", configuration: smallConfiguration(items: .textAndID, epochs: 3))
        request.textSpace = "text"
        _ = try db.train(request)
        let twin = try db.read { try $0.vector(space: "text", entity: 7)! }
        // A brand-new item with only a text vector: its model-space vector is adapter(text).
        try db.write { tx in
            let id = try tx.upsertItem(ItemInput(externalID: "fresh", title: "Fresh item"))
            try tx.putVector(space: "text", entity: id, twin)
        }
        let modelVector = try db.read { tx in try tx.vector(space: "txt@1", entity: tx.itemID(for: "fresh")!) }
        XCTAssertNotNil(modelVector, "the insert wrote the model-space vector in the same transaction")
        let similar = try db.similarItems(to: "fresh", k: 41, space: "txt@1")
        XCTAssertEqual(similar.count, 40)
        XCTAssertTrue(try db.similarItems(to: "i7", k: 41, space: "txt@1").contains { $0.item == "fresh" })
        let rec = try db.recommend(user: "u3", k: 1, options: RecommendOptions(filter: SearchFilter(allowItems: ["fresh"])))
        XCTAssertEqual(rec.items.map(\.item), ["fresh"])
        XCTAssertEqual(rec.items.first?.title, "Fresh item")
        // An id-only item (no text vector) cannot be served by the text model until it has one.
        _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "bare")) }
        XCTAssertNil(try db.read { tx in try tx.vector(space: "txt@1", entity: tx.itemID(for: "bare")!) })
    }

    func testDistillationStoresTheMapAndServesProfileOnlyUsers() throws {
        let db = try makeDatabase()
        try fill(db)
        // Profiles: 24-d vectors whose first coordinates encode the user's first item (a stand-in for a
        // text profile); one extra user has a profile and no events.
        try db.write { tx in
            try tx.createSpace(EmbeddingSpace(name: "profile", kind: .user, dimension: 24))
            var g = SeededGenerator(seed: 11)
            for u in 0..<300 {
                let user = try tx.userID(for: "u\(u)")!
                let first = try tx.events(user: user, last: 1_000).first!.item
                var v = (0..<24).map { _ in Float.random(in: -0.1...0.1, using: &g) }
                v[Int(first) % 24] += 1
                try tx.putVector(space: "profile", entity: user, v)
            }
            let cold = try tx.upsertUser(externalID: "profile-only")
            var v = [Float](repeating: 0, count: 24); v[5] = 1
            try tx.putVector(space: "profile", entity: cold, v)
        }
        var configuration = smallConfiguration(epochs: 3)
        var distillation = DistillationConfiguration()
        distillation.distillEpochs = 2
        configuration.distillation = distillation
        var request = TrainingRequest(model: "kd", configuration: configuration)
        request.profileSpace = "profile"
        request.reduceProfilesWithPCA = true
        let outcome = try db.train(request)
        XCTAssertGreaterThan(outcome.test.recall10, 0.3)
        let info = try db.read { try $0.modelVersion("kd") }
        XCTAssertEqual(info.profileSpace, "profile")
        XCTAssertEqual(info.profileReduction?.outputDimension, 16)
        XCTAssertEqual(info.profileReduction?.inputDimension, 24)
        let rec = try db.recommend(user: "profile-only", k: 5)
        XCTAssertEqual(rec.source, .profile)
        XCTAssertEqual(rec.items.count, 5)
        // The results follow the profile: they are the ranking of LN_f(T(PCA(profile)))·E, recomputed here
        // from the version's stored tensors (T trained with the profile-path loss, stored beside the
        // parameters), and another profile gets other items.
        func expectedItems(_ profile: [Float]) throws -> [String] {
            try db.read { tx in
                let parameters = try tx.parameters(model: "kd", version: info.version)
                XCTAssertEqual(parameters["profile_proj.weight"]?.shape, [16, 16])
                let model = try SequentialRecommender(configuration: info.configuration, numItems: info.numItems, parameters: parameters)
                let h = try model.userRepresentation(profile: try info.profileReduction!.transform(profile))
                let vectors = try XCTUnwrap(tx.tensor(model: "kd", version: info.version, name: ModelTensor.itemVectors)).values
                let scores = (1...info.numItems).map { i in (0..<16).reduce(Float(0)) { $0 + h[$1] * vectors[i * 16 + $1] } }
                return try (0..<info.numItems).sorted { scores[$0] > scores[$1] }.prefix(5).map { try tx.item(id: UInt32($0 + 1))!.externalID }
            }
        }
        var profile = [Float](repeating: 0, count: 24); profile[5] = 1
        XCTAssertEqual(rec.items.map(\.item), try expectedItems(profile))
        var otherProfile = [Float](repeating: 0, count: 24); otherProfile[17] = 1
        try db.write { tx in try tx.putVector(space: "profile", entity: tx.upsertUser(externalID: "profile-only-2"), otherProfile) }
        let other = try db.recommend(user: "profile-only-2", k: 5)
        XCTAssertEqual(other.source, .profile)
        XCTAssertEqual(other.items.map(\.item), try expectedItems(otherProfile))
        XCTAssertNotEqual(other.items.map(\.item), rec.items.map(\.item))
        // Evaluation reproduces the recorded metrics for distilled models too.
        XCTAssertEqual(try db.evaluate(model: "kd").test, outcome.test)
        // Without a profile space the request is refused clearly.
        var missing = TrainingRequest(model: "kd2", configuration: configuration)
        missing.profileSpace = nil
        XCTAssertThrowsError(try db.train(missing)) { XCTAssertTrue("\($0)".contains("profile space"), "\($0)") }
    }

    func testKillingTrainingMidWayLeavesThePreviousVersionActive() throws {
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"))
        let db = try makeDatabase()
        try fill(db, users: 2_000)
        _ = try db.train(TrainingRequest(model: "seq", configuration: smallConfiguration(epochs: 1)))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rdbctl)
        process.arguments = ["train", path("db"), "--model", "seq", "--epochs", "500", "--patience", "500", "--hidden", "16", "--json"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertTrue(process.isRunning)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(try db.models().first?.activeVersion, 1)
        XCTAssertEqual(try db.models().first?.versions.count, 1)
        XCTAssertTrue(try db.verify().isClean)
        XCTAssertEqual(try db.recommend(user: "u1", k: 3).version, 1)
    }

    func testReadersInAnotherProcessNeverSeeAHalfWrittenVersion() throws {
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"))
        let db = try makeDatabase()
        try fill(db)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rdbctl)
        process.arguments = ["train", path("db"), "--model", "seq", "--epochs", "2", "--hidden", "16", "--json"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var sawVersion = false
        while process.isRunning || !sawVersion {
            try db.read { tx in
                for model in try tx.models() {
                    for v in model.versions {
                        sawVersion = true
                        let space = Database.itemSpaceName(model: model.name, version: v.version)
                        XCTAssertEqual(try tx.space(named: space)?.count, v.numItems)
                        XCTAssertNotNil(try tx.indexInfo(space: space))
                        XCTAssertFalse(try tx.parameters(model: model.name, version: v.version).isEmpty)
                    }
                }
            }
            if !process.isRunning && !sawVersion { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertTrue(sawVersion)
    }
}

/// Deterministic generator for test data (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
