import XCTest
@testable import Learn

/// Every-prefix training (`--windows prefixes[:K]`, RecBole's SASRec examples): exact examples on tiny histories.
final class PrefixTrainingTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }

    /// Packs every example of `windows` in one batch: (packed input items, positions, scored rows, targets, users).
    private func batch(_ train: [[Int32]], windows: TrainingWindows, maxLength: Int, numItems: Int) throws
        -> (items: [Int32], positions: [Int32], rows: [Int32], targets: [Int32], users: [Int]) {
        var c = smallConfiguration(.sasrec); c.maxLength = maxLength; c.windows = windows
        try c.validate()
        let objective = SASRec(train: train, configuration: c)
        let network = try SequenceNetwork(configuration: c, numItems: numItems, text: nil)
        let ws = network.makeWorkspace()
        var rows: [Int32] = [], targets: [Int32] = []
        var rng = Xoshiro256(seed: 1)
        objective.fillBatch(Array(0..<objective.exampleCount)[...], into: ws, scoredRows: &rows, targets: &targets, rng: &rng)
        return (ws.items, ws.positions, rows, targets, (0..<objective.exampleCount).map(objective.exampleUser))
    }

    func testParsingAndValidation() throws {
        XCTAssertEqual(TrainingWindows("prefixes"), .prefixes(1))
        XCTAssertEqual(TrainingWindows("prefixes:5"), .prefixes(5))
        XCTAssertEqual(TrainingWindows.prefixes(1).description, "prefixes")
        XCTAssertEqual(TrainingWindows.prefixes(5).description, "prefixes:5")
        XCTAssertNil(TrainingWindows("prefixes:0"))
        XCTAssertNil(TrainingWindows("prefixes:"))
        XCTAssertNil(TrainingWindows("prefixes:x"))
        var c = ModelConfiguration(); c.windows = .prefixes(3)
        XCTAssertNoThrow(try c.validate())
        let back = try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(back.windows, .prefixes(3))
        // BERT4Rec has no next-item targets to cut prefixes for.
        var b = ModelConfiguration(architecture: .bert4rec); b.windows = .prefixes(1)
        XCTAssertThrowsError(try b.validate())
        c.windows = .prefixes(0)
        XCTAssertThrowsError(try c.validate())
    }

    func testPrefixesAreOneExamplePerTargetScoredAtTheLastPosition() throws {
        // s = 1…7, maxLength 3: targets 2…7, each with the ≤ 3 items before it; user 1 (one item) has none.
        let b = try batch([Array(1...7), [4]], windows: .prefixes(1), maxLength: 3, numItems: 7)
        XCTAssertEqual(b.users, [0, 0, 0, 0, 0, 0])
        // newest first: inputs [4,5,6]→7, [3,4,5]→6, [2,3,4]→5, [1,2,3]→4, [1,2]→3, [1]→2
        XCTAssertEqual(b.items, [4, 5, 6, 3, 4, 5, 2, 3, 4, 1, 2, 3, 1, 2, 1])
        XCTAssertEqual(b.positions, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 2, 3, 3])
        XCTAssertEqual(b.rows, [2, 5, 8, 11, 13, 14], "the last row of each prefix")
        XCTAssertEqual(b.targets, [7, 6, 5, 4, 3, 2])
    }

    func testPrefixesKScoreTheNewestKRowsAndTileTheHistory() throws {
        // s = 1…10, maxLength 4, K 3: ends 10, 7, 4 (as stride:3). End 10: input [6,7,8,9], scored rows
        // 1–3 → 8, 9, 10; end 7: input [3,4,5,6] → 5, 6, 7; end 4 (the oldest): input [1,2,3], all 3 rows → 2, 3, 4.
        let b = try batch([Array(1...10)], windows: .prefixes(3), maxLength: 4, numItems: 10)
        XCTAssertEqual(b.items, [6, 7, 8, 9, 3, 4, 5, 6, 1, 2, 3])
        XCTAssertEqual(b.rows, [1, 2, 3, 5, 6, 7, 8, 9, 10])
        XCTAssertEqual(b.targets, [8, 9, 10, 5, 6, 7, 2, 3, 4])
        // K ≥ maxLength scores every row of the `all` windows: the same examples and targets as `all`.
        let wide = try batch([Array(1...10)], windows: .prefixes(9), maxLength: 4, numItems: 10)
        let all = try batch([Array(1...10)], windows: .all, maxLength: 4, numItems: 10)
        XCTAssertEqual(wide.items, all.items)
        XCTAssertEqual(wide.targets, all.targets)
        XCTAssertEqual(wide.rows, (0..<Int32(all.items.count)).map { $0 })
    }

    func testEveryTargetOnceWithItsContextOnRandomData() throws {
        let data = try syntheticDataset(users: 40, items: 30, length: 1...30)
        var expected: [Int32] = []
        for s in data.sequences where s.count >= 2 { expected += s[1...] }
        for (maxLength, k) in [(2, 1), (5, 1), (5, 2), (7, 3), (7, 7), (4, 20)] {
            let b = try batch(data.sequences, windows: .prefixes(k), maxLength: maxLength, numItems: 30)
            XCTAssertEqual(b.targets.sorted(), expected.sorted(), "maxLength \(maxLength) K \(k)")
            XCTAssertEqual(b.rows.count, b.targets.count)
        }
        // K = 1: each target is predicted from exactly min(index, maxLength) items (RecBole's prefix).
        let b = try batch(data.sequences, windows: .prefixes(1), maxLength: 5, numItems: 30)
        var rowStart = 0, k = 0
        for s in data.sequences where s.count >= 2 {
            for t in stride(from: s.count, through: 2, by: -1) {
                let n = min(t - 1, 5)
                XCTAssertEqual(Array(b.items[rowStart..<(rowStart + n)]), Array(s[(t - 1 - n)..<(t - 1)]))
                XCTAssertEqual(b.rows[k], Int32(rowStart + n - 1))
                XCTAssertEqual(b.targets[k], s[t - 1])
                rowStart += n; k += 1
            }
        }
        XCTAssertEqual(k, expected.count)
    }

    func testCostAndTraining() throws {
        // One user of 12 events: training part 10 items, 9 targets; maxLength 4 → prefixes of 1, 2, 3, 4, 4, 4, 4, 4, 4 rows.
        let data = try SequenceDataset(sequences: [Array(1...12)], numItems: 12)
        var c = smallConfiguration(.sasrec); c.maxLength = 4; c.blocks = 1; c.windows = .prefixes(1)
        let prefixes = try TrainingCost.flopsPerEpoch(dataset: data, configuration: c)
        let d = Double(c.hiddenSize), n = 12.0, rows = 30.0, attention = 1 + 4 + 9 + 6 * 16.0
        XCTAssertEqual(prefixes, 6 * 9 * n * d + rows * 3 * (8 * d * d + 4 * d * d) + attention * 12 * d, accuracy: 1e-6 * prefixes)
        // Training: one example per target, deterministic.
        let set = try syntheticDataset(users: 30, items: 25, length: 5...20)
        var t = smallConfiguration(.sasrec); t.maxEpochs = 2; t.windows = .prefixes(1)
        let a = try Trainer.train(dataset: set, configuration: t)
        let again = try Trainer.train(dataset: set, configuration: t)
        XCTAssertEqual(a.model.exportParameters(), again.model.exportParameters())
        XCTAssertEqual(a.report.trainExamples, set.sequences.reduce(0) { $0 + max($1.count - 3, 0) })
        XCTAssertTrue(a.report.test.ndcg10.isFinite)
    }
}
