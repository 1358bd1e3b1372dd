/// `windows: auto` (the default for new configurations), resolved from the training data when
/// training starts. Chosen by measurement on ml-100k, ml-latest-small and Beauty (README,
/// "Whole-history training"):
///
/// - Short histories (mean training part ≤ `maxLength`; Beauty: 6.9 items): `last`. The newest window
///   is then (almost) the whole history, and the run is bit-identical to training before windows existed.
/// - Long histories, SASRec (ml-100k: 104 items, ml-latest-small: 163): `prefixes:K` with K =
///   maxLength / 10 (5 for maxLength 50): every training target once per epoch, each scored with at
///   least 90 % of `maxLength` items of context, as evaluation sees it (RecBole's every-prefix example
///   set at 1/K of its work). ml-100k test NDCG@10, seed 0: `prefixes:5` 0.0627, `prefixes:10` 0.0565,
///   `all` 0.0540 (3 seeds in the README; RecBole 0.0577). `all` scores most targets with a short
///   context (position i of a window sees i items), which evaluation never asks for.
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
        c.windows = architecture == .sasrec && longHistories ? .prefixes(max(1, maxLength / 10)) : .last
        return c
    }
}
