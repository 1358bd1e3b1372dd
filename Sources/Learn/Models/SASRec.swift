/// SASRec — "Self-Attentive Sequential Recommendation", W.-C. Kang and J. McAuley, ICDM 2018
/// (arXiv:1808.09781), in the form both seed papers (LLM2Rec, KDD'25; ECIR'26 distillation) train it.
///
/// Network (`SequenceNetwork` with `causal = true`): item embeddings × √d plus learned positions,
/// pre-LayerNorm causal self-attention blocks with a d→d ReLU feed-forward, final LayerNorm, output
/// scores = hidden · item-tableᵀ (tied).
/// Objective: one window per user, input = train[..<n−1], target = train[1...], both the last `maxLength`
/// items; full-softmax cross-entropy over the whole catalogue at EVERY real position (mean over positions).
///
/// NOTE: the paper trains with one sampled negative and binary cross-entropy; like the reference
/// (`../shared/reference/seqrec_ref.py`) and recent re-evaluations we use full-softmax cross-entropy,
/// and pre-LN blocks with LayerNorm eps 1e-8 as pmixer/SASRec.pytorch.
/// NOTE: padding is never computed (packed batches); this is exact, since padded keys are masked out
/// and padded positions are never scored.
struct SASRec: WindowedObjective {
    let maxLength: Int
    let heads: Int
    /// Training parts of the users with at least two training items.
    let windows: [[Int32]]
    let users: [Int]

    init(train: [[Int32]], configuration: ModelConfiguration) {
        maxLength = configuration.maxLength
        heads = configuration.resolvedHeads
        (windows, users) = Self.eligibleWindows(train, minimumLength: 2)
    }

    func fillBatch(_ batch: ArraySlice<Int>, into ws: SequenceNetwork.Workspace, scoredRows: inout [Int32],
                   targets: inout [Int32], rng: inout Xoshiro256) {
        ws.reset()
        scoredRows.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        for e in batch {
            let s = windows[e]
            let n = min(s.count - 1, maxLength)
            ws.append(window: s[(s.count - 1 - n)..<(s.count - 1)], maxLength: maxLength, heads: heads)
            targets.append(contentsOf: s[(s.count - n)...])
        }
    }
}
