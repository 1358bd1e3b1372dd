import Foundation
import XCTest
import Index

/// The HNSW<M>,Flat build of the shim (HNSWBuild.h: parallel construction into Faiss's graph structures).
final class HNSWBuildTests: XCTestCase {
    let d = 32

    override func tearDown() {
        VectorIndex.setThreadCount(1)
        VectorIndex.setHNSWMipsReduction(enabled: true)
        super.tearDown()
    }

    /// A Gaussian mixture (40 clusters of spread 0.6 around N(0, I) centres): the kind of data HNSW is meant for,
    /// where recall figures say something (independent Gaussians are its known worst case).
    func clustered(_ n: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: 7)
        let centres = rng.vectors(40, d)
        rng = TestRandom(seed: seed)
        var out = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            let c = Int(rng.nextUInt64() % 40)
            for j in 0..<d { out[i * d + j] = centres[c * d + j] + 0.6 * rng.gaussian() }
        }
        return out
    }

    /// Mean share of the exact top 10 (brute force) found at `efSearch`.
    func recall(_ index: VectorIndex, _ vectors: [Float], _ queries: [Float], metric: Metric, efSearch: Int) throws -> Double {
        let ids = (1...UInt32(vectors.count / d)).map { $0 }
        let n = queries.count / d
        var hits = 0
        for q in 0..<n {
            let query = row(queries, q, d)
            let truth = Set(bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: metric, k: 10).map(\.id))
            hits += try index.search(query, k: 10, parameters: SearchParameters(efSearch: efSearch)).filter { truth.contains($0.id) }.count
        }
        return Double(hits) / Double(n * 10)
    }

    func testParallelBuildFindsTheExactNeighboursAndRoundTrips() throws {
        VectorIndex.setThreadCount(2)  // buckets above 100 rows are linked by 2 threads
        let n = 4000
        let vectors = clustered(n, seed: 1), queries = clustered(100, seed: 2)
        let ids = (1...UInt32(n)).map { $0 }
        for metric in Metric.allCases {
            let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: metric)
            try index.add(ids: ids, vectors: vectors)
            XCTAssertEqual(index.count, n)
            let atDefault = try recall(index, vectors, queries, metric: metric, efSearch: 16)
            let at64 = try recall(index, vectors, queries, metric: metric, efSearch: 64)
            // Measured 0.97–0.99 at efSearch 16 and 1.000 at 64 (every metric); a broken graph falls far below.
            XCTAssertGreaterThanOrEqual(atDefault, 0.9, "\(metric) efSearch 16")
            XCTAssertGreaterThanOrEqual(at64, 0.98, "\(metric) efSearch 64")
            // Every row is reachable: searching for its own vector finds it (under L2 and cosine a row is its own
            // nearest neighbour; under inner product a longer row may outscore it).
            if metric != .innerProduct {
                var found = 0
                for r in stride(from: 0, to: n, by: 7)
                where try index.search(row(vectors, r, d), k: 1, parameters: SearchParameters(efSearch: 64)).first?.id == UInt32(r + 1) {
                    found += 1
                }
                XCTAssertGreaterThanOrEqual(Double(found) / Double((n + 6) / 7), 0.99, "\(metric): rows must be reachable")
            }
            // The graph is Faiss's own structure: it serializes, loads and searches identically.
            let loaded = try VectorIndex(serialized: try index.serialized())
            for q in 0..<20 {
                XCTAssertEqual(try loaded.search(row(queries, q, d), k: 10), try index.search(row(queries, q, d), k: 10), "\(metric)")
            }
        }
    }

    func testOneThreadBuildIsDeterministicAndIncrementalAddsKeepRecall() throws {
        VectorIndex.setThreadCount(1)
        let n = 3000
        let vectors = clustered(n, seed: 3), queries = clustered(60, seed: 4)
        let ids = (1...UInt32(n)).map { $0 }
        func build(chunk: Int?) throws -> VectorIndex {
            let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
            if let chunk {
                try index.add(ids: ids, vectors: vectors, progressChunk: chunk) { _, _ in }  // one add per chunk
            } else {
                try index.add(ids: ids, vectors: vectors)
            }
            return index
        }
        let first = try build(chunk: nil), second = try build(chunk: nil)
        XCTAssertTrue(try first.serialized() == second.serialized(), "one thread: the same rows give the same bytes")
        // Rows added in several calls are linked into the existing graph (with an existing entry point).
        let incremental = try build(chunk: 700)
        XCTAssertEqual(incremental.count, n)
        XCTAssertGreaterThanOrEqual(try recall(incremental, vectors, queries, metric: .innerProduct, efSearch: 64), 0.98)
        // Replacing ids tombstones old rows; compaction rebuilds the graph through the same builder.
        try incremental.add(ids: Array(ids[0..<500]), vectors: Array(vectors[0..<(500 * d)]))
        XCTAssertEqual(incremental.count, n)
        try incremental.compact()
        XCTAssertEqual(incremental.count, n)
        XCTAssertGreaterThanOrEqual(try recall(incremental, vectors, queries, metric: .innerProduct, efSearch: 64), 0.98)
    }

    // MARK: - Inner product through the MIPS→L2 reduction

    /// Clustered rows with the norm spread of a trained model's item vectors: log-normal lengths, and 1 % of rows
    /// (the "popular items") 4× longer. Under inner product those long rows outscore the others against nearly
    /// every row: the hubs that made the plain inner-product build slow.
    func longTailed(_ n: Int, seed: UInt64) -> [Float] {
        var out = clustered(n, seed: seed)
        var rng = TestRandom(seed: seed &+ 100)
        for i in 0..<n {
            var scale = Float(exp(0.5 * Double(rng.gaussian())))
            if rng.nextUInt64() % 100 == 0 { scale *= 4 }
            for j in 0..<d { out[i * d + j] *= scale }
        }
        return out
    }

    func testInnerProductSearchThroughTheReductionIsExactInnerProductRanking() throws {
        VectorIndex.setThreadCount(2)
        let n = 4000
        let vectors = longTailed(n, seed: 11), queries = clustered(100, seed: 12)
        let ids = (1...UInt32(n)).map { $0 }
        let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
        try index.add(ids: ids, vectors: vectors)
        VectorIndex.setHNSWMipsReduction(enabled: false)
        let plain = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
        try plain.add(ids: ids, vectors: vectors)
        VectorIndex.setHNSWMipsReduction(enabled: true)
        let at16 = try recall(index, vectors, queries, metric: .innerProduct, efSearch: 16)
        let at128 = try recall(index, vectors, queries, metric: .innerProduct, efSearch: 128)
        let plainAt128 = try recall(plain, vectors, queries, metric: .innerProduct, efSearch: 128)
        print("inner product, long-tailed norms: recall@10 through the reduction \(at16) at efSearch 16, \(at128) at 128; without it \(plainAt128) at 128")
        // Measured 0.76 at efSearch 16 and 0.965 at 128. Without the reduction 1.0 at 128: on these synthetic clusters
        // the plain inner-product graph has no hub problem, and the reduction costs recall at equal efSearch (on a
        // trained model's items it gains: README, issue #14). The bound is what serving relies on.
        XCTAssertGreaterThanOrEqual(at16, 0.7)
        XCTAssertGreaterThanOrEqual(at128, 0.95)
        // Scores are the inner products of the query with the stored rows, best first (not augmented distances).
        for q in 0..<10 {
            let query = row(queries, q, d)
            let found = try index.search(query, k: 10, parameters: SearchParameters(efSearch: 128))
            XCTAssertEqual(found.count, 10)
            for (a, b) in zip(found, found.dropFirst()) { XCTAssertGreaterThanOrEqual(a.score, b.score) }
            for hit in found {
                let r = row(vectors, Int(hit.id) - 1, d)
                let exact = zip(query, r).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                XCTAssertEqual(hit.score, exact, accuracy: 1e-3 * max(1, abs(exact)))
            }
        }
        // Exclude-seen filters inside the search: no excluded id comes back, and the rest is the filtered exact top 10.
        var hits = 0
        for q in 0..<50 {
            let query = row(queries, q, d)
            let seen = Set(bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: .innerProduct, k: 30).map(\.id)
                .enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
            let found = try index.search(query, k: 10, filter: .excluding(seen), parameters: SearchParameters(efSearch: 128))
            XCTAssertEqual(found.count, 10)
            XCTAssertTrue(found.allSatisfy { !seen.contains($0.id) }, "an excluded id came back")
            let truth = Set(bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: .innerProduct, k: 10,
                                       permitted: { !seen.contains($0) }).map(\.id))
            hits += found.filter { truth.contains($0.id) }.count
        }
        XCTAssertGreaterThanOrEqual(Double(hits) / 500, 0.95, "filtered recall@10")
    }

    func testInnerProductReductionIsDeterministicAndSurvivesSerialization() throws {
        VectorIndex.setThreadCount(1)
        let n = 3000
        let vectors = longTailed(n, seed: 21), queries = clustered(60, seed: 22)
        let ids = (1...UInt32(n)).map { $0 }
        let first = 2000
        func buildFirstPart() throws -> VectorIndex {
            let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
            try index.add(ids: Array(ids[0..<first]), vectors: Array(vectors[0..<(first * d)]))
            return index
        }
        let a = try buildFirstPart(), b = try buildFirstPart()
        XCTAssertTrue(try a.serialized() == b.serialized(), "one thread: the same rows give the same bytes")
        // The augmentation is not stored: a loaded index recomputes it from its rows. Two loads of the same bytes given
        // the same rows link them identically (a loaded index draws levels from Faiss's fresh generator, so it is not
        // byte-identical to the original). The later rows include longer ones than any before (a larger M, which
        // recomputes every row's coordinate).
        var rest = Array(vectors[(first * d)...])
        for j in 0..<d { rest[j] *= 10 }
        let stored = try a.serialized()
        let loaded = try VectorIndex(serialized: stored), loadedAgain = try VectorIndex(serialized: stored)
        try a.add(ids: Array(ids[first...]), vectors: rest)
        try loaded.add(ids: Array(ids[first...]), vectors: rest)
        try loadedAgain.add(ids: Array(ids[first...]), vectors: rest)
        XCTAssertTrue(try loaded.serialized() == loadedAgain.serialized(), "loaded copies must link the same rows identically")
        var all = Array(vectors[0..<(first * d)]) + rest
        // Measured 1.0 and 0.998.
        XCTAssertGreaterThanOrEqual(try recall(a, all, queries, metric: .innerProduct, efSearch: 64), 0.95)
        XCTAssertGreaterThanOrEqual(try recall(loaded, all, queries, metric: .innerProduct, efSearch: 64), 0.95)
        // The longest row, added last, is every query's best match and is found.
        XCTAssertEqual(try a.search(row(queries, 0, d), k: 1, parameters: SearchParameters(efSearch: 64)).first?.id,
                       bruteForce(query: row(queries, 0, d), vectors: all, ids: ids, dimension: d, metric: .innerProduct, k: 1).first?.id)
        // A graph linked without the reduction (every index stored before it) loads, searches and takes new rows
        // linked with it; the stored format is the same.
        VectorIndex.setHNSWMipsReduction(enabled: false)
        let old = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
        try old.add(ids: Array(ids[0..<first]), vectors: Array(vectors[0..<(first * d)]))
        VectorIndex.setHNSWMipsReduction(enabled: true)
        XCTAssertTrue(try old.serialized() != b.serialized(), "the switch must change the build")
        let reopened = try VectorIndex(serialized: try old.serialized())
        try reopened.add(ids: Array(ids[first...]), vectors: Array(vectors[(first * d)...]))
        all = vectors
        XCTAssertGreaterThanOrEqual(try recall(reopened, all, queries, metric: .innerProduct, efSearch: 64), 0.95)
    }
}
