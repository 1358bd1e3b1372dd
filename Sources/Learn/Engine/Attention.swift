import Foundation

/// Where each sequence of a packed batch lives. Sequences are stored back to back WITHOUT padding
/// (sequence `s` occupies rows `rowStart[s]..<rowStart[s+1]`): padding never changes a real position's
/// output (padded keys are masked out and padded rows are never scored), so it is never computed.
struct PackedLayout {
    /// `count + 1` row offsets.
    var rowStart: [Int] = [0]
    /// `count + 1` offsets into per-(sequence, head) attention matrices: sequence `s`, head `h` uses
    /// `heads·n²` floats from `attentionStart[s]`, head `h` at `+ h·n²` (n = its length).
    var attentionStart: [Int] = [0]

    var count: Int { rowStart.count - 1 }
    var rows: Int { rowStart[rowStart.count - 1] }
    var attentionSize: Int { attentionStart[attentionStart.count - 1] }

    init() {}

    /// Builds the layout for sequences of the given lengths.
    init<C: Collection>(lengths: C, heads: Int) where C.Element == Int {
        rowStart.reserveCapacity(lengths.count + 1)
        attentionStart.reserveCapacity(lengths.count + 1)
        for n in lengths {
            rowStart.append(rowStart[rowStart.count - 1] + n)
            attentionStart.append(attentionStart[attentionStart.count - 1] + heads * n * n)
        }
    }

    mutating func reset() { rowStart.removeAll(keepingCapacity: true); rowStart.append(0)
        attentionStart.removeAll(keepingCapacity: true); attentionStart.append(0) }

    mutating func append(length n: Int, heads: Int) {
        rowStart.append(rowStart[rowStart.count - 1] + n)
        attentionStart.append(attentionStart[attentionStart.count - 1] + heads * n * n)
    }
}

/// Multi-head scaled dot-product attention (Vaswani et al. 2017) over packed sequences.
///
/// Input `qkv[rows, 3d]` holds Q | K | V (head `h` in columns `h·dk..<(h+1)·dk` of each third, as PyTorch's
/// `view(B, L, 3, heads, dk)`); output `y[rows, d]`. `causal` restricts position i to keys j ≤ i (SASRec);
/// otherwise attention is bidirectional over the sequence's real positions (BERT4Rec).
/// Attention-probability dropout uses the inverted mask `dropMask` (nil = no dropout).
enum Attention {
    /// Stores `probs` (softmax, before dropout) and `dropped` (= probs ⊙ mask, used for the output)
    /// for the backward pass; both `layout.attentionSize` floats.
    static func forward(qkv: UnsafePointer<Float>, layout: PackedLayout, width d: Int, heads: Int, causal: Bool,
                        dropMask: UnsafePointer<Float>?, probs: UnsafeMutablePointer<Float>,
                        dropped: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let dk = d / heads
        let scale = 1 / Float(dk).squareRoot()
        Parallel.forEach(layout.count, minimumPerPart: 4) { s in
            let r0 = layout.rowStart[s], n = layout.rowStart[s + 1] - r0
            if n == 0 { return }
            for h in 0..<heads {
                let off = layout.attentionStart[s] + h * n * n
                let p = probs + off
                let q = qkv + r0 * 3 * d + h * dk
                BLAS.gemm(transB: true, m: n, n: n, k: dk, alpha: scale, a: q, lda: 3 * d, b: q + d, ldb: 3 * d,
                          c: p, ldc: n)
                for i in 0..<n {
                    let row = p + i * n
                    let allowed = causal ? i + 1 : n
                    var mx = -Float.infinity
                    for j in 0..<allowed { mx = max(mx, row[j]) }
                    var sum: Float = 0
                    for j in 0..<allowed { let e = expf(row[j] - mx); row[j] = e; sum += e }
                    let inv = 1 / sum
                    for j in 0..<allowed { row[j] *= inv }
                    for j in allowed..<n { row[j] = 0 }
                }
                let used: UnsafePointer<Float>
                if let dropMask {
                    let dp = dropped + off, m = dropMask + off
                    for j in 0..<(n * n) { dp[j] = p[j] * m[j] }
                    used = UnsafePointer(dp)
                } else {
                    used = UnsafePointer(p)
                }
                BLAS.gemm(m: n, n: dk, k: n, a: used, lda: n, b: q + 2 * d, ldb: 3 * d,
                          c: y + r0 * d + h * dk, ldc: d)
            }
        }
    }

    /// Inference for the LAST query of each sequence only (it may attend to every key of its sequence
    /// under both masks): y[k, d] for sequence k. `scratch` needs `layout.rows` floats.
    static func forwardLastQuery(qkv: UnsafePointer<Float>, layout: PackedLayout, width d: Int, heads: Int,
                                 scratch: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let dk = d / heads
        let scale = 1 / Float(dk).squareRoot()
        Parallel.forEach(layout.count, minimumPerPart: 16) { s in
            let r0 = layout.rowStart[s], n = layout.rowStart[s + 1] - r0
            let out = y + s * d
            if n == 0 { out.update(repeating: 0, count: d); return }
            let scores = scratch + r0
            for h in 0..<heads {
                let k0 = qkv + r0 * 3 * d + d + h * dk
                let q = qkv + (r0 + n - 1) * 3 * d + h * dk
                BLAS.gemv(m: n, n: dk, alpha: scale, a: k0, lda: 3 * d, x: q, y: scores)
                var mx = -Float.infinity
                for j in 0..<n { mx = max(mx, scores[j]) }
                var sum: Float = 0
                for j in 0..<n { let e = expf(scores[j] - mx); scores[j] = e; sum += e }
                let inv = 1 / sum
                for j in 0..<n { scores[j] *= inv }
                BLAS.gemv(trans: true, m: n, n: dk, a: k0 + d, lda: 3 * d, x: scores, y: out + h * dk)
            }
        }
    }

    /// Given dy[rows, d], writes dqkv[rows, 3d]. Overwrites `dropped` (used as scratch).
    static func backward(dy: UnsafePointer<Float>, qkv: UnsafePointer<Float>, layout: PackedLayout, width d: Int,
                         heads: Int, dropMask: UnsafePointer<Float>?, probs: UnsafePointer<Float>,
                         dropped: UnsafeMutablePointer<Float>, dqkv: UnsafeMutablePointer<Float>) {
        let dk = d / heads
        let scale = 1 / Float(dk).squareRoot()
        Parallel.forEach(layout.count, minimumPerPart: 4) { s in
            let r0 = layout.rowStart[s], n = layout.rowStart[s + 1] - r0
            if n == 0 { return }
            for h in 0..<heads {
                let off = layout.attentionStart[s] + h * n * n
                let p = probs + off, scratch = dropped + off
                let q = qkv + r0 * 3 * d + h * dk
                let dyh = dy + r0 * d + h * dk
                let dq = dqkv + r0 * 3 * d + h * dk
                // dV = (P ⊙ M)ᵀ · dY
                BLAS.gemm(transA: true, m: n, n: dk, k: n, a: dropMask == nil ? p : UnsafePointer(scratch), lda: n,
                          b: dyh, ldb: d, c: dq + 2 * d, ldc: 3 * d)
                // dP̃ = dY · Vᵀ, then through dropout and the softmax: dS = P ⊙ (dP − Σ_j dP ⊙ P)
                BLAS.gemm(transB: true, m: n, n: n, k: dk, a: dyh, lda: d, b: q + 2 * d, ldb: 3 * d,
                          c: scratch, ldc: n)
                for i in 0..<n {
                    let pr = p + i * n, gr = scratch + i * n
                    if let dropMask { let mr = dropMask + off + i * n; for j in 0..<n { gr[j] *= mr[j] } }
                    var dotp: Float = 0
                    for j in 0..<n { dotp += gr[j] * pr[j] }
                    for j in 0..<n { gr[j] = pr[j] * (gr[j] - dotp) * scale }
                }
                // dQ = dS · K, dK = dSᵀ · Q
                BLAS.gemm(m: n, n: dk, k: n, a: scratch, lda: n, b: q + d, ldb: 3 * d, c: dq, ldc: 3 * d)
                BLAS.gemm(transA: true, m: n, n: dk, k: n, a: scratch, lda: n, b: q, ldb: 3 * d, c: dq + d, ldc: 3 * d)
            }
        }
    }
}
