import COpenBLAS
import Foundation

/// Thin, row-major wrappers over OpenBLAS `cblas_sgemm` / `cblas_sgemv`.
///
/// All C calls of the Learn engine go through this file, so no C type leaks into the rest of the module.
/// Matrices are row-major and contiguous in their leading dimension (`ld*` = elements between rows).
///
/// Threading: Learn parallelises over the batch itself (see `Parallel`) and calls these from several threads at
/// once. That is correct whatever OpenBLAS's thread count is (the pthread build serialises its own pool between
/// callers), and fastest when OpenBLAS runs each product on the calling thread: the opt-in
/// `LearnEngine.configureProcess()` sets that up for a whole process. The library never changes the count itself.
enum BLAS {
    /// The OpenBLAS kernel family in use (e.g. "SkylakeX").
    static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// OpenBLAS's process-wide thread count (read only: the library never sets it; see `LearnEngine`).
    static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major.
    /// `op(A)` is m×k (A stored k×m when `transA`), `op(B)` is k×n (B stored n×k when `transB`).
    @inline(__always)
    static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                     alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS leaves C·beta; make the k = 0 edge explicit so callers need not special-case it.
            if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            else if beta != 1 { for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// y[m or n] = alpha · op(A) · x + beta · y with A row-major m×n.
    @inline(__always)
    static func gemv(trans: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                     x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>) {
        if m == 0 || n == 0 { return }
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
                    x, 1, beta, y, 1)
    }

    /// Dot product of two contiguous vectors.
    @inline(__always)
    static func dot(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
        cblas_sdot(Int32(n), x, 1, y, 1)
    }
}
