/// BERT4Rec — "Sequential Recommendation with Bidirectional Encoder Representations from Transformer",
/// F. Sun, J. Liu, J. Wu, C. Pei, X. Lin, W. Ou, P. Jiang, CIKM 2019 (arXiv:1904.06690).
///
/// Network (`TransformerEncoder` with `causal = false`): bidirectional self-attention over the real
/// positions, 2 heads, d→4d GELU feed-forward, a trainable [MASK] item (id numItems + 1, never scored).
/// Objective (Cloze): input = the last `maxLength` training items of each window (`TrainingWindows`:
/// by default one per user, ending at the newest training item), each replaced by [MASK] with
/// probability `maskProbability` (a window without any mask gets its last item masked); full-softmax
/// cross-entropy at the masked positions (mean over them). With probability `lastMaskProbability` a
/// window instead masks only its last item (RecBole's `ft_ratio` fine-tuning: the very task evaluation
/// poses). Evaluation appends [MASK] to the last `maxLength − 1` history items and scores that position.
///
/// NOTE: the paper also replaces masked tokens by random items / keeps them (BERT's 80/10/10) and
/// uses an output projection with bias; like the reference we always use [MASK] and tie the output
/// to the item table, pre-LN blocks, LayerNorm eps 1e-8.
struct BERT4Rec: WindowedObjective {
    let maxLength: Int
    let heads: Int
    let maskProbability: Float
    let lastMaskProbability: Float
    let maskItem: Int32
    let windows: [[Int32]]
    let users: [Int]
    let ends: [Int]

    init(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) {
        maxLength = configuration.maxLength
        heads = configuration.resolvedHeads
        maskProbability = configuration.maskProbability
        lastMaskProbability = configuration.resolvedLastMaskProbability
        maskItem = Int32(numItems + 1)
        (windows, users, ends) = Self.trainingWindows(train, selection: configuration.windows, maxLength: maxLength, minimumEnd: 1)
    }

    func fillBatch(_ batch: ArraySlice<Int>, into ws: SequenceNetwork.Workspace, scoredRows: inout [Int32],
                   targets: inout [Int32], rng: inout Xoshiro256) {
        ws.reset()
        scoredRows.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        for e in batch {
            let s = windows[e], t = ends[e]
            let window = s[max(0, t - maxLength)..<t]
            let row0 = ws.items.count
            ws.append(window: window, maxLength: maxLength, heads: heads)
            // No draw when the option is off, so such runs keep the random stream of Cloze-only training.
            var masked = lastMaskProbability > 0 && rng.nextUniform() < lastMaskProbability
            if masked {
                let last = row0 + window.count - 1
                targets.append(ws.items[last]); scoredRows.append(Int32(last))
                ws.items[last] = maskItem
                continue
            }
            for i in 0..<window.count where rng.nextUniform() < maskProbability {
                targets.append(ws.items[row0 + i]); scoredRows.append(Int32(row0 + i))
                ws.items[row0 + i] = maskItem
                masked = true
            }
            if !masked {
                let last = row0 + window.count - 1
                targets.append(ws.items[last]); scoredRows.append(Int32(last))
                ws.items[last] = maskItem
            }
        }
    }
}

extension BERT4Rec: SequenceArchitecture {
    static var defaultHeads: Int { 2 }
    static var defaultFeedForwardMultiplier: Int { 4 }
    static var defaultActivation: Kernels.Activation { .gelu }

    static func makeEncoder(configuration: ModelConfiguration) -> any SequenceEncoder {
        TransformerEncoder(configuration: configuration, causal: false, maskToken: true)
    }

    static func makeObjective(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) -> any SequenceObjective {
        BERT4Rec(train: train, configuration: configuration, numItems: numItems)
    }

    /// The last `maxLength − 1` items followed by [MASK]; an empty history gives just [MASK].
    static func appendEvaluationWindow<C: BidirectionalCollection>(_ history: C, to ws: SequenceNetwork.Workspace,
                                                                   network: SequenceNetwork) where C.Element == Int32 {
        let maxLength = network.maxLength
        let keep = history.suffix(maxLength - 1)
        ws.layout.append(length: keep.count + 1, heads: network.heads)
        ws.items.append(contentsOf: keep); ws.items.append(network.maskItem)
        let n = keep.count + 1
        for i in 0..<n { ws.positions.append(Int32(maxLength - n + 1 + i)) }
    }

    /// The scored positions are the expected number of masked ones.
    static func flopsPerEpoch(train: [[Int32]], configuration c: ModelConfiguration, numItems: Int) -> (flops: Double, examples: Int) {
        var rows = 0.0, scored = 0.0, attention = 0.0, examples = 0
        for s in train {
            for t in c.windows.ends(count: s.count, maxLength: c.maxLength, minimumEnd: 1) {
                let len = min(t, c.maxLength)
                examples += 1
                rows += Double(len)
                attention += Double(len * len)
                let p = Double(c.maskProbability)
                // expected masked positions, plus the forced mask when none was drawn
                let cloze = Double(len) * p + pow1m(p, len)
                let q = Double(c.resolvedLastMaskProbability)
                scored += q == 0 ? cloze : q + (1 - q) * cloze
            }
        }
        return (TransformerEncoder.flopsPerEpoch(rows: rows, scored: scored, attention: attention, configuration: c,
                                                 numItems: numItems), examples)
    }

    /// (1 − p)ⁿ by repeated multiplication (the order the recorded FLOP counts were computed in).
    private static func pow1m(_ p: Double, _ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= 1 - p }
        return r
    }
}
