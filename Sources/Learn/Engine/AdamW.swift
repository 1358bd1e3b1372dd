import CKernels
import Foundation

/// AdamW (Loshchilov & Hutter 2019), exactly as `torch.optim.AdamW`: decoupled weight decay
/// `p ← p·(1 − lr·wd)`, then the bias-corrected Adam step with `eps` added to `√v̂`.
/// Optional clipping of all gradients by their global L2 norm (Pascanu et al. 2013) before the step.
struct AdamW {
    var learningRate: Float
    var beta1: Float
    var beta2: Float
    var epsilon: Float
    var weightDecay: Float
    /// Learning rate of the `rowSparse` parameter (its own parameter group, as in torch); nil = `learningRate`.
    var rowSparseLearningRate: Float? = nil
    /// Number of steps taken (bias correction uses step + 1 for the next step).
    private(set) var step = 0

    /// Global L2 norm of all gradients.
    static func gradientNorm(_ parameters: [Parameter]) -> Float {
        var total: Double = 0
        for p in parameters {
            let g = p.grad.p
            var s: Float = 0
            for i in 0..<p.count { s += g[i] * g[i] }
            total += Double(s)
        }
        return Float(total.squareRoot())
    }

    /// Scales all gradients so that their global norm is at most `maxNorm` (as `clip_grad_norm_`).
    /// Returns the norm before clipping.
    @discardableResult
    static func clipGradients(_ parameters: [Parameter], maxNorm: Float) -> Float {
        let norm = gradientNorm(parameters)
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 {
            for p in parameters { let g = p.grad.p; for i in 0..<p.count { g[i] *= coef } }
        }
        return norm
    }

    /// One update of every parameter from its `grad`.
    /// - Parameters:
    ///   - rowSparse: a matrix parameter updated only on `rows` (row indices), whose gradient is zero
    ///     elsewhere — "lazy" Adam for an embedding table trained by a sampled loss: rows not in `rows`
    ///     keep their value and moments (no momentum drift, no weight decay), as `torch.optim.SparseAdam`
    ///     and TF's LazyAdam. The gradients of those rows are zeroed after the update, so the caller can
    ///     skip zeroing the whole table before the next step.
    mutating func update(_ parameters: [Parameter], rowSparse: Parameter? = nil, rows: [Int32] = []) {
        step += 1
        let lr = learningRate, b1 = beta1, b2 = beta2, eps = epsilon, wd = weightDecay
        let c1 = 1 - powf(b1, Float(step)), c2 = 1 - powf(b2, Float(step))
        let c2Root = c2.squareRoot()
        for p in parameters where p !== rowSparse {
            let w = p.value.p, g = p.grad.p, m = p.moment1.p, v = p.moment2.p
            Parallel.forEachSlice(p.count, minimumPerPart: 32768) { _, r in
                recdb_adamw_apply(CPUKernels.best, w, g, m, v, r.lowerBound, r.upperBound, 1 - lr * wd, lr / c1, b1, b2,
                                  c2Root, eps)
            }
        }
        if let p = rowSparse {
            let w = p.value.p, g = p.grad.p, m = p.moment1.p, v = p.moment2.p, width = p.shape[1]
            let rowLearningRate = rowSparseLearningRate ?? lr
            rows.withUnsafeBufferPointer { rs in
                Parallel.forEachSlice(rs.count, minimumPerPart: 512) { _, range in
                    recdb_adamw_rows(CPUKernels.best, w, g, m, v, width, rs.baseAddress! + range.lowerBound, range.count,
                                     1 - rowLearningRate * wd, rowLearningRate / c1, b1, b2, c2Root, eps)
                }
            }
        }
    }
}
