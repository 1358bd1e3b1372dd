import Foundation
import XCTest
@testable import RecDB

/// Damaged tree pages read through LMDB itself (not `verify`'s own walk). LMDB 0.9 trusts what is inside
/// a page; RecDB builds it with page checks (Sources/CLMDB/patches/page-checks.patch), so each damage below
/// is `RecDBError.damaged` naming the file. Before the patch, these made liblmdb read outside the page
/// (SIGSEGV/SIGBUS) or, for a duplicate-data flag on a plain table, dereference a null sub-cursor, and for
/// a one-child branch or a table root of 1, fail an assertion (SIGABRT).
final class PageCheckTests: DatabaseTestCase {
    static let pageSize = 4096

    /// A compacted file with a two-level `items` tree (so a branch page), vectors on overflow pages and a few users.
    func populate(_ directory: String) throws {
        let db = try Database(path: directory)
        try db.write { tx in
            for i in 1...300 {
                try tx.upsertItem(ItemInput(externalID: "item-\(i)", title: "The title of item number \(i), long enough to fill pages"))
            }
            try tx.createSpace(EmbeddingSpace(name: "wide", kind: .item, dimension: 1100, metric: .cosine))
            for i in 1...3 { try tx.putVector(space: "wide", entity: UInt32(i), (0..<1100).map { Float($0 % 7 + i) }) }
            for u in 1...5 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                for s in 0..<4 { try tx.appendEvent(user: user, item: UInt32(1 + (u * 3 + s) % 300), timestamp: Int64(1_700_000_000 + s)) }
            }
        }
        try db.backup(to: directory + ".compact")
        try FileManager.default.removeItem(atPath: directory)
        try FileManager.default.moveItem(atPath: directory + ".compact", toPath: directory)
    }

    /// The pages of `data.mdb` by plain reads (LMDB 0.9 layout, see `PageCheck`).
    struct File {
        var bytes: [UInt8]
        let ps = PageCheckTests.pageSize
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u64(_ o: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[o + $1]) << (8 * $1) } }
        mutating func put16(_ o: Int, _ v: Int) { bytes[o] = UInt8(v & 0xFF); bytes[o + 1] = UInt8(v >> 8 & 0xFF) }
        mutating func put64(_ o: Int, _ v: Int) { for i in 0..<8 { bytes[o + i] = UInt8(v >> (8 * i) & 0xFF) } }
        func flags(_ p: Int) -> Int { u16(p * ps + 10) }
        func count(_ p: Int) -> Int { (u16(p * ps + 12) - 16) / 2 }
        /// Offset in the file of node `i` of page `p`.
        func node(_ p: Int, _ i: Int) -> Int { p * ps + u16(p * ps + 16 + 2 * i) }
        func key(_ p: Int, _ i: Int) -> [UInt8] { let n = node(p, i); return Array(bytes[(n + 8)..<(n + 8 + u16(n + 6))]) }
        var mainRoot: Int {
            let meta = u64(ps + 16 + 128) > u64(16 + 128) ? ps : 0
            return u64(meta + 16 + 24 + 48 + 40)
        }
        /// The file offset of table `name`'s record (an `MDB_db`) in the main tree (one leaf in these files).
        func tableRecord(_ name: String) -> Int? {
            let root = mainRoot
            guard flags(root) & 2 != 0 else { return nil }
            for i in 0..<count(root) where key(root, i) == Array(name.utf8) {
                return node(root, i) + 8 + name.utf8.count
            }
            return nil
        }
        /// Branch, leaf and overflow pages of a table.
        func pages(_ name: String) -> (branches: [Int], leaves: [Int], overflow: [Int]) {
            var result: (branches: [Int], leaves: [Int], overflow: [Int]) = ([], [], [])
            guard let record = tableRecord(name) else { return result }
            var stack = [u64(record + 40)]
            while let p = stack.popLast() {
                if flags(p) & 1 != 0 {
                    result.branches.append(p)
                    for i in 0..<count(p) { let n = node(p, i); stack.append(u16(n) | u16(n + 2) << 16 | u16(n + 4) << 32) }
                } else {
                    result.leaves.append(p)
                    for i in 0..<count(p) where u16(node(p, i) + 4) & 1 != 0 {
                        let n = node(p, i)
                        result.overflow.append(u64(n + 8 + u16(n + 6)))
                    }
                }
            }
            return result
        }
    }

    func testDamagedPagesReadThroughLMDBAreErrorsNotCrashes() throws {
        let clean = path("clean")
        try populate(clean)
        let file = File(bytes: try [UInt8](Data(contentsOf: URL(fileURLWithPath: clean + "/data.mdb"))))
        let items = file.pages(Table.items.rawValue), vectors = file.pages(Table.vectors.rawValue)
        let itemBranch = try XCTUnwrap(items.branches.first, "300 items need a branch page")
        let itemLeaf = try XCTUnwrap(items.leaves.last)
        let overflow = try XCTUnwrap(vectors.overflow.first, "a 4,400-byte vector is on overflow pages")
        let vectorLeaf = try XCTUnwrap(vectors.leaves.first(where: { p in (0..<file.count(p)).contains { file.u16(file.node(p, $0) + 4) & 1 != 0 } }))
        let bigNode = try XCTUnwrap((0..<file.count(vectorLeaf)).map { file.node(vectorLeaf, $0) }.first { file.u16($0 + 4) & 1 != 0 })
        let ps = Self.pageSize, leafBase = itemLeaf * ps, last = file.count(itemLeaf) - 1
        let itemsRecord = try XCTUnwrap(file.tableRecord(Table.items.rawValue))

        let damages: [(String, (inout File) -> Void)] = [
            ("a leaf's offset array points past the page", { $0.put16(leafBase + 16 + 2 * last, ps - 4) }),
            ("a leaf's offset points into its header", { $0.put16(leafBase + 16, 4) }),
            ("a leaf key's size runs past the page", { $0.put16($0.node(itemLeaf, 0) + 6, 0xFFFF) }),
            ("a leaf value's size runs past the page", { let n = $0.node(itemLeaf, last); $0.put16(n, 0xFFF0); $0.put16(n + 2, 0x7F) }),
            ("a leaf's lower bound is above its upper bound", { $0.put16(leafBase + 12, $0.u16(leafBase + 14) + 2) }),
            ("a leaf's upper bound is past the page", { $0.put16(leafBase + 14, 0xFFF0) }),
            ("a leaf's header names another page", { $0.put64(leafBase, itemLeaf + 1) }),
            ("a leaf says it holds fixed-size duplicates", { $0.put16(leafBase + 10, 0x22) }),
            ("a plain table's node says it has duplicates", { $0.put16($0.node(itemLeaf, 0) + 4, 0x04) }),
            ("a plain table's node says it is a table", { $0.put16($0.node(itemLeaf, 0) + 4, 0x02) }),
            ("a branch has one child", { $0.put16(itemBranch * ps + 12, 16 + 2) }),
            ("a branch's child is a meta page", { let n = $0.node(itemBranch, 1); $0.put16(n, 1); $0.put16(n + 2, 0); $0.put16(n + 4, 0) }),
            ("a branch's child is an overflow page", { let n = $0.node(itemBranch, 1); $0.put16(n, overflow & 0xFFFF); $0.put16(n + 2, overflow >> 16); $0.put16(n + 4, 0) }),
            ("an overflow page counts pages past the file", { $0.put64(overflow * ps + 12, 0xFFFF_FF00) }),
            ("an overflow page is not an overflow page", { $0.put16(overflow * ps + 10, 0x02) }),
            ("a value is bigger than its overflow pages", { $0.put16(bigNode + 2, 0x40) }),
            ("a value's overflow pages run past the file", { $0.put64(bigNode + 8 + $0.u16(bigNode + 6), ($0.bytes.count / ps) - 1) }),
            ("a value's overflow page is a leaf", { $0.put64(bigNode + 8 + $0.u16(bigNode + 6), itemLeaf) }),
            ("a table's root is page 1", { $0.put64(itemsRecord + 40, 1) }),
            ("a table's record says it has integer keys", { $0.put16(itemsRecord + 4, 0x08) }),
        ]
        let work = path("work")
        var failures: [String] = []
        for (name, damage) in damages {
            var damaged = file
            damage(&damaged)
            XCTAssertNotEqual(damaged.bytes, file.bytes, name)
            try? FileManager.default.removeItem(atPath: work)
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try Data(damaged.bytes).write(to: URL(fileURLWithPath: work + "/data.mdb"))
            var errors: [RecDBError] = []
            func attempt(_ body: () throws -> Void) {
                do { try body() } catch let error as RecDBError { errors.append(error) } catch { failures.append("\(name): \(error)") }
            }
            // Every key by cursor and every value by key, as serving and export read them.
            attempt {
                let db = try Database(path: work, options: .init(readOnly: true, create: false))
                for table in [Table.items, .itemIDs, .vectors] {
                    attempt {
                        try db.read { tx in
                            let cursor = try tx.raw.cursor(table)
                            var keys: [[UInt8]] = []
                            var step = LMDBCursor.Move.first
                            while let key = try cursor.move(step, { k, v in _ = v.reduce(UInt8(0), &+); return Array(k) }) {
                                keys.append(key)
                                step = .next
                            }
                            for key in keys { _ = try key.withUnsafeBytes { try tx.raw.get(table, key: $0) } }
                        }
                    }
                }
                attempt { _ = try db.read { tx in try tx.item(externalID: "item-150") } }
            }
            if errors.isEmpty { failures.append("\(name): every read succeeded") }
            // A write that meets the damage fails and leaves the file as it was.
            let readErrors = errors.count
            attempt {
                let db = try Database(path: work, options: .init(create: false))
                try db.write { tx in
                    _ = try tx.upsertItem(ItemInput(externalID: "item-299", title: "changed"))
                    try tx.putVector(space: "wide", entity: 1, [Float](repeating: 1, count: 1100))
                }
            }
            let writeFailed = errors.count > readErrors
            for error in errors {
                guard case .damaged = error else { failures.append("\(name): \(error) is not `damaged`"); continue }
                if !"\(error)".contains(work) && !"\(error)".contains("checksum") { failures.append("\(name): \(error) names neither the file nor a checksum") }
            }
            let after = try [UInt8](Data(contentsOf: URL(fileURLWithPath: work + "/data.mdb")))
            if writeFailed && after != damaged.bytes { failures.append("\(name): a failed write changed the file") }
        }
        XCTAssertEqual(failures, [])
    }
}

extension PageCheckTests {
    /// Opens the committed fuzz input `Fuzz/regressions/NAME` as a database, read-only and for writing:
    /// both are refused with the error `check` accepts, and the file is left as it was.
    func assertFuzzInputIsRefused(_ name: String, _ check: (RecDBError) -> Void) throws {
        let input = packageRoot.appendingPathComponent("Fuzz/regressions/\(name)").path
        let contents = try XCTUnwrap(FileManager.default.contents(atPath: input), "the committed fuzz input \(input) is missing")
        let dir = path("fuzzed-\(name)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/data.mdb", contents: contents)
        for readOnly in [true, false] {
            XCTAssertThrowsError(try Database(path: dir, options: .init(readOnly: readOnly, create: false))) { error in
                guard let error = error as? RecDBError else { return XCTFail("\(error)") }
                check(error)
            }
        }
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/data.mdb"), contents, "a refused file is left as it was")
    }

    /// Found by the `store` fuzz target once LMDB checked its pages: a `meta` table whose format version is
    /// above Int.max trapped converting it for the error (SIGILL while opening). Now it is a format error.
    func testAFuzzedFormatVersionAboveIntMaxIsAnErrorNotATrap() throws {
        try assertFuzzInputIsRefused("store-format-version-overflow.mdb") { error in
            guard case .formatVersion(let found, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(found, Int.max)
        }
    }

    /// Found by the `store` fuzz target (session 12): the newer meta page records last page 2^64 − 1 and a
    /// free-list root of depth 0. The page count wrapped to 0 (so the file looked long enough) and the
    /// error message for the bad root added 1 to the last page: an overflow trap while opening.
    func testAFuzzedLastPageOf2To64Minus1IsAnErrorNotATrap() throws {
        try assertFuzzInputIsRefused("store-last-page-max.mdb") { error in
            guard case .damaged(_, _, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(detail, "meta page 1 records last page 18446744073709551615")
        }
    }
}
