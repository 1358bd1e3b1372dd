import XCTest
@testable import Learn

/// `windows: auto`, the default: `last` on short histories (bit for bit), whole-history SASRec
/// (`prefixes:K`, K = maxLength / 10) and BERT4Rec (`stride:N`, N = maxLength / 5, last-item masks 0.5)
/// on long ones.
final class AutomaticWindowsTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }

    /// Trains `auto` and `explicit` on `data`: the same weights bit for bit, and `auto`'s report carries the explicit
    /// selection (with the loss's and the evaluated users' `auto` resolved too: full CE on these small catalogues,
    /// and every user, 0). Returns both results.
    @discardableResult
    func assertAutoTrains(_ auto: ModelConfiguration, as explicit: ModelConfiguration, on data: SequenceDataset,
                          _ message: String = "the report carries the resolved selection",
                          file: StaticString = #filePath, line: UInt = #line) throws -> (auto: TrainingResult, explicit: TrainingResult) {
        let a = try Trainer.train(dataset: data, configuration: auto)
        let e = try Trainer.train(dataset: data, configuration: explicit)
        XCTAssertEqual(a.model.exportParameters(), e.model.exportParameters(), file: file, line: line)
        var resolved = explicit; resolved.loss = .ce; resolved.evaluationUsers = 0
        XCTAssertEqual(a.report.configuration, resolved, message, file: file, line: line)
        return (a, e)
    }

    func testResolutionFollowsTheMeanHistoryLength() throws {
        var c = ModelConfiguration(); c.maxLength = 5
        XCTAssertEqual(c.windows, .auto)
        // Mean training part 5 (= maxLength; the empty part does not count): last, batch unchanged.
        let short: [[Int32]] = [[1, 2, 3], [1, 2, 3, 4, 5, 6, 7], []]
        XCTAssertEqual(c.resolvingAutomaticWindows(train: short).windows, .last)
        XCTAssertEqual(c.resolvingAutomaticWindows(train: short).batchSize, 256)
        // Mean 5.5 > 5: SASRec trains every target with prefixes:K, K = maxLength / 10 (at least 1);
        // BERT4Rec trains stride:N windows, N = maxLength / 5, with last-item masks on half of them.
        let long: [[Int32]] = [[1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7]]
        let r = c.resolvingAutomaticWindows(train: long)
        var expected = c; expected.windows = .prefixes(1)
        XCTAssertEqual(r, expected, "only the windows change")
        var c50 = ModelConfiguration(); c50.maxLength = 50
        XCTAssertEqual(c50.resolvingAutomaticWindows(train: [Array(1...60), Array(1...45)]).windows, .prefixes(5))
        XCTAssertEqual(c50.resolvingAutomaticWindows(train: [Array(1...50), Array(1...50)]).windows, .last, "mean = maxLength")
        let b = ModelConfiguration(architecture: .bert4rec)
        XCTAssertNil(b.lastMaskProbability, "unset: chosen with the windows")
        var b5 = b; b5.maxLength = 5
        XCTAssertEqual(b5.resolvingAutomaticWindows(train: long),
                       { var x = b5; x.windows = .stride(1); x.lastMaskProbability = 0.5; return x }(), "only these two change")
        XCTAssertEqual(b.resolvingAutomaticWindows(train: [Array(1...60), Array(1...45)]).windows, .stride(10))
        XCTAssertEqual(b.resolvingAutomaticWindows(train: [Array(1...60), Array(1...45)]).lastMaskProbability, 0.5)
        // Short histories: last and Cloze only (0: no extra random draw, training as before the options).
        XCTAssertEqual(b5.resolvingAutomaticWindows(train: short),
                       { var x = b5; x.windows = .last; x.lastMaskProbability = 0; return x }())
        // A probability that is set is kept, 0 included; explicit windows leave an unset one at 0.
        for q: Float in [0, 0.2, 1] {
            var bq = b5; bq.lastMaskProbability = q
            XCTAssertEqual(bq.resolvingAutomaticWindows(train: long).lastMaskProbability, q)
            XCTAssertEqual(bq.resolvingAutomaticWindows(train: long).windows, .stride(1))
        }
        for w in [TrainingWindows.last, .all, .stride(3)] {
            var bw = b5; bw.windows = w
            XCTAssertEqual(bw.resolvingAutomaticWindows(train: long), { var x = bw; x.lastMaskProbability = 0; return x }())
        }
        // An explicit selection is never changed; no data resolves to last.
        for w in [TrainingWindows.last, .all, .stride(3), .prefixes(2)] {
            var e = ModelConfiguration(); e.maxLength = 5; e.windows = w
            XCTAssertEqual(e.resolvingAutomaticWindows(train: long), e)
        }
        XCTAssertEqual(ModelConfiguration().resolvingAutomaticWindows(train: []).windows, .last)
        // JSON: "auto" round-trips; a stored configuration without the key is last (what it was trained with).
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"windows":"auto"}"#.utf8)).windows, .auto)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{}"#.utf8)).windows, .last)
        XCTAssertEqual(TrainingWindows("auto"), .auto)
    }

    func testAutoTrainsExactlyWhatItResolvesTo() throws {
        // Short histories (5…14 events, maxLength 10): auto = last, weights bit for bit.
        let short = try syntheticDataset(users: 60, items: 30)
        var c = smallConfiguration(.sasrec); c.maxEpochs = 2
        XCTAssertEqual(c.windows, .auto)
        var last = c; last.windows = .last
        let a = try assertAutoTrains(c, as: last, on: short).auto
        XCTAssertEqual(a.model.configuration.windows, .last)
        // Long histories (20…40 events, maxLength 10): auto = prefixes:1.
        let long = try syntheticDataset(users: 30, items: 30, length: 20...40)
        var all = c; all.windows = .prefixes(1)
        let (b, e) = try assertAutoTrains(c, as: all, on: long)
        XCTAssertEqual(b.report.trainExamples, e.report.trainExamples)
        XCTAssertGreaterThan(b.report.trainExamples, 30 * 17, "one example per training target")
    }

    func testBERT4RecAutoTrainsExactlyWhatItResolvesTo() throws {
        // Short histories (5…14 events, maxLength 10): auto = last with Cloze masks only, bit for bit
        // the explicit selection (no last-mask draw is made).
        let short = try syntheticDataset(users: 60, items: 30)
        var c = smallConfiguration(.bert4rec); c.maxEpochs = 2
        XCTAssertEqual(c.windows, .auto)
        XCTAssertNil(c.lastMaskProbability)
        var last = c; last.windows = .last; last.lastMaskProbability = 0
        try assertAutoTrains(c, as: last, on: short, "the report carries the resolved selections")
        // Long histories (20…40 events): auto = stride:2 (maxLength 10 / 5) with last-item masks at 0.5.
        let long = try syntheticDataset(users: 30, items: 30, length: 20...40)
        var stride = c; stride.windows = .stride(2); stride.lastMaskProbability = 0.5
        let (b, e) = try assertAutoTrains(c, as: stride, on: long)
        XCTAssertEqual(b.report.trainExamples, e.report.trainExamples)
        XCTAssertGreaterThan(b.report.trainExamples, 30 * 9, "a window every 2 training items")
        // The stored JSON carries the resolved probability, so the version reads back what it trained with.
        let stored = try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(b.report.configuration))
        XCTAssertEqual(stored.lastMaskProbability, 0.5)
    }
}
