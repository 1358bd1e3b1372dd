import Foundation

/// Per-user chronological item sequences: the input of training and evaluation.
///
/// Item ids are `Int32` in `1...numItems`; 0 is reserved for padding and never appears in a sequence.
/// `timestamps`, when present, has one non-decreasing timestamp per event (needed by the temporal split).
public struct SequenceDataset: Sendable {
    /// Size of the catalogue: ids run `1...numItems` (items that never occur still get a row).
    public let numItems: Int
    /// One chronological sequence per user (index = user ordinal).
    public let sequences: [[Int32]]
    /// Optional per-event timestamps, same shape as `sequences`.
    public let timestamps: [[Int64]]?

    /// - Parameter numItems: catalogue size; nil = the largest id present.
    /// - Throws: `LearnError.invalidData` for ids outside `1...numItems` or mismatched timestamps.
    public init(sequences: [[Int32]], numItems: Int? = nil, timestamps: [[Int64]]? = nil) throws {
        var maxID: Int32 = 0
        for (u, s) in sequences.enumerated() {
            for v in s {
                if v < 1 { throw LearnError.invalidData("user \(u): item id \(v) < 1") }
                maxID = max(maxID, v)
            }
        }
        let n = numItems ?? Int(maxID)
        if Int(maxID) > n { throw LearnError.invalidData("item id \(maxID) exceeds numItems \(n)") }
        if n < 1 { throw LearnError.invalidData("empty catalogue") }
        if let timestamps {
            if timestamps.count != sequences.count { throw LearnError.invalidData("timestamps: \(timestamps.count) users, sequences: \(sequences.count)") }
            for u in 0..<sequences.count where timestamps[u].count != sequences[u].count {
                throw LearnError.invalidData("user \(u): \(timestamps[u].count) timestamps for \(sequences[u].count) events")
            }
        }
        self.numItems = n
        self.sequences = sequences
        self.timestamps = timestamps
    }

    /// Reads the `user item item ...` text format (one user per line, chronological, as the
    /// SASRec/LLM2Rec data files); lines with fewer than one item are skipped.
    public static func load(contentsOf path: String, numItems: Int? = nil) throws -> SequenceDataset {
        guard let data = FileManager.default.contents(atPath: path) else { throw LearnError.io("cannot read \(path)") }
        var sequences: [[Int32]] = []
        var current: [Int32] = []
        var number: Int64 = 0, inNumber = false, field = 0
        func endField() {
            if inNumber { if field > 0 { current.append(Int32(truncatingIfNeeded: number)) }; field += 1 }
            number = 0; inNumber = false
        }
        for byte in data {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                number = number * 10 + Int64(byte - UInt8(ascii: "0")); inNumber = true
            case UInt8(ascii: "\n"):
                endField()
                if !current.isEmpty { sequences.append(current) }
                current = []; field = 0
            default:
                endField()
            }
        }
        endField()
        if !current.isEmpty { sequences.append(current) }
        return try SequenceDataset(sequences: sequences, numItems: numItems)
    }
}

/// One evaluation case: rank `target` given the chronological `history`.
public struct EvaluationCase: Sendable, Equatable {
    public var history: [Int32]
    public var target: Int32
    public init(history: [Int32], target: Int32) { self.history = history; self.target = target }
}

/// A train / validation / test split of a dataset.
public struct DatasetSplit: Sendable {
    /// Per user, the chronological training part (may be empty).
    public var train: [[Int32]]
    public var valid: [EvaluationCase]
    public var test: [EvaluationCase]

    /// Leave-one-out (the reference protocol): train = s[..<n-2]; users with ≥ 3 events give a
    /// validation case (history s[..<n-2], target s[n-2]) and a test case (history s[..<n-1], target s[n-1]).
    public static func leaveOneOut(_ data: SequenceDataset) -> DatasetSplit {
        var split = DatasetSplit(train: [], valid: [], test: [])
        split.train.reserveCapacity(data.sequences.count)
        for s in data.sequences {
            let n = s.count
            split.train.append(n >= 2 ? Array(s[..<(n - 2)]) : [])
            if n >= 3 {
                split.valid.append(EvaluationCase(history: Array(s[..<(n - 2)]), target: s[n - 2]))
                split.test.append(EvaluationCase(history: Array(s[..<(n - 1)]), target: s[n - 1]))
            }
        }
        return split
    }

    /// Global temporal split: `tV`, `tT` = the `validQuantile` / `testQuantile` quantiles of all event
    /// timestamps. Training = events with t < tV. Validation: a user's first event in [tV, tT), given
    /// their training events (at least one). Test: a user's first event at t ≥ tT, given every earlier
    /// event (at least one).
    /// - Throws: `LearnError.invalidData` when the dataset has no timestamps.
    public static func temporal(_ data: SequenceDataset, validQuantile: Double, testQuantile: Double) throws -> DatasetSplit {
        guard let ts = data.timestamps else { throw LearnError.invalidData("the temporal split needs timestamps") }
        var all = ts.flatMap { $0 }
        if all.isEmpty { throw LearnError.invalidData("no events") }
        all.sort()
        func quantile(_ q: Double) -> Int64 { all[min(all.count - 1, Int((Double(all.count) * q).rounded(.down)))] }
        let tV = quantile(validQuantile), tT = quantile(testQuantile)
        var split = DatasetSplit(train: [], valid: [], test: [])
        for (s, t) in zip(data.sequences, ts) {
            var train: [Int32] = []
            for i in 0..<s.count where t[i] < tV { train.append(s[i]) }
            split.train.append(train)
            if !train.isEmpty, let v = (0..<s.count).first(where: { t[$0] >= tV && t[$0] < tT }) {
                split.valid.append(EvaluationCase(history: train, target: s[v]))
            }
            if let e = (0..<s.count).first(where: { t[$0] >= tT }), e > 0 {
                split.test.append(EvaluationCase(history: Array(s[..<e]), target: s[e]))
            }
        }
        return split
    }

    /// The split a configuration asks for.
    public static func make(_ data: SequenceDataset, configuration: ModelConfiguration) throws -> DatasetSplit {
        switch configuration.split {
        case .leaveOneOut: return leaveOneOut(data)
        case .temporal: return try temporal(data, validQuantile: configuration.temporalValidQuantile,
                                            testQuantile: configuration.temporalTestQuantile)
        }
    }
}
