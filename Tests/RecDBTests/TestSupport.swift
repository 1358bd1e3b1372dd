import Foundation
import TestSupport
import XCTest
@testable import RecDB

/// Base class: each test gets a fresh temporary directory, removed afterwards.
class DatabaseTestCase: XCTestCase {
    var directory: URL!

    /// Opt into the process-wide OpenBLAS set-up RecDB never does itself (see `Database.configureProcess()`).
    override class func setUp() { super.setUp(); Database.configureProcess() }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("recdb-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func makeDatabase(_ name: String = "db", initialMapSize: Int = 64 << 20) throws -> Database {
        try Database(path: path(name), options: .init(initialMapSize: initialMapSize))
    }

    /// A database of `items` items (`i1`… titled `Item 1`…) and `users` users (`u0`…): user u has `length(u)`
    /// events at times 0, 1, …, the t-th on item `item(u, t)` (1…items).
    func makeSequenceDatabase(items: Int, users: Int, length: (Int) -> Int, item: (Int, Int) -> Int) throws -> Database {
        let db = try makeDatabase()
        try db.write { tx in
            for i in 1...items { try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)")) }
            for u in 0..<users {
                let user = try tx.upsertUser(externalID: "u\(u)")
                for t in 0..<length(u) { try tx.appendEvent(user: user, item: UInt32(item(u, t)), timestamp: Int64(t)) }
            }
        }
        return db
    }

    @discardableResult
    func writeFile(_ name: String, _ text: String) throws -> String {
        let p = path(name)
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    @discardableResult
    func writeFile(_ name: String, bytes: [UInt8]) throws -> String {
        let p = path(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    /// Asserts that `body` throws an import error whose file, line and problem match.
    func assertImportError(file: String, line: Int?, contains text: String, _ body: () throws -> Void,
                           sourceFile: StaticString = #filePath, sourceLine: UInt = #line) {
        do {
            try body()
            XCTFail("expected an import error", file: sourceFile, line: sourceLine)
        } catch let RecDBError.importFailed(error) {
            XCTAssertEqual(error.file, file, file: sourceFile, line: sourceLine)
            XCTAssertEqual(error.line, line, "\(error)", file: sourceFile, line: sourceLine)
            XCTAssertTrue(error.problem.contains(text), "'\(error.problem)' does not mention '\(text)'", file: sourceFile, line: sourceLine)
        } catch {
            XCTFail("unexpected error \(error)", file: sourceFile, line: sourceLine)
        }
    }

    /// The whole observable content, to prove a failed operation changed nothing.
    func fingerprint(_ db: Database) throws -> String {
        let stats = try db.stats()
        let events = try db.read { tx -> [Event] in
            var all: [Event] = []
            try tx.forEachEvent { all.append($0); return true }
            return all
        }
        let items = try db.read { tx -> [Item] in
            var all: [Item] = []
            try tx.forEachItem { all.append($0); return true }
            return all
        }
        return "\(stats.users)/\(stats.items)/\(stats.interactions)/\(stats.spaces)/\(stats.profiles)/\(events.map(\.sequence))/\(items.map { "\($0.externalID):\($0.title ?? "")" })"
    }
}

/// Writes a 2-D .npy file (format 1.0, C order).
func npyBytes(rows: Int, columns: Int, dtype: VectorDType, _ value: (Int, Int) -> Float) -> [UInt8] {
    let descr = dtype == .f32 ? "<f4" : "<f2"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    bytes += [UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
    bytes += Array(header.utf8)
    for r in 0..<rows {
        for c in 0..<columns {
            let v = value(r, c)
            switch dtype {
            case .f32: withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
            case .f16: withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { bytes += $0 }
            }
        }
    }
    return bytes
}

/// Locates a product built next to the test bundle (e.g. `rdbctl`).
func builtProduct(_ name: String) -> String? { BuiltProducts.locate(name) }

/// The package root (for ../shared and schemas/).
let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func sharedPath(_ relative: String) -> String {
    packageRoot.deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(relative).path
}

/// Runs a process to completion, returning (status, stdout, stderr).
@discardableResult
func runProcess(_ executable: String, _ arguments: [String]) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}
