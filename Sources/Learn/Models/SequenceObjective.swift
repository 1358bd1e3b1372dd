/// What distinguishes SASRec from BERT4Rec once the network is shared: which windows are trained,
/// which positions are scored against which targets, and how an evaluation input is built.
protocol SequenceObjective {
    /// Number of training examples (windows) per epoch.
    var exampleCount: Int { get }
    /// Packs the examples `batch` into `ws` and lists the scored rows and their targets (ids 1...N).
    /// `scoredRows` is left empty when EVERY packed row is scored in order (SASRec), which lets the
    /// loss read the hidden states in place.
    func fillBatch(_ batch: ArraySlice<Int>, into ws: SequenceNetwork.Workspace, scoredRows: inout [Int32],
                   targets: inout [Int32], rng: inout Xoshiro256)
    /// The user ordinal (index into the dataset's sequences) of an example, for per-user side
    /// information such as profiles.
    func exampleUser(_ example: Int) -> Int
    /// The user's whole training part (ids 1...N, oldest first) — not only the example's window —
    /// for losses on per-user side information (the profile path's recommendation loss).
    func exampleItems(_ example: Int) -> [Int32]
}

/// Which windows of a user's training part are trained (`ModelConfiguration.windows`).
///
/// A window is identified by its END `t` (exclusive index into the training part `s`): SASRec trains
/// the inputs `s[t−1−n ..< t−1]` against the targets `s[t−n ..< t]` with `n = min(t − 1, maxLength)`;
/// BERT4Rec masks inside `s[max(0, t − maxLength) ..< t]`. Ends run from the newest, `t = s.count`,
/// back by `stride` while a window still has a target (`t ≥ 2` SASRec, `t ≥ 1` BERT4Rec).
public enum TrainingWindows: Equatable, Sendable, Codable, CustomStringConvertible {
    /// One window per user, the most recent (the behaviour before whole-history training).
    case last
    /// Non-overlapping windows over the whole history (stride = maxLength): every training target
    /// is scored exactly once per epoch.
    case all
    /// Windows every `N` items from the newest (N < maxLength overlaps, N > maxLength skips).
    case stride(Int)
    /// SASRec only: RecBole's every-prefix training. `prefixes` (K = 1) is one example per training
    /// target, the up-to-`maxLength` items before it, loss at the last position only; `prefixes:K`
    /// ends a window every K items and scores its newest K positions (every target once per epoch,
    /// each with at least `maxLength − K` items of context once the history is long enough; K ≥
    /// maxLength is `all`). See `PrefixWindows.swift`.
    case prefixes(Int)
    /// Chosen from the data when training starts (`AutomaticWindows.swift`): `last` on short
    /// histories, whole-history training on long ones. Never stored: a version stores what it resolved to.
    case auto

    /// Parses `auto`, `last`, `all`, `stride:N`, `prefixes` or `prefixes:K` (N, K ≥ 1).
    public init?(_ text: String) {
        switch text {
        case "auto": self = .auto
        case "last": self = .last
        case "all": self = .all
        case "prefixes": self = .prefixes(1)
        default:
            if text.hasPrefix("prefixes:") {
                guard let k = Int(text.dropFirst("prefixes:".count)), k >= 1 else { return nil }
                self = .prefixes(k)
                return
            }
            guard text.hasPrefix("stride:"), let n = Int(text.dropFirst("stride:".count)), n >= 1 else { return nil }
            self = .stride(n)
        }
    }

    public var description: String {
        switch self {
        case .last: return "last"
        case .all: return "all"
        case .stride(let n): return "stride:\(n)"
        case .prefixes(let k): return k == 1 ? "prefixes" : "prefixes:\(k)"
        case .auto: return "auto"
        }
    }

    /// The step between window ends; nil = only the last window (also for an unresolved `auto`).
    func stride(maxLength: Int) -> Int? {
        switch self {
        case .last, .auto: return nil
        case .all: return maxLength
        case .stride(let n): return n
        case .prefixes(let k): return min(k, maxLength)
        }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let v = TrainingWindows(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "windows must be auto, last, all, stride:N, prefixes or prefixes:K, got '\(text)'"))
        }
        self = v
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// The window ends of one training part of `count` items, newest first (see the type's comment).
    /// `minimumEnd` is the smallest end that still has a target (2 for SASRec, 1 for BERT4Rec).
    public func ends(count: Int, maxLength: Int, minimumEnd: Int) -> [Int] {
        guard count >= minimumEnd else { return [] }
        guard let step = stride(maxLength: maxLength) else { return [count] }
        return Array(Swift.stride(from: count, through: minimumEnd, by: -step))
    }
}

/// An objective that trains windows of the users' training parts: example e is the window ending at
/// `ends[e]` of `windows[e]` (the whole training part of user ordinal `users[e]`; arrays share storage).
protocol WindowedObjective: SequenceObjective {
    var windows: [[Int32]] { get }
    var users: [Int] { get }
    var ends: [Int] { get }
}

extension WindowedObjective {
    var exampleCount: Int { windows.count }
    func exampleUser(_ example: Int) -> Int { users[example] }
    func exampleItems(_ example: Int) -> [Int32] { windows[example] }

    /// The training windows: for every user with at least `minimumEnd` training items (in user
    /// order), the window ends of `selection`, newest first. With `.last` this is one example per
    /// eligible user in user order, exactly the examples (and order) of one-window training.
    static func trainingWindows(_ train: [[Int32]], selection: TrainingWindows, maxLength: Int,
                                minimumEnd: Int) -> (windows: [[Int32]], users: [Int], ends: [Int]) {
        var w: [[Int32]] = [], u: [Int] = [], e: [Int] = []
        for (i, s) in train.enumerated() {
            for t in selection.ends(count: s.count, maxLength: maxLength, minimumEnd: minimumEnd) {
                w.append(s); u.append(i); e.append(t)
            }
        }
        return (w, u, e)
    }
}

extension SequenceNetwork {
    /// Appends the evaluation window of `history` to `ws` (the architecture's: SASRec the last `maxLength`
    /// items, BERT4Rec the last `maxLength − 1` followed by [MASK]). The user representation is the final
    /// hidden state of the window's last row.
    func appendEvaluationWindow<C: BidirectionalCollection>(_ history: C, to ws: Workspace)
    where C.Element == Int32 {
        architecture.appendEvaluationWindow(history, to: ws, network: self)
    }
}
