/// `windows: auto` (the default for new configurations), resolved from the training data when
/// training starts. Chosen by measurement on ml-100k, ml-latest-small and Beauty (README,
/// "Whole-history training"):
///
/// - Short histories (mean training part ≤ `maxLength`; Beauty: 6.9 items): `last`. The newest window
///   is then (almost) the whole history, and the run is bit-identical to training before windows existed.
/// - Long histories, SASRec (ml-100k: 104 items, ml-latest-small: 163): `all`, every training target
///   once per epoch. ml-100k test NDCG@10 0.0534 ± 0.0036 against 0.0498 ± 0.0048 with `last` (3 seeds);
///   ml-latest-small: the same test figure, validation 0.0197 against 0.0140.
///   NOTE: `all` in batches of 32 windows (~1,300 targets per optimiser step instead of ~10,000, so
///   8× the steps) gave 0.0565 ± 0.0063 (0.0596, 0.0607, 0.0492) against 0.0534 ± 0.0036: within
///   one std, no measured gain, so the batch stays what the user set.
/// - Long histories, BERT4Rec: `last`, as before. Whole-history BERT4Rec only helped together with the
///   step cadence (`--windows all --eval-every 10 --min-steps 800`: 0.0479 ± 0.0017), and a default
///   validation every 10 steps would cost a full validation pass per 2,560 windows on large data.
extension ModelConfiguration {
    /// This configuration with `windows: auto` replaced by what it means for `train` (the users'
    /// training parts); any other selection is returned unchanged.
    public func resolvingAutomaticWindows(train: [[Int32]]) -> ModelConfiguration {
        guard windows == .auto else { return self }
        var c = self
        var users = 0, items = 0
        for s in train where !s.isEmpty { users += 1; items += s.count }
        let longHistories = users > 0 && items > users * maxLength
        c.windows = architecture == .sasrec && longHistories ? .all : .last
        return c
    }
}
