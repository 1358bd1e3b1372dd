import Foundation

/// Full-ranking metrics over a set of evaluation cases (means over cases).
/// rank = number of items scoring STRICTLY higher than the target (ties favour the target, as the
/// reference); Recall@K = 1[rank < K]; NDCG@K = 1/log₂(rank + 2) if rank < K; MRR = 1/(rank + 1).
/// JSON keys: `recall@5`, `recall@10`, `recall@20`, `ndcg@5`, `ndcg@10`, `ndcg@20`, `mrr`, `users`.
public struct RankingMetrics: Codable, Equatable, Sendable {
    public var recall5: Double = 0, recall10: Double = 0, recall20: Double = 0
    public var ndcg5: Double = 0, ndcg10: Double = 0, ndcg20: Double = 0
    public var mrr: Double = 0
    /// Number of evaluated cases.
    public var users: Int = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case recall5 = "recall@5", recall10 = "recall@10", recall20 = "recall@20"
        case ndcg5 = "ndcg@5", ndcg10 = "ndcg@10", ndcg20 = "ndcg@20", mrr, users
    }

    /// Adds one case with the given 0-based rank (sums; call `finish` to turn sums into means).
    mutating func add(rank: Int) {
        let gain = 1 / log2(Double(rank) + 2)
        if rank < 5 { recall5 += 1; ndcg5 += gain }
        if rank < 10 { recall10 += 1; ndcg10 += gain }
        if rank < 20 { recall20 += 1; ndcg20 += gain }
        mrr += 1 / Double(rank + 1)
        users += 1
    }

    mutating func merge(_ o: RankingMetrics) {
        recall5 += o.recall5; recall10 += o.recall10; recall20 += o.recall20
        ndcg5 += o.ndcg5; ndcg10 += o.ndcg10; ndcg20 += o.ndcg20; mrr += o.mrr; users += o.users
    }

    mutating func finish() {
        let n = Double(max(users, 1))
        recall5 /= n; recall10 /= n; recall20 /= n; ndcg5 /= n; ndcg10 /= n; ndcg20 /= n; mrr /= n
    }

    /// Metrics from 0-based ranks.
    public init(ranks: [Int]) {
        for r in ranks { add(rank: r) }
        finish()
    }
}

/// Full-ranking evaluation of a network on evaluation cases: batches of user windows go through the
/// network (inference mode), the last row's hidden state is scored against every item 1...N in
/// chunks (never the whole score matrix), and ranks are counted in the same pass.
struct RankingEvaluator {
    let network: SequenceNetwork
    var batchSize: Int = 1024
    var maskSeen = false

    /// 0-based rank of each case's target.
    func ranks(_ cases: [EvaluationCase]) -> [Int] {
        let d = network.width, n = network.numItems
        var ranks = [Int](repeating: 0, count: cases.count)
        let ws = network.makeWorkspace()
        let users = Buffer(batchSize * d)
        let chunk = 64
        let parts = Parallel.parts
        let scoreBuffers = (0..<parts).map { _ in Buffer(chunk * n) }
        let catalogue = network.itemTable + d
        var start = 0
        while start < cases.count {
            let end = min(cases.count, start + batchSize)
            ws.reset()
            for c in cases[start..<end] { network.appendEvaluationWindow(c.history, to: ws) }
            network.forwardLastRows(ws)
            for (k, _) in cases[start..<end].enumerated() {
                if ws.layout.rowStart[k + 1] > ws.layout.rowStart[k] {
                    (users.p + k * d).update(from: ws.hidden.p + k * d, count: d)
                } else {
                    (users.p + k * d).update(repeating: 0, count: d)  // empty SASRec history
                }
            }
            let m = end - start
            ranks.withUnsafeMutableBufferPointer { out in
                let chunks = (m + chunk - 1) / chunk
                Parallel.forEachSlice(chunks, parts: parts) { part, range in
                    let z = scoreBuffers[part].p
                    var seen = Set<Int32>()
                    for ch in range {
                        let u0 = ch * chunk, um = min(chunk, m - u0)
                        BLAS.gemm(transB: true, m: um, n: n, k: d, a: users.p + u0 * d, lda: d, b: catalogue, ldb: d,
                                  c: z, ldc: n)
                        for i in 0..<um {
                            let c = cases[start + u0 + i]
                            let row = z + i * n
                            let t = Int(c.target) - 1
                            let ts = row[t]
                            var rank = Self.countGreater(row, n, ts)
                            if maskSeen {
                                seen.removeAll(keepingCapacity: true)
                                for h in c.history where h != c.target && seen.insert(h).inserted {
                                    if row[Int(h) - 1] > ts { rank -= 1 }
                                }
                            }
                            out[start + u0 + i] = rank
                        }
                    }
                }
            }
            start = end
        }
        return ranks
    }

    func evaluate(_ cases: [EvaluationCase]) -> RankingMetrics { RankingMetrics(ranks: ranks(cases)) }

    @inline(__always)
    static func countGreater(_ row: UnsafePointer<Float>, _ n: Int, _ t: Float) -> Int {
        let t8 = SIMD8<Float>(repeating: t)
        var c8 = SIMD8<Int32>(repeating: 0)
        var i = 0
        let end = n & ~7
        while i < end {
            c8 &-= unsafeBitCast(load8(row + i) .> t8, to: SIMD8<Int32>.self)
            i += 8
        }
        var c = Int(c8.wrappedSum())
        while i < n { if row[i] > t { c += 1 }; i += 1 }
        return c
    }
}
