import XCTest
import Index
import Synchronization

final class VectorIndexTests: XCTestCase {
    let d = 16

    override func setUp() {
        super.setUp()
        // One OpenMP thread for Faiss work started from the test thread: libgomp's spinning barriers make
        // k-means (IVF/PQ/OPQ training) 20x slower when the machine's cores are shared with other jobs.
        VectorIndex.setThreadCount(1)
    }

    /// `n` vectors with ids 1...n.
    func makeData(n: Int, seed: UInt64) -> (ids: [UInt32], vectors: [Float]) {
        var rng = TestRandom(seed: seed)
        return ((1...n).map(UInt32.init), rng.vectors(n, d))
    }

    func assertSameNeighbors(_ got: [Neighbor], _ expected: [Neighbor], accuracy: Float = 1e-3,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.map(\.id), expected.map(\.id), file: file, line: line)
        for (g, e) in zip(got, expected) { XCTAssertEqual(g.score, e.score, accuracy: accuracy, file: file, line: line) }
    }

    // MARK: - Exact search, every metric

    func testFlatMatchesBruteForceForEveryMetric() throws {
        let (ids, vectors) = makeData(n: 400, seed: 1)
        var rng = TestRandom(seed: 2)
        let queries = rng.vectors(12, d)
        for metric in Metric.allCases {
            let index = try VectorIndex(factory: "Flat", dimension: d, metric: metric)
            try index.add(ids: ids, vectors: vectors)
            XCTAssertEqual(index.count, 400)
            XCTAssertEqual(index.metric, metric)
            for q in 0..<12 {
                let query = row(queries, q, d)
                let expected = bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: metric, k: 10)
                assertSameNeighbors(try index.search(query, k: 10), expected)
            }
            // Batch search gives the same as single searches.
            let batch = try index.search(batch: queries, k: 10)
            for q in 0..<12 { XCTAssertEqual(batch[q], try index.search(row(queries, q, d), k: 10)) }
        }
    }

    func testAddReportsProgressInChunks() throws {
        let (ids, vectors) = makeData(n: 250, seed: 23)
        let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .l2)
        var reports: [Int] = []
        try index.add(ids: ids, vectors: vectors, progressChunk: 100) { added, total in
            XCTAssertEqual(total, 250)
            reports.append(added)
        }
        XCTAssertEqual(reports, [100, 200, 250])
        XCTAssertEqual(index.count, 250)
        XCTAssertEqual(try index.search(row(vectors, 137, d), k: 1).first?.id, 138)
    }

    func testCosineNormalisesStoredVectorsAndQueries() throws {
        let index = try VectorIndex(factory: "Flat", dimension: 2, metric: .cosine)
        try index.add(ids: [1, 2], vectors: [3, 4, 0, 10])
        let stored = try index.reconstruct(id: 1)
        XCTAssertEqual(stored[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(stored[1], 0.8, accuracy: 1e-6)
        let result = try index.search([0, 2], k: 2)
        XCTAssertEqual(result.map(\.id), [2, 1])
        XCTAssertEqual(result[0].score, 1, accuracy: 1e-6)
        XCTAssertEqual(result[1].score, 0.8, accuracy: 1e-6)
    }

    func testFewerResultsThanKArePacked() throws {
        let index = try VectorIndex(factory: "HNSW32", dimension: 2, metric: .l2)
        XCTAssertEqual(try index.search([0, 0], k: 5), [])
        try index.add(ids: [7, 9], vectors: [1, 0, 0, 3])
        let result = try index.search([0, 0], k: 5)
        XCTAssertEqual(result.map(\.id), [7, 9])
        XCTAssertEqual(result.map(\.score), [1, 9])
    }

    // MARK: - Filters

    func testExcludeFilterInsideSearch() throws {
        let (ids, vectors) = makeData(n: 1500, seed: 3)
        var rng = TestRandom(seed: 4)
        let queries = rng.vectors(10, d)
        for factory in ["Flat", "HNSW32", "IVF8,Flat"] {
            let index = try VectorIndex(factory: factory, dimension: d, metric: .innerProduct)
            try index.train(vectors: vectors)
            try index.add(ids: ids, vectors: vectors)
            for q in 0..<10 {
                let query = row(queries, q, d)
                let unfiltered = bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: .innerProduct, k: 10)
                // Exclude the exact top 5 plus a spread of others (a sorted-list filter) ...
                let excluded = Set(unfiltered.prefix(5).map(\.id) + stride(from: 2, through: 1500, by: 37).map(UInt32.init))
                let filter = IDFilter.excluding(excluded)
                let result = try index.search(query, k: 10, filter: filter, parameters: SearchParameters(efSearch: 128, nprobe: 8))
                XCTAssertEqual(result.count, 10, factory)
                XCTAssertTrue(result.allSatisfy { !excluded.contains($0.id) }, "\(factory) returned an excluded id")
                // ... and the results are the best of the rest (exact for Flat and full-probe IVF).
                if factory != "HNSW32" {
                    let expected = bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: .innerProduct,
                                              k: 10, permitted: { !excluded.contains($0) })
                    assertSameNeighbors(result, expected)
                }
            }
            // A dense exclusion (bitmap representation): every even id.
            let evens = IDFilter.excluding(stride(from: 2, through: 1500, by: 2).map(UInt32.init))
            let result = try index.search(row(queries, 0, d), k: 20, filter: evens, parameters: SearchParameters(efSearch: 64, nprobe: 8))
            XCTAssertEqual(result.count, 20)
            XCTAssertTrue(result.allSatisfy { $0.id % 2 == 1 }, factory)
        }
    }

    func testAllowListRespected() throws {
        let (ids, vectors) = makeData(n: 6000, seed: 5)
        var rng = TestRandom(seed: 6)
        let query = rng.vectors(1, d)
        let smallAllowed = Set((0..<40).map { _ in UInt32(1 + rng.nextUInt64() % 6000) })
        // Larger than the exact-scan limit (2,048), so this one filters inside the Faiss search.
        let largeAllowed = Set(stride(from: 2, through: 6000, by: 2).map(UInt32.init))
        for factory in ["Flat", "HNSW32", "IVF8,Flat"] {
            let index = try VectorIndex(factory: factory, dimension: d, metric: .l2)
            try index.train(vectors: vectors)
            try index.add(ids: ids, vectors: vectors)
            let parameters = SearchParameters(efSearch: 64, nprobe: 8)
            let small = try index.search(query, k: 10, filter: .allowing(smallAllowed), parameters: parameters)
            XCTAssertEqual(small.count, 10, factory)
            XCTAssertTrue(small.allSatisfy { smallAllowed.contains($0.id) }, factory)
            // Small allow-lists are scored exactly, whatever the kind and its search parameters.
            assertSameNeighbors(small, bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: .l2,
                                                  k: 10, permitted: { smallAllowed.contains($0) }))
            let large = try index.search(query, k: 10, filter: .allowing(largeAllowed), parameters: parameters)
            XCTAssertEqual(large.count, 10, factory)
            XCTAssertTrue(large.allSatisfy { largeAllowed.contains($0.id) }, factory)
            // Allowing nothing returns nothing; allowing fewer than k returns them all.
            XCTAssertEqual(try index.search(query, k: 10, filter: .allowing([])), [])
            XCTAssertEqual(Set(try index.search(query, k: 10, filter: .allowing([5, 6, 99_999])).map(\.id)), [5, 6])
        }
    }

    func testPerQueryFiltersInBatch() throws {
        let (ids, vectors) = makeData(n: 300, seed: 7)
        let index = try VectorIndex(factory: "Flat", dimension: d, metric: .innerProduct)
        try index.add(ids: ids, vectors: vectors)
        let queries = row(vectors, 0, d) + row(vectors, 1, d) + row(vectors, 2, d)
        let filters: [IDFilter?] = [.excluding([1]), nil, .allowing([3, 4, 5])]
        let results = try index.search(batch: queries, k: 3, filters: filters)
        for q in 0..<3 {
            XCTAssertEqual(results[q], try index.search(row(queries, q, d), k: 3, filter: filters[q]))
        }
        XCTAssertFalse(results[0].contains { $0.id == 1 })
        XCTAssertTrue(results[2].allSatisfy { [3, 4, 5].contains($0.id) })
        XCTAssertThrowsError(try index.search(batch: queries, k: 3, filters: [nil])) { error in
            XCTAssertEqual((error as? IndexError)?.code, .invalidArgument)
        }
    }

    func testIDFilterPermits() {
        let sparse = IDFilter.excluding([5, 1_000_000, 5])
        XCTAssertEqual(sparse.count, 2)
        XCTAssertFalse(sparse.permits(5))
        XCTAssertTrue(sparse.permits(6))
        let dense = IDFilter.allowing(1...500)
        XCTAssertTrue(dense.permits(500))
        XCTAssertFalse(dense.permits(501))
        XCTAssertFalse(dense.permits(0))
    }

    // MARK: - Remove and update

    func testRemoveTombstonesHNSWAndCompactFlat() throws {
        let (ids, vectors) = makeData(n: 1000, seed: 8)
        for factory in ["HNSW32", "Flat", "IVF8,Flat"] {
            let index = try VectorIndex(factory: factory, dimension: d, metric: .l2)
            try index.train(vectors: vectors)
            try index.add(ids: ids, vectors: vectors)
            let parameters = SearchParameters(efSearch: 64, nprobe: 8)
            // Each removed id is the exact nearest neighbour of its own vector: it must never come back.
            let removed: [UInt32] = [1, 2, 3, 500, 999]
            XCTAssertEqual(try index.remove(ids: removed + [4242]), 5)
            XCTAssertEqual(try index.remove(ids: [1]), 0)
            XCTAssertEqual(index.count, 995)
            for id in removed {
                XCTAssertFalse(index.contains(id: id))
                let result = try index.search(row(vectors, Int(id) - 1, d), k: 10, parameters: parameters)
                XCTAssertEqual(result.count, 10)
                XCTAssertFalse(result.contains { removed.contains($0.id) }, "\(factory) returned a removed id")
                XCTAssertThrowsError(try index.reconstruct(id: id)) { XCTAssertEqual(($0 as? IndexError)?.code, .unknownID) }
            }
            if factory == "IVF8,Flat" {
                XCTAssertEqual(index.deadFraction, 0, "IVF deletes physically")
                XCTAssertEqual(index.storedRowCount, 995)
            } else {
                XCTAssertEqual(index.storedRowCount, 1000)
                XCTAssertEqual(index.deadFraction, 5.0 / 1000, accuracy: 1e-12)
            }
            XCTAssertEqual(index.ids, ids.filter { !removed.contains($0) })
        }
        // Flat compaction drops tombstones and keeps ids and exact results.
        let flat = try VectorIndex(factory: "Flat", dimension: d, metric: .l2)
        try flat.add(ids: ids, vectors: vectors)
        try flat.remove(ids: [10, 20, 30])
        let query = row(vectors, 10, d)
        let before = try flat.search(query, k: 10)
        try flat.compact()
        XCTAssertEqual(flat.deadFraction, 0)
        XCTAssertEqual(flat.storedRowCount, 997)
        XCTAssertEqual(try flat.search(query, k: 10), before)
        XCTAssertEqual(try flat.reconstruct(id: 11), row(vectors, 10, d))
    }

    func testCompactIsRefusedForLossyKinds() throws {
        let (ids, vectors) = makeData(n: 1000, seed: 9)
        let index = try VectorIndex(factory: "IVF4,PQ4", dimension: d, metric: .l2)
        try index.train(vectors: vectors)
        try index.add(ids: ids, vectors: vectors)
        try index.remove(ids: [1])
        XCTAssertNoThrow(try index.compact(), "nothing to compact: IVF deletes physically")
        let hnswPQ = try VectorIndex(factory: "HNSW16,PQ4", dimension: d, metric: .l2)
        try hnswPQ.train(vectors: vectors)
        try hnswPQ.add(ids: ids, vectors: vectors)
        try hnswPQ.remove(ids: [1])
        XCTAssertThrowsError(try hnswPQ.compact()) { XCTAssertEqual(($0 as? IndexError)?.code, .unsupported) }
        // HNSW over compressed storage is searched by the same graph search, with Faiss's PQ distances:
        // tombstones stay excluded and the results are ordered by the PQ-approximated distance.
        for ef in [16, 128] {
            let result = try hnswPQ.search(row(vectors, 0, d), k: 10, parameters: SearchParameters(efSearch: ef))
            XCTAssertEqual(result.count, 10)
            XCTAssertFalse(result.contains { $0.id == 1 })
            XCTAssertEqual(result.map(\.score), result.map(\.score).sorted())
        }
    }

    func testUpdateReplacesVector() throws {
        let (ids, vectors) = makeData(n: 800, seed: 10)
        var rng = TestRandom(seed: 11)
        let target = rng.vectors(1, d).map { $0 * 10 }  // far from the data, so its nearest neighbour is unambiguous
        for factory in ["HNSW32", "Flat", "IVF8,Flat"] {
            let index = try VectorIndex(factory: factory, dimension: d, metric: .l2)
            try index.train(vectors: vectors)
            try index.add(ids: ids, vectors: vectors)
            let oldVector = row(vectors, 41, d)  // id 42
            try index.update(id: 42, vector: target)
            XCTAssertEqual(index.count, 800)
            XCTAssertEqual(try index.reconstruct(id: 42), target)
            let parameters = SearchParameters(efSearch: 64, nprobe: 8)
            let hit = try index.search(target, k: 1, parameters: parameters)
            XCTAssertEqual(hit.first?.id, 42, factory)
            XCTAssertEqual(hit.first?.score ?? -1, 0, accuracy: 1e-4)
            // The old vector is gone: searching it finds id 42 only at its new (far) distance, if at all.
            let nearOld = try index.search(oldVector, k: 10, parameters: parameters)
            XCTAssertNotEqual(nearOld.first?.id, 42, factory)
            // Repeated ids in one call: the last row wins.
            try index.add(ids: [7, 7], vectors: oldVector + target.map { -$0 })
            XCTAssertEqual(try index.reconstruct(id: 7), target.map { -$0 })
            XCTAssertEqual(index.count, 800)
        }
    }

    // MARK: - Serialization

    func testSerializationRoundTripGivesIdenticalResults() throws {
        let (ids, vectors) = makeData(n: 2000, seed: 12)
        var rng = TestRandom(seed: 13)
        let queries = rng.vectors(20, d)
        for (factory, metric) in [("HNSW32", Metric.cosine), ("Flat", .innerProduct), ("IVF16,Flat", .l2), ("OPQ4,IVF16,PQ4", .l2)] {
            let index = try VectorIndex(factory: factory, dimension: d, metric: metric)
            try index.train(vectors: vectors)
            try index.add(ids: ids, vectors: vectors)
            try index.remove(ids: [5, 6, 7])
            try index.update(id: 8, vector: row(queries, 0, d))
            try index.setDefaultSearchParameters(SearchParameters(efSearch: 48, nprobe: 4))
            let bytes = try index.serialized()
            let loaded = try VectorIndex(serialized: bytes)
            let fromData = try VectorIndex(serialized: try index.serializedData())
            XCTAssertEqual(loaded.configuration, index.configuration)
            XCTAssertEqual(loaded.count, 1997)
            XCTAssertEqual(loaded.storedRowCount, index.storedRowCount)
            XCTAssertEqual(loaded.ids, index.ids)
            XCTAssertEqual(loaded.defaultSearchParameters, index.defaultSearchParameters)
            XCTAssertEqual(try loaded.reconstruct(id: 100), try index.reconstruct(id: 100))
            let filter = IDFilter.excluding([9, 10, 11])
            for q in 0..<20 {
                let query = row(queries, q, d)
                XCTAssertEqual(try loaded.search(query, k: 10), try index.search(query, k: 10), factory)
                XCTAssertEqual(try fromData.search(query, k: 10, filter: filter), try index.search(query, k: 10, filter: filter))
            }
            XCTAssertEqual(try loaded.search(batch: queries, k: 10), try index.search(batch: queries, k: 10))
            // The loaded index stays writable: ids keep working after the reload.
            try loaded.add(ids: [5], vectors: row(queries, 1, d))
            XCTAssertTrue(loaded.contains(id: 5))
            let found = try loaded.search(row(queries, 1, d), k: 10, parameters: SearchParameters(efSearch: 64, nprobe: 16))
            XCTAssertTrue(found.contains { $0.id == 5 }, factory)  // PQ codes are lossy: within the top 10, maybe not first
        }
    }

    func testCorruptBytesAreRefused() throws {
        let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
        let (ids, vectors) = makeData(n: 100, seed: 14)
        try index.add(ids: ids, vectors: vectors)
        let bytes = try index.serialized()
        var badMagic = bytes
        badMagic[0] ^= 0xFF
        var truncated = bytes
        truncated.removeLast(100)
        var badPayload = bytes
        for i in 60..<120 { badPayload[i] = 0xEE }  // inside the label map / Faiss header
        for (name, corrupt) in [("magic", badMagic), ("truncated", truncated), ("payload", badPayload), ("empty", [])] {
            XCTAssertThrowsError(try VectorIndex(serialized: corrupt), name) { error in
                XCTAssertEqual((error as? IndexError)?.code, .corruptData, "\(name): \(error)")
            }
        }
    }

    // MARK: - Errors

    func testBadFactoryStringCarriesFaissMessage() {
        XCTAssertThrowsError(try VectorIndex(factory: "HNSWbogus,Zzz", dimension: d, metric: .l2)) { error in
            guard let error = error as? IndexError else { return XCTFail("not an IndexError: \(error)") }
            XCTAssertEqual(error.code, .faiss)
            XCTAssertTrue(error.message.contains("could not parse index string"), error.message)
            XCTAssertTrue(error.description.contains("HNSWbogus"), error.description)
        }
        XCTAssertThrowsError(try VectorIndex(factory: "IDMap,HNSW32", dimension: d, metric: .l2)) {
            XCTAssertEqual(($0 as? IndexError)?.code, .invalidArgument)
        }
        XCTAssertThrowsError(try VectorIndex(factory: "Flat", dimension: 0, metric: .l2)) {
            XCTAssertEqual(($0 as? IndexError)?.code, .invalidArgument)
        }
    }

    func testWrongDimensionAndBadArguments() throws {
        let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .l2)
        let (ids, vectors) = makeData(n: 10, seed: 15)
        try index.add(ids: ids, vectors: vectors)
        func code(_ body: () throws -> Void) -> IndexError.Code? {
            do { try body(); return nil } catch { return (error as? IndexError)?.code }
        }
        XCTAssertEqual(code { _ = try index.search([1, 2, 3], k: 5) }, .dimensionMismatch)
        XCTAssertEqual(code { _ = try index.search(batch: [Float](repeating: 0, count: d + 1), k: 5) }, .dimensionMismatch)
        XCTAssertEqual(code { try index.add(ids: [11], vectors: [1, 2]) }, .dimensionMismatch)
        XCTAssertEqual(code { try index.train(vectors: [1, 2, 3]) }, .dimensionMismatch)
        XCTAssertEqual(code { try index.add(ids: [0], vectors: row(vectors, 0, d)) }, .invalidArgument)
        XCTAssertEqual(code { _ = try index.search(row(vectors, 0, d), k: 0) }, .invalidArgument)
        XCTAssertEqual(code { _ = try index.search(row(vectors, 0, d), k: 5, parameters: SearchParameters(efSearch: 0)) }, .invalidArgument)
        XCTAssertEqual(index.count, 10, "failed calls change nothing")
    }

    // MARK: - Training and search parameters

    func testIVFTrainingAndNprobe() throws {
        let (ids, vectors) = makeData(n: 3000, seed: 16)
        let index = try VectorIndex(factory: "IVF32,Flat", dimension: d, metric: .innerProduct)
        XCTAssertFalse(index.isTrained)
        XCTAssertThrowsError(try index.add(ids: ids, vectors: vectors)) { XCTAssertEqual(($0 as? IndexError)?.code, .notTrained) }
        XCTAssertThrowsError(try index.search(row(vectors, 0, d), k: 3)) { XCTAssertEqual(($0 as? IndexError)?.code, .notTrained) }
        // 3,000 points for 32 centroids is enough: Faiss stays quiet.
        XCTAssertEqual(try index.train(vectors: vectors), "")
        XCTAssertTrue(index.isTrained)
        try index.add(ids: ids, vectors: vectors)
        XCTAssertEqual(index.defaultSearchParameters, SearchParameters(efSearch: nil, nprobe: 1))
        var rng = TestRandom(seed: 17)
        let queries = rng.vectors(10, d)
        var exactWithAllLists = 0, exactWithOneList = 0
        for q in 0..<10 {
            let query = row(queries, q, d)
            let expected = bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: .innerProduct, k: 10)
            let all = try index.search(query, k: 10, parameters: SearchParameters(nprobe: 32))
            assertSameNeighbors(all, expected)  // probing every list is exhaustive
            if all.map(\.id) == expected.map(\.id) { exactWithAllLists += 1 }
            if try index.search(query, k: 10).map(\.id) == expected.map(\.id) { exactWithOneList += 1 }
        }
        XCTAssertEqual(exactWithAllLists, 10)
        XCTAssertLessThan(exactWithOneList, 10, "nprobe 1 of 32 lists should miss neighbours on unclustered data")

        // Too few points per centroid: Faiss's warning is captured and returned, not printed.
        let sparse = try VectorIndex(factory: "IVF64,Flat", dimension: d, metric: .l2)
        let log = try sparse.train(vectors: Array(vectors.prefix(500 * d)))
        XCTAssertTrue(log.contains("WARNING"), "captured log: \(log)")
        XCTAssertTrue(log.contains("500"), log)
        // Fewer points than centroids is an error, with Faiss's message.
        let tooFew = try VectorIndex(factory: "IVF64,Flat", dimension: d, metric: .l2)
        XCTAssertThrowsError(try tooFew.train(vectors: Array(vectors.prefix(10 * d)))) { error in
            XCTAssertEqual((error as? IndexError)?.code, .faiss, "\(error)")
        }
    }

    func testProductQuantizerKindsTrainAndFindNeighbours() throws {
        // Clustered data, so a coarse PQ code still separates the clusters.
        var rng = TestRandom(seed: 18)
        let centres = rng.vectors(20, d).map { $0 * 4 }
        var vectors: [Float] = []
        for i in 0..<4000 { for j in 0..<d { vectors.append(centres[(i % 20) * d + j] + 0.3 * rng.gaussian()) } }
        let ids = (1...4000).map(UInt32.init)
        for factory in ["IVF16,PQ4", "OPQ4,IVF16,PQ4"] {
            let index = try VectorIndex(factory: factory, dimension: d, metric: .l2)
            try index.train(vectors: vectors)
            try index.add(ids: ids, vectors: vectors)
            // The nearest neighbours of a point are in its own cluster (ids congruent mod 20).
            for probe in [0, 7, 13] {
                let result = try index.search(row(vectors, probe, d), k: 10, parameters: SearchParameters(nprobe: 16))
                XCTAssertEqual(result.count, 10)
                let sameCluster = result.filter { Int($0.id - 1) % 20 == probe % 20 }.count
                XCTAssertGreaterThanOrEqual(sameCluster, 9, factory)
            }
            // Reconstruction is the decoded approximation: close to the original, not equal.
            let decoded = try index.reconstruct(id: 1)
            let error = zip(decoded, row(vectors, 0, d)).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
            let norm = row(vectors, 0, d).map { $0 * $0 }.reduce(0, +)
            XCTAssertLessThan(error, 0.2 * norm, factory)
        }
    }

    func testHNSWEfSearchAndSingleQueryAgreesWithBatch() throws {
        let (ids, vectors) = makeData(n: 3000, seed: 19)
        var rng = TestRandom(seed: 20)
        let queries = rng.vectors(30, d)
        for metric in Metric.allCases {
            let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: metric)
            try index.add(ids: ids, vectors: vectors)
            XCTAssertEqual(index.defaultSearchParameters.efSearch, 16)
            for ef in [16, 64] {
                let parameters = SearchParameters(efSearch: ef)
                // A batch is split over threads; a single query runs on the caller's thread. Same graph walk,
                // same kernels: results must agree exactly.
                let batch = try index.search(batch: queries, k: 10, parameters: parameters)
                let removedFilter = IDFilter.excluding([1, 2, 3])
                let batchFiltered = try index.search(batch: queries, k: 10, filter: removedFilter, parameters: parameters)
                for q in 0..<30 {
                    XCTAssertEqual(try index.search(row(queries, q, d), k: 10, parameters: parameters), batch[q], "\(metric) ef \(ef)")
                    XCTAssertEqual(try index.search(row(queries, q, d), k: 10, filter: removedFilter, parameters: parameters),
                                   batchFiltered[q])
                }
            }
            // Larger efSearch never finds fewer true neighbours in total.
            func recall(_ ef: Int) throws -> Int {
                var hits = 0
                for q in 0..<30 {
                    let query = row(queries, q, d)
                    let truth = Set(bruteForce(query: query, vectors: vectors, ids: ids, dimension: d, metric: metric, k: 10).map(\.id))
                    hits += try index.search(query, k: 10, parameters: SearchParameters(efSearch: ef)).filter { truth.contains($0.id) }.count
                }
                return hits
            }
            let low = try recall(10), high = try recall(200)
            // Faiss 1.7.3 itself nearly ignores a per-call efSearch (HNSWSearch.h); ours must take effect.
            XCTAssertGreaterThan(high, low, "efSearch 200 must beat efSearch 10 (\(metric))")
            XCTAssertEqual(index.defaultSearchParameters.efSearch, 16, "per-call parameters leave the default alone")
            XCTAssertGreaterThanOrEqual(high, 290, "efSearch 200 on 3,000 points should be nearly exact (\(metric))")
        }
    }

    // MARK: - Threads

    func testConcurrentSearchesWithWrites() throws {
        let d = self.d  // the workers below capture values, not the (non-Sendable) test case
        let (ids, vectors) = makeData(n: 2000, seed: 21)
        let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: .l2)
        try index.add(ids: Array(ids.prefix(1000)), vectors: Array(vectors.prefix(1000 * d)))
        var rng = TestRandom(seed: 22)
        let queries = rng.vectors(64, d)
        let expected = try (0..<64).map { try index.search(row(queries, $0, d), k: 5) }
        let mismatches = Atomic(0)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            if worker == 0 {
                // A writer adding new ids far away while others read: readers must never see torn state.
                for start in stride(from: 1000, to: 2000, by: 100) {
                    try! index.add(ids: Array(ids[start..<(start + 100)]),
                                   vectors: Array(vectors[(start * d)..<((start + 100) * d)]).map { $0 + 100 })
                }
                return
            }
            for q in 0..<64 {
                let result = try! index.search(row(queries, q, d), k: 5)
                if result != expected[q] { mismatches.add(1) }
            }
        }
        // The added vectors are shifted by +100 in every coordinate, so they never enter these top-5s.
        XCTAssertEqual(mismatches.value, 0)
        XCTAssertEqual(index.count, 2000)
    }
}

/// A tiny lock-protected counter for the concurrency test.
final class Atomic: Sendable {
    private let storage: Locked<Int>
    init(_ value: Int) { storage = Locked(value) }
    func add(_ delta: Int) { storage.withLock { $0 += delta } }
    var value: Int { storage.withLock { $0 } }
}
