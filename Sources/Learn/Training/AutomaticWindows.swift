/// `windows: auto` (the default for new configurations), resolved from the training data when
/// training starts. Measured on ml-100k, ml-latest-small and Beauty (README, "Whole-history training"):
///
/// - Short histories (mean training part ≤ `maxLength`; Beauty: 6.9 items): `last`. The newest window
///   is then (almost) the whole history, and the run is bit-identical to training before windows existed.
/// - Long histories, SASRec (ml-100k: 104 items, ml-latest-small: 163): `all` — every target once per
///   epoch — in batches of `batchSize / 8` windows. A whole-history window holds ~40 targets against
///   ~7 in a short-history `last` window, so 256 windows made an epoch of ml-100k only 10 optimiser
///   steps of ~10,000 targets each: the model stopped undertrained (test NDCG@10 0.0534 ± 0.0036).
///   32 windows (~1,300 targets a step, as a Beauty batch of 256 last windows holds ~1,800) reached
///   RecBole's 0.0567.
/// - Long histories, BERT4Rec: `last`, as before; whole-history BERT4Rec also needs the step cadence
///   (`--windows all --eval-every 10 --min-steps 800`), which `auto` does not choose for the user.
extension ModelConfiguration {
    /// Divides `batchSize` when `auto` picks whole-history windows (see the type comment).
    static let wholeHistoryBatchDivisor = 8

    /// This configuration with `windows: auto` replaced by what it means for `train` (the users'
    /// training parts); any other selection is returned unchanged.
    public func resolvingAutomaticWindows(train: [[Int32]]) -> ModelConfiguration {
        guard windows == .auto else { return self }
        var c = self
        var users = 0, items = 0
        for s in train where !s.isEmpty { users += 1; items += s.count }
        let longHistories = users > 0 && items > users * maxLength
        if architecture == .sasrec && longHistories {
            c.windows = .all
            c.batchSize = max(1, batchSize / Self.wholeHistoryBatchDivisor)
        } else {
            c.windows = .last
        }
        return c
    }
}
