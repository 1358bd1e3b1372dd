import Foundation
import XCTest
@testable import RecDB

/// Transactions that cannot run where they are begun end in a clear error at once, never a hang:
/// LMDB has one writer per database, so a thread that holds a transaction and begins a write would
/// wait for itself forever.
final class TransactionNestingTests: DatabaseTestCase {
    /// Runs `body` on another thread and fails (instead of hanging the suite) when it takes a second.
    func withinASecond(_ what: String, _ body: @escaping @Sendable () -> Void) {
        let done = expectation(description: what)
        Thread { body(); done.fulfill() }.start()
        wait(for: [done], timeout: 1)
    }

    func assertNested(_ error: Error?, mentions text: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case let RecDBError.nestedTransaction(message)? = error as? RecDBError else {
            return XCTFail("expected RecDBError.nestedTransaction, got \(String(describing: error))", file: file, line: line)
        }
        XCTAssertTrue(message.contains(text), message, file: file, line: line)
        XCTAssertTrue(message.contains("same thread"), message, file: file, line: line)
    }

    func seededDatabase() throws -> Database {
        let db = try makeDatabase()
        try db.write { tx in
            let items = try (0..<8).map { try tx.upsertItem(ItemInput(externalID: "i\($0)")) }
            for u in 0..<12 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                for step in 0..<6 { try tx.appendEvent(user: user, item: items[(u + step) % 8], timestamp: Int64(step)) }
            }
        }
        return db
    }

    func testAWriteInsideAWriteIsAnErrorAtOnce() throws {
        let db = try seededDatabase()
        let result = Box<Error?>(nil)
        withinASecond("nested write") {
            do { try db.write { _ in try db.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "inner")) } } } catch { result.value = error }
        }
        assertNested(result.value, mentions: "inside a write transaction")
        XCTAssertNil(try db.read { try $0.itemID(for: "inner") }, "the outer write was rolled back by the error")
        // The database is fully usable afterwards, on this thread and others.
        try db.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "after")) }
        XCTAssertNotNil(try db.read { try $0.itemID(for: "after") })
    }

    func testTrainingInsideAWriteIsAnErrorAtOnce() throws {
        let db = try seededDatabase()
        var configuration = ModelConfiguration(architecture: .sasrec, items: .id)
        configuration.hiddenSize = 8
        configuration.maxEpochs = 50
        let result = Box<Error?>(nil)
        withinASecond("train inside write") { [configuration] in
            do { try db.write { _ in _ = try db.train(TrainingRequest(model: "m", configuration: configuration)) } } catch { result.value = error }
        }
        assertNested(result.value, mentions: "train cannot run inside a write transaction")
        XCTAssertTrue(try db.models().isEmpty)
    }

    func testAWriteOrAnImportInsideAReadIsAnErrorAtOnce() throws {
        let db = try seededDatabase()
        let file = try writeFile("e.csv", "user,item,timestamp\nu1,i1,9\n")
        let results = Box<[Error?]>([])
        withinASecond("write inside read") {
            var errors: [Error?] = []
            do { try db.read { _ in try db.write { _ in } }; errors.append(nil) } catch { errors.append(error) }
            do { try db.read { _ in _ = try db.importInteractions(from: file) }; errors.append(nil) } catch { errors.append(error) }
            do { try db.read { _ in _ = try db.buildIndex(space: "nothing") }; errors.append(nil) } catch { errors.append(error) }
            results.value = errors
        }
        XCTAssertEqual(results.value.count, 3)
        assertNested(results.value[0], mentions: "a write cannot run inside a read transaction")
        assertNested(results.value[1], mentions: "an import cannot run inside a read transaction")
        assertNested(results.value[2], mentions: "building an index cannot run inside a read transaction")
        XCTAssertEqual(try db.stats().interactions, 72)
    }

    func testReadsNestInsideReadsAndWritesAndSeeTheCommittedSnapshot() throws {
        let db = try seededDatabase()
        let seen = try db.write { tx -> (Bool, Bool) in
            _ = try tx.upsertItem(ItemInput(externalID: "uncommitted"))
            let inner = try db.read { try $0.itemID(for: "uncommitted") != nil }
            let nested = try db.read { _ in try db.read { try $0.itemID(for: "i1") != nil } }
            return (inner, nested)
        }
        XCTAssertFalse(seen.0, "a read begun inside a write sees the last committed state, not the write")
        XCTAssertTrue(seen.1)
        XCTAssertNotNil(try db.read { try $0.itemID(for: "uncommitted") })
    }

    func testWritesFromManyThreadsAreSerialisedAndNoneIsLost() throws {
        let db = try seededDatabase()
        let threads = 6, writesPerThread = 40
        let group = DispatchGroup()
        let failures = Box<[String]>([])
        let lock = NSLock()
        for t in 0..<threads {
            group.enter()
            Thread {
                defer { group.leave() }
                for w in 0..<writesPerThread {
                    do {
                        _ = try db.write { tx in try tx.appendEvent(user: 1, item: 1, timestamp: Int64(1_000 + t * writesPerThread + w)) }
                        // Readers on the same threads interleave with the writers.
                        _ = try db.read { try $0.eventCount() }
                    } catch {
                        lock.withLock { failures.value.append("\(error)") }
                    }
                }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success, "writers from several threads hung")
        XCTAssertEqual(failures.value, [])
        XCTAssertEqual(try db.stats().interactions, 72 + threads * writesPerThread)
    }

    func testSteadyReadersDoNotStarveMapGrowth() throws {
        // A small map and headroom: every few writes must grow the map, which waits for the readers'
        // transactions to end. Writer preference lets it through however busy the readers are.
        let db = try Database(path: path("db"), options: .init(initialMapSize: 1 << 20, writeHeadroom: 1 << 20))
        try db.write { tx in for i in 0..<4 { _ = try tx.upsertItem(ItemInput(externalID: "i\(i)")) } }
        let stop = Box(false)
        let readers = DispatchGroup()
        let readErrors = Box<[String]>([])
        let lock = NSLock()
        for _ in 0..<4 {
            readers.enter()
            Thread {
                defer { readers.leave() }
                while !lock.withLock({ stop.value }) {
                    do { _ = try db.read { tx -> Int in Thread.sleep(forTimeInterval: 0.001); return try tx.itemCount() } } catch {
                        lock.withLock { readErrors.value.append("\(error)") }
                    }
                }
            }.start()
        }
        let before = db.environment.mapSize
        let writer = expectation(description: "writes that grow the map finish while readers never pause")
        Thread {
            for round in 0..<20 {
                _ = try? db.write { tx in
                    try tx.createSpace(EmbeddingSpace(name: "s\(round)", kind: .item, dimension: 512))
                    for i in 1...4 { try tx.putVector(space: "s\(round)", entity: UInt32(i), [Float](repeating: 1, count: 512)) }
                    for i in 0..<400 { _ = try tx.upsertItem(ItemInput(externalID: "r\(round)-\(i)", title: String(repeating: "x", count: 200))) }
                }
            }
            writer.fulfill()
        }.start()
        wait(for: [writer], timeout: 30)
        lock.withLock { stop.value = true }
        XCTAssertEqual(readers.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(readErrors.value, [])
        XCTAssertGreaterThan(db.environment.mapSize, before, "the test must make the map grow")
        XCTAssertEqual(try db.stats().items, 4 + 20 * 400)
    }
}

/// A mutable value shared with a test thread (the tests synchronise through expectations and locks).
final class Box<T>: @unchecked Sendable {  // why: test-only; every access is ordered by a wait or a lock
    var value: T
    init(_ value: T) { self.value = value }
}
