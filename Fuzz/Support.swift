// Shared by every fuzz target (compiled into each; see Fuzz/build.sh). A target defines
// `fuzzOne(_ bytes: [UInt8])`; this file provides the libFuzzer entry point and a scratch directory
// per process (parsers read files, so each input is written to one first).
import Foundation
@testable import RecDB
import Learn

/// One scratch directory per fuzzing process, removed at exit.
enum Scratch {
    static let directory: String = {
        let d = NSTemporaryDirectory() + "recdb-fuzz-\(getpid())"
        try? FileManager.default.removeItem(atPath: d)
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.directory) }
        return d
    }()

    /// Writes `bytes` to `name` in the scratch directory and returns its path.
    static func write(_ bytes: [UInt8], as name: String) -> String {
        let path = directory + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// A database opened once per process; fuzzed imports run inside a write transaction that is always
    /// rolled back, so every input meets the same store.
    static let database: Database = {
        let db = try! Database(path: directory + "/db", options: .init(initialMapSize: 64 << 20))
        try! db.write { tx in
            for i in 0..<8 { try tx.upsertItem(ItemInput(externalID: String(i), title: "item \(i)")) }
            for i in 0..<4 { _ = try tx.upsertUser(externalID: "u\(i)") }
        }
        return db
    }()
}

struct Rollback: Error {}

/// Runs `body` in a write transaction and rolls it back whatever happens; parse errors are expected.
func rolledBack(_ body: (WriteTransaction) throws -> Void) {
    do { try Scratch.database.write { tx in try body(tx); throw Rollback() } } catch {}
}

/// Small line cap, so the limit itself is exercised.
let fuzzLineLimit = 4096

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    fuzzOne(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
