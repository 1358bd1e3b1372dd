import Foundation

/// Full-softmax cross-entropy over the whole catalogue, computed in row chunks so that at most
/// `parts · chunkRows · items` logits exist at once (a 256×50 batch over 100 k items never materialises
/// its logits). Per chunk, log-softmax, the loss and its gradient are fused into one pass over the
/// logits, and the gradient feeds the two backward products straight away:
///
///     logits = H_c · Eᵀ          (chunk × items)
///     G      = (softmax − onehot) · gradScale   (in place)
///     dH_c   = G · E,   dE += Gᵀ · H_c
///
/// Each part accumulates its own dE (so parts never race), summed at the end in part order.
final class SoftmaxCrossEntropy {
    let chunkRows: Int
    private var logits: [Buffer] = []
    private var catalogueGrads: [Buffer] = []

    init(chunkRows: Int = 64) { self.chunkRows = chunkRows }

    /// - Parameters:
    ///   - hidden: `[rows, d]` outputs at the scored positions.
    ///   - catalogue: `[items, d]` output item vectors; column `j` of the logits is item `j + 1`.
    ///   - targets: `rows` targets in `1...items`.
    ///   - gradScale: factor applied to the gradient (1/rows for a mean loss).
    ///   - hiddenGrad: `[rows, d]`, written.
    ///   - catalogueGrad: `[items, d]`, accumulated (`+=`); nil skips both backward products.
    /// - Returns: the SUM of −log p(target) over rows (Double).
    func run(hidden: UnsafePointer<Float>, rows: Int, width d: Int, catalogue: UnsafePointer<Float>, items: Int,
             targets: UnsafePointer<Int32>, gradScale: Float, hiddenGrad: UnsafeMutablePointer<Float>?,
             catalogueGrad: UnsafeMutablePointer<Float>?) -> Double {
        let parts = max(1, min(Parallel.parts, (rows + 15) / 16))
        while logits.count < parts { logits.append(Buffer(chunkRows * items)); catalogueGrads.append(Buffer(1)) }
        var lossPerPart = [Double](repeating: 0, count: parts)
        var usedPart = [Bool](repeating: false, count: parts)
        let chunk = chunkRows
        lossPerPart.withUnsafeMutableBufferPointer { lossOut in
        usedPart.withUnsafeMutableBufferPointer { used in
            Parallel.forEachSlice(rows, parts: parts) { part, range in
                let z = logits[part]; z.reserve(chunk * items)
                let acc = catalogueGrads[part]
                if catalogueGrad != nil { acc.reserve(items * d) }
                var loss: Double = 0
                var first = true
                var c0 = range.lowerBound
                while c0 < range.upperBound {
                    let m = min(chunk, range.upperBound - c0)
                    let h = hidden + c0 * d
                    BLAS.gemm(transB: true, m: m, n: items, k: d, a: h, lda: d, b: catalogue, ldb: d, c: z.p, ldc: items)
                    for i in 0..<m {
                        loss += Double(Self.fusedRow(z.p + i * items, count: items, target: Int(targets[c0 + i]) - 1,
                                                     scale: gradScale))
                    }
                    if let hiddenGrad {
                        BLAS.gemm(m: m, n: d, k: items, a: z.p, lda: items, b: catalogue, ldb: d,
                                  c: hiddenGrad + c0 * d, ldc: d)
                    }
                    if catalogueGrad != nil {
                        BLAS.gemm(transA: true, m: items, n: d, k: m, a: z.p, lda: items, b: h, ldb: d,
                                  beta: first ? 0 : 1, c: acc.p, ldc: d)
                    }
                    first = false
                    c0 += m
                }
                lossOut[part] = loss
                used[part] = !first
            }
        }
        }
        if let catalogueGrad {
            let n = items * d
            Parallel.forEachSlice(n, minimumPerPart: 65536) { _, r in
                for part in 0..<parts where usedPart[part] {
                    let a = catalogueGrads[part].p
                    for i in r { catalogueGrad[i] += a[i] }
                }
            }
        }
        return lossPerPart.reduce(0, +)
    }

    /// In place: row ← (softmax(row) − onehot(target)) · scale. Returns −log softmax(row)[target].
    @inline(__always)
    static func fusedRow(_ row: UnsafeMutablePointer<Float>, count n: Int, target: Int, scale: Float) -> Float {
        let vectorEnd = n & ~7
        var mx8 = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i < vectorEnd { let v = load8(row + i); mx8.replace(with: v, where: v .> mx8); i += 8 }
        var mx = mx8.max()
        while i < n { mx = max(mx, row[i]); i += 1 }
        let targetLogit = row[target]
        let m8 = SIMD8<Float>(repeating: mx)
        var s8 = SIMD8<Float>(repeating: 0)
        i = 0
        while i < vectorEnd { let e = fastExp(load8(row + i) - m8); store8(e, row + i); s8 += e; i += 8 }
        var sum = s8.sum()
        while i < n { let e = expf(row[i] - mx); row[i] = e; sum += e; i += 1 }
        let k = scale / sum
        let k8 = SIMD8<Float>(repeating: k)
        i = 0
        while i < vectorEnd { store8(load8(row + i) * k8, row + i); i += 8 }
        while i < n { row[i] *= k; i += 1 }
        row[target] -= scale
        return logf(sum) + mx - targetLogit
    }
}
