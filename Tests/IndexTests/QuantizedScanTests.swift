import Foundation
import XCTest
import Index

/// Exact flat search through the int8 copy (CompactRowScan.h): the results must be those of an exact scan —
/// checked against brute force in double precision on data built to stress the error bounds.
final class QuantizedScanTests: XCTestCase {
    /// Whether this CPU takes the quantized path (AVX512-VNNI); elsewhere the index scans floats and the
    /// same assertions check that path.
    let cpuHasVNNI: Bool = {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        return info.contains(" avx512_vnni")
    }()

    override func setUp() {
        super.setUp()
        VectorIndex.setThreadCount(1)
    }

    /// Top-k by exact (double) inner product.
    func exactTop(_ query: [Float], _ vectors: [Float], ids: [UInt32], d: Int, k: Int, metric: Metric,
                  permitted: (UInt32) -> Bool = { _ in true }) -> [(id: UInt32, score: Double)] {
        func normalised(_ v: [Float]) -> [Double] {
            // As the index does: rows whose float norm underflows to zero (all-subnormal) stay as they are.
            let floatNormSquared = v.reduce(Float(0)) { $0 + $1 * $1 }
            let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            return v.map { floatNormSquared > 0 && metric == .cosine ? Double($0) / norm : Double($0) }
        }
        let q = normalised(query)
        var scored: [(UInt32, Double)] = []
        for (r, id) in ids.enumerated() where permitted(id) {
            let x = normalised(Array(vectors[(r * d)..<((r + 1) * d)]))
            scored.append((id, zip(q, x).reduce(0.0) { $0 + $1.0 * $1.1 }))
        }
        scored.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        return Array(scored.prefix(k))
    }

    /// The returned list is an exact top-k: same length, and its i-th score (recomputed in double) equals the
    /// exact i-th score up to float32 summation error. A missed top item shows as a score gap far above that.
    func assertExact(_ got: [Neighbor], _ expected: [(id: UInt32, score: Double)], scoreOf: (UInt32) -> Double,
                     tolerance: Double, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, expected.count, message, file: file, line: line)
        let gotScores = got.map { scoreOf($0.id) }
        XCTAssertEqual(gotScores, gotScores.sorted(by: >), "\(message): not in descending order", file: file, line: line)
        for (i, (g, e)) in zip(gotScores, expected).enumerated() {
            XCTAssertEqual(g, e.score, accuracy: tolerance, "\(message): rank \(i) (got \(got[i].id), expected \(e.id))",
                           file: file, line: line)
        }
        XCTAssertEqual(Set(got.map(\.id)).count, got.count, "\(message): duplicate ids", file: file, line: line)
    }

    /// Rows of very different magnitudes, zero rows, subnormal values, near-duplicates (indistinguishable at
    /// 8 bits, distinct in float) and one very large row.
    func stressData(n: Int, d: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed)
        var vectors = rng.vectors(n, d)
        for r in 0..<n {
            let magnitude = Float(pow(10.0, rng.uniform() * 4 - 2))
            for j in 0..<d { vectors[r * d + j] *= magnitude }
        }
        for j in 0..<d { vectors[5 * d + j] = 0 }                                  // a zero row
        for j in 0..<d { vectors[6 * d + j] = Float.leastNonzeroMagnitude * Float(j % 3) }  // subnormals
        for j in 0..<d { vectors[7 * d + j] = j == 0 ? 3e5 : vectors[7 * d + j] }  // one dominant value
        // 60 near-copies of row 8, each nudged by 1e-3 of its scale in one coordinate.
        for c in 0..<60 {
            let r = 100 + c
            for j in 0..<d { vectors[r * d + j] = vectors[8 * d + j] }
            vectors[r * d + (c % d)] += 1e-3 * Float(c + 1) * abs(vectors[8 * d]) + 1e-4
        }
        return vectors
    }

    func testMatchesExactSearchOnStressData() throws {
        for (d, metric) in [(64, Metric.innerProduct), (37, .innerProduct), (3, .innerProduct), (64, .cosine)] {
            let n = 3_000
            let vectors = stressData(n: n, d: d, seed: UInt64(d))
            let ids = (1...UInt32(n)).map { $0 }
            let index = try VectorIndex(factory: "Flat", dimension: d, metric: metric)
            try index.add(ids: ids, vectors: vectors)
            XCTAssertEqual(index.scansQuantizedCopy, cpuHasVNNI, "d=\(d) \(metric)")

            var rng = TestRandom(seed: 99)
            var queries: [[Float]] = (0..<20).map { _ in rng.vectors(1, d) }
            queries.append(Array(vectors[(8 * d)..<(9 * d)]))                     // aims at the near-copies
            queries.append([Float](repeating: 0, count: d))                         // scores all zero
            queries.append((0..<d).map { $0 == 0 ? Float.leastNonzeroMagnitude : 1 })  // subnormal in the query
            queries.append((0..<d).map { $0 == 1 ? 1e4 : 1e-4 })                    // one dominant query value
            for (qi, query) in queries.enumerated() {
                let qNorm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let maxNorm = 3e5 * 2.0
                let tolerance = metric == .cosine ? 1e-5 : Double(4 * d) * 6e-8 * qNorm * maxNorm + 1e-30
                func score(_ id: UInt32) -> Double {
                    exactTop(query, Array(vectors[(Int(id - 1) * d)..<(Int(id) * d)]), ids: [id], d: d, k: 1, metric: metric)[0].score
                }
                for k in [1, 10, 50] {
                    let expected = exactTop(query, vectors, ids: ids, d: d, k: k, metric: metric)
                    assertExact(try index.search(query, k: k), expected, scoreOf: score, tolerance: tolerance,
                                "d=\(d) \(metric) query \(qi) k=\(k)")
                }
            }
            // The near-copies: the best of them must be found exactly (they differ only below 8-bit resolution).
            let target = Array(vectors[(8 * d)..<(9 * d)])
            let got = try index.search(target, k: 5, filter: IDFilter(mode: .exclude, ids: [9]))
            let expected = exactTop(target, vectors, ids: ids, d: d, k: 5, metric: metric) { $0 != 9 }
            if metric == .innerProduct {
                XCTAssertEqual(got.map(\.id), expected.map(\.id), "d=\(d): near-copies ranked exactly")
            }
        }
    }

    func testFiltersTombstonesGrowthCompactionAndSerialization() throws {
        let d = 64, n = 2_000
        var rng = TestRandom(seed: 5)
        var vectors = rng.vectors(n, d)
        var ids = (1...UInt32(n)).map { $0 }
        let index = try VectorIndex(factory: "Flat", dimension: d, metric: .innerProduct)
        try index.add(ids: ids, vectors: vectors)
        let queries = (0..<10).map { _ in rng.vectors(1, d) }

        func check(_ label: String, filter: IDFilter? = nil, permitted: (UInt32) -> Bool = { _ in true }) throws {
            XCTAssertEqual(index.scansQuantizedCopy, cpuHasVNNI, label)
            for query in queries {
                let expected = exactTop(query, vectors, ids: ids, d: d, k: 10, metric: .innerProduct, permitted: permitted)
                let got = try index.search(query, k: 10, filter: filter)
                XCTAssertEqual(got.map(\.id), expected.map(\.id), label)
            }
        }
        try check("plain")

        // Exclude the 10 best of every query, and allow only a large set (not the small exact allow-list path).
        var best = Set<UInt32>()
        for query in queries { best.formUnion(exactTop(query, vectors, ids: ids, d: d, k: 10, metric: .innerProduct).map(\.id)) }
        try check("exclude", filter: IDFilter(mode: .exclude, ids: best)) { !best.contains($0) }
        let allowed = Set(ids.filter { $0 % 3 == 0 })
        try check("allow", filter: IDFilter(mode: .allowOnly, ids: allowed)) { allowed.contains($0) }

        // Tombstones: remove the best rows and replace some others (the old rows stay as dead rows).
        let removed = Array(best.prefix(40))
        _ = try index.remove(ids: removed)
        let removedSet = Set(removed)
        let keep = ids.indices.filter { !removedSet.contains(ids[$0]) }
        vectors = keep.flatMap { Array(vectors[($0 * d)..<(($0 + 1) * d)]) }
        ids = keep.map { ids[$0] }
        let updated = Array(ids.prefix(20))
        let newRows = rng.vectors(20, d).map { $0 * 3 }
        try index.add(ids: updated, vectors: newRows)
        for (i, _) in updated.enumerated() {
            for j in 0..<d { vectors[i * d + j] = newRows[i * d + j] }
        }
        try check("after remove and update")

        // Growth after searching: new rows join the copy.
        let grown = (UInt32(n + 1)...UInt32(n + 300)).map { $0 }
        let grownRows = rng.vectors(300, d).map { $0 * 2 }
        try index.add(ids: grown, vectors: grownRows)
        ids += grown
        vectors += grownRows
        try check("after growth")

        try index.compact()
        XCTAssertEqual(index.storedRowCount, index.count)
        try check("after compaction")

        let restored = try VectorIndex(serialized: try index.serialized())
        XCTAssertEqual(restored.scansQuantizedCopy, cpuHasVNNI)
        for query in queries { XCTAssertEqual(try restored.search(query, k: 10), try index.search(query, k: 10)) }
    }

    /// `search(batch:ks:filters:)` scans the int8 rows once for each group of up to eight queries: each query must
    /// get exactly (ids and scores) what it gets alone, whatever its k and filter and the group sizes (8, 4, 2, 1).
    func testGroupedSearchesGiveEachQueryWhatItGetsAlone() throws {
        guard cpuHasVNNI else { throw XCTSkip("this CPU has no AVX512-VNNI: the index scans floats and has no grouped int8 scan to test") }
        for (d, metric) in [(64, Metric.innerProduct), (37, .cosine)] {
            let n = 3_000
            let vectors = stressData(n: n, d: d, seed: UInt64(d) + 1)
            let ids = (1...UInt32(n)).map { $0 }
            let index = try VectorIndex(factory: "Flat", dimension: d, metric: metric)
            try index.add(ids: ids, vectors: vectors)
            var rng = TestRandom(seed: 17)
            let queryCount = 31  // groups of 8, 8, 8, 4, 2, 1
            var queries = rng.vectors(queryCount - 1, d)
            queries += vectors[(8 * d)..<(9 * d)]  // aims at the near-copies
            let largeAllowList = IDFilter(mode: .allowOnly, ids: Set(ids.filter { $0 % 3 == 0 }))
            func filter(_ q: Int) throws -> IDFilter? {
                switch q % 5 {
                case 0: return nil
                case 1: return IDFilter(mode: .exclude, ids: Set(try index.search(Array(queries[(q * d)..<((q + 1) * d)]), k: 5).map(\.id)))
                case 2: return largeAllowList
                case 3: return .allowing([3, 4, 5, UInt32(q + 10)])  // small: scored directly, outside the group
                default: return IDFilter(mode: .exclude, ids: [])
                }
            }
            let filters = try (0..<queryCount).map(filter)
            let ks = (0..<queryCount).map { [1, 10, 50, 7, 3000, 2][$0 % 6] }

            func check(_ label: String) throws {
                XCTAssertTrue(index.scansQuantizedCopy, label)
                let batched = try index.search(batch: queries, ks: ks, filters: filters)
                XCTAssertEqual(batched.count, queryCount, label)
                for q in 0..<queryCount {
                    let alone = try index.search(Array(queries[(q * d)..<((q + 1) * d)]), k: ks[q], filter: filters[q])
                    XCTAssertEqual(batched[q], alone, "\(label) d=\(d) \(metric) query \(q) k=\(ks[q])")
                    if q % 5 == 0 { XCTAssertEqual(batched[q].count, min(ks[q], index.count), "\(label) query \(q): result count") }
                }
            }
            try check("plain")
            // Dead rows: every query (even unfiltered) needs the live-row selector.
            _ = try index.remove(ids: [1, 2, 3, 4, 5, 9, 2_999])
            try check("after removing rows")
        }
        let index = try VectorIndex(factory: "Flat", dimension: 4, metric: .innerProduct)
        try index.add(ids: [1, 2], vectors: [1, 0, 0, 0, 0, 1, 0, 0])
        for (ks, filters) in [([1], [IDFilter?]()), ([1, 0], [nil, nil]), ([1], [nil, nil])] {
            XCTAssertThrowsError(try index.search(batch: [1, 0, 0, 0, 0, 1, 0, 0], ks: ks, filters: filters)) { error in
                XCTAssertEqual((error as? IndexError)?.code, .invalidArgument)
            }
        }
    }

    func testKindsWithoutTheCopyKeepTheirPath() throws {
        let l2 = try VectorIndex(factory: "Flat", dimension: 8, metric: .l2)
        try l2.add(ids: [1, 2], vectors: [Float](repeating: 1, count: 16))
        XCTAssertFalse(l2.scansQuantizedCopy, "L2 scans floats")
        let hnsw = try VectorIndex(factory: "HNSW16", dimension: 8, metric: .innerProduct)
        try hnsw.add(ids: [1, 2], vectors: [Float](repeating: 1, count: 16))
        XCTAssertFalse(hnsw.scansQuantizedCopy, "HNSW walks its graph")
    }
}
