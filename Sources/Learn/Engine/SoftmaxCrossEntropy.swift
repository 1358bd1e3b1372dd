import Foundation

/// Full-softmax cross-entropy over the whole catalogue, computed in row chunks so that at most
/// `parts · chunkRows · items` logits exist at once (a 256×50 batch over 100 k items never materialises
/// its logits). Per chunk, log-softmax, the loss and its gradient are fused into one pass over the
/// logits, and the gradient feeds the two backward products straight away:
///
///     logits = H_c · Eᵀ          (chunk × items)
///     G      = (softmax − onehot) · gradScale
///     dH_c   = G · E,   dE += Gᵀ · H_c
///
/// The softmax normalisation and the one-hot are folded into the products (row scales and sparse
/// corrections), so each chunk of logits is written once by sgemm, exponentiated in place in one
/// pass after the max pass, and read by the two backward sgemms.
///
/// Each part accumulates its own dE (so parts never race), summed at the end in part order.
final class SoftmaxCrossEntropy {
    let chunkRows: Int
    private var logits: [Buffer] = []
    private var catalogueGrads: [Buffer] = []
    /// Per part: `chunk` row factors followed by `chunk × d` row-scaled hidden states.
    private let scaled = Buffer(1)

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
        scaled.reserve(parts * chunk * (d + 1))
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
                    // Rows keep UNNORMALISED exponentials e = exp(z − max); the per-row factor
                    // k = gradScale / Σe is folded into the two products below instead of a third pass:
                    //   G = diag(k)·e − gradScale·onehot
                    //   dH = G·E = diag(k)·(e·E) − gradScale·E[target]
                    //   dE += Gᵀ·H = eᵀ·(diag(k)·H) − gradScale·(onehot)ᵀ·H
                    let rowScale = scaled.p + part * chunk * (d + 1)
                    let scaledHidden = rowScale + chunk
                    for i in 0..<m {
                        let (l, k) = Self.exponentiateRow(z.p + i * items, count: items, target: Int(targets[c0 + i]) - 1)
                        loss += Double(l)
                        rowScale[i] = k * gradScale
                    }
                    if let hiddenGrad {
                        let dh = hiddenGrad + c0 * d
                        BLAS.gemm(m: m, n: d, k: items, a: z.p, lda: items, b: catalogue, ldb: d, c: dh, ldc: d)
                        for i in 0..<m {
                            let t = catalogue + (Int(targets[c0 + i]) - 1) * d, row = dh + i * d, k = rowScale[i]
                            for j in 0..<d { row[j] = row[j] * k - gradScale * t[j] }
                        }
                    }
                    if catalogueGrad != nil {
                        for i in 0..<m {
                            let k = rowScale[i], src = h + i * d, dst = scaledHidden + i * d
                            for j in 0..<d { dst[j] = src[j] * k }
                        }
                        BLAS.gemm(transA: true, m: items, n: d, k: m, a: z.p, lda: items, b: scaledHidden, ldb: d,
                                  beta: first ? 0 : 1, c: acc.p, ldc: d)
                        for i in 0..<m {
                            let dst = acc.p + (Int(targets[c0 + i]) - 1) * d, src = h + i * d
                            for j in 0..<d { dst[j] -= gradScale * src[j] }
                        }
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

    /// In place: row ← exp(row − max(row)). Returns (−log softmax(row)[target], 1/Σ exp).
    /// Two passes over the row (max, then exp + sum); normalisation is left to the caller.
    @inline(__always)
    static func exponentiateRow(_ row: UnsafeMutablePointer<Float>, count n: Int, target: Int) -> (Float, Float) {
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
        return (logf(sum) + mx - targetLogit, 1 / sum)
    }
}
