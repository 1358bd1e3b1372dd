import Foundation
import XCTest
import Learn
@testable import RecDB

/// Input that must be refused with FILE:LINE and a reason (issue #12): unbounded sizes from files and
/// arguments, line ends, ids, timestamps, headers, exports into the store. Each failing case also proves
/// that the database is unchanged.
final class HostileInputTests: DatabaseTestCase {
    // MARK: - Lines

    func testAnEndlessLineStopsAtTheLineCapNamingFileAndLine() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        // /dev/zero has no line break and never ends: the cap (1 MiB by default) stops it, after reading about that much.
        assertImportError(file: "/dev/zero", line: 1, contains: "longer than 1048576 bytes") {
            try db.importInteractions(from: "/dev/zero", options: .init(format: .csv))
        }
        // A configurable cap: a 300-byte row fails under 256 and imports under 512.
        let row = "u1," + String(repeating: "x", count: 296) + "\n"
        let file = try writeFile("long.csv", "user,item\n" + row)
        var options = InteractionImportOptions()
        options.maxLineBytes = 256
        assertImportError(file: file, line: 2, contains: "longer than 256 bytes") { try db.importInteractions(from: file, options: options) }
        XCTAssertEqual(try fingerprint(db), before)
        options.maxLineBytes = 512
        XCTAssertEqual(try db.importInteractions(from: file, options: options).events, 1)
        // Out-of-range caps are argument errors, not allocations.
        options.maxLineBytes = 0
        XCTAssertThrowsError(try db.importInteractions(from: file, options: options)) { error in
            guard case .invalidArgument = error as? RecDBError else { return XCTFail("\(error)") }
        }
    }

    func testLineReaderSplitsOnLFCRLFAndLoneCRAcrossBufferBoundaries() throws {
        // A tiny buffer makes every terminator straddle a refill, including a CR whose LF comes in the next read.
        let p = try writeFile("mixed.txt", "a\r\nbb\rccc\n\rd\r\r\ne")
        for size in [1, 2, 3, 5, 64] {
            let reader = try LineReader(path: p, maxLineBytes: 16, bufferSize: size)
            var lines: [String] = []
            while let line = try reader.next() { lines.append(String(decoding: line, as: UTF8.self)) }
            XCTAssertEqual(lines, ["a", "bb", "ccc", "", "d", "", "e"], "buffer \(size)")
        }
    }

    func testCROnlyLineEndsImportEveryRow() throws {
        let db = try makeDatabase()
        let file = try writeFile("mac.csv", "user,item,timestamp\r1,a,5\r2,b,6\r2,c,7\r")
        let summary = try db.importInteractions(from: file)
        XCTAssertEqual(summary.events, 3)
        XCTAssertEqual(try db.stats().interactions, 3)
        let items = try writeFile("mac.jsonl", "{\"item\": \"a\", \"title\": \"A\"}\r{\"item\": \"z\", \"title\": \"Z\"}\r")
        XCTAssertEqual(try db.importItems(from: items).rows, 2)
        XCTAssertEqual(try db.read { try $0.item(id: $0.itemID(for: "z")!)?.title }, "Z")
    }

    // MARK: - Headers, ids, timestamps

    func testDuplicateHeaderColumnsAreRefused() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        let file = try writeFile("dup.csv", "user,user,item\n1,2,a\n")
        assertImportError(file: file, line: 1, contains: "column 'user' appears twice in the header (columns 1 and 2)") {
            try db.importInteractions(from: file)
        }
        let items = try writeFile("dup.tsv", "item_id\ttitle\t title \nA\tx\ty\n")
        assertImportError(file: items, line: 1, contains: "column 'title' appears twice") { try db.importItems(from: items) }
        XCTAssertEqual(try fingerprint(db), before)
    }

    func testABinaryHeaderIsShownEscapedAndShortInTheError() throws {
        let db = try makeDatabase()
        // 100,000 NUL bytes and no line end: one header column, which the message must not echo raw.
        let file = try writeFile("zeros.csv", String(repeating: "\u{0}", count: 100_000))
        do {
            try db.importInteractions(from: file)
            XCTFail("a file of NUL bytes imported")
        } catch let RecDBError.importFailed(error) {
            XCTAssertEqual(error.line, 1)
            XCTAssertTrue(error.problem.contains("no user column"), error.problem)
            XCTAssertTrue(error.problem.contains("\"\\0\\0"), "control characters are escaped: \(error.problem.prefix(200))")
            XCTAssertFalse(error.problem.unicodeScalars.contains { $0.value < 0x20 }, "no raw control character in the message")
            XCTAssertLessThan(error.problem.count, 400, "the message is bounded")
        }
        let wide = try writeFile("wide.csv", (0..<50).map { "c\($0)" }.joined(separator: ",") + "\n1\n")
        assertImportError(file: wide, line: 1, contains: "\"c19\", … 30 more") { try db.importInteractions(from: wide) }
    }

    func testControlCharactersAndBlankIdsAreRefused() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        let nul = try writeFile("nul.csv", "user,item\nu1,a\nu\u{0}2,b\n")
        assertImportError(file: nul, line: 3, contains: "user id contains the control character U+0000") { try db.importInteractions(from: nul) }
        let bell = try writeFile("bell.tsv", "user\titem\nu1\ta\u{7}\n")
        assertImportError(file: bell, line: 2, contains: "item id contains the control character U+0007") { try db.importInteractions(from: bell) }
        let blank = try writeFile("blank.csv", "user,item\n   ,a\n")
        assertImportError(file: blank, line: 2, contains: "user id is blank") { try db.importInteractions(from: blank) }
        let items = try writeFile("items.jsonl", "{\"item\": \"ok\"}\n{\"item\": \"\\u001b[31mred\"}\n")
        assertImportError(file: items, line: 2, contains: "control character U+001B") { try db.importItems(from: items) }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertThrowsError(try db.write { tx in try tx.upsertItem(ItemInput(externalID: "\u{2003}\u{00A0}")) }) { error in
            XCTAssertEqual(error as? RecDBError, .invalidArgument("item id is blank (only whitespace)"))
        }
    }

    func testTimestampsOutsideTheDocumentedRangeAreRefused() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        XCTAssertEqual(ImportLimits.timestampRange, 0...253_402_300_799_999)
        for (text, shown) in [("-1", "-1"), ("253402300800000", "253402300800000"), ("1e300", "1e+300"), ("9223372036854775807", "9223372036854775807"),
                              ("1969-12-31T23:59:59Z", "-1.0")] {
            let file = try writeFile("ts.csv", "user,item,timestamp\nu,a,5\nu,b,\(text)\n")
            assertImportError(file: file, line: 3, contains: "timestamp \(shown) is outside the accepted range 0...253402300799999") {
                try db.importInteractions(from: file)
            }
        }
        let json = try writeFile("ts.jsonl", "{\"user\": \"u\", \"item\": \"a\", \"timestamp\": -5}\n")
        assertImportError(file: json, line: 1, contains: "outside the accepted range") { try db.importInteractions(from: json) }
        XCTAssertEqual(try fingerprint(db), before)
        // The bounds themselves (seconds up to year 9999 in milliseconds) are accepted.
        let ok = try writeFile("ok.csv", "user,item,timestamp\nu,a,0\nu,b,253402300799999\nu,c,2024-01-02T03:04:05Z\n")
        XCTAssertEqual(try db.importInteractions(from: ok).events, 3)
        XCTAssertEqual(try db.read { try $0.events(user: $0.userID(for: "u")!) }.map(\.timestamp), [0, 1_704_164_645, 253_402_300_799_999])
    }

    func testUnknownOrMissingRecBoleFieldTypesAreRefused() throws {
        let db = try makeDatabase()
        let before = try fingerprint(db)
        let typo = try writeFile("a.inter", "user_id:token\titem_id:tokn\n1\t2\n")
        assertImportError(file: typo, line: 1, contains: "RecBole header field 'item_id:tokn' has unknown type 'tokn' (one of float, float_seq, token, token_seq)") {
            try db.importInteractions(from: typo)
        }
        let untyped = try writeFile("b.item", "item_id:token\ttitle\n1\tx\n")
        assertImportError(file: untyped, line: 1, contains: "RecBole header field 'title' has no ':type'") { try db.importItems(from: untyped) }
        XCTAssertEqual(try fingerprint(db), before)
    }

    // MARK: - .npy

    func npy(header shape: String, version: UInt8 = 1, declaredLength: Int? = nil, payload: Int = 64) -> [UInt8] {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        let length = declaredLength ?? header.utf8.count
        if version == 1 {
            bytes += [UInt8(length & 0xff), UInt8(length >> 8 & 0xff)]
        } else {
            bytes += [UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 24 & 0xff)]
        }
        return bytes + Array(header.utf8) + [UInt8](repeating: 0, count: payload)
    }

    func testNPYShapesAndHeaderLengthsAreCheckedAgainstTheFile() throws {
        let db = try makeDatabase()
        try db.write { tx in for i in 0..<4 { try tx.upsertItem(ItemInput(externalID: String(i))) } }
        let before = try fingerprint(db)
        // (file, the row named in the error — for a too-short file the last complete row —, problem)
        let cases: [([UInt8], Int?, String)] = [
            (npy(header: "(-3, 4)"), nil, "shape (-3, 4) is not usable"),
            (npy(header: "(4611686018427387904, 4611686018427387904)"), nil, "shape (4611686018427387904, 4611686018427387904) is not usable"),
            (npy(header: "(4611686018427387904, 4)"), 4, "truncated: the header promises 4611686018427387904 rows of 4 f32"),
            (npy(header: "(9223372036854775807, 2)"), 8, "truncated: the header promises 9223372036854775807 rows"),
            (npy(header: "(3, 0)"), nil, "shape (3, 0) is not usable"),
            (npy(header: "(2, 4)", version: 2, declaredLength: 0x7FFF_FFFF), nil, "truncated or oversized header (2147483647 bytes declared"),
            (npy(header: "(2,)"), nil, "expected a 2-D array"),
        ]
        for (bytes, row, problem) in cases {
            let file = try writeFile("v.npy", bytes: bytes)
            assertImportError(file: file, line: row, contains: problem) {
                try db.importEmbeddings(from: file, options: .init(space: "v", kind: .item))
            }
        }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertNil(try db.read { try $0.space(named: "v") })
        // A consistent header still imports (row r → item "r").
        let good = try writeFile("good.npy", bytes: npyBytes(rows: 4, columns: 4, dtype: .f32) { r, c in Float(r + c + 1) })
        XCTAssertEqual(try db.importEmbeddings(from: good, options: .init(space: "v", kind: .item)).vectors, 4)
    }

    // MARK: - Export

    func testExportRefusesToWriteIntoADatabaseDirectory() throws {
        let db = try makeDatabase()
        _ = try db.write { tx in try tx.upsertItem(ItemInput(externalID: "a", title: "A")) }
        let dataFile = path("db") + "/data.mdb"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dataFile))
        let before = try fingerprint(db)
        for target in [dataFile, path("db") + "/items.csv", path("db"), path("db") + "/../db/lock.mdb"] {
            XCTAssertThrowsError(try db.exportItems(to: target, format: .csv), target) { error in
                guard case let .invalidArgument(text)? = error as? RecDBError else { return XCTFail("\(error)") }
                XCTAssertTrue(text.contains("refusing to export") || text.contains("is a directory"), text)
            }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dataFile)), bytes)
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertTrue(try db.verify().isClean)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("db") + "/items.csv"))
        // Elsewhere it works, and leaves no temporary file behind.
        XCTAssertEqual(try db.exportItems(to: path("items.csv"), format: .csv), 1)
        XCTAssertEqual(try String(contentsOfFile: path("items.csv"), encoding: .utf8), "item,title,text,available,attributes\na,A,,1,\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("rdbctl-export") }, [])
    }

    // MARK: - Sizes from arguments

    func testAHugeKIsClampedToTheCatalogue() throws {
        let db = try makeDatabase()
        try db.write { tx in
            try tx.createSpace(EmbeddingSpace(name: "emb", kind: .item, dimension: 4, metric: .cosine))
            for i in 1...5 {
                let id = try tx.upsertItem(ItemInput(externalID: "i\(i)"))
                try tx.putVector(space: "emb", entity: id, [Float(i), 1, 0, Float(i % 2)])
            }
        }
        _ = try db.buildIndex(space: "emb")
        XCTAssertEqual(try db.similarItems(to: "i1", k: 1_000_000_000_000, space: "emb").count, 4)
        XCTAssertEqual(try db.nearest(to: [1, 1, 0, 0], k: Int.max, space: "emb").count, 5)
    }

    func testTrainingRefusesZeroEpochsAndSizesBeyondTheMachine() throws {
        let db = try makeDatabase()
        try db.write { tx in
            for i in 1...10 { try tx.upsertItem(ItemInput(externalID: "i\(i)")) }
            for u in 0..<20 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                for t in 0..<5 { try tx.appendEvent(user: user, item: UInt32((u + t) % 10 + 1), timestamp: Int64(t)) }
            }
        }
        let before = try fingerprint(db)
        var c = ModelConfiguration()
        c.maxEpochs = 0
        XCTAssertThrowsError(try db.train(TrainingRequest(model: "m", configuration: c))) { error in
            XCTAssertEqual(error as? RecDBError, .training("maxEpochs must be ≥ 1 (0 would store an untrained version)"))
        }
        c.maxEpochs = 1
        c.hiddenSize = 100_000_000
        XCTAssertThrowsError(try db.train(TrainingRequest(model: "m", configuration: c))) { error in
            XCTAssertTrue("\(error)".contains("hiddenSize must be in 1...16384"), "\(error)")
        }
        c.hiddenSize = 16_384
        c.heads = 1
        c.blocks = 256
        XCTAssertThrowsError(try db.train(TrainingRequest(model: "m", configuration: c))) { error in
            XCTAssertTrue("\(error)".contains("GB") && "\(error)".contains("but the machine has"), "\(error)")
        }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertEqual(try db.read { try $0.models() }.count, 0)
    }

    // MARK: - Schemas

    func testAnUnknownBundledSchemaIsAnError() {
        XCTAssertThrowsError(try JSONSchema.bundled("no/such.schema.json")) { error in
            guard case let .invalidArgument(text)? = error as? RecDBError else { return XCTFail("\(error)") }
            XCTAssertTrue(text.hasPrefix("no bundled schema schemas/no/such.schema.json"), text)
        }
    }
}

/// Regression inputs found by `make fuzz` (Fuzz/README.md).
final class FuzzRegressionTests: DatabaseTestCase {
    /// fuzz-jsonl, its own seed: a JSON boolean for the availability reached JSONSerialization.data(withJSONObject:),
    /// which traps (SIGILL) on a top-level scalar.
    func testBooleanAvailabilityInItemsJSONLinesIsReadNotATrap() throws {
        let db = try makeDatabase()
        let file = try writeFile("items.jsonl", """
            {"item": "0", "title": "Red", "tags": ["a", "b"], "price": 3.5, "available": true}
            {"item": "1", "available": false, "new": true}
            {"id": "2", "name": "x"}

            """)
        XCTAssertEqual(try db.importItems(from: file).rows, 3)
        let items = try db.read { tx in try ["0", "1", "2"].map { try tx.item(id: tx.itemID(for: $0)!)! } }
        XCTAssertEqual(items.map(\.isAvailable), [true, false, true])
        XCTAssertEqual(items[1].attributesJSON, #"{"new":true}"#)
        XCTAssertEqual(items[0].attributesJSON, #"{"price":3.5,"tags":["a","b"]}"#)
    }

    /// fuzz-store, first input: an empty data.mdb made LMDBEnvironment close its environment twice
    /// (double free, SIGABRT) when the open failed.
    func testAnEmptyOrGarbageDataFileIsAnErrorNotADoubleFree() throws {
        for contents in [Data(), Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) })] {
            let dir = path("damaged-\(contents.count)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: dir + "/data.mdb", contents: contents)
            // (A writable open of an empty data.mdb is LMDB creating a new environment; whether that must be
            // refused is the integrity checks' business, not this regression's.)
            for readOnly in contents.isEmpty ? [true] : [true, false] {
                XCTAssertThrowsError(try Database(path: dir, options: .init(readOnly: readOnly, create: false))) { error in
                    XCTAssertNotNil(error as? RecDBError, "\(error)")
                }
            }
        }
    }
}

extension HostileInputTests {
    /// The `store` fuzz target's damaged data files: a truncated one (its meta names pages past the end of
    /// the file), and one with a changed byte in a leaf page of the `meta` table. liblmdb read past its
    /// mapping (SIGBUS) on both while opening, before the data file and its small trees were checked first.
    func testTheFuzzedDamagedDataFilesAreErrorsNotSIGBUS() throws {
        for name in ["store-truncated-data.mdb", "store-meta-leaf-offsets.mdb"] {
            try assertRefusedDataFile(packageRoot.appendingPathComponent("Fuzz/regressions/\(name)").path)
        }
    }

    func assertRefusedDataFile(_ input: String) throws {
        let contents = try XCTUnwrap(FileManager.default.contents(atPath: input), "the committed fuzz input \(input) is missing")
        let dir = path("damaged-\(URL(fileURLWithPath: input).lastPathComponent)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/data.mdb", contents: contents)
        for readOnly in [true, false] {
            XCTAssertThrowsError(try Database(path: dir, options: .init(readOnly: readOnly, create: false))) { error in
                guard let error = error as? RecDBError else { return XCTFail("\(error)") }
                switch error {
                case .notADatabase, .damaged: XCTAssertTrue("\(error)".contains(dir), "\(error)")
                default: XCTFail("expected notADatabase or damaged, got \(error)")
                }
            }
        }
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/data.mdb"), contents, "a refused file is left as it was")
    }

    func testAJSONVectorWiderThanAnySpaceStopsWhileParsing() throws {
        let db = try makeDatabase()
        try db.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "a")) }
        let before = try fingerprint(db)
        let file = try writeFile("wide.json", "{\n\"a\": [" + Array(repeating: "0.5", count: 65_537).joined(separator: ",") + "]}")
        assertImportError(file: file, line: 2, contains: "the vector of \"a\" has more than 65536 components") {
            try db.importEmbeddings(from: file, options: .init(space: "w", kind: .item))
        }
        XCTAssertEqual(try fingerprint(db), before)
    }
}
