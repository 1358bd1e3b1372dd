import Foundation

/// User-profile knowledge distillation — "Pre-trained LLMs Meet Sequential Recommenders: Efficient
/// User-Centric Knowledge Distillation" (ECIR 2026).
///
/// Teacher: target_u = T(profile_u) = W·profile_u + b, a trainable linear map (the target is NOT detached:
/// T trains jointly). Student: s_u = pooling of the output of block K (`reconstructionLayer`) over the
/// user's window — mean over real positions, e^(γ·t)-weighted mean (t = 0…n−1, oldest first) or last.
/// Loss: α·β·L_distil + (1 − α)·L_rec with β = L_rec / L_distil held constant (stop-gradient) when
/// `adaptiveScale`, else 1. L_distil over the users of the batch WITH a profile only:
/// MSE = mean over users and dimensions of (s − t)², RMSE = √MSE, cosine = mean over users of 1 − cos(s, t).
///
/// NOTE: the paper's code averaged padding positions into the mean; padding never exists here.
/// NOTE: optional PCA reduction of the profiles happens outside Learn (the store); T takes what it is given.
/// NOTE: beyond the paper, T is also trained on the scores it serves (`ProfileRecommendationLoss`).
final class ProfileDistillation {
    let configuration: DistillationConfiguration
    let network: SequenceNetwork
    let profiles: ProfileTable
    /// The pooled layer output (1-based layer number, `SequenceEncoder.layerOutput`).
    let stateIndex: Int
    private let student = Buffer(1), target = Buffer(1), studentGrad = Buffer(1), targetGrad = Buffer(1)
    private var active: [Bool] = []
    private var poolWeights: [Float] = []

    init(configuration: DistillationConfiguration, network: SequenceNetwork, profiles: ProfileTable) {
        self.configuration = configuration; self.network = network; self.profiles = profiles
        stateIndex = configuration.reconstructionLayer ?? network.encoder.layers
    }

    /// Pooling weights for a window of `n` rows (sum to 1).
    static func weights(n: Int, pooling: DistillationConfiguration.Pooling, gamma: Float) -> [Float] {
        switch pooling {
        case .mean: return [Float](repeating: 1 / Float(n), count: n)
        case .last: var w = [Float](repeating: 0, count: n); w[n - 1] = 1; return w
        case .exponential:
            let e = (0..<n).map { expf(gamma * Float($0)) }
            let s = e.reduce(0, +)
            return e.map { $0 / s }
        }
    }

    /// Computes student, target, the distillation loss and its gradients for the batch just forwarded
    /// in `workspace` (whose sequence k is example `batch[k]`). Accumulates T's gradients; keeps the
    /// student gradient for `addGradient`. Returns L_distil (0 when no user of the batch has a profile).
    func prepare(batch: ArraySlice<Int>, objective: SequenceObjective, workspace ws: SequenceNetwork.Workspace,
                 crossEntropy: Double) -> Double {
        let d = network.width, pd = profiles.dimension, count = ws.layout.count
        student.reserve(count * d); target.reserve(count * d); studentGrad.reserve(count * d); targetGrad.reserve(count * d)
        studentGrad.zero(count * d); targetGrad.zero(count * d)
        active = batch.map { profiles.present[objective.exampleUser($0)] }
        poolWeights.removeAll(keepingCapacity: true)
        let xs = network.encoder.layerOutput(stateIndex, in: ws)
        let w = network.profileWeight!, b = network.profileBias!
        var users = 0
        for k in 0..<count {
            let r0 = ws.layout.rowStart[k], n = ws.layout.rowStart[k + 1] - r0
            let pw = n > 0 ? Self.weights(n: n, pooling: configuration.pooling, gamma: configuration.gamma) : []
            poolWeights.append(contentsOf: pw)
            if n == 0 { active[k] = false }
            guard active[k] else { continue }
            users += 1
            let s = student.p + k * d
            s.update(repeating: 0, count: d)
            for i in 0..<n { let x = xs + (r0 + i) * d; for j in 0..<d { s[j] += pw[i] * x[j] } }
            let t = target.p + k * d
            t.update(from: b.value.p, count: d)
            profiles.values.withUnsafeBufferPointer { pv in
                BLAS.gemv(m: d, n: pd, a: w.value.p, lda: pd, x: pv.baseAddress! + objective.exampleUser(batch[batch.startIndex + k]) * pd,
                          beta: 1, y: t)
            }
        }
        if users == 0 { return 0 }
        // Loss and dL/ds, dL/dt (unscaled).
        var loss = 0.0
        switch configuration.loss {
        case .mse, .rmse:
            var sq = 0.0
            for k in 0..<count where active[k] {
                for j in 0..<d { let e = Double(student.p[k * d + j] - target.p[k * d + j]); sq += e * e }
            }
            let mse = sq / Double(users * d)
            loss = configuration.loss == .mse ? mse : mse.squareRoot()
            let coef = configuration.loss == .mse ? 2 / Double(users * d) : (mse > 0 ? 1 / (Double(users * d) * mse.squareRoot()) : 0)
            for k in 0..<count where active[k] {
                for j in 0..<d {
                    let g = Float(coef) * (student.p[k * d + j] - target.p[k * d + j])
                    studentGrad.p[k * d + j] = g; targetGrad.p[k * d + j] = -g
                }
            }
        case .cosine:
            for k in 0..<count where active[k] {
                let s = student.p + k * d, t = target.p + k * d
                var st: Float = 0, ss: Float = 0, tt: Float = 0
                for j in 0..<d { st += s[j] * t[j]; ss += s[j] * s[j]; tt += t[j] * t[j] }
                let ns = max(ss.squareRoot(), 1e-8), nt = max(tt.squareRoot(), 1e-8)
                let cos = st / (ns * nt)
                loss += Double(1 - cos)
                let inv = -1 / Float(users)
                for j in 0..<d {
                    studentGrad.p[k * d + j] = inv * (t[j] / (ns * nt) - cos * s[j] / (ns * ns))
                    targetGrad.p[k * d + j] = inv * (s[j] / (ns * nt) - cos * t[j] / (nt * nt))
                }
            }
            loss /= Double(users)
        }
        let beta = configuration.adaptiveScale ? (loss > 0 ? crossEntropy / loss : 0) : 1
        let scale = Float(Double(configuration.alpha) * beta)
        for i in 0..<(count * d) { studentGrad.p[i] *= scale; targetGrad.p[i] *= scale }
        // T's gradients: dW += Σ_u dt_u ⊗ profile_u, db += Σ_u dt_u.
        profiles.values.withUnsafeBufferPointer { pv in
            for k in 0..<count where active[k] {
                let p = pv.baseAddress! + objective.exampleUser(batch[batch.startIndex + k]) * pd
                let dt = targetGrad.p + k * d
                for j in 0..<d {
                    b.grad.p[j] += dt[j]
                    let row = w.grad.p + j * pd, g = dt[j]
                    for m in 0..<pd { row[m] += g * p[m] }
                }
            }
        }
        return loss
    }

    /// Backward hook: adds the student gradient to dLoss/d(output of block `block`) when it is the pooled one.
    func addGradient(block: Int, workspace ws: SequenceNetwork.Workspace, into g: UnsafeMutablePointer<Float>) {
        guard block + 1 == stateIndex else { return }
        let d = network.width
        for k in 0..<ws.layout.count where active[k] {
            let r0 = ws.layout.rowStart[k], n = ws.layout.rowStart[k + 1] - r0
            let ds = studentGrad.p + k * d
            for i in 0..<n { let w = poolWeights[r0 + i], gr = g + (r0 + i) * d; for j in 0..<d { gr[j] += w * ds[j] } }
        }
    }
}
