import COpenBLAS
import Foundation

/// Principal component analysis: `reduced = components · (x − mean)`.
///
/// Used to reduce user-profile embeddings (e.g. 1024-d E5 vectors) to the recommender's hidden size
/// before the distillation map, as in the ECIR'26 profile-distillation method (which used UMAP/PCA).
/// Fitting forms the covariance with one sgemm and diagonalises it with LAPACK's `ssyev`; components
/// are the eigenvectors of the largest eigenvalues, sign-normalised (largest |coefficient| positive)
/// so results are reproducible.
public struct PCA: Codable, Equatable, Sendable {
    public let inputDimension: Int
    public let outputDimension: Int
    /// Column means of the fitted data.
    public let mean: [Float]
    /// Row-major `outputDimension × inputDimension`; rows are orthonormal.
    public let components: [Float]
    /// Variances along the kept components (descending).
    public let variances: [Float]
    /// Fraction of the total variance the kept components explain.
    public let explainedVarianceRatio: Double

    /// Fits on `count` rows of `dimension` floats (row-major `rows`).
    /// - Throws: `LearnError.invalidData` for fewer than 2 rows, a bad shape, or a LAPACK failure.
    public static func fit(rows: [Float], count: Int, dimension: Int, components k: Int) throws -> PCA {
        guard count >= 2, dimension >= 1, rows.count == count * dimension else {
            throw LearnError.invalidData("PCA needs at least 2 rows of \(dimension) values (got \(rows.count) values for \(count) rows)")
        }
        guard (1...dimension).contains(k) else { throw LearnError.invalidData("PCA components must be in 1...\(dimension), got \(k)") }
        var mean = [Float](repeating: 0, count: dimension)
        for r in 0..<count { for c in 0..<dimension { mean[c] += rows[r * dimension + c] } }
        for c in 0..<dimension { mean[c] /= Float(count) }
        var centered = rows
        for r in 0..<count { for c in 0..<dimension { centered[r * dimension + c] -= mean[c] } }
        // Covariance (dimension × dimension) = Xᵀ X / (n − 1).
        var cov = [Float](repeating: 0, count: dimension * dimension)
        centered.withUnsafeBufferPointer { x in
            cov.withUnsafeMutableBufferPointer { c in
                BLAS.gemm(transA: true, m: dimension, n: dimension, k: count, alpha: 1 / Float(count - 1),
                          a: x.baseAddress!, lda: dimension, b: x.baseAddress!, ldb: dimension, beta: 0, c: c.baseAddress!, ldc: dimension)
            }
        }
        // ssyev on the (symmetric) covariance: eigenvalues ascending, eigenvectors in place. LAPACK is
        // column-major; a symmetric matrix is its own transpose, and eigenvector j ends up in row j of
        // our row-major buffer.
        var n = Int32(dimension), lda = Int32(dimension), info: Int32 = 0, lwork: Int32 = -1
        var eigen = [Float](repeating: 0, count: dimension)
        var query: Float = 0
        let jobz: CChar = 86 /* V */, uplo: CChar = 85 /* U */
        withUnsafePointer(to: jobz) { j in withUnsafePointer(to: uplo) { u in
            ssyev_(j, u, &n, &cov, &lda, &eigen, &query, &lwork, &info)
        } }
        lwork = Int32(query)
        var work = [Float](repeating: 0, count: max(1, Int(lwork)))
        withUnsafePointer(to: jobz) { j in withUnsafePointer(to: uplo) { u in
            ssyev_(j, u, &n, &cov, &lda, &eigen, &work, &lwork, &info)
        } }
        guard info == 0 else { throw LearnError.invalidData("LAPACK ssyev failed (info \(info))") }
        var comps = [Float](repeating: 0, count: k * dimension)
        var variances = [Float](repeating: 0, count: k)
        for i in 0..<k {
            let src = dimension - 1 - i  // largest first
            variances[i] = max(0, eigen[src])
            var row = Array(cov[(src * dimension)..<((src + 1) * dimension)])
            // Sign convention: the largest-magnitude coefficient is positive.
            if let m = row.indices.max(by: { abs(row[$0]) < abs(row[$1]) }), row[m] < 0 { row = row.map { -$0 } }
            comps.replaceSubrange((i * dimension)..<((i + 1) * dimension), with: row)
        }
        let total = eigen.reduce(0) { $0 + Double(max(0, $1)) }
        let kept = variances.reduce(0) { $0 + Double($1) }
        return PCA(inputDimension: dimension, outputDimension: k, mean: mean, components: comps, variances: variances,
                   explainedVarianceRatio: total > 0 ? kept / total : 1)
    }

    /// Projects one vector (`inputDimension` floats) to `outputDimension` floats.
    /// - Throws: `LearnError.invalidData` when `x` has another length (e.g. the profile space was
    ///   recreated with another dimension after the reduction was fitted): data, not a programming error.
    public func transform(_ x: [Float]) throws -> [Float] {
        guard x.count == inputDimension else {
            throw LearnError.invalidData("PCA.transform: \(x.count) values, expected \(inputDimension) (the reduction was fitted on \(inputDimension)-d vectors)")
        }
        // A decoded (stored) PCA is data too: its arrays must agree with its dimensions before indexing.
        let (size, overflow) = outputDimension.multipliedReportingOverflow(by: inputDimension)
        guard inputDimension >= 0, outputDimension >= 0, !overflow, mean.count == inputDimension, components.count == size else {
            throw LearnError.invalidData("PCA.transform: stored reduction is inconsistent (\(mean.count) means, \(components.count) components for \(outputDimension)×\(inputDimension))")
        }
        var out = [Float](repeating: 0, count: outputDimension)
        for r in 0..<outputDimension {
            var s: Float = 0
            let base = r * inputDimension
            for c in 0..<inputDimension { s += components[base + c] * (x[c] - mean[c]) }
            out[r] = s
        }
        return out
    }
}
