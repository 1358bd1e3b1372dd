import XCTest
@testable import Learn

/// Whole-history training windows, step-based validation cadence, and the extra ranking metrics.
final class HistoryTrainingTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }

    // MARK: window cutting

    func testWindowEndsForEachSelection() {
        // SASRec: an end t needs a target (t ≥ 2); BERT4Rec: one item (t ≥ 1).
        XCTAssertEqual(TrainingWindows.last.ends(count: 7, maxLength: 3, minimumEnd: 2), [7])
        XCTAssertEqual(TrainingWindows.all.ends(count: 7, maxLength: 3, minimumEnd: 2), [7, 4])
        XCTAssertEqual(TrainingWindows.all.ends(count: 7, maxLength: 3, minimumEnd: 1), [7, 4, 1])
        XCTAssertEqual(TrainingWindows.stride(2).ends(count: 7, maxLength: 3, minimumEnd: 2), [7, 5, 3])
        XCTAssertEqual(TrainingWindows.stride(10).ends(count: 7, maxLength: 3, minimumEnd: 2), [7])
        XCTAssertEqual(TrainingWindows.all.ends(count: 1, maxLength: 3, minimumEnd: 2), [])
        XCTAssertEqual(TrainingWindows.last.ends(count: 1, maxLength: 3, minimumEnd: 1), [1])
        XCTAssertEqual(TrainingWindows("stride:5"), .stride(5))
        XCTAssertEqual(TrainingWindows("all"), .all)
        XCTAssertNil(TrainingWindows("stride:0"))
        XCTAssertNil(TrainingWindows("stride:"))
        XCTAssertNil(TrainingWindows("every"))
    }

    /// The packed inputs and targets of a batch (SASRec scores every packed row in order).
    private func sasrecBatch(_ train: [[Int32]], windows: TrainingWindows, maxLength: Int, numItems: Int)
        throws -> (examples: Int, users: [Int], items: [Int32], targets: [Int32]) {
        var c = smallConfiguration(.sasrec); c.maxLength = maxLength; c.windows = windows
        let objective = SASRec(train: train, configuration: c)
        let network = try SequenceNetwork(configuration: c, numItems: numItems, text: nil)
        let ws = network.makeWorkspace()
        var rows: [Int32] = [], targets: [Int32] = []
        var rng = Xoshiro256(seed: 1)
        objective.fillBatch(Array(0..<objective.exampleCount)[...], into: ws, scoredRows: &rows, targets: &targets, rng: &rng)
        XCTAssertTrue(rows.isEmpty)
        return (objective.exampleCount, (0..<objective.exampleCount).map(objective.exampleUser), ws.items, targets)
    }

    func testSASRecWindowsAreExactAndAllCoversEveryTargetOnce() throws {
        let s: [Int32] = Array(1...10)
        let all = try sasrecBatch([s, [3]], windows: .all, maxLength: 4, numItems: 10)
        // ends 10, 6, 2: inputs s[5..<9], s[1..<5], s[0..<1]; targets one item later. User 1 (one item) has none.
        XCTAssertEqual(all.examples, 3)
        XCTAssertEqual(all.users, [0, 0, 0])
        XCTAssertEqual(all.items, [6, 7, 8, 9, 2, 3, 4, 5, 1])
        XCTAssertEqual(all.targets, [7, 8, 9, 10, 3, 4, 5, 6, 2])
        XCTAssertEqual(all.targets.sorted(), Array(2...10), "every training target exactly once")
        let last = try sasrecBatch([s, [3]], windows: .last, maxLength: 4, numItems: 10)
        XCTAssertEqual(last.items, [6, 7, 8, 9])
        XCTAssertEqual(last.targets, [7, 8, 9, 10])
        let stride = try sasrecBatch([s], windows: .stride(3), maxLength: 4, numItems: 10)
        // ends 10, 7, 4: targets s[6..<10], s[3..<7], s[1..<4] (overlapping windows repeat targets).
        XCTAssertEqual(stride.targets, [7, 8, 9, 10, 4, 5, 6, 7, 2, 3, 4])
    }

    func testAllWindowsCoverEveryTargetOnceOnRandomData() throws {
        let data = try syntheticDataset(users: 60, items: 30, length: 1...40)
        for maxLength in [2, 3, 7, 10] {
            let b = try sasrecBatch(data.sequences, windows: .all, maxLength: maxLength, numItems: 30)
            var expected: [Int32] = []
            for s in data.sequences where s.count >= 2 { expected += s[1...] }
            XCTAssertEqual(b.targets.sorted(), expected.sorted(), "maxLength \(maxLength)")
            // BERT4Rec: every item of every window is a maskable position exactly once.
            var c = smallConfiguration(.bert4rec); c.maxLength = maxLength; c.windows = .all
            let o = BERT4Rec(train: data.sequences, configuration: c, numItems: 30)
            var covered: [Int32] = []
            for e in 0..<o.exampleCount { covered += o.windows[e][max(0, o.ends[e] - maxLength)..<o.ends[e]] }
            XCTAssertEqual(covered.sorted(), data.sequences.flatMap { $0 }.sorted())
        }
    }

    /// `.last` must pack exactly what one-window training packed before windows existed (the code
    /// below is the former `SASRec.fillBatch` / `BERT4Rec.fillBatch`, kept as the oracle).
    func testLastWindowEqualsTheFormerOneWindowObjective() throws {
        let data = try syntheticDataset(users: 80, items: 30, length: 1...25)
        for arch in [ModelConfiguration.Architecture.sasrec, .bert4rec] {
            var c = smallConfiguration(arch); c.maxLength = 8
            XCTAssertEqual(c.windows, .auto, "the default")
            c.windows = .last
            let network = try SequenceNetwork(configuration: c, numItems: 30, text: nil)
            let objective: SequenceObjective = arch == .sasrec ? SASRec(train: data.sequences, configuration: c)
                                                                : BERT4Rec(train: data.sequences, configuration: c, numItems: 30)
            let eligible = data.sequences.enumerated().filter { $0.element.count >= (arch == .sasrec ? 2 : 1) }
            XCTAssertEqual(objective.exampleCount, eligible.count)
            XCTAssertEqual((0..<objective.exampleCount).map(objective.exampleUser), eligible.map(\.offset))
            let ws = network.makeWorkspace(), old = network.makeWorkspace()
            var rows: [Int32] = [], targets: [Int32] = [], oldRows: [Int32] = [], oldTargets: [Int32] = []
            var rng = Xoshiro256(seed: 9), oldRng = Xoshiro256(seed: 9)
            let batch = [5, 0, 17, 3, 40, 41, 2][...]
            objective.fillBatch(batch, into: ws, scoredRows: &rows, targets: &targets, rng: &rng)
            old.reset()
            for e in batch {
                let s = eligible[e].element
                if arch == .sasrec {
                    let n = min(s.count - 1, c.maxLength)
                    old.append(window: s[(s.count - 1 - n)..<(s.count - 1)], maxLength: c.maxLength, heads: 1)
                    oldTargets.append(contentsOf: s[(s.count - n)...])
                } else {
                    let window = s.suffix(c.maxLength)
                    let row0 = old.items.count
                    old.append(window: window, maxLength: c.maxLength, heads: 2)
                    var masked = false
                    for i in 0..<window.count where oldRng.nextUniform() < c.maskProbability {
                        oldTargets.append(old.items[row0 + i]); oldRows.append(Int32(row0 + i))
                        old.items[row0 + i] = Int32(31); masked = true
                    }
                    if !masked {
                        let last = row0 + window.count - 1
                        oldTargets.append(old.items[last]); oldRows.append(Int32(last)); old.items[last] = 31
                    }
                }
            }
            XCTAssertEqual(ws.items, old.items, "\(arch)")
            XCTAssertEqual(ws.positions, old.positions, "\(arch)")
            XCTAssertEqual(targets, oldTargets, "\(arch)")
            XCTAssertEqual(rows, oldRows, "\(arch)")
            XCTAssertEqual(rng.next(), oldRng.next(), "\(arch): same random draws")
        }
    }

    /// `lastMaskProbability` (RecBole's ft_ratio): 1 masks exactly each window's last item and nothing
    /// else; 0.5 does so for about half the windows and Cloze-masks the rest.
    func testBERT4RecLastMaskMasksOnlyTheLastItem() throws {
        let data = try syntheticDataset(users: 200, items: 30, length: 2...25)
        var c = smallConfiguration(.bert4rec); c.maxLength = 8; c.windows = .stride(3)
        let network = try SequenceNetwork(configuration: c, numItems: 30, text: nil)
        func batch(_ q: Float) -> (ws: SequenceNetwork.Workspace, rows: [Int32], targets: [Int32], o: BERT4Rec) {
            var cq = c; cq.lastMaskProbability = q
            let o = BERT4Rec(train: data.sequences, configuration: cq, numItems: 30)
            let ws = network.makeWorkspace()
            var rows: [Int32] = [], targets: [Int32] = [], rng = Xoshiro256(seed: 3)
            o.fillBatch(Array(0..<o.exampleCount)[...], into: ws, scoredRows: &rows, targets: &targets, rng: &rng)
            return (ws, rows, targets, o)
        }
        let one = batch(1)
        XCTAssertGreaterThan(one.o.exampleCount, 400)
        XCTAssertEqual(one.rows.count, one.o.exampleCount, "one scored row per window")
        for e in 0..<one.o.exampleCount {
            let s = one.o.windows[e], t = one.o.ends[e]
            let start = one.ws.layout.rowStart[e], end = one.ws.layout.rowStart[e + 1]
            XCTAssertEqual(end - start, min(t, c.maxLength))
            XCTAssertEqual(one.rows[e], Int32(end - 1), "the last row")
            XCTAssertEqual(one.targets[e], s[t - 1], "its item is the target")
            XCTAssertEqual(Array(one.ws.items[start..<(end - 1)]), Array(s[max(0, t - c.maxLength)..<(t - 1)]), "the rest unmasked")
            XCTAssertEqual(one.ws.items[end - 1], 31, "[MASK]")
        }
        let half = batch(0.5)
        var lastOnly = 0
        for e in 0..<half.o.exampleCount {
            let start = half.ws.layout.rowStart[e], end = half.ws.layout.rowStart[e + 1]
            let masked = (start..<end).filter { half.ws.items[$0] == 31 }
            XCTAssertFalse(masked.isEmpty)
            if masked == [end - 1] { lastOnly += 1 }
        }
        // Last-only windows: the ~50 % drawn, plus Cloze windows whose only mask fell on the last item.
        let share = Double(lastOnly) / Double(half.o.exampleCount)
        XCTAssertGreaterThan(share, 0.45); XCTAssertLessThan(share, 0.75)
        XCTAssertGreaterThan(half.rows.count, one.rows.count + one.rows.count / 5, "the other windows carry Cloze masks")
        var bad = ModelConfiguration(architecture: .sasrec); bad.lastMaskProbability = 0.5
        XCTAssertThrowsError(try bad.validate(), "a BERT4Rec option")
        bad = ModelConfiguration(architecture: .bert4rec); bad.lastMaskProbability = 1.5
        XCTAssertThrowsError(try bad.validate())
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"architecture":"bert4rec"}"#.utf8))
        XCTAssertNil(old.lastMaskProbability, "absent = chosen when training starts")
        XCTAssertEqual(old.windows, .last)
        XCTAssertEqual(old.resolvingAutomaticWindows(train: data.sequences).lastMaskProbability, 0,
                       "a stored configuration without the key (windows last) trains Cloze only")
    }

    func testStoredConfigurationWithoutTheNewKeysTrainsTheLastWindow() throws {
        let c = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"architecture":"sasrec","maxEpochs":3}"#.utf8))
        XCTAssertEqual(c.windows, .last)
        XCTAssertNil(c.evaluateEvery)
        XCTAssertEqual(c.minimumSteps, 0)
        var n = c; n.windows = .stride(7); n.evaluateEvery = 5; n.minimumSteps = 100
        let back = try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(n))
        XCTAssertEqual(back, n)
        XCTAssertThrowsError(try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"windows":"stride:0"}"#.utf8)))
        var bad = ModelConfiguration(); bad.evaluateEvery = 0
        XCTAssertThrowsError(try bad.validate())
        bad = ModelConfiguration(); bad.minimumSteps = -1
        XCTAssertThrowsError(try bad.validate())
    }

    func testTrainingCostCountsEveryWindow() throws {
        // One user of 23 events: training part 21 items (20 targets), maxLength 5 → `all` ends 21, 16, 11, 6:
        // four full windows of 5 rows each (the `last` window alone is one of them).
        let data = try SequenceDataset(sequences: [Array(1...23)], numItems: 23)
        var c = smallConfiguration(.sasrec); c.maxLength = 5; c.blocks = 1; c.windows = .last
        let last = try TrainingCost.flopsPerEpoch(dataset: data, configuration: c)
        c.windows = .all
        let all = try TrainingCost.flopsPerEpoch(dataset: data, configuration: c)
        XCTAssertEqual(all, 4 * last, accuracy: 1e-6 * all)
    }

    // MARK: training

    func testAllWindowsTrainMoreExamplesAndStayDeterministic() throws {
        let data = try syntheticDataset(users: 60, items: 30, length: 15...40)
        var c = smallConfiguration(.sasrec); c.maxEpochs = 2; c.windows = .all
        let a = try Trainer.train(dataset: data, configuration: c)
        let b = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(a.model.exportParameters(), b.model.exportParameters())
        var expected = 0
        for s in data.sequences { expected += TrainingWindows.all.ends(count: s.count - 2, maxLength: c.maxLength, minimumEnd: 2).count }
        XCTAssertEqual(a.report.trainExamples, expected)
        XCTAssertGreaterThan(expected, 60)
        XCTAssertEqual(a.report.steps, 2 * ((expected + c.batchSize - 1) / c.batchSize))
        var b4 = smallConfiguration(.bert4rec); b4.maxEpochs = 1; b4.windows = .stride(5)
        let r = try Trainer.train(dataset: data, configuration: b4)
        XCTAssertTrue(r.report.test.ndcg10.isFinite)
    }

    func testStepCadenceValidatesEveryNStepsAndHonoursTheMinimum() throws {
        let data = try syntheticDataset(users: 100, items: 30)
        var c = smallConfiguration(.sasrec)
        c.batchSize = 32            // 4 steps per epoch (100 eligible users)
        c.evaluateEvery = 3; c.maxEpochs = 6; c.patience = 1000
        var steps: [Int] = []
        let r = try Trainer.train(dataset: data, configuration: c, progress: { steps.append($0.step) })
        // 24 steps: validations at 3, 6, ..., 24 (the last one ends an epoch, so none is added).
        XCTAssertEqual(steps, Array(stride(from: 3, through: 24, by: 3)))
        XCTAssertEqual(r.report.curve.map { $0[4] }, steps.map(Double.init))
        XCTAssertEqual(r.report.steps, 24)
        XCTAssertEqual(r.report.curve.count, 8)
        XCTAssertEqual(r.report.stopReason, "maxEpochs")
        // Patience 1 in validations would stop at the second validation at the latest; the minimum holds it to 20 steps.
        c.patience = 1; c.minimumSteps = 20; c.maxEpochs = 100; c.learningRate = 0.5
        let m = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(m.report.stopReason, "patience")
        XCTAssertGreaterThanOrEqual(m.report.steps!, 20)
        XCTAssertLessThan(m.report.steps!, 400)
        // A run ending between validations validates its final steps: 5 epochs × 4 = 20 steps, every 7.
        c.patience = 1000; c.minimumSteps = 0; c.maxEpochs = 5; c.evaluateEvery = 7; c.learningRate = 1e-3
        let t = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(t.report.curve.map { $0[4] }, [7, 14, 20])
    }

    // MARK: metrics

    func testCutoffMetricsAgainstHandComputedValues() throws {
        let m = RankingMetrics(ranks: [0, 3, 12, 4], cutoffs: [1, 5, 10])
        XCTAssertEqual(m.atK[1]!.hit, 0.25, accuracy: 1e-12)
        XCTAssertEqual(m.atK[1]!.ndcg, 0.25, accuracy: 1e-12)
        XCTAssertEqual(m.atK[1]!.mrr, 0.25, accuracy: 1e-12)
        XCTAssertEqual(m.atK[1]!.precision, 0.25, accuracy: 1e-12)
        XCTAssertEqual(m.atK[5]!.hit, 0.75, accuracy: 1e-12)
        XCTAssertEqual(m.atK[5]!.recall, 0.75, accuracy: 1e-12)
        XCTAssertEqual(m.atK[5]!.ndcg, (1 + 1 / log2(5.0) + 1 / log2(6.0)) / 4, accuracy: 1e-12)
        XCTAssertEqual(m.atK[5]!.mrr, (1 + 0.25 + 0.2) / 4, accuracy: 1e-12)
        XCTAssertEqual(m.atK[5]!.precision, 3.0 / 5 / 4, accuracy: 1e-12)
        XCTAssertEqual(m.atK[10]!.hit, 0.75, accuracy: 1e-12, "rank 12 is outside the top 10")
        XCTAssertEqual(m.atK[10]!.ndcg, m.ndcg10, accuracy: 1e-12)
        XCTAssertEqual(m.atK[5]!.ndcg, m.ndcg5, accuracy: 1e-12)
        // JSON: the fixed keys as before, plus the cutoff keys; round trip.
        var withCoverage = m; withCoverage.coverage[5] = 0.5
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(withCoverage)) as! [String: Double]
        XCTAssertEqual(json["hit@1"], 0.25)
        XCTAssertEqual(json["precision@5"]!, 0.15, accuracy: 1e-12)
        XCTAssertEqual(json["coverage@5"], 0.5)
        XCTAssertEqual(json["recall@10"], m.recall10)
        XCTAssertEqual(json["users"], 4)
        XCTAssertEqual(try JSONDecoder().decode(RankingMetrics.self, from: JSONEncoder().encode(withCoverage)), withCoverage)
        // Without cutoffs the JSON keeps exactly the former keys.
        let plain = try JSONSerialization.jsonObject(with: JSONEncoder().encode(RankingMetrics(ranks: [1]))) as! [String: Double]
        XCTAssertEqual(Set(plain.keys), ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr", "users"])
    }

    func testTopItemsBreaksTiesByIdAndSkipsExcluded() {
        let row: [Float] = [0.5, 0.9, 0.9, 0.1, 0.7]
        var top: [(score: Float, item: Int)] = []
        row.withUnsafeBufferPointer { RankingEvaluator.topItems($0.baseAddress!, 5, 3, excluding: [], into: &top) }
        XCTAssertEqual(top.map(\.item), [1, 2, 4])
        row.withUnsafeBufferPointer { RankingEvaluator.topItems($0.baseAddress!, 5, 3, excluding: [2], into: &top) }
        XCTAssertEqual(top.map(\.item), [2, 4, 0], "1-based id 2 is item 1")
        row.withUnsafeBufferPointer { RankingEvaluator.topItems($0.baseAddress!, 5, 9, excluding: [], into: &top) }
        XCTAssertEqual(top.map(\.item), [1, 2, 4, 0, 3])
        // The deep-list path (a sort) agrees with the insertion path.
        let long = randomFloats(300, seed: 4).map { ($0 * 8).rounded() }  // many ties
        var shallow: [(score: Float, item: Int)] = [], deep: [(score: Float, item: Int)] = []
        long.withUnsafeBufferPointer {
            RankingEvaluator.topItems($0.baseAddress!, 300, 64, excluding: [7, 9], into: &shallow)
            RankingEvaluator.topItems($0.baseAddress!, 300, 200, excluding: [7, 9], into: &deep)
        }
        XCTAssertEqual(deep.prefix(64).map(\.item), shallow.map(\.item))
        XCTAssertFalse(deep.contains { $0.item == 6 || $0.item == 8 })
    }

    func testEvaluationOptionsAgreeWithTheStandardMetricsAndCoverage() throws {
        let data = try syntheticDataset(users: 120, items: 30)
        var c = smallConfiguration(.sasrec); c.maxEpochs = 2
        let r = try Trainer.train(dataset: data, configuration: c)
        let split = DatasetSplit.leaveOneOut(data)
        let m = try r.model.evaluate(split.test, options: EvaluationOptions(cutoffs: [1, 10, 30], coverage: true))
        XCTAssertEqual(m.recall10, r.report.test.recall10)
        XCTAssertEqual(m.atK[10]!.hit, r.report.test.recall10, accuracy: 1e-12)
        XCTAssertEqual(m.atK[10]!.ndcg, r.report.test.ndcg10, accuracy: 1e-12)
        XCTAssertEqual(m.coverage[30], 1, "every item is in a full-length list")
        // coverage@1 = distinct top-1 items over the catalogue, computed here by brute force.
        var firsts = Set<Int>()
        let table = r.model.itemVectors().values, d = r.model.hiddenSize
        for tc in split.test {
            let u = r.model.userRepresentation(tc.history)
            let scores = (1...30).map { i in (0..<d).reduce(Float(0)) { $0 + u[$1] * table[i * d + $1] } }
            firsts.insert(scores.indices.max { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }!)
        }
        XCTAssertEqual(m.coverage[1]!, Double(firsts.count) / 30, accuracy: 1e-12)
        let seen = try r.model.evaluate(split.test, options: EvaluationOptions(excludeSeen: true, cutoffs: [10]))
        XCTAssertEqual(seen, r.model.evaluate(split.test, maskSeen: true).withCutoff(10, from: seen))
        XCTAssertGreaterThanOrEqual(seen.atK[10]!.hit, m.atK[10]!.hit)
        XCTAssertThrowsError(try r.model.evaluate(split.test, options: EvaluationOptions(cutoffs: [31])))
    }
}

private extension RankingMetrics {
    func withCutoff(_ k: Int, from other: RankingMetrics) -> RankingMetrics {
        var m = self; m.atK[k] = other.atK[k]; return m
    }
}
