import CKernels
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
        // Rows are taken four at a time: each row's sums keep their order (the same bits as one row at a
        // time), but the four rows' add chains overlap instead of each add waiting for the one before.
        let w = Float(width)
        Parallel.forEachSlice(rows, minimumPerPart: 64) { _, r in
            @inline(__always) func normalise(_ i: Int, _ m: Float, _ v: Float) {
                let xr = x + i * width, yr = y + i * width
                let rs = 1 / (v / w + eps).squareRoot()
                mean[i] = m; rstd[i] = rs
                for j in 0..<width { yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j] }
            }
            var i = r.lowerBound
            while i + 4 <= r.upperBound {
                let x0 = x + i * width, x1 = x0 + width, x2 = x1 + width, x3 = x2 + width
                var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
                for j in 0..<width { s0 += x0[j]; s1 += x1[j]; s2 += x2[j]; s3 += x3[j] }
                let m0 = s0 / w, m1 = s1 / w, m2 = s2 / w, m3 = s3 / w
                var v0: Float = 0, v1: Float = 0, v2: Float = 0, v3: Float = 0
                for j in 0..<width {
                    let c0 = x0[j] - m0, c1 = x1[j] - m1, c2 = x2[j] - m2, c3 = x3[j] - m3
                    v0 += c0 * c0; v1 += c1 * c1; v2 += c2 * c2; v3 += c3 * c3
                }
                normalise(i, m0, v0); normalise(i + 1, m1, v1); normalise(i + 2, m2, v2); normalise(i + 3, m3, v3)
                i += 4
            }
            while i < r.upperBound {
                let xr = x + i * width
                var s: Float = 0
                for j in 0..<width { s += xr[j] }
                let m = s / w
                var v: Float = 0
                for j in 0..<width { let c = xr[j] - m; v += c * c }
                normalise(i, m, v)
                i += 1
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
        // Four rows at a time, as in `layerNormForward`: every sum keeps its order (each row's over j, each
        // column's partial over the rows), so the bits are those of one row at a time.
        let w = Float(width)
        Parallel.forEachSlice(rows, minimumPerPart: 64) { part, r in
            let pg = partial + part * 2 * width, pb = pg + width
            @inline(__always) func inputGradient(_ i: Int, _ sumG: Float, _ sumGX: Float) {
                let xr = x + i * width, dyr = dy + i * width, dxr = dx + i * width
                let m = mean[i], rs = rstd[i]
                let mg = sumG / w, mgx = sumGX / w
                for j in 0..<width {
                    let xh = (xr[j] - m) * rs
                    let v = rs * (dyr[j] * gamma[j] - mg - xh * mgx)
                    if accumulate { dxr[j] += v } else { dxr[j] = v }
                }
            }
            var i = r.lowerBound
            while i + 4 <= r.upperBound {
                let x0 = x + i * width, x1 = x0 + width, x2 = x1 + width, x3 = x2 + width
                let d0 = dy + i * width, d1 = d0 + width, d2 = d1 + width, d3 = d2 + width
                let m0 = mean[i], m1 = mean[i + 1], m2 = mean[i + 2], m3 = mean[i + 3]
                let r0 = rstd[i], r1 = rstd[i + 1], r2 = rstd[i + 2], r3 = rstd[i + 3]
                var g0: Float = 0, g1: Float = 0, g2: Float = 0, g3: Float = 0
                var gx0: Float = 0, gx1: Float = 0, gx2: Float = 0, gx3: Float = 0
                for j in 0..<width {
                    let xh0 = (x0[j] - m0) * r0, xh1 = (x1[j] - m1) * r1, xh2 = (x2[j] - m2) * r2, xh3 = (x3[j] - m3) * r3
                    let gj = gamma[j]
                    let a0 = d0[j] * gj, a1 = d1[j] * gj, a2 = d2[j] * gj, a3 = d3[j] * gj
                    g0 += a0; gx0 += a0 * xh0; g1 += a1; gx1 += a1 * xh1
                    g2 += a2; gx2 += a2 * xh2; g3 += a3; gx3 += a3 * xh3
                    var pgj = pg[j], pbj = pb[j]
                    pgj += d0[j] * xh0; pbj += d0[j]
                    pgj += d1[j] * xh1; pbj += d1[j]
                    pgj += d2[j] * xh2; pbj += d2[j]
                    pgj += d3[j] * xh3; pbj += d3[j]
                    pg[j] = pgj; pb[j] = pbj
                }
                inputGradient(i, g0, gx0); inputGradient(i + 1, g1, gx1)
                inputGradient(i + 2, g2, gx2); inputGradient(i + 3, g3, gx3)
                i += 4
            }
            while i < r.upperBound {
                let xr = x + i * width, dyr = dy + i * width
                let m = mean[i], rs = rstd[i]
                var sumG: Float = 0, sumGX: Float = 0
                for j in 0..<width {
                    let xh = (xr[j] - m) * rs
                    let g = dyr[j] * gamma[j]
                    sumG += g; sumGX += g * xh
                    pg[j] += dyr[j] * xh; pb[j] += dyr[j]
                }
                inputGradient(i, sumG, sumGX)
                i += 1
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

    /// dx = dy · act'(x), times the dropout mask that was applied to x's input when `dropoutMask` is given
    /// (the two passes of backward fused into one; the same bits as `multiply` after). Written in place of
    /// `dy` when `dx == dy`.
    static func activationBackward(_ act: Activation, _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                   count: Int, dropoutMask: UnsafePointer<Float>? = nil,
                                   into dx: UnsafeMutablePointer<Float>) {
        Parallel.forEachSlice(count, minimumPerPart: 8192) { _, r in
            switch act {
            case .relu:
                // Branch-free: x's sign is random, and a branch per element mispredicted half the time.
                var i = r.lowerBound
                while i + 8 <= r.upperBound {
                    var v = load8(dy + i)
                    v.replace(with: 0, where: .!(load8(x + i) .> 0))
                    if let m = dropoutMask { v = v * load8(m + i) }
                    store8(v, dx + i)
                    i += 8
                }
                while i < r.upperBound {
                    var v: Float = x[i] > 0 ? dy[i] : 0
                    if let m = dropoutMask { v = v * m[i] }
                    dx[i] = v
                    i += 1
                }
            case .gelu:
                // C: its AVX-512 path gives the bits of the SIMD8 fastErf/fastExp code it replaced.
                recdb_gelu_backward(CPUKernels.best, dy, x, r.lowerBound, r.upperBound, dx)
                if let m = dropoutMask { for i in r { dx[i] = dx[i] * m[i] } }
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
