/// What distinguishes SASRec from BERT4Rec once the network is shared: which windows are trained,
/// which positions are scored against which targets, and how an evaluation input is built.
protocol SequenceObjective {
    /// Number of training examples (one window per eligible user).
    var exampleCount: Int { get }
    /// Packs the examples `batch` into `ws` and lists the scored rows and their targets (ids 1...N).
    /// `scoredRows` is left empty when EVERY packed row is scored in order (SASRec), which lets the
    /// loss read the hidden states in place.
    func fillBatch(_ batch: ArraySlice<Int>, into ws: SequenceNetwork.Workspace, scoredRows: inout [Int32],
                   targets: inout [Int32], rng: inout Xoshiro256)
    /// The user ordinal (index into the dataset's sequences) of an example, for per-user side
    /// information such as profiles.
    func exampleUser(_ example: Int) -> Int
    /// The example's training items (ids 1...N, oldest first), for losses on per-user side
    /// information (the profile path's recommendation loss).
    func exampleItems(_ example: Int) -> [Int32]
}

/// An objective that trains one window per eligible user: `windows[e]` is example e's training part and
/// `users[e]` its user ordinal.
protocol WindowedObjective: SequenceObjective {
    var windows: [[Int32]] { get }
    var users: [Int] { get }
}

extension WindowedObjective {
    var exampleCount: Int { windows.count }
    func exampleUser(_ example: Int) -> Int { users[example] }
    func exampleItems(_ example: Int) -> [Int32] { windows[example] }

    /// The training parts with at least `minimumLength` items, and the ordinals of their users.
    static func eligibleWindows(_ train: [[Int32]], minimumLength: Int) -> (windows: [[Int32]], users: [Int]) {
        var w: [[Int32]] = [], u: [Int] = []
        for (i, s) in train.enumerated() where s.count >= minimumLength { w.append(s); u.append(i) }
        return (w, u)
    }
}

extension SequenceNetwork {
    /// Appends the evaluation window of `history` to `ws`: the last `maxLength` items (SASRec) or the
    /// last `maxLength − 1` items followed by [MASK] (BERT4Rec). The user representation is the final
    /// hidden state of the window's last row. An empty history yields a window of length 0 (SASRec)
    /// or just [MASK] (BERT4Rec).
    func appendEvaluationWindow<C: BidirectionalCollection>(_ history: C, to ws: Workspace)
    where C.Element == Int32 {
        if configuration.architecture == .bert4rec {
            let keep = history.suffix(maxLength - 1)
            ws.layout.append(length: keep.count + 1, heads: heads)
            ws.items.append(contentsOf: keep); ws.items.append(maskItem)
            let n = keep.count + 1
            for i in 0..<n { ws.positions.append(Int32(maxLength - n + 1 + i)) }
        } else {
            ws.append(window: history.suffix(maxLength), maxLength: maxLength, heads: heads)
        }
    }
}
