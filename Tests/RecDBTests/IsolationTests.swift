import Foundation
import XCTest
import Learn
@testable import RecDB

/// Snapshot isolation of searches and recommendations, immutability of model versions, and the
/// bounds on the vector log.
final class IsolationTests: DatabaseTestCase {
    static let itemCount = 40
    static let dimension = 12

    /// 40 items with random text vectors, 300 users whose sequences follow item i by item i+1.
    func fill(_ db: Database, seed: UInt64 = 7) throws {
        var rng = SeededGenerator(seed: seed)
        try db.write { tx in
            for i in 1...Self.itemCount {
                try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)", attributesJSON: #"{"parity": "\#(i % 2)"}"#))
            }
            try tx.createSpace(EmbeddingSpace(name: "text", kind: .item, dimension: Self.dimension))
            for i in 1...Self.itemCount {
                try tx.putVector(space: "text", entity: UInt32(i), (0..<Self.dimension).map { _ in Float.random(in: -1...1, using: &rng) })
            }
            for u in 0..<300 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                var item = Int.random(in: 1...Self.itemCount, using: &rng)
                for t in 0..<Int.random(in: 6...14, using: &rng) {
                    try tx.appendEvent(user: user, item: UInt32(item), timestamp: Int64(t))
                    item = item % Self.itemCount + 1
                }
            }
        }
    }

    func textModel(epochs: Int = 4) -> TrainingRequest {
        var c = ModelConfiguration(architecture: .sasrec, items: .textAndID)
        c.hiddenSize = 16
        c.blocks = 1
        c.maxLength = 10
        c.batchSize = 64
        c.maxEpochs = epochs
        c.dropout = 0.1
        c.learningRate = 5e-3
        c.seed = 3
        var request = TrainingRequest(model: "m", configuration: c)
        request.textSpace = "text"
        return request
    }

    /// Everything a reader can ask of searches and recommendations, answered in the snapshot `tx`.
    struct Observation: Equatable {
        var searches: [[ScoredItem]] = []
        var filtered: [[ScoredItem]] = []
        var similar: [[ScoredItem]] = []
        var recommendations: [[ScoredItem]] = []
        var sessions: [[ScoredItem]] = []
    }

    static func observe(_ db: Database, _ tx: ReadTransaction, queries: [[Float]]) throws -> Observation {
        var o = Observation()
        let text = try tx.requireSpace("text")
        for q in queries {
            o.searches.append(try db.search(tx, space: text, query: q, k: 8, filter: SearchFilter(), extraExcluded: [], titles: true))
            o.filtered.append(try db.search(tx, space: text, query: q, k: 5, filter: SearchFilter(attributes: ["parity": "0"]),
                                            extraExcluded: [], titles: true))
        }
        for i in [3, 9, 17] {
            let query = try XCTUnwrap(try tx.vector(space: "text", entity: UInt32(i)))
            o.similar.append(try db.search(tx, space: text, query: query, k: 6, filter: SearchFilter(), extraExcluded: [UInt32(i)], titles: true))
        }
        let options = RecommendOptions(model: "m")
        for u in 0..<12 {
            let user = try XCTUnwrap(try tx.userID(for: "u\(u)"))
            o.recommendations.append(try db.recommend(tx, user: user, externalUser: "u\(u)", sequence: nil, k: 10, options: options).items)
        }
        for start in [2, 20, 33] {
            let session = (start..<start + 3).map { UInt32($0) }
            o.sessions.append(try db.recommend(tx, user: nil, externalUser: nil, sequence: session, k: 10, options: options).items)
        }
        // The batched forms in the same snapshot (also while the shared index is ahead of it) give each query
        // what it gets alone: the searches exactly, the recommendations to float rounding (one forward pass).
        let n = queries.count
        let batched = db.search(tx, space: text, queries: queries + queries, ks: Array(repeating: 8, count: n) + Array(repeating: 5, count: n),
                                filters: Array(repeating: SearchFilter(), count: n) + Array(repeating: SearchFilter(attributes: ["parity": "0"]), count: n),
                                extraExcluded: Array(repeating: [], count: 2 * n), titles: Array(repeating: true, count: 2 * n))
        XCTAssertEqual(try batched.map { try $0.get() }, o.searches + o.filtered)
        let recommended = db.recommend(tx, (0..<12).map { RecommendationRequest(user: "u\($0)", k: 10, options: options) })
        for (u, (answer, alone)) in zip(recommended, o.recommendations).enumerated() {
            let items = try answer.get().items
            XCTAssertEqual(items.map(\.id), alone.map(\.id), "u\(u)")
            for (b, a) in zip(items, alone) { XCTAssertEqual(b.score, a.score, accuracy: 1e-4, "u\(u)") }
        }
        return o
    }

    /// What a reader of one snapshot sees before and after `change`: `read` runs twice in one read transaction
    /// on another thread, and `change` (given the first reading) runs on this thread in between.
    static func readTwice<T>(_ db: Database, _ read: @escaping @Sendable (ReadTransaction) throws -> T,
                             around change: (T) throws -> Void) throws -> (before: T, after: T) {
        let taken = DispatchSemaphore(value: 0), proceed = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var first: T?
        nonisolated(unsafe) var second: T?
        nonisolated(unsafe) var failure: Error?
        let reader = Thread {
            do {
                try db.read { tx in
                    first = try read(tx)
                    taken.signal()
                    proceed.wait()
                    second = try read(tx)
                }
            } catch {
                failure = error
                taken.signal()
            }
            done.signal()
        }
        reader.start()
        taken.wait()
        guard let before = first else {
            done.wait()
            throw failure!
        }
        do { try change(before) } catch {
            proceed.signal()
            done.wait()
            throw error
        }
        proceed.signal()
        done.wait()
        if let failure { throw failure }
        return (before, second!)
    }

    /// A reader holding a snapshot taken before a writer adds, deletes, hides and moves items (and
    /// the index is rebuilt) gets exactly the results it got before, while readers of the new state
    /// — which move the shared in-process indexes forward — see the writes.
    func testAReaderOfAnOldSnapshotSearchesAndRecommendsExactlyItsSnapshot() throws {
        let db = try makeDatabase()
        try fill(db)
        _ = try db.train(textModel())
        try db.buildIndex(space: "text")
        var rng = SeededGenerator(seed: 99)
        let queries = (0..<4).map { _ in (0..<Self.dimension).map { _ in Float.random(in: -1...1, using: &rng) } }

        @Sendable func observed(_ tx: ReadTransaction) throws -> Observation { try Self.observe(db, tx, queries: queries) }
        var current: Observation?
        let (old, again) = try Self.readTwice(db, observed) { old in
            // New items whose text vectors are the queries (so each is the best hit of its query); their
            // model-space vectors come from cold start. Then deletions, unavailability and moved vectors.
            try db.write { tx in
                for (j, q) in queries.enumerated() {
                    let id = try tx.upsertItem(ItemInput(externalID: "new\(j)", title: "New \(j)", attributesJSON: #"{"parity": "0"}"#))
                    try tx.putVector(space: "text", entity: id, q)
                }
            }
            let deleted = try XCTUnwrap(db.read { try $0.itemID(for: old.searches[0][0].item) })
            let hidden = try XCTUnwrap(db.read { try $0.itemID(for: old.recommendations[0][0].item) })
            let moved = try XCTUnwrap(db.read { try $0.itemID(for: old.similar[0][0].item) })
            try db.write { tx in
                try tx.deleteItem(id: deleted)
                try tx.setAvailability(item: hidden, false)
                try tx.putVector(space: "text", entity: moved, queries[1].map { -$0 })
                let recommended = try XCTUnwrap(try tx.itemID(for: old.recommendations[1][0].item))
                try tx.putVector(space: "m@1", entity: recommended, [Float](repeating: -1, count: 16))
            }
            for (j, q) in queries.enumerated() {
                XCTAssertEqual(try db.nearest(to: q, k: 1, space: "text").first?.item, "new\(j)", "the new state sees the new items")
            }
            XCTAssertEqual(try db.read { try $0.space(named: "m@1")?.version }, UInt64(Self.itemCount + queries.count + 1),
                           "cold start gave the new items model-space vectors")
            let now = try db.read(observed)
            XCTAssertNotEqual(now.searches, old.searches)
            XCTAssertNotEqual(now.recommendations, old.recommendations)
            XCTAssertFalse(now.recommendations.joined().contains { $0.id == hidden || $0.id == deleted })
            // The shared live index now reflects the newest snapshot, ahead of the old reader's.
            let live = try db.read { tx in try db.liveIndex(space: tx.requireSpace("text"), tx: tx) }
            XCTAssertEqual(live.appliedVersion, try db.read { try $0.requireSpace("text").version })
            XCTAssertGreaterThan(live.appliedVersion, UInt64(Self.itemCount))
            current = now
        }

        XCTAssertEqual(again, old)
        XCTAssertEqual(old.searches.map(\.count), [8, 8, 8, 8])
        XCTAssertTrue(old.recommendations.allSatisfy { $0.count == 10 })

        // A reader of the new state, before and after an index rebuild that only the newer state sees.
        let (before, after) = try Self.readTwice(db, observed) { _ in
            try db.write { tx in
                for j in 0..<queries.count { try tx.deleteItem(id: try XCTUnwrap(try tx.itemID(for: "new\(j)"))) }
            }
            try db.buildIndex(space: "text")
            XCTAssertFalse(try db.nearest(to: queries[0], k: 8, space: "text").contains { $0.item.hasPrefix("new") })
        }
        XCTAssertEqual(before, current)
        XCTAssertEqual(after, current, "an index rebuild does not change an older snapshot's results")
    }

    /// Result titles come from a per-process cache kept for one item-state version: a reader of an old snapshot
    /// still gets its snapshot's titles after a newer reader filled the cache, a write transaction sees its own
    /// change, and a rolled-back write leaves no trace in the cache.
    func testResultTitlesFollowTheSnapshot() throws {
        let db = try makeDatabase()
        try fill(db)
        try db.buildIndex(space: "text")
        let ids: [UInt32] = [3, 5, 7, 999]
        @Sendable func titles(_ tx: ReadTransaction) throws -> [String?] { try db.itemDescriptions(tx, ids).map { $0?.title } }
        XCTAssertEqual(try db.read(titles), ["Item 3", "Item 5", "Item 7", nil])

        let (before, after) = try Self.readTwice(db, titles) { _ in
            _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "i5", title: "Renamed 5")) }
            XCTAssertEqual(try db.read(titles), ["Item 3", "Renamed 5", "Item 7", nil], "the new snapshot's titles (now cached)")
        }
        XCTAssertEqual(before, ["Item 3", "Item 5", "Item 7", nil])
        XCTAssertEqual(after, before, "an old snapshot keeps its titles")

        struct Rollback: Error {}
        XCTAssertThrowsError(try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "i7", title: "Draft 7"))
            XCTAssertEqual(try titles(tx), ["Item 3", "Renamed 5", "Draft 7", nil])
            throw Rollback()
        })
        XCTAssertEqual(try db.read(titles), ["Item 3", "Renamed 5", "Item 7", nil])
        let five = try XCTUnwrap(try db.read { try $0.vector(space: "text", entity: 5) })
        XCTAssertEqual(try db.nearest(to: five, k: 1, space: "text").first?.title, "Renamed 5", "search results show it")

        // The cache itself: a newer version replaces it, an older one is not stored, and it stays within its bytes.
        let cache = ItemDescriptionCache(capacityBytes: 60)  // one entry of "a", "t1" takes 51
        cache.store([(1, .init(externalID: "a", title: "t1")), (2, .init(externalID: "b", title: "t2")), (3, .init(externalID: "c", title: "t3"))], at: 5)
        XCTAssertEqual(cache.lookup([1, 2, 3], at: 5).map { $0?.title }, ["t1", nil, nil], "the second entry would pass the bound")
        XCTAssertEqual(cache.lookup([1], at: 4).map { $0?.title }, [nil], "another version is never answered")
        cache.store([(2, .init(externalID: "b", title: "old"))], at: 4)
        XCTAssertEqual(cache.lookup([1, 2], at: 5).map { $0?.title }, ["t1", nil], "an older snapshot does not replace it")
        cache.store([(2, .init(externalID: "b", title: "new"))], at: 6)
        XCTAssertEqual(cache.lookup([1, 2], at: 6).map { $0?.title }, [nil, "new"])
        XCTAssertEqual(cache.lookup([1, 2], at: 5).map { $0?.title }, [nil, nil])
    }

    /// After the text space is re-embedded, a version evaluates to its recorded metrics bit for bit
    /// and recommends what it did, in a process that loads it afterwards; new items still get their
    /// model-space vectors from the current text through the adapter.
    func testReembeddingTheTextSpaceChangesNeitherEvaluationNorRecommendations() throws {
        let db = try makeDatabase()
        try fill(db)
        let outcome = try db.train(textModel())
        let users = (0..<20).map { "u\($0)" }
        let recommended = try users.map { try db.recommend(user: $0, k: 10).items }
        let similar = try db.similarItems(to: "i5", k: 5, space: "m@1")

        var rng = SeededGenerator(seed: 5)
        try db.write { tx in
            for i in 1...Self.itemCount {
                try tx.putVector(space: "text", entity: UInt32(i), (0..<Self.dimension).map { _ in Float.random(in: -1...1, using: &rng) })
            }
        }
        db.runtime.removeAll(prefix: "")  // as a process started after the re-embedding

        let evaluated = try db.evaluate(model: "m")
        XCTAssertEqual(evaluated.valid, outcome.valid)
        XCTAssertEqual(evaluated.test, outcome.test)
        XCTAssertEqual(try users.map { try db.recommend(user: $0, k: 10).items }, recommended)
        XCTAssertEqual(try db.similarItems(to: "i5", k: 5, space: "m@1"), similar)

        // The test has power: the same weights over today's text rows evaluate differently.
        let (info, parameters, currentText, snapshot) = try db.read { tx in
            let info = try tx.modelVersion("m")
            let (values, d, _) = try tx.denseTable(space: "text", count: info.numItems)
            return (info, try tx.parameters(model: "m", version: info.version),
                    try TextTable(numItems: info.numItems, dimension: d, values: values),
                    try tx.trainingSnapshot(textSpace: nil, profileSpace: nil, upToEvent: info.eventVersion, numItems: info.numItems))
        }
        let drifted = try SequentialRecommender(configuration: info.configuration, numItems: info.numItems,
                                                parameters: parameters, textTable: currentText).evaluate(dataset: snapshot.dataset)
        XCTAssertNotEqual(drifted.test, outcome.test)

        // A new item: its model vector is the adapter applied to its current text vector.
        let fresh = (0..<Self.dimension).map { _ in Float.random(in: -1...1, using: &rng) }
        let id = try db.write { tx -> UInt32 in
            let id = try tx.upsertItem(ItemInput(externalID: "fresh", title: "Fresh"))
            try tx.putVector(space: "text", entity: id, fresh)
            return id
        }
        let stored = try XCTUnwrap(try db.read { try $0.vector(space: "m@1", entity: id) })
        let model = try db.read { try db.loadedModel($0, info) }
        XCTAssertEqual(stored, try model.recommender.itemVector(fromTextEmbedding: fresh))
    }

    /// Re-importing an unchanged item or vector writes nothing; only text fields re-embed.
    func testUnchangedUpsertsWriteNothing() throws {
        let db = try makeDatabase()
        let input = ItemInput(externalID: "a", title: "A", text: "about a", attributesJSON: #"{"c": "x"}"#)
        let v: [Float] = [0.5, -1, 2, 0.25]
        let id = try db.write { tx -> UInt32 in
            try tx.createSpace(EmbeddingSpace(name: "s", kind: .item, dimension: 4))
            let id = try tx.upsertItem(input)
            try tx.putVector(space: "s", entity: id, v)
            return id
        }
        func state() throws -> (UInt64, UInt64, Int, Item) {
            try db.read { tx in
                (try tx.itemStateVersion(), try tx.requireSpace("s").version, try tx.vectorChanges(space: "s", after: 0).count, try XCTUnwrap(try tx.item(id: id)))
            }
        }
        let initial = try state()
        try db.write { tx in
            XCTAssertEqual(try tx.upsertItem(input), id)
            try tx.putVector(space: "s", entity: id, v)
            XCTAssertTrue(tx.changedItems.isEmpty)
            XCTAssertTrue(tx.changedVectors.isEmpty)
            try tx.setAvailability(item: id, true)
        }
        let unchanged = try state()
        XCTAssertEqual(unchanged.0, initial.0)
        XCTAssertEqual(unchanged.1, initial.1)
        XCTAssertEqual(unchanged.2, 1)
        XCTAssertEqual(unchanged.3, initial.3)

        try db.write { tx in
            try tx.setAvailability(item: id, false)
            try tx.deleteItem(id: id)
            XCTAssertTrue(tx.changedItems.isEmpty, "availability and deletion change no embedding text")
        }
        XCTAssertEqual(try state().0, initial.0 + 2)
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "a", title: "A"))  // revived, available again
            XCTAssertEqual(tx.changedItems, [id])
        }
        try db.write { tx in
            try tx.upsertItem(ItemInput(externalID: "a", attributesJSON: #"{"c": "y"}"#))
            XCTAssertEqual(tx.changedItems, [id], "attributes can be part of an embedding template")
        }
        let item = try XCTUnwrap(try db.read { try $0.item(id: id) })
        XCTAssertEqual(item.title, "A")
        XCTAssertEqual(item.text, "about a")
        XCTAssertEqual(item.attributesJSON, #"{"c": "y"}"#)
        XCTAssertTrue(item.isAvailable)
        XCTAssertFalse(item.isDeleted)
    }

    /// Top-k of `query` over `vectors` by cosine, ties by id.
    func bruteForce(_ vectors: [UInt32: [Float]], _ query: [Float], k: Int) -> [UInt32] {
        func norm(_ v: [Float]) -> Float { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        let qn = norm(query)
        return vectors.map { id, v in (id, zip(v, query).reduce(Float(0)) { $0 + $1.0 * $1.1 } / (norm(v) * qn)) }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(k).map(\.0)
    }

    /// The vector log stays bounded: an indexed space's index is re-saved and its log pruned, an
    /// unindexed space's log is cleared; searches stay exact, in this process and a fresh one.
    func testTheVectorLogIsBoundedAndTheIndexResaved() throws {
        let db = try makeDatabase()
        let d = 4
        var rng = SeededGenerator(seed: 21)
        func random() -> [Float] { (0..<d).map { _ in Float.random(in: -1...1, using: &rng) } }
        var current: [UInt32: [Float]] = [:]
        try db.write { tx in
            try tx.createSpace(EmbeddingSpace(name: "s", kind: .item, dimension: d))
            try tx.createSpace(EmbeddingSpace(name: "plain", kind: .item, dimension: d))
            for i in 1...60 {
                let id = try tx.upsertItem(ItemInput(externalID: "i\(i)"))
                let v = random()
                try tx.putVector(space: "s", entity: id, v)
                current[id] = v
            }
        }
        let built = try db.buildIndex(space: "s")
        XCTAssertEqual(built.spaceVersion, 60)
        let query = random()
        XCTAssertEqual(try db.nearest(to: query, k: 10, space: "s").map(\.id), bruteForce(current, query, k: 10))

        var logLengths: [Int] = []
        for _ in 0..<5 {
            try db.write { tx in
                for _ in 0..<400 {
                    let id = UInt32.random(in: 1...60, using: &rng)
                    let v = random()
                    try tx.putVector(space: "s", entity: id, v)
                    try tx.putVector(space: "plain", entity: id, v)
                    current[id] = v
                }
            }
            XCTAssertEqual(try db.nearest(to: query, k: 10, space: "s").map(\.id), bruteForce(current, query, k: 10))
            logLengths.append(try db.read { try $0.vectorChanges(space: "s", after: 0).count })
        }
        let (info, space, plainLog) = try db.read { tx in
            (try XCTUnwrap(try tx.indexInfo(space: "s")), try tx.requireSpace("s"), try tx.vectorChanges(space: "plain", after: 0).count)
        }
        XCTAssertEqual(space.version, 60 + 2000)
        XCTAssertEqual(logLengths, [460, 860, 0, 400, 800], "re-saved when more than 1,024 entries accumulated past the index")
        XCTAssertEqual(info.spaceVersion, 60 + 1200)
        XCTAssertEqual(info.vectors, 60)
        XCTAssertEqual(plainLog, 400 * 5 - 1200, "an unindexed space's log is cleared past the bound")
        XCTAssertTrue(try db.verify().isClean)

        // A fresh process loads the re-saved index and replays only the bounded tail.
        db.runtime.removeAll(prefix: "")
        XCTAssertEqual(try db.nearest(to: query, k: 10, space: "s").map(\.id), bruteForce(current, query, k: 10))
        let live = try db.read { tx in try db.liveIndex(space: tx.requireSpace("s"), tx: tx) }
        XCTAssertEqual(live.info.spaceVersion, 60 + 1200)
        XCTAssertEqual(live.appliedVersion, 60 + 2000)

        // Indexes built while vectors are written: with the log intact the build applies the entries
        // written meanwhile; when the log was cleared meanwhile (more than 1,024 writes to an unindexed
        // space) it rebuilds in its commit. Either way the stored index is the commit's state.
        try db.write { tx in
            for (id, v) in current { try tx.putVector(space: "plain", entity: id, v) }  // identical: no entries
            try tx.createSpace(EmbeddingSpace(name: "plain2", kind: .item, dimension: d))
            for (id, v) in current { try tx.putVector(space: "plain2", entity: id, v) }
        }
        for (name, writes) in [("plain", 100), ("plain2", 1100)] {
            let info = try db.buildIndex(space: name, factory: nil, metric: nil, searchParameters: nil) {
                try db.write { tx in
                    for _ in 0..<writes {
                        let id = UInt32.random(in: 1...60, using: &rng)
                        let v = random()
                        try tx.putVector(space: name, entity: id, v)
                        current[id] = v
                    }
                }
                let logged = try db.read { try $0.vectorChanges(space: name, after: 0).count }
                XCTAssertEqual(logged, name == "plain" ? 900 : 0, "log kept (plain) or cleared (plain2) while building")
            }
            XCTAssertEqual(info.spaceVersion, try db.read { try $0.requireSpace(name).version })
            db.runtime.removeAll(prefix: "")
            XCTAssertEqual(try db.nearest(to: query, k: 60, space: name).map(\.id), bruteForce(current, query, k: 60), name)
        }
    }

    /// Readers on several threads search while a writer moves, adds and deletes items, and while
    /// other readers move the shared index forward: every result is the snapshot's own top k
    /// (checked against an exact scan of the snapshot's vectors and items).
    func testConcurrentSnapshotsEachGetTheirOwnTopK() throws {
        let db = try makeDatabase()
        let d = 8
        var rng = SeededGenerator(seed: 31)
        try db.write { tx in
            try tx.createSpace(EmbeddingSpace(name: "s", kind: .item, dimension: d))
            for i in 1...80 {
                let id = try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "T\(i)"))
                try tx.putVector(space: "s", entity: id, (0..<d).map { _ in Float.random(in: -1...1, using: &rng) })
            }
        }
        try db.buildIndex(space: "s")
        let queries = (0..<6).map { _ in (0..<d).map { _ in Float.random(in: -1...1, using: &rng) } }
        let k = 6
        nonisolated(unsafe) var failures: [String] = []
        let failureLock = NSLock()
        @Sendable func fail(_ message: String) { failureLock.lock(); failures.append(message); failureLock.unlock() }
        let stop = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var stopped = false
        let stopLock = NSLock()
        @Sendable func isStopped() -> Bool { stopLock.lock(); defer { stopLock.unlock() }; return stopped }

        @Sendable func check(_ tx: ReadTransaction) throws {
            let space = try tx.requireSpace("s")
            var rows: [(UInt32, [Float])] = []
            try tx.forEachVector(space: "s") { id, view in
                if try tx.isServable(item: id) { rows.append((id, view.toArray())) }
                return true
            }
            for q in queries {
                let found = try db.search(tx, space: space, query: q, k: k, filter: SearchFilter(), extraExcluded: [], titles: true)
                let qn = q.reduce(0) { $0 + $1 * $1 }.squareRoot()
                var exact: [UInt32: Float] = [:]
                for (id, v) in rows {
                    exact[id] = zip(v, q).reduce(Float(0)) { $0 + $1.0 * $1.1 } / (v.reduce(0) { $0 + $1 * $1 }.squareRoot() * qn)
                }
                let kth = exact.values.sorted(by: >).prefix(k).last ?? -.infinity
                guard found.count == min(k, rows.count) else { fail("\(found.count) results, \(rows.count) servable rows"); return }
                for hit in found {
                    guard let score = exact[hit.id] else { fail("#\(hit.id) is not a servable row of the snapshot"); return }
                    if abs(score - hit.score) > 1e-4 || hit.score < kth - 1e-4 { fail("#\(hit.id) scored \(hit.score), snapshot \(score), k-th \(kth)") }
                    if hit.title != "T\(hit.id)" && !(hit.title ?? "").hasPrefix("N") { fail("#\(hit.id) titled \(hit.title ?? "nil")") }
                }
            }
        }

        let readers = (0..<3).map { r in
            Thread {
                var rounds = 0
                while !isStopped() {
                    do {
                        try db.read { tx in
                            try check(tx)
                            if r == 0 { Thread.sleep(forTimeInterval: 0.01); try check(tx) }  // held across writes
                        }
                    } catch { fail("reader \(r): \(error)") }
                    rounds += 1
                }
                if rounds < 3 { fail("reader \(r) ran \(rounds) rounds") }
                stop.signal()
            }
        }
        readers.forEach { $0.start() }
        var writerRNG = SeededGenerator(seed: 32)
        for step in 0..<150 {
            try db.write { tx in
                let id = UInt32.random(in: 1...80, using: &writerRNG)
                try tx.putVector(space: "s", entity: id, (0..<d).map { _ in Float.random(in: -1...1, using: &writerRNG) })
                if step % 3 == 0 {
                    let fresh = try tx.upsertItem(ItemInput(externalID: "n\(step)", title: "N\(step)"))
                    try tx.putVector(space: "s", entity: fresh, queries[step % queries.count])
                }
                if step % 5 == 0 { try tx.deleteItem(id: UInt32.random(in: 1...80, using: &writerRNG)) }
                if step % 7 == 0 { try tx.setAvailability(item: UInt32.random(in: 1...80, using: &writerRNG), Bool.random(using: &writerRNG)) }
            }
        }
        stopLock.lock(); stopped = true; stopLock.unlock()
        for _ in readers { stop.wait() }
        XCTAssertEqual(failures.prefix(5), [])
    }

    /// A `VectorView` cannot leave the closure it was lent to: each way out fails to compile, while
    /// reading the view inside does. (Swift 6.3.1 rejects capturing the view in an escaping closure by
    /// crashing instead of with a diagnostic; either way nothing is built.)
    func testAVectorViewCannotLeaveItsClosure() throws {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [exe.deletingLastPathComponent(), exe.deletingLastPathComponent().deletingLastPathComponent()]
        guard let build = candidates.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("Modules/RecDB.swiftmodule").path) }),
              FileManager.default.fileExists(atPath: build.appendingPathComponent("CFaiss.build/module.modulemap").path) else {
            throw XCTSkip("the built RecDB module was not found next to \(exe.path)")
        }
        func compiles(_ body: String) throws -> Bool {
            let file = path("snippet-\(UUID().uuidString).swift")
            try "import RecDB\nnonisolated(unsafe) var kept: (() -> Int)? = nil\nfunc f(_ db: Database) throws {\n\(body)\n}\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let (status, _, _) = try runProcess("/usr/bin/env", [
                "swiftc", "-c", "-o", "/dev/null", file, "-I", build.appendingPathComponent("Modules").path,
                "-I", packageRoot.appendingPathComponent("Sources/COpenBLAS").path,
                "-Xcc", "-fmodule-map-file=" + build.appendingPathComponent("CLMDB.build/module.modulemap").path,
                "-Xcc", "-fmodule-map-file=" + build.appendingPathComponent("CFaiss.build/module.modulemap").path,
                "-Xcc", "-fmodule-map-file=" + build.appendingPathComponent("CChecksum.build/module.modulemap").path,
                "-Xcc", "-fmodule-map-file=" + build.appendingPathComponent("CKernels.build/module.modulemap").path,
            ])
            return status == 0
        }
        XCTAssertTrue(try compiles("_ = try db.read { tx in try tx.withVector(space: \"s\", entity: 1) { $0.toArray() } }"),
                      "the snippet set-up compiles when nothing escapes")
        let escapes = [
            "let v: VectorView? = try db.read { tx in try tx.withVector(space: \"s\", entity: 1) { $0 } }",
            "_ = try db.read { tx in try tx.withVector(space: \"s\", entity: 1) { view in return view } }",
            "var v: VectorView? = nil\ntry db.read { tx in _ = try tx.withVector(space: \"s\", entity: 1) { view in v = view } }",
            "try db.read { tx in try tx.forEachVector(space: \"s\") { _, view in let copy = view; return true } }",
            "_ = try db.read { tx in try tx.withVector(space: \"s\", entity: 1) { $0.raw } }",
            "try db.read { tx in _ = try tx.withVector(space: \"s\", entity: 1) { view in kept = { view.count } } }",
        ]
        for snippet in escapes { XCTAssertFalse(try compiles(snippet), snippet) }
    }
}
