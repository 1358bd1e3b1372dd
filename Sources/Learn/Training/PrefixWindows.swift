/// Every-prefix training (`TrainingWindows.prefixes`), the example set RecBole 1.2.1 trains SASRec on.
///
/// RecBole turns each user's training part `s` into one example per target `s[t−1]` (t = 2…count):
/// input = the up-to-`maxLength` items before it, cross-entropy at the LAST position only. Every target
/// is scored once per epoch with all the context it has, and a batch of 256 examples is 256 targets
/// (one optimiser step per 256 targets, against one per 256 windows ≈ 10,000 targets with `all`).
/// Windows scored at every position (`all`, `stride:N`) score most targets with a shorter context
/// (position i of a window sees only i earlier items).
///
/// `prefixes:K` generalises this at 1/K of the work: windows end every K items back from the newest
/// (the same ends as `stride:K`) and each scores only its newest `min(K, n)` positions, so consecutive
/// windows' scored targets tile the history exactly: every target once per epoch, with at least
/// `maxLength − K` items before it once the history allows. The oldest window (end t < K + 2) has
/// t − 1 ≤ K targets and scores them all. K = 1 is RecBole's example set; K ≥ maxLength is `all`.
///
/// NOTE: RecBole pads on the right with positions counted from the window's start; we keep positions
/// counted back from the newest item (as evaluation and serving do), which differs only for windows
/// shorter than `maxLength`.
extension TrainingWindows {
    /// For a SASRec window of `targets` targets (its real rows), how many of its newest rows the loss
    /// scores: nil = every row (`last`, `all`, `stride:N`: the loss reads the rows in place).
    func scoredRows(targets n: Int, maxLength: Int) -> Int? {
        guard case .prefixes = self, let k = stride(maxLength: maxLength) else { return nil }
        return min(n, k)
    }
}
