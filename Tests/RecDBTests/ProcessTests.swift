import Foundation
import XCTest
@testable import RecDB

/// Behaviour across real processes: LMDB's readers-and-one-writer model, crash safety, map growth.
final class ProcessTests: DatabaseTestCase {
    var rdbctl: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        rdbctl = try XCTUnwrap(builtProduct("rdbctl"), "rdbctl is built with the tests (`make test` builds every product)")
    }

    /// A CSV of `rows` interactions over 10,000 users and 5,000 items.
    func writeBigCSV(_ name: String, rows: Int) throws -> String {
        let p = path(name)
        _ = FileManager.default.createFile(atPath: p, contents: nil)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: p))
        var chunk = "user,item,timestamp\n"
        for r in 0..<rows {
            chunk += "user\(r % 10_000),item\((r * 7919) % 5_000),\(1_600_000_000 + r)\n"
            if chunk.utf8.count > 1 << 20 { handle.write(Data(chunk.utf8)); chunk = "" }
        }
        handle.write(Data(chunk.utf8))
        try handle.close()
        return p
    }

    func testKill9DuringALargeImportLeavesAllOrNothing() throws {
        let dbPath = path("db")
        _ = try makeDatabase()
        let small = try writeFile("small.csv", "user,item,timestamp\na,b,1\n")
        XCTAssertEqual(try runProcess(rdbctl, ["import", "interactions", dbPath, small, "--json"]).0, 0)
        let big = try writeBigCSV("big.csv", rows: 1_500_000)
        try killImportHalfWay(into: dbPath, file: big)

        let db = try Database(path: dbPath, options: .init(create: false))
        let report = try db.verify()
        XCTAssertTrue(report.isClean, "\(report.problems)")
        let count = try db.stats().interactions
        XCTAssertTrue(count == 1 || count == 1_500_001, "partial import visible: \(count) events")
        XCTAssertEqual(count, 1, "killed mid-way: none of the import may be visible")
        // The database is fully usable afterwards: the same import now succeeds.
        let (status, out, err) = try runProcess(rdbctl, ["import", "interactions", dbPath, big, "--json"])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(out.contains("\"events\":1500000"), out)
    }

    /// Imports `file` into `dbPath` in an rdbctl process and kills it (SIGKILL) half-way through, whatever
    /// this machine's speed: a whole import of the same file into a scratch database is timed first (a
    /// fixed delay outlived the whole import on a quiet machine).
    func killImportHalfWay(into dbPath: String, file: String, environment: [String: String] = [:]) throws {
        _ = try makeDatabase("scratch")
        let started = Date()
        let whole = try launch(["import", "interactions", path("scratch"), file, "--json"], environment: environment)
        whole.waitUntilExit()
        XCTAssertEqual(whole.terminationStatus, 0)
        let wholeImport = Date().timeIntervalSince(started)

        let process = try launch(["import", "interactions", dbPath, file, "--json"], environment: environment)
        Thread.sleep(forTimeInterval: wholeImport / 2)
        XCTAssertTrue(process.isRunning, "the import finished before it could be killed (a whole one took \(wholeImport) s)")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
    }

    /// Starts rdbctl with `environment` added to this process's, output discarded.
    func launch(_ arguments: [String], environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rdbctl)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// The write-mapped import (`RDBCTL_WRITE_MAP=1`, what files from 64 MiB get) killed half-way: nothing
    /// visible, `verify` clean, no file left; the next write-mapped import lands and cuts data.mdb back.
    func testKill9DuringAWriteMappedImportLeavesAllOrNothing() throws {
        let dbPath = path("db")
        _ = try makeDatabase()
        let small = try writeFile("small.csv", "user,item,timestamp\na,b,1\n")
        XCTAssertEqual(try runProcess(rdbctl, ["import", "interactions", dbPath, small, "--json"]).0, 0)
        let big = try writeBigCSV("big.csv", rows: 1_000_000)
        try killImportHalfWay(into: dbPath, file: big, environment: ["RDBCTL_WRITE_MAP": "1"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dbPath).sorted(), ["data.mdb", "lock.mdb"])
        do {
            let db = try Database(path: dbPath, options: .init(create: false))
            let report = try db.verify()
            XCTAssertTrue(report.isClean, "\(report.problems)")
            XCTAssertEqual(try db.stats().interactions, 1, "killed mid-way: none of the import may be visible")
        }
        let again = try launch(["import", "interactions", dbPath, big, "--json"], environment: ["RDBCTL_WRITE_MAP": "1"])
        again.waitUntilExit()
        XCTAssertEqual(again.terminationStatus, 0)
        let db = try Database(path: dbPath, options: .init(create: false))
        XCTAssertEqual(try db.stats().interactions, 1_000_001)
        let size = try FileManager.default.attributesOfItem(atPath: dbPath + "/data.mdb")[.size] as! Int
        XCTAssertEqual(size, db.environment.usedBytes, "the map writer cuts the file back to its used pages when it closes")
    }

    /// While one process writes through the map, another asking for it opens normally, and every other
    /// process's writes wait for the map writer to close (LMDB may resize the file under them otherwise).
    func testWritersInOtherProcessesWaitForTheMapWriter() throws {
        let dbPath = path("db")
        let file = try writeFile("e.csv", "user,item,timestamp\na,b,1\nc,d,2\n")
        let other: Process
        do {  // the map writer closes at the end of this scope
            var options = Database.Options(initialMapSize: 16 << 20, writeHeadroom: 1 << 20)
            options.writeMap = true
            let mapWriter = try Database(path: dbPath, options: options)
            XCTAssertTrue(mapWriter.environment.writesThroughMap)
            other = try launch(["import", "interactions", dbPath, file, "--json"], environment: ["RDBCTL_WRITE_MAP": "1"])
            Thread.sleep(forTimeInterval: 1)
            XCTAssertTrue(other.isRunning, "a write from another process ran while the map writer was open")
            XCTAssertEqual(try mapWriter.stats().interactions, 0)
        }
        let deadline = Date().addingTimeInterval(20)
        while other.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if other.isRunning { other.terminate() }
        other.waitUntilExit()
        XCTAssertEqual(other.terminationStatus, 0)
        let db = try Database(path: dbPath, options: .init(create: false))
        XCTAssertEqual(try db.stats().interactions, 2, "the waiting write landed once the map writer closed")
    }

    func testReadersInOtherProcessesAlwaysSeeWholeTransactions() throws {
        let db = try makeDatabase()
        try db.write { tx in
            for u in 0..<10 { try tx.upsertUser(externalID: "u\(u)") }
            for i in 0..<10 { try tx.upsertItem(ItemInput(externalID: "i\(i)")) }
        }
        let batch = 250, rounds = 80
        let writer = Thread {
            for round in 0..<rounds {
                try! db.write { tx in
                    for e in 0..<batch {
                        try tx.appendEvent(user: UInt32(1 + e % 10), item: UInt32(1 + round % 10), timestamp: Int64(round * batch + e))
                    }
                }
                // Paced, so that readers (a process each) observe states strictly between the first and the last.
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
        writer.start()
        var observed: [Int] = []
        while !writer.isFinished || observed.count < 12 {
            let (status, out, err) = try runProcess(rdbctl, ["stats", path("db"), "--json"])
            XCTAssertEqual(status, 0, err)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            observed.append(try XCTUnwrap(object["interactions"] as? Int))
            if observed.count > 400 { break }
        }
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        let (_, last, _) = try runProcess(rdbctl, ["stats", path("db"), "--json"])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        observed.append(try XCTUnwrap(object["interactions"] as? Int))
        // Only whole transactions, never going back, and at least one state strictly in between.
        for n in observed { XCTAssertEqual(n % batch, 0, "a reader saw a partial transaction: \(n) events") }
        XCTAssertEqual(observed, observed.sorted(), "a later reader saw an older state: \(observed)")
        XCTAssertTrue(observed.contains { $0 > 0 && $0 < rounds * batch },
                      "no intermediate committed state was observed (\(observed)): the test did not overlap the writer")
        XCTAssertEqual(observed.last, rounds * batch)
        XCTAssertEqual(try db.stats().interactions, rounds * batch)
    }

    /// Issue #11's reproduction: a writer that waits for the writer lock while another process grows the
    /// map used to crash ("double free") and lose its write. Both processes start with a small map.
    func testAWriterWaitingWhileAnotherProcessGrowsTheMapKeepsItsWrite() throws {
        let dbPath = path("db")
        XCTAssertEqual(StressTests.run(rdbctl, "init", ["init", dbPath]).status, 0)
        XCTAssertEqual(StressTests.run(rdbctl, "seed", ["put-item", dbPath, "item0"]).status, 0)
        let big = try writeBigCSV("big.csv", rows: 400_000)
        for trial in 0..<2 {
            let importer = Box<StressTests.Outcome?>(nil)
            let done = DispatchSemaphore(value: 0)
            let file = trial == 0 ? big : try writeBigCSV("big\(trial).csv", rows: 400_000 + trial)
            let rdbctl: String = self.rdbctl
            Thread { importer.value = StressTests.run(rdbctl, "import", ["import", "interactions", dbPath, file, "--json"]); done.signal() }.start()
            Thread.sleep(forTimeInterval: 0.1)
            let add = StressTests.run(rdbctl, "add-event", ["add-event", dbPath, "u-\(trial)", "item0", "--timestamp", "5"])
            done.wait()
            XCTAssertFalse(add.signalled, add.stderr)
            XCTAssertEqual(add.status, 0, add.stderr)
            XCTAssertEqual(importer.value?.status, 0, importer.value?.stderr ?? "")
        }
        let db = try Database(path: dbPath, options: .init(create: false))
        XCTAssertEqual(try db.stats().interactions, 400_000 + 400_001 + 2)
        XCTAssertTrue(try db.verify().isClean)
    }

    func testTwoImportsIntoAFreshDatabaseBothLand() throws {
        let a = try writeBigCSV("a.csv", rows: 150_000)
        let b = try writeBigCSV("b.csv", rows: 150_001)
        for trial in 0..<2 {
            let dbPath = path("db\(trial)")
            XCTAssertEqual(StressTests.run(rdbctl, "init", ["init", dbPath]).status, 0)
            let results = Box<[StressTests.Outcome]>([])
            let lock = NSLock()
            let group = DispatchGroup()
            let rdbctl: String = self.rdbctl
            for file in [a, b] {
                group.enter()
                Thread {
                    let outcome = StressTests.run(rdbctl, "import", ["import", "interactions", dbPath, file, "--json"])
                    lock.withLock { results.value.append(outcome) }
                    group.leave()
                }.start()
            }
            group.wait()
            for outcome in results.value {
                XCTAssertFalse(outcome.signalled, outcome.stderr)
                XCTAssertEqual(outcome.status, 0, outcome.stderr)
            }
            let db = try Database(path: dbPath, options: .init(create: false))
            XCTAssertEqual(try db.stats().interactions, 300_001)
            XCTAssertTrue(try db.verify().isClean)
        }
    }

    func testReaderSlotsOfKilledProcessesAreCleared() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeBigCSV("e.csv", rows: 400_000))
        // Exports hold one read transaction while they write; kill them in the middle.
        var killed: [Int32] = []
        for k in 0..<6 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: rdbctl)
            process.arguments = ["export", "interactions", path("db"), path("out\(k).csv")]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            Thread.sleep(forTimeInterval: 0.25)
            if process.isRunning { killed.append(process.processIdentifier) }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        XCTAssertFalse(killed.isEmpty, "every export finished before it could be killed: make the data bigger")
        func deadSlots() -> [Int32] { db.environment.readerSlotProcessIDs().filter { kill($0, 0) != 0 && errno == ESRCH } }
        XCTAssertFalse(deadSlots().isEmpty, "no export was killed inside its read transaction")
        // Any process that opens the database clears the slots of the dead.
        let (status, _, err) = try runProcess(rdbctl, ["stats", path("db"), "--json"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(deadSlots(), [])
        XCTAssertEqual(db.environment.clearStaleReaders(), 0)
    }

    func testAMapGrownByAnotherProcessIsAdopted() throws {
        // This process keeps a 1 MiB map open while another process imports far more than that.
        let db = try makeDatabase(initialMapSize: 1 << 20)
        let big = try writeBigCSV("big.csv", rows: 100_000)
        let (status, _, err) = try runProcess(rdbctl, ["import", "interactions", path("db"), big, "--json"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(try db.stats().interactions, 100_000)
        XCTAssertGreaterThan(db.environment.mapSize, 1 << 20)
        _ = try db.write { tx in try tx.appendEvent(user: 1, item: 1, timestamp: 0) }
        XCTAssertEqual(try db.stats().interactions, 100_001)
    }

    func testHelpListsEveryCommandAndTheContractOptions() throws {
        let (status, out, _) = try runProcess(rdbctl, ["--help"])
        XCTAssertEqual(status, 0)
        for command in ["init", "import", "stats", "show", "export", "backup", "verify", "put-item", "add-event", "embed",
                        "index", "similar", "train", "models", "eval", "recommend"] {
            XCTAssertTrue(out.contains("  \(command)"), "rdbctl --help does not list \(command)")
        }
        let (_, train, _) = try runProcess(rdbctl, ["train", "--help"])
        for option in ["--model", "--arch", "--items", "--epochs", "--patience", "--hidden", "--blocks", "--heads", "--maxlen",
                       "--batch", "--lr", "--seed", "--split", "--json", "--resume", "--distill", "--alpha", "--distill-epochs",
                       "--distill-loss", "--pooling", "--reconstruction-layer", "--profile-weight", "--profile-targets", "--reduce"] {
            XCTAssertTrue(train.contains(option), "rdbctl train --help lacks \(option)")
        }
        let (_, recommend, _) = try runProcess(rdbctl, ["recommend", "--help"])
        XCTAssertTrue(recommend.contains("--exclude-seen/--include-seen"))
        let (bad, _, err) = try runProcess(rdbctl, ["train", path("db"), "--model", "m", "--items", "words"])
        XCTAssertNotEqual(bad, 0)
        XCTAssertTrue(err.contains("--items takes id, text:SPACE or text+id:SPACE"), err)
    }

    func testCommandLineErrorsAreOneReadableLine() throws {
        _ = try makeDatabase()
        let bad = try writeFile("bad.csv", "user,item,timestamp\na,b,1\na,b\n")
        let (status, _, err) = try runProcess(rdbctl, ["import", "interactions", path("db"), bad])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(err, "error: \(bad):3: expected 3 fields, found 2\n")
        let (status2, _, err2) = try runProcess(rdbctl, ["stats", path("nothing")])
        XCTAssertEqual(status2, 1)
        XCTAssertTrue(err2.hasPrefix("error: \(path("nothing")) is not a RecDB database"), err2)
    }
}
