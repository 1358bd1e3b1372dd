import Foundation

/// Principal-component basis for reducing profile embeddings before distillation (ECIR'26 reduces
/// e.g. 1024-d E5 profiles to the model width). Fitted by subspace iteration on the covariance
/// matrix (products through `sgemm`) followed by a Rayleigh–Ritz step solved with cyclic Jacobi, so
/// components come out orthonormal and sorted by explained variance. Codable: store it with the model.
public struct PCABasis: Codable, Equatable, Sendable {
    /// Input dimension.
    public let dimension: Int
    /// Mean of the fitted vectors (`dimension` values), subtracted before projecting.
    public let mean: [Float]
    /// `[components, dimension]`, rows orthonormal, by decreasing variance.
    public let components: Tensor
    /// Variance along each component.
    public let variances: [Float]

    /// Fits `components` principal directions to `count` vectors of `dimension` values (row-major).
    /// - Throws: `LearnError.invalidData` when there are fewer than 2 vectors or `components` is out of range.
    public static func fit(vectors: [Float], count: Int, dimension: Int, components k: Int, iterations: Int = 30,
                           seed: UInt64 = 0) throws -> PCABasis {
        guard count >= 2, vectors.count == count * dimension else { throw LearnError.invalidData("PCA needs ≥ 2 vectors of \(dimension) values") }
        guard k >= 1, k <= dimension else { throw LearnError.invalidData("PCA components must be in 1...\(dimension)") }
        BLAS.useSingleThreadedKernels()
        let d = dimension
        var mean = [Float](repeating: 0, count: d)
        for i in 0..<count { for j in 0..<d { mean[j] += vectors[i * d + j] } }
        for j in 0..<d { mean[j] /= Float(count) }
        var centred = vectors
        for i in 0..<count { for j in 0..<d { centred[i * d + j] -= mean[j] } }
        // Covariance C = Xcᵀ Xc / (n − 1), d × d.
        var cov = [Float](repeating: 0, count: d * d)
        BLAS.gemm(transA: true, m: d, n: d, k: count, alpha: 1 / Float(count - 1), a: centred, lda: d, b: centred, ldb: d,
                  c: &cov, ldc: d)
        // Subspace iteration on Q (d × k, column-major as k rows of d values: row r = basis vector r).
        var rng = Xoshiro256(seed: seed)
        var q = (0..<(k * d)).map { _ in rng.nextNormal() }
        orthonormaliseRows(&q, rows: k, width: d)
        var z = [Float](repeating: 0, count: k * d)
        for _ in 0..<iterations {
            BLAS.gemm(m: k, n: d, k: d, a: q, lda: d, b: cov, ldb: d, c: &z, ldc: d)  // rows of Q·C (C symmetric)
            q = z
            orthonormaliseRows(&q, rows: k, width: d)
        }
        // Rayleigh–Ritz: T = Q C Qᵀ (k × k), eigen-decompose, rotate Q.
        BLAS.gemm(m: k, n: d, k: d, a: q, lda: d, b: cov, ldb: d, c: &z, ldc: d)
        var t = [Float](repeating: 0, count: k * k)
        BLAS.gemm(transB: true, m: k, n: k, k: d, a: z, lda: d, b: q, ldb: d, c: &t, ldc: k)
        let (values, vectors) = jacobiEigen(t.map(Double.init), n: k)
        let order = (0..<k).sorted { values[$0] > values[$1] }
        var basis = [Float](repeating: 0, count: k * d)
        for (r, e) in order.enumerated() {
            for i in 0..<k {
                let w = Float(vectors[i * k + e])  // component e of the eigenvector in the Q basis
                if w == 0 { continue }
                for j in 0..<d { basis[r * d + j] += w * q[i * d + j] }
            }
        }
        return PCABasis(dimension: d, mean: mean, components: Tensor(shape: [k, d], values: basis),
                        variances: order.map { Float(values[$0]) })
    }

    /// Projects one vector onto the components: `components · (v − mean)`.
    public func transform(_ v: [Float]) -> [Float] {
        precondition(v.count == dimension, "PCA: vector of \(v.count) values, basis of \(dimension)")
        let k = components.shape[0]
        var centred = v
        for j in 0..<dimension { centred[j] -= mean[j] }
        var out = [Float](repeating: 0, count: k)
        BLAS.gemv(m: k, n: dimension, a: components.values, lda: dimension, x: centred, y: &out)
        return out
    }

    /// Modified Gram–Schmidt on the rows (twice, for numerical safety).
    static func orthonormaliseRows(_ m: inout [Float], rows: Int, width: Int) {
        for _ in 0..<2 {
            for r in 0..<rows {
                for p in 0..<r {
                    var dot: Float = 0
                    for j in 0..<width { dot += m[r * width + j] * m[p * width + j] }
                    for j in 0..<width { m[r * width + j] -= dot * m[p * width + j] }
                }
                var norm: Float = 0
                for j in 0..<width { norm += m[r * width + j] * m[r * width + j] }
                let inv = norm > 1e-30 ? 1 / norm.squareRoot() : 0
                for j in 0..<width { m[r * width + j] *= inv }
            }
        }
    }

    /// Cyclic Jacobi eigen-decomposition of a symmetric n × n matrix (row-major). Returns eigenvalues and
    /// eigenvectors as COLUMNS of an n × n row-major matrix.
    static func jacobiEigen(_ a0: [Double], n: Int) -> ([Double], [Double]) {
        var a = a0
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        for _ in 0..<100 {
            var off = 0.0
            for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { off += a[i * n + j] * a[i * n + j] } }
            if off < 1e-22 { break }
            for p in 0..<n {
                for q in (p + 1)..<max(p + 1, n) where abs(a[p * n + q]) > 1e-30 {
                    let theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q])
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot(), s = t * c
                    for k in 0..<n {  // A ← Jᵀ A J
                        let akp = a[k * n + p], akq = a[k * n + q]
                        a[k * n + p] = c * akp - s * akq; a[k * n + q] = s * akp + c * akq
                    }
                    for k in 0..<n {
                        let apk = a[p * n + k], aqk = a[q * n + k]
                        a[p * n + k] = c * apk - s * aqk; a[q * n + k] = s * apk + c * aqk
                    }
                    for k in 0..<n {
                        let vkp = v[k * n + p], vkq = v[k * n + q]
                        v[k * n + p] = c * vkp - s * vkq; v[k * n + q] = s * vkp + c * vkq
                    }
                }
            }
        }
        return ((0..<n).map { a[$0 * n + $0] }, v)
    }
}
