/// SASRec — "Self-Attentive Sequential Recommendation", W.-C. Kang and J. McAuley, ICDM 2018
/// (arXiv:1808.09781), in the form both seed papers (LLM2Rec, KDD'25; ECIR'26 distillation) train it.
///
/// Network (`TransformerEncoder` with `causal = true`): item embeddings × √d plus learned positions,
/// pre-LayerNorm causal self-attention blocks with a d→d ReLU feed-forward, final LayerNorm, output
/// scores = hidden · item-tableᵀ (tied).
/// Objective: per window ending at t (`TrainingWindows`: the last one per user by default), input =
/// train[..<t−1], target = train[1..<t], both the last `maxLength` items; full-softmax cross-entropy
/// over the whole catalogue at EVERY real position (mean over positions) — or, with `prefixes[:K]`,
/// at the newest K positions only (RecBole's every-prefix training, `PrefixWindows.swift`).
///
/// NOTE: the paper trains with one sampled negative and binary cross-entropy; like the reference
/// (`../shared/reference/seqrec_ref.py`) and recent re-evaluations we use full-softmax cross-entropy,
/// and pre-LN blocks with LayerNorm eps 1e-8 as pmixer/SASRec.pytorch.
/// NOTE: padding is never computed (packed batches); this is exact, since padded keys are masked out
/// and padded positions are never scored.
struct SASRec: WindowedObjective {
    let maxLength: Int
    let heads: Int
    /// Training parts of the users with at least two training items, one entry per window.
    let windows: [[Int32]]
    let users: [Int]
    let ends: [Int]
    let selection: TrainingWindows

    init(train: [[Int32]], configuration: ModelConfiguration) {
        maxLength = configuration.maxLength
        heads = configuration.resolvedHeads
        selection = configuration.windows
        (windows, users, ends) = Self.trainingWindows(train, selection: configuration.windows, maxLength: maxLength, minimumEnd: 2)
    }

    func fillBatch(_ batch: ArraySlice<Int>, into ws: SequenceNetwork.Workspace, scoredRows: inout [Int32],
                   targets: inout [Int32], rng: inout Xoshiro256) {
        ws.reset()
        scoredRows.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        for e in batch {
            let s = windows[e], t = ends[e]
            let n = min(t - 1, maxLength)
            ws.append(window: s[(t - 1 - n)..<(t - 1)], maxLength: maxLength, heads: heads)
            if let m = selection.scoredRows(targets: n, maxLength: maxLength) {
                let end = Int32(ws.items.count)
                for r in (end - Int32(m))..<end { scoredRows.append(r) }
                targets.append(contentsOf: s[(t - m)..<t])
            } else {
                targets.append(contentsOf: s[(t - n)..<t])
            }
        }
    }
}

extension SASRec: SequenceArchitecture {
    static var defaultHeads: Int { 1 }
    static var defaultFeedForwardMultiplier: Int { 1 }
    static var defaultActivation: Kernels.Activation { .relu }

    static func makeEncoder(configuration: ModelConfiguration) -> any SequenceEncoder {
        TransformerEncoder(configuration: configuration, causal: true, maskToken: false)
    }

    static func makeObjective(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) -> any SequenceObjective {
        SASRec(train: train, configuration: configuration)
    }

    /// The last `maxLength` items; an empty history gives a window of length 0.
    static func appendEvaluationWindow<C: BidirectionalCollection>(_ history: C, to ws: SequenceNetwork.Workspace,
                                                                   network: SequenceNetwork) where C.Element == Int32 {
        ws.append(window: history.suffix(network.maxLength), maxLength: network.maxLength, heads: network.heads)
    }

    static func flopsPerEpoch(train: [[Int32]], configuration c: ModelConfiguration, numItems: Int) -> (flops: Double, examples: Int) {
        var rows = 0.0, scored = 0.0, attention = 0.0, examples = 0
        for s in train {
            for t in c.windows.ends(count: s.count, maxLength: c.maxLength, minimumEnd: 2) {
                let len = min(t - 1, c.maxLength)
                examples += 1
                rows += Double(len)
                attention += Double(len * len)
                scored += Double(c.windows.scoredRows(targets: len, maxLength: c.maxLength) ?? len)
            }
        }
        return (TransformerEncoder.flopsPerEpoch(rows: rows, scored: scored, attention: attention, configuration: c,
                                                 numItems: numItems), examples)
    }
}
