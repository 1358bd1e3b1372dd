import CKernels
import Foundation

/// Sampled softmax cross-entropy with the logQ correction (Bengio & Senécal 2008; Jean et al. 2015;
/// Yi et al. 2019 for in-batch negatives): each scored row is a softmax over its positive and a
/// candidate set C shared by its group of rows (below), instead of the whole catalogue, so a step costs
/// O(rows · |C|) rather than O(rows · catalogue).
///
/// C is drawn per group (one group = the batch when `groups` is 1; "batch" below means the group),
/// without duplicates, from a mixture: `inBatchFraction · N` draws are the
/// targets of uniformly drawn rows of the batch (in-batch negatives, which follow item popularity for
/// free) and the rest are uniform over the catalogue (so the tail is seen too). Conditional on the
/// batch, each draw picks item j with probability
///
///     q_j = f · c_j / P + (1 − f) / n        (f = in-batch share, c_j = j's count among the P targets)
///
/// and j is in C with probability π_j = 1 − (1 − q_j)^N. Every candidate's logit is corrected by
/// −log π_j, so Σ_{k ∈ C} e^{s_k} / π_k estimates the negatives' part of the partition function without
/// bias (popular items, drawn often, are not over-penalised). A candidate equal to a row's own positive
/// (an accidental hit) is masked out of that row. The positive's logit is NOT corrected: it is in its
/// row's softmax with probability 1, not Monte-Carlo sampled (Blanc & Rendle 2018; Khrylchenko et al.
/// 2025, "Correcting the LogQ Correction"), and weighting it by 1/π_t ≥ 1 as TF's `sampled_softmax_loss`
/// does shrinks the gradient of rarely drawn positives (measured on Beauty: README, "Large catalogues").
///
///     z_i0 = h_i · E[t_i];   z_ik = h_i · E[c_k] − log π(c_k)  (−∞ if c_k = t_i)
///     L    = Σ_i logsumexp(z_i) − z_i0
///
/// The gradient is (1 − p̂_i0) · ∇(log Σ_{k≠t_i} e^{z_ik} − s_i0): the self-normalised estimate over the
/// negatives of the full softmax's gradient (1 − p_t) · ∇(log Z_{−t} − s_t).
///
/// Groups: the batch's scored rows are split into `groups` contiguous groups (in row order, as even as
/// possible), and each group draws its own candidate set from its own targets and the catalogue. A row's
/// softmax still has ≤ N candidates, so the cost per row is unchanged (O(rows · N) in all), but a step's
/// negatives cover up to `groups` × N items instead of N, and different rows get different negatives. On
/// Beauty (SASRec id, N = 2048) 4 groups raised test NDCG@10 from 95 % of the full softmax's to ≥ 97 %
/// (README, "Large catalogues"): the coverage of the catalogue per step is what N = 8192 bought, without
/// each row scoring 8192 candidates.
///
/// The |C| candidate rows of a group are gathered into a `[|C|, d]` matrix, so the forward and both
/// backward products are three sgemms of `rows × |C| × d`; the gradient is scattered back only to the
/// rows of the item table that were candidates or positives. Deterministic for a seed and a part count:
/// the draws come from the caller's generator (groups in row order), and per-part candidate gradients are
/// summed in part order.
final class SampledSoftmaxCrossEntropy {
    /// N: draws per group of rows (a group's candidate set has at most N distinct items).
    let negatives: Int
    /// Share of a group's draws taken from the group's own targets.
    let inBatchFraction: Double
    let chunkRows: Int
    /// Per item id (index 0 unused): the item's share of all training targets. When set, the in-batch
    /// part of q_j uses it in place of the batch's own count c_j / P (Yi et al. 2019's frequency
    /// estimate): the marginal inclusion over batches, not the batch-conditional one the draw has, so it
    /// ignores that an item in this batch is more likely drawn. Not the default: it scored lower on Beauty
    /// (README, "Large catalogues").
    let targetFrequency: [Double]?
    /// Whether the positive's logit is corrected by −log π too (TF's `sampled_softmax_loss`; Yi et al. 2019).
    /// Off by default: see the type's comment.
    let correctsPositive: Bool
    /// Groups of rows with their own draw (see the type's comment); capped by the row count.
    let groups: Int

    /// The distinct candidates of the last draw (the last group of the last `run`; ids 1...items), in draw order.
    private(set) var candidates: [Int32] = []
    /// log π of each candidate and of each row's positive, for the last draw.
    private(set) var candidateLogQ: [Float] = []
    private(set) var positiveLogQ: [Float] = []
    private var positiveGrad: [Float] = []
    /// Per item id: the draw (`drawStamp`) that last put it in C, and its index there.
    private var stamp: [UInt32] = []
    private var slot: [Int32] = []
    private var drawStamp: UInt32 = 0
    /// Per item id: the `run` (`runStamp`) that last drew it in any group or marked it touched; with
    /// `drawnRows`, the distinct union of the run's candidates over its groups, in draw order.
    private var runMark: [UInt32] = []
    private var runStamp: UInt32 = 0
    private var drawnRows: [Int32] = []
    /// Per item id: count among the current batch's targets (reset after each draw).
    private var targetCount: [Int32] = []
    private let gathered = Buffer(1)
    private var logits: [Buffer] = []
    private var candidateGrads: [Buffer] = []

    /// The group count training uses (`TrainingSession`): 4 measured on Beauty (README, "Large catalogues").
    static let trainingGroups = 4

    init(negatives: Int, inBatchFraction: Double = 0.5, chunkRows: Int = 256, targetFrequency: [Double]? = nil,
         correctsPositive: Bool = false, groups: Int = 1) {
        // Unreachable from input: `ModelConfiguration.validate` bounds `negatives`; `groups` is a constant.
        precondition(negatives >= 1 && inBatchFraction >= 0 && inBatchFraction <= 1 && groups >= 1)
        self.negatives = negatives; self.inBatchFraction = inBatchFraction; self.chunkRows = max(1, chunkRows)
        self.targetFrequency = targetFrequency; self.correctsPositive = correctsPositive; self.groups = groups
    }

    /// Each item's share of the next-item targets of `train` (every item but a sequence's first), indexed by id.
    static func targetFrequency(train: [[Int32]], items: Int) -> [Double] {
        var count = [Double](repeating: 0, count: items + 1), total = 0.0
        for s in train where s.count > 1 {
            for j in s.dropFirst() where j >= 1 && Int(j) <= items { count[Int(j)] += 1; total += 1 }
        }
        return total > 0 ? count.map { $0 / total } : count
    }

    /// Draws the candidate set for a batch whose scored rows have these targets (ids 1...items) and
    /// computes log π for the candidates and the positives.
    func draw(targets: UnsafePointer<Int32>, rows: Int, items: Int, rng: inout Xoshiro256) {
        if stamp.count < items + 1 {
            stamp = [UInt32](repeating: 0, count: items + 1); slot = [Int32](repeating: 0, count: items + 1)
            targetCount = [Int32](repeating: 0, count: items + 1)
            drawStamp = 0
        }
        drawStamp &+= 1
        if drawStamp == 0 {  // wrapped after 2³² draws of candidate sets: old stamps could alias the new one
            for i in stamp.indices { stamp[i] = 0 }
            drawStamp = 1
        }
        let inBatch = rows > 0 ? Int((Double(negatives) * inBatchFraction).rounded()) : 0
        let uniform = negatives - inBatch
        candidates.removeAll(keepingCapacity: true)
        func add(_ j: Int32) {
            if stamp[Int(j)] != drawStamp {
                stamp[Int(j)] = drawStamp; slot[Int(j)] = Int32(candidates.count); candidates.append(j)
            }
        }
        for _ in 0..<inBatch { add(targets[Int(rng.next() % UInt64(rows))]) }
        for _ in 0..<uniform { add(Int32(1 + rng.next() % UInt64(items))) }
        for i in 0..<rows { targetCount[Int(targets[i])] += 1 }
        let f = Double(inBatch) / Double(negatives), n = Double(negatives)
        func logInclusion(_ j: Int32) -> Float {
            let share = targetFrequency.map { Int(j) < $0.count ? $0[Int(j)] : 0 } ?? Double(targetCount[Int(j)]) / Double(max(rows, 1))
            let q = min(1, f * share + (1 - f) / Double(items))
            // π = 1 − (1 − q)^N, computed without cancellation for small q.
            let pi = q >= 1 ? 1 : -expm1(n * log1p(-q))
            return Float(log(max(pi, .leastNormalMagnitude)))
        }
        // log π depends on the item only through its count among the targets (when the batch's own shares are
        // used): computed once per distinct count, not once per candidate (most share count 0).
        if targetFrequency == nil {
            var byCount: [Int32: Float] = [:]
            candidateLogQ = candidates.map { j in
                let c = targetCount[Int(j)]
                if let v = byCount[c] { return v }
                let v = logInclusion(j); byCount[c] = v; return v
            }
        } else {
            candidateLogQ = candidates.map(logInclusion)
        }
        positiveLogQ = correctsPositive ? (0..<rows).map { logInclusion(targets[$0]) } : [Float](repeating: 0, count: rows)
        for i in 0..<rows { targetCount[Int(targets[i])] = 0 }
    }

    /// The candidate slot of item `j` in the current draw, or nil.
    @inline(__always) func candidateSlot(_ j: Int32) -> Int? {
        stamp[Int(j)] == drawStamp ? Int(slot[Int(j)]) : nil
    }

    /// The item rows (ids 1...items) a step touched: the last `run`'s candidates (of every group), the
    /// positives and the input items (ids outside 1...items, such as BERT4Rec's [MASK], are skipped), each
    /// once. Call after `run`: it reuses the run's marks.
    func touchedRows(inputs: [Int32], targets: [Int32], items: Int) -> [Int32] {
        var rows = drawnRows
        for list in [targets, inputs] {
            for j in list where j >= 1 && Int(j) <= items && Int(j) < runMark.count && runMark[Int(j)] != runStamp {
                runMark[Int(j)] = runStamp; rows.append(j)
            }
        }
        return rows
    }

    /// Starts a run: a new mark for the union of its groups' candidates.
    private func beginRun(items: Int) {
        if runMark.count < items + 1 { runMark = [UInt32](repeating: 0, count: items + 1); runStamp = 0 }
        runStamp &+= 1
        if runStamp == 0 {  // wrapped: old marks could alias the new one
            for i in runMark.indices { runMark[i] = 0 }
            runStamp = 1
        }
        drawnRows.removeAll(keepingCapacity: true)
    }

    /// Adds the current draw's candidates to the run's union.
    private func recordDraw() {
        for j in candidates where runMark[Int(j)] != runStamp { runMark[Int(j)] = runStamp; drawnRows.append(j) }
    }

    /// Splits the rows into `groups` contiguous groups; for each, draws a candidate set (see `draw`) and
    /// computes the loss and its gradients.
    /// - Parameters:
    ///   - hidden: `[rows, d]` outputs at the scored positions.
    ///   - catalogue: `[items, d]` output item vectors; row `j` is item `j + 1`.
    ///   - targets: `rows` targets in `1...items`.
    ///   - gradScale: factor applied to the gradient (1/rows for a mean loss).
    ///   - hiddenGrad: `[rows, d]`, written.
    ///   - catalogueGrad: `[items, d]`, accumulated (`+=`) on the candidate and positive rows only.
    /// - Returns: the SUM over rows of the sampled loss (Double).
    func run(hidden: UnsafePointer<Float>, rows: Int, width d: Int, catalogue: UnsafePointer<Float>, items: Int,
             targets: UnsafePointer<Int32>, gradScale: Float, hiddenGrad: UnsafeMutablePointer<Float>?,
             catalogueGrad: UnsafeMutablePointer<Float>?, rng: inout Xoshiro256) -> Double {
        beginRun(items: items)
        guard rows > 0 else { return 0 }
        let g = min(groups, rows)
        var total = 0.0
        for group in 0..<g {
            let lo = group * rows / g, hi = (group + 1) * rows / g
            total += runGroup(hidden: hidden + lo * d, rows: hi - lo, width: d, catalogue: catalogue, items: items,
                              targets: targets + lo, gradScale: gradScale, hiddenGrad: hiddenGrad.map { $0 + lo * d },
                              catalogueGrad: catalogueGrad, rng: &rng)
        }
        return total
    }

    /// One group of `run`: its own draw, loss and gradients (`catalogueGrad` accumulated).
    private func runGroup(hidden: UnsafePointer<Float>, rows: Int, width d: Int, catalogue: UnsafePointer<Float>, items: Int,
                          targets: UnsafePointer<Int32>, gradScale: Float, hiddenGrad: UnsafeMutablePointer<Float>?,
                          catalogueGrad: UnsafeMutablePointer<Float>?, rng: inout Xoshiro256) -> Double {
        draw(targets: targets, rows: rows, items: items, rng: &rng)
        recordDraw()
        let k = candidates.count
        gathered.reserve(k * d)
        // Candidate rows are scattered over the table: gathered in parallel, the next rows prefetched.
        let rowsOut = gathered.p
        candidates.withUnsafeBufferPointer { ids in
            Parallel.forEachSlice(k, minimumPerPart: 256) { _, slice in
                for c in slice {
                    if c + 4 < slice.upperBound { prefetchRow(catalogue + (Int(ids[c + 4]) - 1) * d, width: d) }
                    (rowsOut + c * d).update(from: catalogue + (Int(ids[c]) - 1) * d, count: d)
                }
            }
        }
        let parts = max(1, min(Parallel.parts, (rows + 15) / 16))
        let chunk = chunkRows
        while logits.count < parts { logits.append(Buffer(1)); candidateGrads.append(Buffer(1)) }
        if positiveGrad.count < rows { positiveGrad = [Float](repeating: 0, count: rows) }
        var lossPerPart = [Double](repeating: 0, count: parts)
        var usedPart = [Bool](repeating: false, count: parts)
        let e = UnsafePointer(gathered.p)
        // Hit slot per row (−1 = none), found before the parallel part (the stamp arrays are not shared).
        let hits = (0..<rows).map { Int32(candidateSlot(targets[$0]) ?? -1) }
        candidateLogQ.withUnsafeBufferPointer { logQ in
        positiveLogQ.withUnsafeBufferPointer { positiveQ in
        positiveGrad.withUnsafeMutableBufferPointer { g0 in
        lossPerPart.withUnsafeMutableBufferPointer { lossOut in
        usedPart.withUnsafeMutableBufferPointer { used in
            Parallel.forEachSlice(rows, parts: parts) { part, range in
                let zb = logits[part]; zb.reserve(chunk * k)
                let z = zb.p
                let acc = candidateGrads[part]
                if catalogueGrad != nil { acc.reserve(k * d) }
                var loss = 0.0
                var first = true
                var c0 = range.lowerBound
                while c0 < range.upperBound {
                    let m = min(chunk, range.upperBound - c0)
                    let h = hidden + c0 * d
                    BLAS.gemm(transB: true, m: m, n: k, k: d, a: h, lda: d, b: e, ldb: d, c: z, ldc: k)
                    for i in 0..<m {
                        let r = c0 + i
                        let row = z + i * k
                        // The positive's row is a random row of the table: fetch a few rows ahead.
                        if r + 4 < range.upperBound { prefetchRow(catalogue + (Int(targets[r + 4]) - 1) * d, width: d) }
                        let positive = BLAS.dot(d, h + i * d, catalogue + (Int(targets[r]) - 1) * d) - positiveQ[r]
                        let (l, p0) = Self.softmaxRow(row, count: k, logQ: logQ.baseAddress!, positive: positive,
                                                      hit: Int(hits[r]), scale: gradScale)
                        loss += Double(l)
                        g0[r] = (p0 - 1) * gradScale
                    }
                    if let hiddenGrad {
                        // dH = G·E_C + g0 · E[t]
                        let dh = hiddenGrad + c0 * d
                        BLAS.gemm(m: m, n: d, k: k, a: z, lda: k, b: e, ldb: d, c: dh, ldc: d)
                        for i in 0..<m {
                            let t = catalogue + (Int(targets[c0 + i]) - 1) * d, row = dh + i * d, g = g0[c0 + i]
                            for j in 0..<d { row[j] += g * t[j] }
                        }
                    }
                    if catalogueGrad != nil {
                        // dE_C += Gᵀ·H (per part; summed in part order below)
                        BLAS.gemm(transA: true, m: k, n: d, k: m, a: z, lda: k, b: h, ldb: d, beta: first ? 0 : 1,
                                  c: acc.p, ldc: d)
                    }
                    first = false
                    c0 += m
                }
                lossOut[part] = loss
                used[part] = !first
            }
        }
        }
        }
        }
        }
        if let catalogueGrad {
            // Scattered over a table far larger than the caches, so in parallel, with the sums in the serial
            // order: candidates are distinct, so each thread takes a slice of them and adds the parts in part
            // order; then the positives go by owner (`Parallel.byOwner`), so an item that is several rows'
            // positive still gets their terms in row order.
            let used = (0..<parts).filter { usedPart[$0] }.map { candidateGrads[$0].p }
            candidates.withUnsafeBufferPointer { ids in
                Parallel.forEachSlice(k, minimumPerPart: 256) { _, slice in
                    for c in slice {
                        let dst = catalogueGrad + (Int(ids[c]) - 1) * d
                        for a in used {
                            let src = a + c * d
                            for x in 0..<d { dst[x] += src[x] }
                        }
                    }
                }
            }
            positiveGrad.withUnsafeBufferPointer { g0 in
                Parallel.byOwner(work: rows, minimumPerOwner: 256) { owns in
                    for r in 0..<rows where owns(Int(targets[r])) {
                        let dst = catalogueGrad + (Int(targets[r]) - 1) * d, src = hidden + r * d, g = g0[r]
                        for x in 0..<d { dst[x] += g * src[x] }
                    }
                }
            }
        }
        return lossPerPart.reduce(0, +)
    }

    /// In place over one row of candidate logits: subtracts log π, masks the hit, and turns the row into
    /// the scaled gradient `softmax · scale` (the positive's column is kept aside). Returns the row's
    /// loss and the positive's softmax probability. The kernel is C (`recdb_sampled_softmax_row`): its
    /// AVX-512/AVX2 paths are picked at run time and give the same bits as its portable path.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count n: Int, logQ: UnsafePointer<Float>,
                           positive: Float, hit: Int, scale: Float) -> (Float, Float) {
        var loss: Float = 0, p0: Float = 0
        recdb_sampled_softmax_row(CPUKernels.best, row, n, logQ, positive, hit, scale, &loss, &p0)
        return (loss, p0)
    }
}

/// Asks for the cache lines of one `width`-float row ahead of its use (a hint: no effect on results).
@inline(__always) private func prefetchRow(_ row: UnsafePointer<Float>, width: Int) {
    var x = 0
    while x < width { recdb_prefetch(row + x); x += 16 }
}
