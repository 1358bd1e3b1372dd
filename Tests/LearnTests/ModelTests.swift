import Synchronization
import XCTest
@testable import Learn

/// Training, the trained-model API (export/import, user and item vectors, cold start, warm start,
/// evaluation, thread safety) on small synthetic data.
final class ModelTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }

    func testSASRecAndBERT4RecLearnTheSyntheticPattern() throws {
        let data = try syntheticDataset()
        let text = try syntheticTextTable(items: data.numItems)
        for (arch, items, minimum) in [(ModelConfiguration.Architecture.sasrec, ModelConfiguration.ItemRepresentation.id, 0.5),
                                       (.sasrec, .text, 0.3), (.bert4rec, .id, 0.3), (.bert4rec, .textAndID, 0.3)] {
            var c = smallConfiguration(arch, items: items)
            c.maxEpochs = 30; c.patience = 30; c.learningRate = 5e-3; c.dropout = 0.1
            var epochs: [Int] = []
            let r = try Trainer.train(dataset: data, textTable: text, configuration: c, progress: { epochs.append($0.epoch) })
            // chance level for Recall@10 is 10/40; 90 % of the next items follow the cycle
            XCTAssertGreaterThan(r.report.test.recall10, minimum + 0.2, "\(arch) \(items.rawValue): \(r.report.test)")
            XCTAssertGreaterThan(r.report.test.ndcg10, minimum, "\(arch) \(items.rawValue)")
            XCTAssertEqual(epochs, Array(1...r.report.epochsRun))
            XCTAssertEqual(r.report.curve.count, r.report.epochsRun)
            XCTAssertLessThan(r.report.curve.last![1], r.report.curve.first![1], "training loss must fall")
        }
    }

    func testTrainingIsDeterministicForASeed() throws {
        let data = try syntheticDataset(users: 120)
        var c = smallConfiguration(.bert4rec)
        c.maxEpochs = 2
        let a = try Trainer.train(dataset: data, configuration: c)
        let b = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(a.model.exportParameters(), b.model.exportParameters())
        XCTAssertEqual(a.report.test, b.report.test)
        c.seed = 1
        let other = try Trainer.train(dataset: data, configuration: c)
        XCTAssertNotEqual(a.model.exportParameters()["pos_emb"], other.model.exportParameters()["pos_emb"])
    }

    func testExportImportAndEvaluatorReproduceTrainingMetrics() throws {
        let data = try syntheticDataset(users: 150)
        let text = try syntheticTextTable(items: data.numItems)
        for arch in [ModelConfiguration.Architecture.sasrec, .bert4rec] {
            var c = smallConfiguration(arch, items: .textAndID)
            c.maxEpochs = 3
            let r = try Trainer.train(dataset: data, textTable: text, configuration: c)
            let params = r.model.exportParameters()
            XCTAssertEqual(params["item_emb"]?.shape, [data.numItems + 1, 16])
            XCTAssertEqual(params["adapter.weight"]?.shape, [16, text.dimension])
            let restored = try SequentialRecommender(configuration: c, numItems: data.numItems, parameters: params, textTable: text)
            XCTAssertEqual(restored.itemVectors(), r.model.itemVectors())
            let h: [Int32] = [3, 4, 5, 6]
            XCTAssertEqual(restored.userRepresentation(h), r.model.userRepresentation(h))
            let (valid, test) = try restored.evaluate(dataset: data)
            XCTAssertEqual(test, r.report.test, "evaluator must reproduce the training-time test metrics exactly")
            XCTAssertEqual(valid, r.report.valid)
            var missing = params; missing["ln_f.weight"] = nil
            XCTAssertThrowsError(try SequentialRecommender(configuration: c, numItems: data.numItems, parameters: missing, textTable: text))
            XCTAssertThrowsError(try SequentialRecommender(configuration: c, numItems: data.numItems, parameters: params, textTable: nil))
        }
    }

    func testServingFreezeGivesTheSameUserVectorsAndTrainingDropsIt() throws {
        let data = try syntheticDataset(users: 100)
        let text = try syntheticTextTable(items: data.numItems)
        for (arch, items) in [(ModelConfiguration.Architecture.sasrec, ModelConfiguration.ItemRepresentation.id),
                              (.bert4rec, .textAndID)] {
            var c = smallConfiguration(arch, items: items)
            c.maxEpochs = 2
            c.blocks = 2
            let trained = try Trainer.train(dataset: data, textTable: text, configuration: c).model
            let served = try SequentialRecommender(configuration: c, numItems: data.numItems,
                                                   parameters: trained.exportParameters(), textTable: text)
            // Lengths 1, a few, exactly the window, longer than the window, and unknown ids mixed in.
            let histories: [[Int32]] = [[7], [3, 4, 5, 6], Array(repeating: 2, count: c.maxLength).enumerated().map { Int32($0.offset % 30 + 1) },
                                        (1...Int32(c.maxLength + 9)).map { $0 % 35 + 1 }, [5, 9999, 6]]
            let before = histories.map { trained.userRepresentation($0) }
            served.freezeForServing()
            for (h, expected) in zip(histories, before) {
                let got = served.userRepresentation(h)
                let scale = expected.map(abs).max()!
                XCTAssertGreaterThan(scale, 0)
                for j in 0..<got.count {
                    XCTAssertEqual(got[j], expected[j], accuracy: 1e-5 * scale, "\(arch) history of \(h.count), component \(j)")
                }
            }
            XCTAssertTrue(served.network.isFrozenForServing, "\(arch): the serving path was taken")
            served.network.zeroGradients()  // what every training step does first
            XCTAssertFalse(served.network.isFrozenForServing, "\(arch): training drops the serving copies")
            XCTAssertEqual(served.userRepresentation(histories[1]), before[1], "\(arch): back on the training path")
        }
    }

    func testEvaluatorMatchesBruteForceRanking() throws {
        let data = try syntheticDataset(users: 80)
        var c = smallConfiguration(.sasrec); c.maxEpochs = 1
        let model = try Trainer.train(dataset: data, configuration: c).model
        let split = DatasetSplit.leaveOneOut(data)
        let items = model.itemVectors()
        let d = model.hiddenSize
        for maskSeen in [false, true] {
            var ranks: [Int] = []
            for cse in split.test {
                let u = model.userRepresentation(cse.history)
                func score(_ i: Int) -> Float { var s: Float = 0; for j in 0..<d { s += u[j] * items.values[i * d + j] }; return s }
                let t = score(Int(cse.target))
                let seen = Set(cse.history)
                ranks.append((1...data.numItems).filter { i in
                    !(maskSeen && seen.contains(Int32(i)) && Int32(i) != cse.target) && score(i) > t
                }.count)
            }
            let expected = RankingMetrics(ranks: ranks)
            let got = model.evaluate(split.test, maskSeen: maskSeen)
            XCTAssertEqual(got.users, expected.users)
            XCTAssertEqual(got.ndcg10, expected.ndcg10, accuracy: 1e-9)
            XCTAssertEqual(got.recall20, expected.recall20, accuracy: 1e-9)
            XCTAssertEqual(got.mrr, expected.mrr, accuracy: 1e-4)  // ties at float precision may differ
        }
    }

    func testColdStartItemVectorFromText() throws {
        let data = try syntheticDataset(users: 100)
        let text = try syntheticTextTable(items: data.numItems)
        for items in [ModelConfiguration.ItemRepresentation.text, .textAndID] {
            var c = smallConfiguration(.sasrec, items: items); c.maxEpochs = 1
            let model = try Trainer.train(dataset: data, textTable: text, configuration: c).model
            let vectors = model.itemVectors()
            let d = model.hiddenSize
            let idRow = model.exportParameters()["item_emb"]
            for item in [1, 17, data.numItems] {
                let v = try model.itemVector(fromTextEmbedding: text.row(item))
                for j in 0..<d {
                    let idPart = idRow.map { $0.values[item * d + j] } ?? 0
                    XCTAssertEqual(v[j] + idPart, vectors.values[item * d + j], accuracy: 1e-5)
                }
            }
            XCTAssertThrowsError(try model.itemVector(fromTextEmbedding: [1, 2]))
        }
        var c = smallConfiguration(); c.maxEpochs = 1
        let idModel = try Trainer.train(dataset: data, configuration: c).model
        XCTAssertThrowsError(try idModel.itemVector(fromTextEmbedding: text.row(1)))
    }

    func testWarmStartOnALargerCatalogue() throws {
        let data = try syntheticDataset(users: 150, items: 40)
        let text = try syntheticTextTable(items: 45)
        var c = smallConfiguration(.sasrec, items: .textAndID); c.maxEpochs = 2
        let first = try Trainer.train(dataset: data, textTable: text, configuration: c)
        let grown = try first.model.expandingCatalogue(to: 45, textTable: text, seed: 3)
        XCTAssertEqual(grown.numItems, 45)
        let old = first.model.itemVectors(), new = grown.itemVectors()
        XCTAssertEqual(Array(new.values[0..<old.count]), old.values, "trained rows are kept")
        XCTAssertNotEqual(Array(new.values[(41 * 16)..<(42 * 16)]), [Float](repeating: 0, count: 16), "new rows are fresh")
        // continue training on data that uses the new items
        var seqs = data.sequences
        seqs.append([41, 42, 43, 44, 45, 41, 42]); seqs.append([43, 44, 45, 41])
        let bigger = try SequenceDataset(sequences: seqs, numItems: 45)
        let second = try Trainer.train(dataset: bigger, textTable: text, configuration: c, initialModel: grown)
        XCTAssertEqual(second.model.numItems, 45)
        XCTAssertGreaterThanOrEqual(second.report.valid.ndcg10, first.report.valid.ndcg10 * 0.8)
        XCTAssertThrowsError(try Trainer.train(dataset: bigger, textTable: text, configuration: c, initialModel: first.model))
        XCTAssertThrowsError(try first.model.expandingCatalogue(to: 30))
    }

    func testConcurrentUserRepresentationsMatchSerial() throws {
        let data = try syntheticDataset(users: 100)
        for arch in [ModelConfiguration.Architecture.sasrec, .bert4rec] {
            var c = smallConfiguration(arch); c.maxEpochs = 1
            let model = try Trainer.train(dataset: data, configuration: c).model
            let histories = data.sequences.map { Array($0.prefix(12)) } + [[], [41, 3]]  // empty and unknown-id histories
            let serial = histories.map { model.userRepresentation($0) }
            let batch = model.userRepresentations(histories)
            // batched products block differently from single-row ones: equal to float rounding
            for (k, s) in serial.enumerated() {
                for j in 0..<16 { XCTAssertEqual(batch.values[k * 16 + j], s[j], accuracy: 1e-5) }
            }
            // The calling-thread variant (a server's event loop) writes the same rows into the caller's buffer.
            var rows = [Float](repeating: .nan, count: histories.count * 16)
            rows.withUnsafeMutableBufferPointer { model.userRepresentations(histories, into: $0, onCallingThreadOnly: true) }
            for (k, s) in serial.enumerated() {
                for j in 0..<16 { XCTAssertEqual(rows[k * 16 + j], s[j], accuracy: 1e-5, "\(arch) history \(k)") }
            }
            if arch == .sasrec { XCTAssertEqual(Array(rows[(histories.count - 2) * 16..<(histories.count - 1) * 16]), [Float](repeating: 0, count: 16), "an empty history gives zeros") }
            XCTAssertEqual(model.userRepresentation([41, 3]), model.userRepresentation([3]), "unknown ids are skipped")
            let shared = Locked([[Float]](repeating: [], count: histories.count * 8))
            DispatchQueue.concurrentPerform(iterations: 8) { t in
                for (k, h) in histories.enumerated() {
                    let vector = model.userRepresentation(h)  // computed concurrently; only the store is locked
                    shared.withLock { $0[t * histories.count + k] = vector }
                }
            }
            let results = shared.withLock { $0 }
            for t in 0..<8 { for k in 0..<histories.count { XCTAssertEqual(results[t * histories.count + k], serial[k]) } }
        }
    }

    /// Inference computes the last block for the last rows only; it must equal the full forward pass.
    func testLastRowInferenceEqualsFullForward() throws {
        let data = try syntheticDataset(users: 60)
        for arch in [ModelConfiguration.Architecture.sasrec, .bert4rec] {
            var c = smallConfiguration(arch); c.maxEpochs = 1
            let net = try Trainer.train(dataset: data, configuration: c).model.network
            let ws = net.makeWorkspace()
            ws.reset()
            for s in data.sequences.prefix(20) { net.appendEvaluationWindow(s, to: ws) }
            var rng = Xoshiro256(seed: 0)
            net.forward(ws, training: false, rng: &rng)
            let full = (0..<20).map { k in Array(UnsafeBufferPointer(start: ws.hidden.p + (ws.layout.rowStart[k + 1] - 1) * 16, count: 16)) }
            net.forwardLastRows(ws)
            for k in 0..<20 {
                for j in 0..<16 { XCTAssertEqual(ws.hidden.p[k * 16 + j], full[k][j], accuracy: 1e-5) }
            }
        }
    }

    func testShouldStopAndTemporalSplit() throws {
        let data = try syntheticDataset(users: 150, timestamps: true)
        var c = smallConfiguration(); c.split = .temporal; c.maxEpochs = 5
        var calls = 0
        let r = try Trainer.train(dataset: data, configuration: c, progress: { _ in }, shouldStop: { calls += 1; return calls > 3 })
        XCTAssertEqual(r.report.stopReason, "stopped")
        XCTAssertLessThan(r.report.epochsRun, 5)
        let full = try Trainer.train(dataset: data, configuration: c)
        XCTAssertGreaterThan(full.report.test.users, 10)
        XCTAssertGreaterThan(full.report.valid.users, 10)
        XCTAssertThrowsError(try Trainer.train(dataset: try syntheticDataset(users: 20), configuration: c))
    }

    func testProfileDistillationTrainsAndServesProfileUsers() throws {
        let data = try syntheticDataset(users: 150)
        // Profile: a noisy one-hot of the user's last training item region (predictive of the next item).
        let split = DatasetSplit.leaveOneOut(data)
        var profiles: [[Float]?] = []
        for (u, t) in split.train.enumerated() {
            if u % 5 == 0 || t.isEmpty { profiles.append(nil); continue }
            var p = [Float](repeating: 0, count: 10)
            p[Int(t.last! - 1) / 4] = 1
            profiles.append(p)
        }
        let table = try ProfileTable(dimension: 10, profiles: profiles)
        var c = smallConfiguration(); c.maxEpochs = 4; c.patience = 4
        var d = DistillationConfiguration(); d.distillEpochs = 2; c.distillation = d
        var kd: [Double?] = [], profileLoss: [Double?] = []
        let r = try Trainer.train(dataset: data, profiles: table, configuration: c, progress: {
            kd.append($0.distillationLoss); profileLoss.append($0.profileRecommendationLoss)
        })
        XCTAssertNotNil(kd[0]); XCTAssertNotNil(kd[1]); XCTAssertNil(kd[2]); XCTAssertNil(kd[3])
        XCTAssertLessThan(kd[1]!, kd[0]!, "the distillation loss falls while it is active")
        // The profile path's recommendation loss (on by default) runs in every epoch and falls.
        XCTAssertEqual(profileLoss.compactMap { $0 }.count, 4)
        XCTAssertLessThan(profileLoss[3]!, profileLoss[0]!)
        let p = profiles[1]!
        let u = try r.model.userRepresentation(profile: p)
        let params = r.model.exportParameters()
        let w = params["profile_proj.weight"]!, b = params["profile_proj.bias"]!
        let gamma = params["ln_f.weight"]!, beta = params["ln_f.bias"]!
        // Expected: LN_f(W·p + b), computed here in Double.
        let t: [Double] = (0..<16).map { j in (0..<10).reduce(Double(b.values[j])) { $0 + Double(w.values[j * 10 + $1]) * Double(p[$1]) } }
        let mean = t.reduce(0, +) / 16
        let variance = t.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 16
        for j in 0..<16 {
            let expected = (t[j] - mean) / (variance + Double(c.layerNormEpsilon)).squareRoot() * Double(gamma.values[j]) + Double(beta.values[j])
            XCTAssertEqual(Double(u[j]), expected, accuracy: 1e-4)
        }
        XCTAssertThrowsError(try r.model.userRepresentation(profile: [1]))

        // Patience counts from the end of distillation: with patience 1 and 3 distillation epochs the run
        // trains at least one epoch without distillation whatever validation did meanwhile.
        var patient = c
        patient.patience = 1; patient.maxEpochs = 8
        var short = DistillationConfiguration(); short.distillEpochs = 3; patient.distillation = short
        let run = try Trainer.train(dataset: data, profiles: table, configuration: patient)
        XCTAssertGreaterThanOrEqual(run.report.epochsRun, 4)
        XCTAssertThrowsError(try Trainer.train(dataset: data, configuration: c), "distillation without profiles")
    }

    /// Users held out of training entirely, served from their profile alone: trained as a recommender
    /// (`profileRecommendationWeight`), the profile path must beat the most popular items on their last
    /// item by far — which distillation alone does not do. Each user keeps to one of 10 groups of 4
    /// items (9 in 10 events); the profile is a noisy one-hot of the group, as a text profile of what
    /// the user buys would be.
    func testProfilePathRecommendsToHeldOutUsers() throws {
        var rng = Xoshiro256(seed: 9)
        var sequences: [[Int32]] = [], profiles: [[Float]] = []
        for u in 0..<400 {
            let group = u % 10
            let length = 5 + Int(rng.next() % 8)
            sequences.append((0..<length).map { _ in
                Int32(rng.nextUniform() < 0.9 ? group * 4 + Int(rng.next() % 4) + 1 : Int(rng.next() % 40) + 1)
            })
            var p = (0..<10).map { _ in rng.nextNormal() * 0.1 }
            p[group] += 1
            profiles.append(p)
        }
        let heldOut = 0..<100, kept = 100..<400
        let training = try SequenceDataset(sequences: Array(sequences[kept]), numItems: 40)
        let table = try ProfileTable(dimension: 10, profiles: Array(profiles[kept]))
        var counts = [Int](repeating: 0, count: 41)
        for s in sequences[kept] { for i in s { counts[Int(i)] += 1 } }
        let popular = Set((1...40).sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.prefix(10))
        let popularityHits = heldOut.filter { popular.contains(Int(sequences[$0].last!)) }.count

        func profileHits(weight: Float, targets: DistillationConfiguration.ProfileTargets = .all) throws -> Int {
            var c = smallConfiguration(); c.maxEpochs = 40; c.patience = 40; c.batchSize = 32
            var d = DistillationConfiguration(); d.distillEpochs = 2
            d.profileRecommendationWeight = weight; d.profileTargets = targets
            c.distillation = d
            let model = try Trainer.train(dataset: training, profiles: table, configuration: c).model
            let vectors = model.itemVectors().values, width = model.hiddenSize
            return try heldOut.filter { u in
                let h = try model.userRepresentation(profile: profiles[u])
                let scores = (1...40).map { i in (0..<width).reduce(Float(0)) { $0 + h[$1] * vectors[i * width + $1] } }
                let top = (0..<40).sorted { scores[$0] > scores[$1] }.prefix(10).map { $0 + 1 }
                return top.contains(Int(sequences[u].last!))
            }.count
        }
        let all = try profileHits(weight: 1), last = try profileHits(weight: 1, targets: .last)
        let distilledOnly = try profileHits(weight: 0)
        print("held-out hits@10 of 100: profile path trained on all items \(all), on the last \(last), distillation only \(distilledOnly), popularity \(popularityHits)")
        XCTAssertGreaterThan(all, 80)
        XCTAssertGreaterThan(last, 80)
        XCTAssertLessThan(popularityHits, 40)
        XCTAssertLessThan(distilledOnly, all - 20)
    }
}
