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
    mutating func update(_ parameters: [Parameter]) {
        step += 1
        let lr = learningRate, b1 = beta1, b2 = beta2, eps = epsilon
        let c1 = 1 - powf(b1, Float(step)), c2 = 1 - powf(b2, Float(step))
        let decay = 1 - lr * weightDecay
        let stepSize = lr / c1
        let c2Root = c2.squareRoot()
        for p in parameters {
            let w = p.value.p, g = p.grad.p, m = p.moment1.p, v = p.moment2.p
            Parallel.forEachSlice(p.count, minimumPerPart: 32768) { _, r in
                for i in r {
                    let gi = g[i]
                    w[i] *= decay
                    let mi = b1 * m[i] + (1 - b1) * gi
                    let vi = b2 * v[i] + (1 - b2) * gi * gi
                    m[i] = mi; v[i] = vi
                    w[i] -= stepSize * mi / (vi.squareRoot() / c2Root + eps)
                }
            }
        }
    }
}
