import Foundation

/// Forward and backward kernels of the Learn engine, over raw row-major buffers.
///
/// Conventions: `rows` = number of (packed) positions, activations are `[rows, width]`; a linear layer's
/// weight is `[out, in]` (PyTorch layout) and computes `y = x·Wᵀ + b`. Backward functions ACCUMULATE
/// parameter gradients (`+=`) and WRITE input gradients unless stated otherwise. Every backward is
/// checked against finite differences in `Tests/LearnTests/GradientTests.swift`.
/// Work is split over rows with `Parallel`; each BLAS call runs single-threaded on its slice.
enum Kernels {
    // MARK: - Linear

    /// y[rows, out] = x[rows, in] · W[out, in]ᵀ + b[out].
    static func linearForward(_ x: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(rows, minimumPerPart: 64) { _, r in
            let yr = y + r.lowerBound * outFeatures
            if let bias {
                for i in 0..<r.count { (yr + i * outFeatures).update(from: bias, count: outFeatures) }
            }
            BLAS.gemm(transB: true, m: r.count, n: outFeatures, k: inFeatures,
                      a: x + r.lowerBound * inFeatures, lda: inFeatures, b: weight, ldb: inFeatures,
                      beta: bias == nil ? 0 : 1, c: yr, ldc: outFeatures)
        }
    }

    /// y = x·W + b with W given transposed, `[in, out]` (row stride `weightStride`), into rows of stride
    /// `outputStride`. For inference on one sequence: BLAS's no-transpose path is ~1.5× faster than the
    /// transposed one on such small matrices (OpenBLAS packs the transposed operand first), and the call stays
    /// on the calling thread.
    static func linearForward(_ x: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int,
                              transposedWeight: UnsafePointer<Float>, weightStride: Int? = nil, bias: UnsafePointer<Float>?,
                              into y: UnsafeMutablePointer<Float>, outputStride: Int? = nil) {
        let ldy = outputStride ?? outFeatures
        if let bias {
            // Eight lanes at a time: `update(from:)` per row became a libc memmove call per row, which on one
            // user's rows cost as much as a small product.
            let vectorWidth = outFeatures / 8 * 8
            for i in 0..<rows {
                let row = y + i * ldy
                var j = 0
                while j < vectorWidth { store8(load8(bias + j), row + j); j += 8 }
                while j < outFeatures { row[j] = bias[j]; j += 1 }
            }
        }
        BLAS.gemm(m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures, b: transposedWeight,
                  ldb: weightStride ?? outFeatures, beta: bias == nil ? 0 : 1, c: y, ldc: ldy)
    }

    /// Given dy[rows, out]: dW += dyᵀ·x, db += Σ_rows dy, and (if `dx` is given) dx = dy·W (or += when
    /// `accumulate`).
    static func linearBackward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                               inFeatures: Int, outFeatures: Int, weight: UnsafePointer<Float>,
                               weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?,
                               dx: UnsafeMutablePointer<Float>?, accumulate: Bool = false) {
        // Parameter gradients: split over output features, so no two parts touch the same row of dW.
        Parallel.forEachSlice(outFeatures, minimumPerPart: 16) { _, o in
            BLAS.gemm(transA: true, m: o.count, n: inFeatures, k: rows, a: dy + o.lowerBound, lda: outFeatures,
                      b: x, ldb: inFeatures, beta: 1, c: weightGrad + o.lowerBound * inFeatures, ldc: inFeatures)
            if let biasGrad {
                // Row by row (each column still summed in row order, so the same bits as a column walk):
                // a column walk strides through dy a cache line per element, and dy outgrows the caches.
                withUnsafeTemporaryAllocation(of: Float.self, capacity: o.count) { sums in
                    let s = sums.baseAddress!
                    s.initialize(repeating: 0, count: o.count)
                    for i in 0..<rows {
                        let row = dy + i * outFeatures + o.lowerBound
                        for j in 0..<o.count { s[j] += row[j] }
                    }
                    for j in 0..<o.count { biasGrad[o.lowerBound + j] += s[j] }
                }
            }
        }
        if let dx {
            Parallel.forEachSlice(rows, minimumPerPart: 64) { _, r in
                BLAS.gemm(m: r.count, n: inFeatures, k: outFeatures, a: dy + r.lowerBound * outFeatures,
                          lda: outFeatures, b: weight, ldb: inFeatures, beta: accumulate ? 1 : 0,
                          c: dx + r.lowerBound * inFeatures, ldc: inFeatures)
            }
        }
    }

    // MARK: - Layer normalisation (Ba et al. 2016), biased variance as PyTorch

    /// y = (x − mean)/√(var + eps) · γ + β per row; stores mean and 1/σ per row for the backward pass.
    static func layerNormForward(_ x: UnsafePointer<Float>, rows: Int, width: Int, gamma: UnsafePointer<Float>,
                                 beta: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
                                 mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(rows, minimumPerPart: 64) { _, r in
            for i in r {
                let xr = x + i * width, yr = y + i * width
                var s: Float = 0
                for j in 0..<width { s += xr[j] }
                let m = s / Float(width)
                var v: Float = 0
                for j in 0..<width { let c = xr[j] - m; v += c * c }
                let rs = 1 / (v / Float(width) + eps).squareRoot()
                mean[i] = m; rstd[i] = rs
                for j in 0..<width { yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j] }
            }
        }
    }

    /// LayerNorm for serving: the same function with the row sums taken over eight lanes. The training version
    /// sums each row in one serial chain (so training stays bit-reproducible across releases of this code);
    /// on one user's 50 rows those chains were the largest part of a forward pass outside BLAS.
    static func layerNormForwardServing(_ x: UnsafePointer<Float>, rows: Int, width: Int, gamma: UnsafePointer<Float>,
                                        beta: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>) {
        let vectorWidth = width / 8 * 8
        for i in 0..<rows {
            let xr = x + i * width, yr = y + i * width
            var lanes = SIMD8<Float>()
            var j = 0
            while j < vectorWidth { lanes += load8(xr + j); j += 8 }
            var s = lanes.sum()
            while j < width { s += xr[j]; j += 1 }
            let m = s / Float(width)
            var squares = SIMD8<Float>()
            j = 0
            while j < vectorWidth { let c = load8(xr + j) - m; squares += c * c; j += 8 }
            var v = squares.sum()
            while j < width { let c = xr[j] - m; v += c * c; j += 1 }
            let rs = 1 / (v / Float(width) + eps).squareRoot()
            j = 0
            while j < vectorWidth { store8((load8(xr + j) - m) * rs * load8(gamma + j) + load8(beta + j), yr + j); j += 8 }
            while j < width { yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j]; j += 1 }
        }
    }

    /// The activation for serving: ReLU eight lanes at a time (GELU is already vectorised).
    static func activationForwardServing(_ act: Activation, _ x: UnsafePointer<Float>, count: Int,
                                         into y: UnsafeMutablePointer<Float>) {
        guard act == .relu else { activationForward(act, x, count: count, into: y); return }
        var i = 0
        while i + 8 <= count {
            var v = load8(x + i)
            v.replace(with: 0, where: v .< 0)
            store8(v, y + i)
            i += 8
        }
        while i < count { y[i] = x[i] < 0 ? 0 : x[i]; i += 1 }
    }

    /// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = dy·γ; dγ += Σ dy·x̂, dβ += Σ dy.
    /// `dx` is written, or accumulated into when `accumulate` (residual connections).
    /// `scratch` needs `Parallel.parts · 2 · width` floats (per-part partial sums of dγ, dβ).
    static func layerNormBackward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, width: Int,
                                  gamma: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                  gammaGrad: UnsafeMutablePointer<Float>, betaGrad: UnsafeMutablePointer<Float>,
                                  dx: UnsafeMutablePointer<Float>, accumulate: Bool, scratch: Buffer) {
        let parts = Parallel.parts
        scratch.reserve(parts * 2 * width)
        scratch.zero(parts * 2 * width)
        let partial = scratch.p
        Parallel.forEachSlice(rows, minimumPerPart: 64) { part, r in
            let pg = partial + part * 2 * width, pb = pg + width
            for i in r {
                let xr = x + i * width, dyr = dy + i * width, dxr = dx + i * width
                let m = mean[i], rs = rstd[i]
                var sumG: Float = 0, sumGX: Float = 0
                for j in 0..<width {
                    let xh = (xr[j] - m) * rs
                    let g = dyr[j] * gamma[j]
                    sumG += g; sumGX += g * xh
                    pg[j] += dyr[j] * xh; pb[j] += dyr[j]
                }
                let mg = sumG / Float(width), mgx = sumGX / Float(width)
                for j in 0..<width {
                    let xh = (xr[j] - m) * rs
                    let v = rs * (dyr[j] * gamma[j] - mg - xh * mgx)
                    if accumulate { dxr[j] += v } else { dxr[j] = v }
                }
            }
        }
        for part in 0..<parts {
            let pg = partial + part * 2 * width, pb = pg + width
            for j in 0..<width { gammaGrad[j] += pg[j]; betaGrad[j] += pb[j] }
        }
    }

    // MARK: - Activations

    /// Element-wise activation of a feed-forward layer.
    enum Activation: String, Codable, Sendable { case relu, gelu }

    /// y = act(x) over `count` elements (GELU: the erf form of `torch.nn.GELU()`, erf vectorised to
    /// within 1.5e-7, see `fastErf`).
    static func activationForward(_ act: Activation, _ x: UnsafePointer<Float>, count: Int,
                                  into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(count, minimumPerPart: 8192) { _, r in
            switch act {
            case .relu: for i in r { y[i] = max(x[i], 0) }
            case .gelu:
                var i = r.lowerBound
                while i + 8 <= r.upperBound {
                    let v = load8(x + i)
                    store8(0.5 * v * (1 + fastErf(v * 0.707_106_77)), y + i)
                    i += 8
                }
                while i < r.upperBound { let v = x[i]; y[i] = 0.5 * v * (1 + erff(v * 0.707_106_77)); i += 1 }
            }
        }
    }

    /// dx = dy · act'(x) (written in place of `dy` when `dx == dy`).
    static func activationBackward(_ act: Activation, _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                   count: Int, into dx: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(count, minimumPerPart: 8192) { _, r in
            switch act {
            case .relu: for i in r { dx[i] = x[i] > 0 ? dy[i] : 0 }
            case .gelu:
                var i = r.lowerBound
                while i + 8 <= r.upperBound {
                    let v = load8(x + i)
                    let cdf = 0.5 * (1 + fastErf(v * 0.707_106_77))
                    let pdf = 0.398_942_28 * fastExp(-0.5 * v * v)
                    store8(load8(dy + i) * (cdf + v * pdf), dx + i)
                    i += 8
                }
                while i < r.upperBound {
                    let v = x[i]
                    let cdf = 0.5 * (1 + erff(v * 0.707_106_77))
                    let pdf = 0.398_942_28 * expf(-0.5 * v * v)
                    dx[i] = dy[i] * (cdf + v * pdf)
                    i += 1
                }
            }
        }
    }

    // MARK: - Element-wise helpers

    /// y = x ⊙ m (dropout with a precomputed inverted mask; also its backward).
    static func multiply(_ x: UnsafePointer<Float>, _ m: UnsafePointer<Float>, count: Int,
                         into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(count, minimumPerPart: 16384) { _, r in for i in r { y[i] = x[i] * m[i] } }
    }

    /// y += x.
    static func add(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(count, minimumPerPart: 16384) { _, r in for i in r { y[i] += x[i] } }
    }

    /// y += x ⊙ m.
    static func addProduct(_ x: UnsafePointer<Float>, _ m: UnsafePointer<Float>, count: Int,
                           into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(count, minimumPerPart: 16384) { _, r in for i in r { y[i] += x[i] * m[i] } }
    }
}
