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
    /// The user ordinal of each validation / test case (same order as `valid` / `test`).
    public var validUsers: [Int] = []
    public var testUsers: [Int] = []

    /// Leave-one-out (the reference protocol): train = s[..<n-2]; users with ≥ 3 events give a
    /// validation case (history s[..<n-2], target s[n-2]) and a test case (history s[..<n-1], target s[n-1]).
    public static func leaveOneOut(_ data: SequenceDataset) -> DatasetSplit {
        var split = DatasetSplit(train: [], valid: [], test: [])
        split.train.reserveCapacity(data.sequences.count)
        for (u, s) in data.sequences.enumerated() {
            let n = s.count
            split.train.append(n >= 2 ? Array(s[..<(n - 2)]) : [])
            if n >= 3 {
                split.valid.append(EvaluationCase(history: Array(s[..<(n - 2)]), target: s[n - 2]))
                split.test.append(EvaluationCase(history: Array(s[..<(n - 1)]), target: s[n - 1]))
                split.validUsers.append(u); split.testUsers.append(u)
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
        for (u, (s, t)) in zip(data.sequences, ts).enumerated() {
            var train: [Int32] = []
            for i in 0..<s.count where t[i] < tV { train.append(s[i]) }
            split.train.append(train)
            if !train.isEmpty, let v = (0..<s.count).first(where: { t[$0] >= tV && t[$0] < tT }) {
                split.valid.append(EvaluationCase(history: train, target: s[v]))
                split.validUsers.append(u)
            }
            if let e = (0..<s.count).first(where: { t[$0] >= tT }), e > 0 {
                split.test.append(EvaluationCase(history: Array(s[..<e]), target: s[e]))
                split.testUsers.append(u)
            }
        }
        return split
    }

    /// The split a configuration asks for, its validation and test cases restricted to the users
    /// `configuration.evaluationUsers` selects (`auto` resolved as `ModelConfiguration.resolvedEvaluationUsers`).
    public static func make(_ data: SequenceDataset, configuration: ModelConfiguration) throws -> DatasetSplit {
        let whole = try unsampled(data, configuration: configuration)
        let users = configuration.resolvedEvaluationUsers(eligibleUsers: whole.evaluationUserCount, numItems: data.numItems)
        return whole.restrictingEvaluation(toUsers: users)
    }

    /// The split a configuration asks for, with every user's validation and test case.
    static func unsampled(_ data: SequenceDataset, configuration: ModelConfiguration) throws -> DatasetSplit {
        switch configuration.split {
        case .leaveOneOut: return leaveOneOut(data)
        case .temporal: return try temporal(data, validQuantile: configuration.temporalValidQuantile,
                                            testQuantile: configuration.temporalTestQuantile)
        }
    }

    /// Users with a validation or a test case.
    public var evaluationUserCount: Int {
        // Both lists are ascending (cases are made in user order): count their union by merging.
        var i = 0, j = 0, n = 0
        while i < validUsers.count || j < testUsers.count {
            let a = i < validUsers.count ? validUsers[i] : Int.max, b = j < testUsers.count ? testUsers[j] : Int.max
            if a <= b { i += 1 }
            if b <= a { j += 1 }
            n += 1
        }
        return n
    }

    /// Seed of the evaluation-user sample. Fixed, not the training seed: every version trained on the same
    /// data — whatever its seed — is validated and tested on the same users, so their metrics compare.
    static let evaluationSampleSeed: UInt64 = 0x5EED_EAA1

    /// The split with validation and test restricted to a seeded random sample of `count` of the users that
    /// have a validation or test case (the same users for both); `count` 0, or at least that many users,
    /// returns the split unchanged (every case, in the same order: metrics bit-identical to no sampling).
    /// The sample depends only on the user ordinals and `count`, so re-splitting the same data reproduces it.
    public func restrictingEvaluation(toUsers count: Int) -> DatasetSplit {
        var eligible: [Int] = []
        eligible.reserveCapacity(max(validUsers.count, testUsers.count))
        var i = 0, j = 0
        while i < validUsers.count || j < testUsers.count {
            let a = i < validUsers.count ? validUsers[i] : Int.max, b = j < testUsers.count ? testUsers[j] : Int.max
            eligible.append(min(a, b))
            if a <= b { i += 1 }
            if b <= a { j += 1 }
        }
        guard count > 0, count < eligible.count else { return self }
        // Partial Fisher–Yates: the first `count` positions become a uniform sample without replacement.
        var rng = Xoshiro256(seed: Self.evaluationSampleSeed)
        for k in 0..<count {
            let r = k + Int(rng.next() % UInt64(eligible.count - k))
            eligible.swapAt(k, r)
        }
        let chosen = Set(eligible[..<count])
        var out = DatasetSplit(train: train, valid: [], test: [])
        out.valid.reserveCapacity(count); out.test.reserveCapacity(count)
        // Cases keep their original (user) order.
        for (c, u) in zip(valid, validUsers) where chosen.contains(u) { out.valid.append(c); out.validUsers.append(u) }
        for (c, u) in zip(test, testUsers) where chosen.contains(u) { out.test.append(c); out.testUsers.append(u) }
        return out
    }
}
