import Foundation
import XCTest
@testable import RecDB

/// Single-byte flips across a populated database file. For every flip, `rdbctl` (run as a child
/// process, so a crash cannot take the test down with it) either answers exactly as it does on the
/// undamaged file or fails with a clear error; none dies of a signal or hangs; the file is left
/// byte-for-byte as it was; and `verify` flags (almost) every flip that changed a stored value.
///
/// The suite samples `RECDB_CORRUPTION_OFFSETS` offsets (default 30, about 25 s); `make corruption` runs 400.
final class CorruptionTests: DatabaseTestCase {
    static let dumpEnvironment = "RECDB_CORRUPTION_DUMP"

    /// A child-process helper when `RECDB_CORRUPTION_DUMP=DB:OUT` is set: writes every table's raw
    /// entries (bypassing the checksums) to OUT, so a flip can be classified as changing a stored
    /// value or not, and exits. Otherwise it tests the dump itself: deterministic, and it sees a change.
    func testDumpHelper() throws {
        if let spec = ProcessInfo.processInfo.environment[Self.dumpEnvironment] {
            let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
            let dump = try Self.dump(path: parts[0])
            try dump.write(toFile: parts[1], atomically: true, encoding: .utf8)
            return
        }
        var db: Database? = try makeDatabase()
        try db!.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "a", title: "A")) }
        db = nil
        let first = try Self.dump(path: path("db"))
        XCTAssertEqual(try Self.dump(path: path("db")), first)
        XCTAssertTrue(first.contains("items 00000001 "), first)
        db = try Database(path: path("db"))
        try db!.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "a", title: "B")) }
        db = nil
        XCTAssertNotEqual(try Self.dump(path: path("db")), first)
    }

    static func dump(path: String) throws -> String {
        let db = try Database(path: path, options: .init(readOnly: true, create: false))
        return try db.read { tx in
            var lines: [String] = []
            for table in Table.allCases {
                lines.append("# \(table.rawValue) \(try tx.raw.count(table))")
                let cursor = try tx.raw.cursor(table)
                var step = LMDBCursor.Move.first
                while let line = try cursor.move(step, { k, v in "\(table.rawValue) \(hex(k)) \(hex(v))" }) {
                    lines.append(line)
                    step = .next
                }
            }
            return lines.joined(separator: "\n")
        }
    }

    static func hex(_ b: UnsafeRawBufferPointer) -> String { b.map { String(format: "%02x", $0) }.joined() }

    struct Outcome { var status: Int32; var signaled: Bool; var timedOut: Bool; var out: String; var err: String }

    /// Runs a child with a deadline; output goes through files (no pipe can fill up and block it).
    func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval = 60) throws -> Outcome {
        let outPath = path("child.out"), errPath = path("child.err")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath)), err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer { try? out.close(); try? err.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["OMP_WAIT_POLICY"] = "passive"
        for (k, v) in environment ?? [:] { env[k] = v }
        process.environment = env
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline { timedOut = true; kill(process.processIdentifier, SIGKILL) ; break }
            Thread.sleep(forTimeInterval: 0.005)
        }
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                       timedOut: timedOut, out: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                       err: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    func testSingleByteFlipsAreErrorsOrExactAnswersNeverCrashes() throws {
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"), "rdbctl is built with the tests")
        let offsets = Int(ProcessInfo.processInfo.environment["RECDB_CORRUPTION_OFFSETS"] ?? "") ?? 30
        let clean = path("clean")
        try populate(clean)
        let file = clean + "/data.mdb"
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        let cleanDump = try Self.dump(path: clean)
        if let keep = ProcessInfo.processInfo.environment["RECDB_CORRUPTION_KEEP"] {  // to reproduce a finding by hand
            try Data(original).write(to: URL(fileURLWithPath: keep))
        }

        let commands: [[String]] = [
            ["verify", "DB"],
            ["stats", "DB", "--json"],
            ["recommend", "DB", "u7", "-k", "5", "--json"],
            ["recommend", "DB", "u19", "-k", "5", "--include-seen", "--json"],
            ["similar", "DB", "i4", "--space", "emb", "-k", "5", "--json"],
            ["similar", "DB", "i9", "--model", "m", "-k", "5", "--json"],
            ["show", "user", "DB", "u3", "--json"],
        ]
        let work = path("work")
        func materialise(_ bytes: [UInt8]) throws {
            try? FileManager.default.removeItem(atPath: work)
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: work + "/data.mdb"))
        }
        func args(_ c: [String]) -> [String] { c.map { $0 == "DB" ? work : $0 } }

        // The answers of the undamaged file (each must succeed).
        try materialise(original)
        var reference: [String] = []
        for c in commands {
            let o = try run(rdbctl, args(c))
            XCTAssertEqual(o.status, 0, "\(c): \(o.err)")
            reference.append(o.out)
        }

        // Offsets: the meta pages' fields, then an even spread with deterministic jitter over every page.
        let pageSize = 4096
        var sample: [Int] = [16, 20, 136, 144, 88 + 16, pageSize + 136, pageSize + 144, pageSize + 120 + 16]
        var g = SplitMix(seed: 12)
        let stride = max(1, (original.count - 2 * pageSize) / max(1, offsets - sample.count))
        var o = 2 * pageSize
        while sample.count < offsets && o < original.count {
            sample.append(min(original.count - 1, o + Int(g.next() % UInt64(stride))))
            o += stride
        }

        var signals: [String] = [], hangs: [String] = [], wrong: [String] = [], unclear: [String] = [], modified: [String] = []
        var changedFlips = 0, flagged = 0, unflagged: [String] = []
        for (n, offset) in sample.enumerated() {
            var damaged = original
            damaged[offset] ^= n % 2 == 0 ? 0xFF : UInt8(1 << (n / 2 % 8))
            try materialise(damaged)
            // Did the flip change what is stored? (A dump that fails means LMDB itself sees damage.)
            let dumpOut = path("dump.txt")
            try? FileManager.default.removeItem(atPath: dumpOut)
            let d = try run(CommandLine.arguments[0], ["RecDBTests.CorruptionTests/testDumpHelper"],
                            // Under ASan the helper's exit status must mean "LMDB could read it", not "Foundation leaked".
                            environment: [Self.dumpEnvironment: "\(work):\(dumpOut)", "ASAN_OPTIONS": "detect_leaks=0"])
            let dumped = (d.status == 0 && !d.signaled) ? (try? String(contentsOfFile: dumpOut, encoding: .utf8)) : nil
            let changed = dumped != cleanDump
            try materialise(damaged)  // the dump opened it read-only; start from exactly the damaged bytes
            for (i, c) in commands.enumerated() {
                let r = try run(rdbctl, args(c))
                let what = "flip at \(offset) (\(offset / pageSize):\(offset % pageSize)), \(c.joined(separator: " "))"
                if r.signaled { signals.append("\(what): signal \(r.status) \(r.err.prefix(3000))"); continue }
                // Under `make test-asan` the children are sanitised too: a report is a memory error, not a clear error.
                if r.err.contains("Sanitizer") { signals.append("\(what): \(r.err.prefix(3000))"); continue }
                if r.timedOut { hangs.append(what); continue }
                if r.status == 0 {
                    if r.out != reference[i] { wrong.append("\(what): \(r.out.prefix(300)) instead of \(reference[i].prefix(300))") }
                } else {
                    let message = c[0] == "verify" ? r.out + r.err : r.err
                    if message.isEmpty || message.contains("Fatal error") { unclear.append("\(what): '\(message.prefix(300))'") }
                }
                if i == 0 && changed {
                    changedFlips += 1
                    if r.status != 0 { flagged += 1 } else { unflagged.append(what) }
                }
            }
            let after = try [UInt8](Data(contentsOf: URL(fileURLWithPath: work + "/data.mdb")))
            if after != damaged { modified.append("flip at \(offset): a command changed the file") }
        }
        let rate = changedFlips == 0 ? 1 : Double(flagged) / Double(changedFlips)
        print("corruption: \(sample.count) flips, \(changedFlips) changed a stored value, verify flagged \(flagged) (\(String(format: "%.1f", rate * 100)) %); signals \(signals.count), hangs \(hangs.count), wrong answers \(wrong.count), unclear errors \(unclear.count), files modified \(modified.count)")
        XCTAssertEqual(signals, [])
        XCTAssertEqual(hangs, [])
        XCTAssertEqual(wrong, [])
        XCTAssertEqual(unclear, [])
        XCTAssertEqual(modified, [])
        // Format 3 packs events into per-user blocks, so about half the file is stored values (the rest is
        // LMDB's page headers, offsets and free space); far fewer would mean the sample missed the data.
        XCTAssertGreaterThan(changedFlips, sample.count * 2 / 5, "most flips land in stored values")
        XCTAssertGreaterThanOrEqual(rate, 0.95, "verify missed: \(unflagged)")
    }

    /// Items with titles and attributes, users with events of two types, profiles, an item space
    /// with its index, and a small trained model with its own item space and index.
    func populate(_ directory: String) throws {
        let db = try Database(path: directory)
        try db.write { tx in
            for i in 1...60 {
                try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item number \(i)", attributesJSON: "{\"c\": \"\(i % 4)\"}"))
            }
            for u in 1...40 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                for s in 0..<12 {
                    try tx.appendEvent(user: user, item: UInt32(1 + (u * 7 + s * (1 + u % 3)) % 60), timestamp: Int64(1_700_000_000 + s * 60),
                                       type: s % 3 == 0 ? "purchase" : nil, value: s % 5 == 0 ? Float(s) : nil)
                }
                if u % 3 == 0 { try tx.putProfile(user: user, text: "A user who likes category \(u % 4)") }
            }
            try tx.createSpace(EmbeddingSpace(name: "emb", kind: .item, dimension: 16, metric: .cosine))
            for i in 1...60 { try tx.putVector(space: "emb", entity: UInt32(i), (0..<16).map { Float(sin(Double(i * 16 + $0) * 0.7)) }) }
        }
        try db.buildIndex(space: "emb")
        var configuration = ModelConfiguration(architecture: .sasrec, items: .id)
        configuration.hiddenSize = 16
        configuration.maxEpochs = 2
        configuration.maxLength = 10
        _ = try db.train(TrainingRequest(model: "m", configuration: configuration))
        // A compact copy: a file like a backup, with every page in use.
        try db.backup(to: directory + ".compact")
        try FileManager.default.removeItem(atPath: directory)
        try FileManager.default.moveItem(atPath: directory + ".compact", toPath: directory)
    }
}
