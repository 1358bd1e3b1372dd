import Foundation

/// The profile path trained as a recommender: an extension of the ECIR'26 distillation (not in the paper).
///
/// A user with a profile and no events is served with `h_u = LN_f(T(p_u))` and scores `h_u · E[i]`
/// (`SequentialRecommender.userRepresentation(profile:)`). Distillation alone trains T only to agree with
/// the pooled student, which is not what the served scores are judged by; on Beauty it left profile-only
/// users below the most-popular baseline. This loss trains those scores directly:
///
///     L_profile = mean over users u of the batch with a profile of
///                 logsumexp_i(h_u · E[i]) − Σ_t w_t · h_u · E[t]
///
/// a full-softmax cross-entropy against the user's training items t (`all`: every item of the training
/// part with w_t = 1/count; `last`: the most recent one with w = 1). The gradient reaches T only: E and
/// LN_f are read as constants, so the sequence model never feels this loss — which is why it may run in
/// every epoch (T keeps following E as E moves) without touching the distilled sequence model's result.
/// The caller scales by λ (`profileRecommendationWeight`).
///
/// Shapes: profiles `[B, p]`, T(p) and h `[B, d]`, logits `[chunk, N]` per worker (never `[B, N]` at
/// once, so a large catalogue costs `Parallel.parts · chunkRows · N` floats).
/// Only the users' TRAINING items are targets: users held out of training never reach it.
final class ProfileRecommendationLoss {
    let network: SequenceNetwork
    let profiles: ProfileTable
    let targets: DistillationConfiguration.ProfileTargets
    let chunkRows: Int
    private let inputs = Buffer(1), mapped = Buffer(1), normalised = Buffer(1), stats = Buffer(1)
    private let mappedGrad = Buffer(1)
    private var logits: [Buffer] = [], rowScales: [Buffer] = []
    // Targets of the active users, CSR: user r's targets are targetItems[targetStart[r]..<targetStart[r + 1]].
    private var users: [Int] = []
    private var targetStart: [Int] = []
    private var targetItems: [Int32] = []
    private var targetWeights: [Float] = []

    init(network: SequenceNetwork, profiles: ProfileTable, targets: DistillationConfiguration.ProfileTargets,
         chunkRows: Int) {
        self.network = network; self.profiles = profiles; self.targets = targets; self.chunkRows = max(1, chunkRows)
    }

    /// Computes L_profile for the examples `batch` and ACCUMULATES `scale · dL_profile/dT` into T's
    /// gradients (weight and bias). Returns L_profile (0 when no user of the batch has a profile).
    func run(batch: ArraySlice<Int>, objective: SequenceObjective, scale: Float) -> Double {
        guard let w = network.profileWeight, let b = network.profileBias else { return 0 }
        let d = network.width, pd = profiles.dimension, n = network.numItems
        users.removeAll(keepingCapacity: true); targetItems.removeAll(keepingCapacity: true)
        targetWeights.removeAll(keepingCapacity: true); targetStart.removeAll(keepingCapacity: true)
        targetStart.append(0)
        for e in batch {
            let u = objective.exampleUser(e)
            guard profiles.present[u] else { continue }
            let items = objective.exampleItems(e).filter { $0 >= 1 && Int($0) <= n }
            guard let last = items.last else { continue }
            switch targets {
            case .last: targetItems.append(last); targetWeights.append(1)
            case .all:
                targetItems.append(contentsOf: items)
                targetWeights.append(contentsOf: repeatElement(1 / Float(items.count), count: items.count))
            }
            users.append(u); targetStart.append(targetItems.count)
        }
        let rows = users.count
        if rows == 0 { return 0 }
        inputs.reserve(rows * pd); mapped.reserve(rows * d); normalised.reserve(rows * d)
        mappedGrad.reserve(rows * d); stats.reserve(2 * rows)
        // Forward to the served user vectors: x = P·Wᵀ + b, h = LN_f(x).
        profiles.values.withUnsafeBufferPointer { pv in
            for (r, u) in users.enumerated() { (inputs.p + r * pd).update(from: pv.baseAddress! + u * pd, count: pd) }
        }
        BLAS.gemm(transB: true, m: rows, n: d, k: pd, a: inputs.p, lda: pd, b: w.value.p, ldb: pd, c: mapped.p, ldc: d)
        for r in 0..<rows { let x = mapped.p + r * d; for j in 0..<d { x[j] += b.value.p[j] } }
        let mean = stats.p, rstd = stats.p + rows
        // Architectures without a final normalisation (GRU4Rec) serve h = x.
        let norm = network.encoder.outputNorm
        let gamma = norm?.gamma.value.p
        if let norm {
            Kernels.layerNormForward(mapped.p, rows: rows, width: d, gamma: norm.gamma.value.p, beta: norm.beta.value.p,
                                     eps: network.configuration.layerNormEpsilon, into: normalised.p, mean: mean, rstd: rstd)
        } else {
            normalised.p.update(from: mapped.p, count: rows * d)
        }

        // Logits, loss and dL/dx per chunk of rows; each worker owns its logits buffer.
        let catalogue = UnsafePointer(network.itemTable + d)  // column j of the logits is item j + 1
        let gradScale = scale / Float(rows)
        let parts = max(1, min(Parallel.parts, (rows + 15) / 16))
        let chunk = chunkRows
        while logits.count < parts { logits.append(Buffer(1)); rowScales.append(Buffer(chunk)) }
        let starts = targetStart, items = targetItems, weights = targetWeights  // read-only inside the workers
        var lossPerPart = [Double](repeating: 0, count: parts)
        lossPerPart.withUnsafeMutableBufferPointer { lossOut in
            Parallel.forEachSlice(rows, parts: parts) { part, range in
                let z = logits[part]; z.reserve(chunk * n)
                let rowScale = rowScales[part].p
                var loss = 0.0
                var c0 = range.lowerBound
                while c0 < range.upperBound {
                    let m = min(chunk, range.upperBound - c0)
                    let h = normalised.p + c0 * d, dh = mappedGrad.p + c0 * d
                    BLAS.gemm(transB: true, m: m, n: n, k: d, a: h, lda: d, b: catalogue, ldb: d, c: z.p, ldc: n)
                    // Per row: loss = logsumexp − Σ w_t z_t; the row becomes exp(z − max) and k = gradScale/Σexp,
                    // so that dh = k·(exp·E) − gradScale·Σ w_t E[t] (softmax never normalised in place).
                    for i in 0..<m {
                        let r = c0 + i, row = z.p + i * n
                        var targetSum: Float = 0
                        for t in starts[r]..<starts[r + 1] { targetSum += weights[t] * row[Int(items[t]) - 1] }
                        let first = Int(items[starts[r]]) - 1
                        let firstLogit = row[first]
                        let (l, inverseSum) = SoftmaxCrossEntropy.exponentiateRow(row, count: n, target: first)
                        loss += Double(l + firstLogit - targetSum)  // l = logsumexp − z_first
                        rowScale[i] = inverseSum * gradScale
                    }
                    BLAS.gemm(m: m, n: d, k: n, a: z.p, lda: n, b: catalogue, ldb: d, c: dh, ldc: d)
                    for i in 0..<m {
                        let r = c0 + i, g = dh + i * d, k = rowScale[i]
                        for j in 0..<d { g[j] *= k }
                        for t in starts[r]..<starts[r + 1] {
                            let e = catalogue + (Int(items[t]) - 1) * d, c = gradScale * weights[t]
                            for j in 0..<d { g[j] -= c * e[j] }
                        }
                        // Through LN_f with γ, β constant: dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dh·γ.
                        guard let gamma else { continue }
                        let x = mapped.p + r * d, mu = mean[r], rs = rstd[r]
                        var sumG: Float = 0, sumGX: Float = 0
                        for j in 0..<d { let gh = g[j] * gamma[j]; sumG += gh; sumGX += gh * (x[j] - mu) * rs }
                        let mg = sumG / Float(d), mgx = sumGX / Float(d)
                        for j in 0..<d { g[j] = rs * (g[j] * gamma[j] - mg - (x[j] - mu) * rs * mgx) }
                    }
                    c0 += m
                }
                lossOut[part] = loss
            }
        }
        // T's gradients: dW += dXᵀ·P, db += Σ_rows dX.
        BLAS.gemm(transA: true, m: d, n: pd, k: rows, a: mappedGrad.p, lda: d, b: inputs.p, ldb: pd, beta: 1,
                  c: w.grad.p, ldc: pd)
        for r in 0..<rows { let g = mappedGrad.p + r * d; for j in 0..<d { b.grad.p[j] += g[j] } }
        return lossPerPart.reduce(0, +) / Double(rows)
    }
}
