import Foundation
import XCTest
@testable import RecDB

/// Writers and readers in real processes, started at random offsets, on a database whose map starts
/// small so the writers grow it under each other: no process may die by a signal, every committed row
/// must be there (exact counts), every reader must see only committed states, and `verify` stays clean.
///
/// The suite runs a few rounds; `make stress` runs the same test long (`RECDB_STRESS_ROUNDS`, default 100 there).
final class StressTests: DatabaseTestCase {
    struct Outcome: Sendable {
        var label: String
        var status: Int32
        var signalled: Bool
        var stdout: String
        var stderr: String
    }

    /// Runs `rdbctl` with a small first map (so imports must grow it while others hold it open).
    static func run(_ rdbctl: String, _ label: String, _ arguments: [String]) -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rdbctl)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["RDBCTL_INITIAL_MAP_SIZE"] = String(1 << 20)
        environment["OMP_WAIT_POLICY"] = "passive"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { return Outcome(label: label, status: -1, signalled: false, stdout: "", stderr: "\(error)") }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(label: label, status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal,
                       stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    func writeInteractions(_ name: String, rows: Int, users: Int, items: Int, round: Int, first: Int) throws -> String {
        var text = "user,item,timestamp\n"
        text.reserveCapacity(rows * 24)
        for r in 0..<rows {
            // Unique per round and file, so the import ledger never refuses one.
            text += "u\((r * 31 + round) % users),i\((r * 7 + first) % items),\(first + r)\n"
        }
        return try writeFile(name, text)
    }

    func testWritersAndReadersInManyProcesses() throws {
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"), "rdbctl is built with the tests (`make test` builds every product)")
        let rounds = Int(ProcessInfo.processInfo.environment["RECDB_STRESS_ROUNDS"] ?? "") ?? 4
        var generator = SystemRandomNumberGenerator()
        let importA = 40_000, importB = 25_000, addEvents = 12
        var totalProcesses = 0
        for round in 0..<rounds {
            let db = path("stress-\(round)")
            XCTAssertEqual(Self.run(rdbctl, "init", ["init", db]).status, 0)
            // Seed: 200 users, 50 items, a history each, so training and add-event have something to work on.
            let seed = try writeInteractions("seed-\(round).csv", rows: 2_000, users: 200, items: 50, round: round, first: 0)
            let seeded = Self.run(rdbctl, "seed", ["import", "interactions", db, seed, "--json"])
            XCTAssertEqual(seeded.status, 0, seeded.stderr)
            let a = try writeInteractions("a-\(round).csv", rows: importA, users: 3_000, items: 50, round: round, first: 10_000_000)
            let b = try writeInteractions("b-\(round).csv", rows: importB, users: 2_000, items: 50, round: round, first: 20_000_000)

            let seedEvents = 2_000
            // Every state a reader may see: the seed plus any subset of the writers' commits.
            func isCommittedState(_ n: Int) -> Bool {
                let extra = n - seedEvents
                for x in [0, importA] { for y in [0, importB] where (0...addEvents).contains(extra - x - y) { return true } }
                return false
            }

            let lock = NSLock()
            let collected = Box<[Outcome]>([])
            var observed: [Int] = []
            let group = DispatchGroup()
            func launch(_ label: String, _ body: @escaping @Sendable () -> [Outcome]) {
                let delay = Double.random(in: 0..<0.3, using: &generator)
                group.enter()
                DispatchQueue.global().asyncAfter(deadline: .now() + delay) {
                    let results = body()
                    lock.withLock { collected.value += results }
                    group.leave()
                }
            }
            launch("import A") { [Self.run(rdbctl, "import A", ["import", "interactions", db, a, "--json"])] }
            launch("import B") { [Self.run(rdbctl, "import B", ["import", "interactions", db, b, "--json"])] }
            launch("add-event loop") {
                (0..<addEvents).map { k in Self.run(rdbctl, "add-event", ["add-event", db, "u\(k % 200)", "i\(k % 50)", "--timestamp", "\(30_000_000 + k)"]) }
            }
            launch("train") {
                [Self.run(rdbctl, "train", ["train", db, "--model", "m", "--epochs", "2", "--hidden", "8", "--blocks", "1", "--maxlen", "8", "--json"])]
            }
            for r in 0..<8 {
                launch("reader \(r)") {
                    var results: [Outcome] = []
                    for q in 0..<4 {
                        let command = q % 2 == 0 ? ["stats", db, "--json"] : ["show", "user", db, "u\(r)", "--json"]
                        results.append(Self.run(rdbctl, "reader \(r)", command))
                    }
                    return results
                }
            }
            XCTAssertEqual(group.wait(timeout: .now() + 300), .success, "round \(round): a process hung")
            let outcomes = lock.withLock { collected.value }
            totalProcesses += outcomes.count

            for outcome in outcomes {
                XCTAssertFalse(outcome.signalled, "round \(round): \(outcome.label) died by a signal: \(outcome.stderr)")
                // add-event may legitimately run before any import committed its item; nothing else may fail.
                if outcome.label == "add-event" && outcome.status != 0 {
                    XCTAssertTrue(outcome.stderr.contains("unknown"), "round \(round): add-event: \(outcome.stderr)")
                    continue
                }
                XCTAssertEqual(outcome.status, 0, "round \(round): \(outcome.label): \(outcome.stderr)")
                if outcome.label.hasPrefix("reader"), outcome.stdout.contains("\"interactions\"") {
                    let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any])
                    let n = try XCTUnwrap(object["interactions"] as? Int)
                    observed.append(n)
                    XCTAssertTrue(isCommittedState(n), "round \(round): a reader saw \(n) events, which no sequence of commits produces")
                }
            }
            let addedEvents = outcomes.filter { $0.label == "add-event" && $0.status == 0 }.count
            let final = Self.run(rdbctl, "stats", ["stats", db, "--json"])
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(final.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(object["interactions"] as? Int, seedEvents + importA + importB + addedEvents,
                           "round \(round): committed rows are missing")
            XCTAssertEqual(object["models"] as? Int, 1, "round \(round): the trained model is missing")
            let verify = Self.run(rdbctl, "verify", ["verify", db])
            XCTAssertEqual(verify.status, 0, "round \(round): verify: \(verify.stdout) \(verify.stderr)")
            XCTAssertFalse(observed.isEmpty)
            try? FileManager.default.removeItem(atPath: db)
        }
        print("stress: \(rounds) rounds, \(totalProcesses) processes")
    }
}
