import Foundation

/// Full-ranking metrics over a set of evaluation cases (means over cases).
/// rank = number of items scoring STRICTLY higher than the target (ties favour the target, as the
/// reference); Recall@K = 1[rank < K]; NDCG@K = 1/log₂(rank + 2) if rank < K; MRR = 1/(rank + 1).
/// JSON keys: `recall@5`, `recall@10`, `recall@20`, `ndcg@5`, `ndcg@10`, `ndcg@20`, `mrr`, `users`,
/// plus, for every extra cutoff K asked for (`EvaluationOptions.cutoffs`), `hit@K`, `recall@K`,
/// `ndcg@K`, `mrr@K`, `precision@K`, and `coverage@K` when coverage was asked for.
public struct RankingMetrics: Codable, Equatable, Sendable {
    public var recall5: Double = 0, recall10: Double = 0, recall20: Double = 0
    public var ndcg5: Double = 0, ndcg10: Double = 0, ndcg20: Double = 0
    public var mrr: Double = 0
    /// Number of evaluated cases.
    public var users: Int = 0
    /// Metrics at the extra cutoffs (empty unless asked for).
    public var atK: [Int: CutoffMetrics] = [:]
    /// Item coverage@K: the fraction of the catalogue that appears in at least one case's top K
    /// (ties broken by the lower item id; empty unless asked for).
    public var coverage: [Int: Double] = [:]

    /// Metrics at one cutoff K. With one target per case, Hit@K = Recall@K = 1[rank < K] and
    /// Precision@K = Hit@K / K; MRR@K = 1/(rank + 1) if rank < K, else 0.
    public struct CutoffMetrics: Equatable, Sendable {
        public var hit = 0.0, ndcg = 0.0, mrr = 0.0, precision = 0.0
        public var recall: Double { hit }
    }

    public init() {}

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func get(_ k: String) throws -> Double { try c.decodeIfPresent(Double.self, forKey: Key(k)) ?? 0 }
        recall5 = try get("recall@5"); recall10 = try get("recall@10"); recall20 = try get("recall@20")
        ndcg5 = try get("ndcg@5"); ndcg10 = try get("ndcg@10"); ndcg20 = try get("ndcg@20"); mrr = try get("mrr")
        users = try c.decodeIfPresent(Int.self, forKey: Key("users")) ?? 0
        for key in c.allKeys {
            let parts = key.stringValue.split(separator: "@")
            guard parts.count == 2, let k = Int(parts[1]) else { continue }
            let v = try c.decode(Double.self, forKey: key)
            switch parts[0] {
            case "hit": atK[k, default: CutoffMetrics()].hit = v
            case "mrr": atK[k, default: CutoffMetrics()].mrr = v
            case "precision": atK[k, default: CutoffMetrics()].precision = v
            case "coverage": coverage[k] = v
            default: break
            }
        }
        for k in atK.keys { atK[k]!.ndcg = try get("ndcg@\(k)") }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        var written = Set<String>()
        func put(_ k: String, _ v: Double) throws { if written.insert(k).inserted { try c.encode(v, forKey: Key(k)) } }
        try put("recall@5", recall5); try put("recall@10", recall10); try put("recall@20", recall20)
        try put("ndcg@5", ndcg5); try put("ndcg@10", ndcg10); try put("ndcg@20", ndcg20); try put("mrr", mrr)
        try c.encode(users, forKey: Key("users"))
        for k in atK.keys.sorted() {
            let m = atK[k]!
            try put("hit@\(k)", m.hit); try put("recall@\(k)", m.recall); try put("ndcg@\(k)", m.ndcg)
            try put("mrr@\(k)", m.mrr); try put("precision@\(k)", m.precision)
        }
        for k in coverage.keys.sorted() { try put("coverage@\(k)", coverage[k]!) }
    }

    /// Adds one case with the given 0-based rank (sums; call `finish` to turn sums into means).
    mutating func add(rank: Int) {
        let gain = 1 / log2(Double(rank) + 2)
        if rank < 5 { recall5 += 1; ndcg5 += gain }
        if rank < 10 { recall10 += 1; ndcg10 += gain }
        if rank < 20 { recall20 += 1; ndcg20 += gain }
        mrr += 1 / Double(rank + 1)
        for k in atK.keys where rank < k {
            atK[k]!.hit += 1; atK[k]!.ndcg += gain; atK[k]!.mrr += 1 / Double(rank + 1); atK[k]!.precision += 1 / Double(k)
        }
        users += 1
    }

    mutating func finish() {
        let n = Double(max(users, 1))
        recall5 /= n; recall10 /= n; recall20 /= n; ndcg5 /= n; ndcg10 /= n; ndcg20 /= n; mrr /= n
        for k in atK.keys { atK[k]!.hit /= n; atK[k]!.ndcg /= n; atK[k]!.mrr /= n; atK[k]!.precision /= n }
    }

    /// Metrics from 0-based ranks, with the extra cutoffs `cutoffs` (each ≥ 1).
    public init(ranks: [Int], cutoffs: [Int] = []) {
        for k in cutoffs { atK[k] = CutoffMetrics() }
        for r in ranks { add(rank: r) }
        finish()
    }
}

/// What an evaluation reports beyond the standard metrics, and whether the history is excluded.
public struct EvaluationOptions: Sendable, Equatable {
    /// Exclude each case's history items from its ranking; nil = the model configuration's `maskSeen`.
    public var excludeSeen: Bool?
    /// Extra cutoffs K (each in 1...catalogue size) for Hit/Recall/NDCG/MRR/Precision@K.
    public var cutoffs: [Int]
    /// Also report item coverage@K for every cutoff (one top-K selection per case).
    public var coverage: Bool

    public init(excludeSeen: Bool? = nil, cutoffs: [Int] = [], coverage: Bool = false) {
        self.excludeSeen = excludeSeen; self.cutoffs = cutoffs; self.coverage = coverage
    }
}

/// Full-ranking evaluation of a network on evaluation cases: batches of user windows go through the
/// network (inference mode), the last row's hidden state is scored against every item 1...N in
/// chunks (never the whole score matrix), and ranks are counted in the same pass.
struct RankingEvaluator {
    let network: SequenceNetwork
    var batchSize: Int = 1024
    var maskSeen = false
    /// Catalogues larger than this are scored in blocks of this many items (`blockedRanks`), so the
    /// score buffers stay `64 × itemBlock` per worker (a 64-user chunk over 1M items would be 256 MB)
    /// and each block's scores are counted while they are still in cache.
    var itemBlock: Int = 65_536

    /// 0-based rank of each case's target.
    func ranks(_ cases: [EvaluationCase]) -> [Int] { ranks(cases, coverageDepth: 0).ranks }

    /// 0-based rank of each case's target and, when `coverageDepth` > 0, for every item the best
    /// (0-based) position it reached in any case's top `coverageDepth` list (Int32.max = never).
    func ranks(_ cases: [EvaluationCase], coverageDepth: Int) -> (ranks: [Int], bestPosition: [Int32]) {
        if network.numItems > itemBlock { return blockedRanks(cases, coverageDepth: coverageDepth) }
        let d = network.width, n = network.numItems
        let depth = min(coverageDepth, n)
        var ranks = [Int](repeating: 0, count: cases.count)
        let ws = network.makeWorkspace()
        let users = Buffer(batchSize * d)
        let chunk = 64
        let parts = Parallel.parts
        let scoreBuffers = (0..<parts).map { _ in Buffer(chunk * n) }
        // Per worker: best list position of every item (merged by minimum at the end).
        var bestPositions = (0..<parts).map { _ in depth > 0 ? [Int32](repeating: .max, count: n) : [] }
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
                bestPositions.withUnsafeMutableBufferPointer { positions in
                    let chunks = (m + chunk - 1) / chunk
                    Parallel.forEachSlice(chunks, parts: parts) { part, range in
                        let z = scoreBuffers[part].p
                        var seen = Set<Int32>()
                        var top: [(score: Float, item: Int)] = []
                        top.reserveCapacity(depth)
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
                                if depth > 0 {
                                    if maskSeen {  // the seen set above omits the target: rebuild it whole
                                        seen.removeAll(keepingCapacity: true)
                                        for h in c.history where h != c.target { seen.insert(h) }
                                    }
                                    Self.topItems(row, n, depth, excluding: maskSeen ? seen : [], into: &top)
                                    for (p, e) in top.enumerated() where positions[part][e.item] > Int32(p) {
                                        positions[part][e.item] = Int32(p)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            start = end
        }
        var best = depth > 0 ? bestPositions[0] : []
        for p in bestPositions.dropFirst() where depth > 0 { for i in 0..<n where p[i] < best[i] { best[i] = p[i] } }
        return (ranks, best)
    }

    /// The users' final hidden states for `cases[start..<end]` into `users` (zeros for an empty history).
    private func userStates(_ cases: ArraySlice<EvaluationCase>, ws: SequenceNetwork.Workspace, into users: Buffer) {
        let d = network.width
        ws.reset()
        for c in cases { network.appendEvaluationWindow(c.history, to: ws) }
        network.forwardLastRows(ws)
        for k in 0..<cases.count {
            if ws.layout.rowStart[k + 1] > ws.layout.rowStart[k] {
                (users.p + k * d).update(from: ws.hidden.p + k * d, count: d)
            } else {
                (users.p + k * d).update(repeating: 0, count: d)
            }
        }
    }

    /// `ranks(_:coverageDepth:)` over item blocks of `itemBlock` items: per chunk of 64 users, the target
    /// scores come first from one small product against the gathered target rows (the same sgemm, the
    /// same k-order, so the same float as the target's entry of the full product — a test checks ranks
    /// equal the unblocked path), then every block is one sgemm whose scores are counted against them,
    /// seen items corrected and, for coverage, merged into a running top list per user. Memory is
    /// `64 × itemBlock` scores per worker whatever the catalogue; the work is the same full ranking.
    func blockedRanks(_ cases: [EvaluationCase], coverageDepth: Int) -> (ranks: [Int], bestPosition: [Int32]) {
        let d = network.width, n = network.numItems, block = itemBlock
        let depth = min(coverageDepth, n)
        var ranks = [Int](repeating: 0, count: cases.count)
        let ws = network.makeWorkspace()
        let users = Buffer(batchSize * d)
        let chunk = 64
        let parts = Parallel.parts
        let scoreBuffers = (0..<parts).map { _ in Buffer(chunk * block) }
        let targetRows = (0..<parts).map { _ in Buffer(chunk * d) }
        let targetScores = (0..<parts).map { _ in Buffer(chunk * chunk) }
        var bestPositions = (0..<parts).map { _ in depth > 0 ? [Int32](repeating: .max, count: n) : [] }
        let catalogue = network.itemTable + d
        var start = 0
        while start < cases.count {
            let end = min(cases.count, start + batchSize)
            userStates(cases[start..<end], ws: ws, into: users)
            let m = end - start
            ranks.withUnsafeMutableBufferPointer { out in
                bestPositions.withUnsafeMutableBufferPointer { positions in
                    let chunks = (m + chunk - 1) / chunk
                    Parallel.forEachSlice(chunks, parts: parts) { part, range in
                        let z = scoreBuffers[part].p, tr = targetRows[part].p, tz = targetScores[part].p
                        var seen: [Set<Int32>] = Array(repeating: [], count: chunk)
                        var tops: [[(score: Float, item: Int)]] = Array(repeating: [], count: chunk)
                        var ts = [Float](repeating: 0, count: chunk)
                        var counts = [Int](repeating: 0, count: chunk)
                        for ch in range {
                            let u0 = ch * chunk, um = min(chunk, m - u0)
                            let h = users.p + u0 * d
                            for i in 0..<um {
                                let c = cases[start + u0 + i]
                                (tr + i * d).update(from: catalogue + (Int(c.target) - 1) * d, count: d)
                                seen[i].removeAll(keepingCapacity: true)
                                if maskSeen { for x in c.history where x != c.target { seen[i].insert(x) } }
                                tops[i].removeAll(keepingCapacity: true)
                                counts[i] = 0
                            }
                            BLAS.gemm(transB: true, m: um, n: um, k: d, a: h, lda: d, b: tr, ldb: d, c: tz, ldc: um)
                            for i in 0..<um { ts[i] = tz[i * um + i] }
                            var b0 = 0
                            while b0 < n {
                                let bn = min(block, n - b0)
                                BLAS.gemm(transB: true, m: um, n: bn, k: d, a: h, lda: d, b: catalogue + b0 * d, ldb: d,
                                          c: z, ldc: bn)
                                for i in 0..<um {
                                    let row = z + i * bn
                                    counts[i] += Self.countGreater(row, bn, ts[i])
                                    if maskSeen {
                                        for x in seen[i] where Int(x) - 1 >= b0 && Int(x) - 1 < b0 + bn {
                                            if row[Int(x) - 1 - b0] > ts[i] { counts[i] -= 1 }
                                        }
                                    }
                                    if depth > 0 {
                                        Self.mergeTop(row, bn, base: b0, depth, excluding: maskSeen ? seen[i] : [], into: &tops[i])
                                    }
                                }
                                b0 += bn
                            }
                            for i in 0..<um {
                                out[start + u0 + i] = counts[i]
                                for (p, e) in tops[i].enumerated() where positions[part][e.item] > Int32(p) {
                                    positions[part][e.item] = Int32(p)
                                }
                            }
                        }
                    }
                }
            }
            start = end
        }
        var best = depth > 0 ? bestPositions[0] : []
        for p in bestPositions.dropFirst() where depth > 0 { for i in 0..<n where p[i] < best[i] { best[i] = p[i] } }
        return (ranks, best)
    }

    /// Merges one block of scores (items `base ..< base + n`, 0-based) into a running top list of `depth`
    /// (best first; blocks arrive in increasing id order, so equal scores keep the lower id first, as
    /// `topItems`). `excluding` holds 1-based ids.
    static func mergeTop(_ row: UnsafePointer<Float>, _ n: Int, base: Int, _ depth: Int, excluding: Set<Int32>,
                         into top: inout [(score: Float, item: Int)]) {
        for i in 0..<n {
            let v = row[i]
            if top.count == depth && !(v > top[depth - 1].score) { continue }
            if !excluding.isEmpty && excluding.contains(Int32(base + i + 1)) { continue }
            var lo = 0, hi = top.count
            while lo < hi { let mid = (lo + hi) / 2; if top[mid].score >= v { lo = mid + 1 } else { hi = mid } }
            if top.count == depth { top.removeLast() }
            top.insert((v, base + i), at: lo)
        }
    }

    /// The `depth` highest-scoring items (0-based ids) of a score row, best first; equal scores keep
    /// the lower id first. `excluding` holds 1-based ids.
    static func topItems(_ row: UnsafePointer<Float>, _ n: Int, _ depth: Int, excluding: Set<Int32>,
                         into top: inout [(score: Float, item: Int)]) {
        top.removeAll(keepingCapacity: true)
        if depth > 64 && depth * 8 > n {
            // Deep lists: one sort (n log n) instead of insertions that cost O(depth) each.
            for i in 0..<n where excluding.isEmpty || !excluding.contains(Int32(i + 1)) { top.append((row[i], i)) }
            top.sort { $0.score > $1.score || ($0.score == $1.score && $0.item < $1.item) }
            if top.count > depth { top.removeLast(top.count - depth) }
            return
        }
        for i in 0..<n {
            let v = row[i]
            if top.count == depth && !(v > top[depth - 1].score) { continue }
            if !excluding.isEmpty && excluding.contains(Int32(i + 1)) { continue }
            // Insert after every entry scoring ≥ v (ids arrive increasing, so ties keep the lower id first).
            var lo = 0, hi = top.count
            while lo < hi { let mid = (lo + hi) / 2; if top[mid].score >= v { lo = mid + 1 } else { hi = mid } }
            if top.count == depth { top.removeLast() }
            top.insert((v, i), at: lo)
        }
    }

    func evaluate(_ cases: [EvaluationCase]) -> RankingMetrics { RankingMetrics(ranks: ranks(cases)) }

    /// Metrics with the extra cutoffs and coverage of `options` (`excludeSeen` is this evaluator's `maskSeen`).
    func evaluate(_ cases: [EvaluationCase], options: EvaluationOptions) -> RankingMetrics {
        let depth = options.coverage ? (options.cutoffs.max() ?? 0) : 0
        let (r, best) = ranks(cases, coverageDepth: depth)
        var metrics = RankingMetrics(ranks: r, cutoffs: options.cutoffs)
        if depth > 0 {
            let n = Double(network.numItems)
            for k in options.cutoffs { metrics.coverage[k] = Double(best.lazy.filter { $0 < Int32(k) }.count) / n }
        }
        return metrics
    }

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
