/// BERT4Rec — "Sequential Recommendation with Bidirectional Encoder Representations from Transformer",
/// F. Sun, J. Liu, J. Wu, C. Pei, X. Lin, W. Ou, P. Jiang, CIKM 2019 (arXiv:1904.06690).
///
/// Network (`SequenceNetwork` with `causal = false`): bidirectional self-attention over the real
/// positions, 2 heads, d→4d GELU feed-forward, a trainable [MASK] item (id numItems + 1, never scored).
/// Objective (Cloze): input = the last `maxLength` training items of each window (`TrainingWindows`:
/// by default one per user, ending at the newest training item), each replaced by [MASK] with
/// probability `maskProbability` (a window without any mask gets its last item masked); full-softmax
/// cross-entropy at the masked positions (mean over them). Evaluation appends [MASK] to the last
/// `maxLength − 1` history items and scores that position.
///
/// NOTE: the paper also replaces masked tokens by random items / keeps them (BERT's 80/10/10) and
/// uses an output projection with bias; like the reference we always use [MASK] and tie the output
/// to the item table, pre-LN blocks, LayerNorm eps 1e-8.
struct BERT4Rec: WindowedObjective {
    let maxLength: Int
    let heads: Int
    let maskProbability: Float
    let maskItem: Int32
    let windows: [[Int32]]
    let users: [Int]
    let ends: [Int]

    init(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) {
        maxLength = configuration.maxLength
        heads = configuration.resolvedHeads
        maskProbability = configuration.maskProbability
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
            var masked = false
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
