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
/// - Long histories, BERT4Rec: `stride:N` with N = maxLength / 5 (10 for maxLength 50), and, unless
///   `lastMaskProbability` is set, last-item masks on half the windows (0.5, RecBole's `ft_ratio`). Every
///   item sits in ~5 windows with different context, so an epoch is 5× the windows of `all` (41 optimiser
///   steps on ml-100k instead of 4, which per-epoch patience needs), and half of them train exactly the
///   task evaluation poses (history + [MASK]). ml-100k test NDCG@10 over seeds 0, 1, 2 in the README
///   (seed 0: 0.0573; `last`: 0.0191, collapsing seeds; `all` with a step cadence 0.0479 ± 0.0017;
///   RecBole 0.0592).
///
/// `lastMaskProbability` nil (the default of new configurations) is resolved too: 0.5 in the BERT4Rec
/// long-history case above, 0 everywhere else (Cloze only, no extra random draw: bit for bit the
/// training before the option existed).
extension ModelConfiguration {
    /// This configuration with `windows: auto` (and an unset `lastMaskProbability`) replaced by what
    /// they mean for `train` (the users' training parts); an explicit selection is returned unchanged.
    public func resolvingAutomaticWindows(train: [[Int32]]) -> ModelConfiguration {
        var c = self
        if windows == .auto {
            var users = 0, items = 0
            for s in train where !s.isEmpty { users += 1; items += s.count }
            let longHistories = users > 0 && items > users * maxLength
            switch architecture {
            case .sasrec where longHistories: c.windows = .prefixes(max(1, maxLength / 10))
            case .bert4rec where longHistories:
                c.windows = .stride(max(1, maxLength / 5))
                if lastMaskProbability == nil { c.lastMaskProbability = 0.5 }
            default: c.windows = .last
            }
        }
        if architecture == .bert4rec && c.lastMaskProbability == nil { c.lastMaskProbability = 0 }
        return c
    }
}
