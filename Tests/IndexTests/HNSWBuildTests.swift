import Foundation
import XCTest
import Index

/// The HNSW<M>,Flat build of the shim (HNSWBuild.h: parallel construction into Faiss's graph structures).
final class HNSWBuildTests: XCTestCase {
    let d = 32

    override func tearDown() {
        VectorIndex.setThreadCount(1)
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
        XCTAssertEqual(try first.serialized(), try second.serialized(), "one thread: the same rows give the same bytes")
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
}
