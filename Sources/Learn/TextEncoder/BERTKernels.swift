// Row-wise kernels of the BERT forward pass, on raw pointers (the hot loops of `BERTModel`).
// Products go to OpenBLAS sgemm; everything element-wise is written with SIMD8<Float> so that it vectorises
// without compiler flags (the package may not use unsafeFlags; SIMD8 lowers to two SSE registers on baseline x86-64).
// All functions are namespaced here so they cannot collide with the training engine's kernels in the same module.

import COpenBLAS
import Foundation

enum BERTKernels {
    typealias Vector = SIMD8<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Vector {
        UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
    }

    @inline(__always) static func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
    }

    // MARK: - Products

    /// `out[rows, n] = a[rows, k] · w[n, k]ᵀ + beta · out` (row-major; `w` in PyTorch `Linear` layout [out, in]).
    /// With `lanes` > 1 the rows are cut into `lanes` contiguous blocks, one sgemm each on its own thread: the
    /// encoder threads its products itself instead of changing OpenBLAS's process-wide thread count.
    @inline(__always)
    static func linear(_ a: UnsafePointer<Float>, rows: Int, inFeatures k: Int, weight w: UnsafePointer<Float>,
                       outFeatures n: Int, into out: UnsafeMutablePointer<Float>, beta: Float = 0, lanes: Int = 1) {
        let blocks = min(lanes, rows)
        if blocks <= 1 {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(n), Int32(k),
                        1, a, Int32(k), w, Int32(k), beta, out, Int32(n))
            return
        }
        // Each block reads shared inputs and writes only its own rows of `out`; concurrentPerform returns after all.
        nonisolated(unsafe) let a = a, w = w, out = out
        DispatchQueue.concurrentPerform(iterations: blocks) { block in
            let r0 = rows * block / blocks, r1 = rows * (block + 1) / blocks
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(r1 - r0), Int32(n), Int32(k),
                        1, a + r0 * k, Int32(k), w, Int32(k), beta, out + r0 * n, Int32(n))
        }
    }

    /// General row-major sgemm with leading dimensions, for the per-head attention products on strided views.
    @inline(__always)
    static func gemm(transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    // MARK: - Element-wise

    /// Copies `bias[width]` into every row of `out[rows, width]` (so a following sgemm with beta = 1 adds it).
    static func broadcastRows(_ bias: UnsafePointer<Float>, rows: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
        for r in 0 ..< rows { (out + r * width).update(from: bias, count: width) }
    }

    /// In place over each row of `x[rows, width]`: `x = LayerNorm(x + delta + bias) · gamma + beta`
    /// (the residual "Add & Norm" of a transformer block; pass `delta = nil` for a plain LayerNorm).
    /// Variance is the biased mean of squared deviations, computed in a second pass as PyTorch does.
    static func residualLayerNorm(_ x: UnsafeMutablePointer<Float>, adding delta: UnsafePointer<Float>?,
                                  bias: UnsafePointer<Float>?, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                  rows: Int, width: Int, epsilon: Float) {
        let vectorEnd = width & ~7
        for r in 0 ..< rows {
            let row = x + r * width
            let deltaRow = delta.map { $0 + r * width }
            // Pass 1: form the sum in place and accumulate the mean.
            var accumulator = Vector()
            var tail: Float = 0
            var i = 0
            while i < vectorEnd {
                var v = load(row + i)
                if let deltaRow { v += load(deltaRow + i) }
                if let bias { v += load(bias + i) }
                store(v, row + i)
                accumulator += v
                i += 8
            }
            while i < width {
                var v = row[i]
                if let deltaRow { v += deltaRow[i] }
                if let bias { v += bias[i] }
                row[i] = v
                tail += v
                i += 1
            }
            let mean = (accumulator.sum() + tail) / Float(width)
            // Pass 2: variance.
            var squares = Vector()
            var tailSquares: Float = 0
            let meanVector = Vector(repeating: mean)
            i = 0
            while i < vectorEnd { let d = load(row + i) - meanVector; squares += d * d; i += 8 }
            while i < width { let d = row[i] - mean; tailSquares += d * d; i += 1 }
            let variance = (squares.sum() + tailSquares) / Float(width)
            let inverse = 1 / (variance + epsilon).squareRoot()
            let inverseVector = Vector(repeating: inverse)
            // Pass 3: normalise and scale.
            i = 0
            while i < vectorEnd {
                store((load(row + i) - meanVector) * inverseVector * load(gamma + i) + load(beta + i), row + i)
                i += 8
            }
            while i < width { row[i] = (row[i] - mean) * inverse * gamma[i] + beta[i]; i += 1 }
        }
    }

    /// Feed-forward activation, applied in place after adding the bias: `h = act(h + bias)` over `h[rows, width]`.
    enum Activation { case geluErf, geluTanh, relu }

    static func addBiasActivate(_ h: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, width: Int,
                                activation: Activation) {
        let vectorEnd = width & ~7
        for r in 0 ..< rows {
            let row = h + r * width
            var i = 0
            switch activation {
            case .geluErf:
                while i < vectorEnd { store(gelu(load(row + i) + load(bias + i)), row + i); i += 8 }
                while i < width { row[i] = gelu(Vector(repeating: row[i] + bias[i]))[0]; i += 1 }
            case .geluTanh:
                while i < vectorEnd { store(geluTanh(load(row + i) + load(bias + i)), row + i); i += 8 }
                while i < width { row[i] = geluTanh(Vector(repeating: row[i] + bias[i]))[0]; i += 1 }
            case .relu:
                while i < vectorEnd { store((load(row + i) + load(bias + i)).replacing(with: 0, where: load(row + i) + load(bias + i) .< 0), row + i); i += 8 }
                while i < width { row[i] = max(0, row[i] + bias[i]); i += 1 }
            }
        }
    }

    /// GELU(x) = x · Φ(x) = ½ x (1 + erf(x / √2)), erf-exact as `torch.nn.functional.gelu` (approximate = "none").
    @inline(__always) static func gelu(_ x: Vector) -> Vector {
        0.5 * x * (1 + erf(x * 0.70710678118654752))
    }

    /// GELU, tanh approximation (Hendrycks & Gimpel 2016; HF "gelu_new"): ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    /// tanh(u) = 1 − 2/(exp(2u) + 1).
    @inline(__always) static func geluTanh(_ x: Vector) -> Vector {
        let u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        let tanh = 1 - 2 / (exp(2 * u) + 1)
        return 0.5 * x * (1 + tanh)
    }

    /// erf for Float lanes: the rational minimax approximation used by Eigen/XLA (`generic_fast_erf_float`),
    /// accurate to a few ulp on [-4, 4]; outside that range erf is ±1 in single precision.
    /// Division-and-polynomial only, so it vectorises (glibc's scalar erff would dominate the FFN otherwise).
    @inline(__always) static func erf(_ input: Vector) -> Vector {
        let x = clamp(input, -4, 4)
        let x2 = x * x
        var p = x2 * Vector(repeating: -2.72614225801306e-10) + Vector(repeating: 2.77068142495902e-08)
        p = x2 * p + Vector(repeating: -2.10102402082508e-06)
        p = x2 * p + Vector(repeating: -5.69250639462346e-05)
        p = x2 * p + Vector(repeating: -7.34990630326855e-04)
        p = x2 * p + Vector(repeating: -2.95459980854025e-03)
        p = x2 * p + Vector(repeating: -1.60960333262415e-02)
        p = x * p
        var q = x2 * Vector(repeating: -1.45660718464996e-05) + Vector(repeating: -2.13374055278905e-04)
        q = x2 * q + Vector(repeating: -1.68282697438203e-03)
        q = x2 * q + Vector(repeating: -7.37332916720468e-03)
        q = x2 * q + Vector(repeating: -1.42647390514189e-02)
        return p / q
    }

    /// Lane-wise clamp. (`SIMD.clamped` goes through generic `pointwiseMin/Max`, which the optimiser left as calls.)
    @inline(__always) static func clamp(_ x: Vector, _ low: Float, _ high: Float) -> Vector {
        var v = x
        v.replace(with: low, where: v .< low)
        v.replace(with: high, where: v .> high)
        return v
    }

    /// exp for Float lanes (Cephes `expf` scheme): x = n ln2 + r with |r| ≤ ½ ln2, degree-6 polynomial for e^r,
    /// 2ⁿ assembled in the exponent bits. Relative error ≈ 2 ulp on [-87, 88]; inputs are clamped to that range.
    @inline(__always) static func exp(_ input: Vector) -> Vector {
        let x = clamp(input, -87, 88)
        // Round x·log2(e) to the nearest integer with the 1.5·2²³ trick; its low mantissa bits then hold n.
        let shifter = Vector(repeating: 12_582_912)
        let shifted = x * Vector(repeating: 1.44269504088896341) + shifter
        let n = shifted - shifter
        var r = x - n * Vector(repeating: 0.693359375)
        r = r - n * Vector(repeating: -2.12194440e-4)
        var p = Vector(repeating: 1.9875691500e-4) * r + Vector(repeating: 1.3981999507e-3)
        p = p * r + Vector(repeating: 8.3334519073e-3)
        p = p * r + Vector(repeating: 4.1665795894e-2)
        p = p * r + Vector(repeating: 1.6666665459e-1)
        p = p * r + Vector(repeating: 5.0000001201e-1)
        p = p * r * r + r + 1
        let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((integer &+ 127) &<< 23, to: Vector.self)
        return p * scale
    }

    /// Softmax over each of `rows` rows of `count` values, in place; rows are `stride` floats apart.
    static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, count: Int, stride: Int) {
        let vectorEnd = count & ~7
        for r in 0 ..< rows {
            let row = x + r * stride
            var maximum = -Float.infinity
            for i in 0 ..< count { maximum = Swift.max(maximum, row[i]) }
            let maxVector = Vector(repeating: maximum)
            var sums = Vector()
            var i = 0
            while i < vectorEnd { let e = exp(load(row + i) - maxVector); store(e, row + i); sums += e; i += 8 }
            var total = sums.sum()
            if i < count {
                // Tail: pad a vector with -inf-like lanes (exp → 0) so the same kernel serves.
                var lanes = Vector(repeating: -100)
                for k in 0 ..< count - i { lanes[k] = row[i + k] - maximum }
                let e = exp(lanes)
                for k in 0 ..< count - i { row[i + k] = e[k]; total += e[k] }
            }
            let inverse = Vector(repeating: 1 / total)
            i = 0
            while i < vectorEnd { store(load(row + i) * inverse, row + i); i += 8 }
            while i < count { row[i] *= inverse[0]; i += 1 }
        }
    }

    /// L2-normalises `x[count]` in place (vectors of norm 0 are left as they are, like `torch.nn.functional.normalize`
    /// which divides by max(norm, 1e-12)).
    static func l2Normalize(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var sum: Float = 0
        for i in 0 ..< count { sum += x[i] * x[i] }
        let norm = Swift.max(sum.squareRoot(), 1e-12)
        for i in 0 ..< count { x[i] /= norm }
    }
}
