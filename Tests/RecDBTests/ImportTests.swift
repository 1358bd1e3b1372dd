import Foundation
import XCTest
@testable import RecDB

final class ImportTests: DatabaseTestCase {
    func testCSVWithQuotingTypesValuesAndDefaultColumns() throws {
        let db = try makeDatabase()
        let file = try writeFile("events.csv", [
            "user,item,timestamp,type,value",
            #"alice,"lipstick, red",1700000000,view,"#,
            "alice,mascara,1700000100,purchase,12.5",
            #"bob,"say ""hi""",2024-01-02T03:04:05Z,view,"#,
            "",
        ].joined(separator: "\n"))
        let summary = try db.importInteractions(from: file)
        XCTAssertEqual(summary.events, 3)
        XCTAssertEqual(summary.createdUsers, 2)
        XCTAssertEqual(summary.createdItems, 3)
        try db.read { tx in
            let alice = try tx.events(user: try tx.userID(for: "alice")!)
            XCTAssertEqual(alice.map(\.type), ["view", "purchase"])
            XCTAssertEqual(alice.map(\.value), [nil, 12.5])
            XCTAssertEqual(try tx.item(id: alice[0].item)?.externalID, "lipstick, red")
            let bob = try tx.events(user: try tx.userID(for: "bob")!)
            XCTAssertEqual(bob.first?.timestamp, 1_704_164_645)
            XCTAssertEqual(try tx.item(id: bob[0].item)?.externalID, #"say "hi""#)
        }
    }

    func testTSVWithRenamedColumns() throws {
        let db = try makeDatabase()
        let file = try writeFile("e.tsv", "uid\tiid\twhen\nu1\ti1\t5\nu1\ti2\t3\n")
        var options = InteractionImportOptions()
        options.userColumn = "uid"; options.itemColumn = "iid"; options.timeColumn = "when"
        try db.importInteractions(from: file, options: options)
        XCTAssertEqual(try db.read { try $0.events(user: 1).map(\.timestamp) }, [3, 5])
        // Without the options the header does not name a user column: a clear error on line 1.
        let db2 = try makeDatabase("db2")
        assertImportError(file: file, line: 1, contains: "no user column") { try db2.importInteractions(from: file) }
    }

    func testRecBoleAtomicFiles() throws {
        let db = try makeDatabase()
        let inter = try writeFile("ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu7\tm1\t3\t1700000000\nu7\tm2\t4\t1700000001\n")
        let items = try writeFile("ml.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\nm1\tA Made-Up Film\t1996\tComedy\nm2\tAnother Invented Title\t1997\tCrime Film-Noir\n")
        try db.importInteractions(from: inter)
        let summary = try db.importItems(from: items)
        XCTAssertEqual(summary.updatedItems, 2)
        try db.read { tx in
            let events = try tx.events(user: try tx.userID(for: "u7")!)
            XCTAssertEqual(events.map(\.value), [3, 4])
            XCTAssertEqual(events.map(\.timestamp), [1_700_000_000, 1_700_000_001])
            let item = try tx.item(externalID: "m2")!
            XCTAssertEqual(item.title, "Another Invented Title")
            XCTAssertEqual(item.attributes["release_year"] as? String, "1997")
            XCTAssertEqual(item.attributes["class"] as? String, "Crime Film-Noir")
        }
    }

    func testSequenceFilesAndJSONLines() throws {
        let db = try makeDatabase()
        let seq = try writeFile("s.txt", "1 10 11 12\n2 12 10\n")
        XCTAssertEqual(try db.importInteractions(from: seq, options: .init(format: .sequences)).events, 5)
        XCTAssertEqual(try db.read { tx in try tx.events(user: try tx.userID(for: "1")!).map(\.timestamp) }, [1, 2, 3])
        let jsonl = try writeFile("e.jsonl", """
            {"user": "1", "item": 11, "timestamp": 99, "type": "purchase", "value": 3}
            {"user": 7, "item": "new"}

            """)
        let s = try db.importInteractions(from: jsonl)
        XCTAssertEqual(s.events, 2)
        XCTAssertEqual(s.createdUsers, 1)
        XCTAssertEqual(s.createdItems, 1)
        XCTAssertEqual(try db.read { tx in try tx.events(user: try tx.userID(for: "1")!).last?.type }, "purchase")
        let bad = try writeFile("bad.jsonl", "{\"user\": \"1\", \"item\": \"2\"}\n{\"user\": \"1\", \"item\": \"2\", \"value\": \"high\"}\n")
        assertImportError(file: bad, line: 2, contains: "$.value must be number") { try db.importInteractions(from: bad) }
        let missing = try writeFile("missing.jsonl", "{\"user\": \"1\"}\n")
        assertImportError(file: missing, line: 1, contains: "missing required \"item\"") { try db.importInteractions(from: missing) }
    }

    func testABadLineInTheMiddleFailsWithFileAndLineAndChangesNothing() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeFile("first.csv", "user,item,timestamp\na,x,1\n"))
        let before = try fingerprint(db)
        var lines = ["user,item,timestamp"]
        for i in 0..<5_000 { lines.append("u\(i % 97),i\(i % 31),\(i)") }
        lines[2_500] = "u1,i1,not-a-time"
        let file = try writeFile("big.csv", lines.joined(separator: "\n") + "\n")
        assertImportError(file: file, line: 2_501, contains: "timestamp 'not-a-time'") { try db.importInteractions(from: file) }
        XCTAssertEqual(try fingerprint(db), before)
        lines[2_500] = "u1,i1"
        try writeFile("big.csv", lines.joined(separator: "\n") + "\n")
        assertImportError(file: file, line: 2_501, contains: "expected 3 fields, found 2") { try db.importInteractions(from: file) }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertTrue(try db.verify().isClean)
    }

    func testNonUTF8AndUnterminatedQuotesAreRejected() throws {
        let db = try makeDatabase()
        var bytes = Array("user,item,timestamp\na,b,1\na,".utf8)
        bytes += [0xC3, 0x28]  // invalid UTF-8 sequence
        bytes += Array(",2\n".utf8)
        let file = try writeFile("latin.csv", bytes: bytes)
        assertImportError(file: file, line: 3, contains: "not valid UTF-8") { try db.importInteractions(from: file) }
        let quoted = try writeFile("q.csv", "user,item,timestamp\n\"a,b,1\n")
        assertImportError(file: quoted, line: 2, contains: "unterminated quoted field") { try db.importInteractions(from: quoted) }
        XCTAssertEqual(try db.stats().interactions, 0)
    }

    func testImportingTheSameInteractionsTwiceIsAClearErrorUnlessAllowed() throws {
        let db = try makeDatabase()
        let file = try writeFile("e.csv", "user,item,timestamp\na,x,1\nb,y,2\n")
        try db.importInteractions(from: file)
        XCTAssertThrowsError(try db.importInteractions(from: file)) { error in
            guard case let RecDBError.alreadyImported(file: name, fingerprint: _) = error else {
                return XCTFail("expected RecDBError.alreadyImported, got \(error)")
            }
            XCTAssertEqual(name, file)
            XCTAssertTrue("\(error)".contains("already imported"), "\(error)")
        }
        XCTAssertEqual(try db.stats().interactions, 2)
        var options = InteractionImportOptions()
        options.allowDuplicateImport = true
        try db.importInteractions(from: file, options: options)
        XCTAssertEqual(try db.stats().interactions, 4)
    }

    func testTheImportLedgerTellsFilesApartByTheirHeader() throws {
        let db = try makeDatabase()
        // The same data lines under a header with the user and item columns swapped: different events.
        let file = try writeFile("e.csv", "user,item,timestamp\na,x,1\nb,y,2\n")
        let swapped = try writeFile("s.csv", "item,user,timestamp\na,x,1\nb,y,2\n")
        try db.importInteractions(from: file)
        try db.importInteractions(from: swapped)
        XCTAssertEqual(try db.stats().interactions, 4)
        XCTAssertEqual(try db.read { tx in try tx.userID(for: "x") != nil }, true, "the swapped file's users are x and y")
        // Different column options give the same lines another meaning too.
        let plain = try writeFile("p.csv", "u,i,t\na,x,1\n")
        var byName = InteractionImportOptions()
        byName.userColumn = "u"; byName.itemColumn = "i"; byName.timeColumn = "t"
        try db.importInteractions(from: plain, options: byName)
        byName.userColumn = "i"; byName.itemColumn = "u"
        try db.importInteractions(from: plain, options: byName)
        XCTAssertEqual(try db.stats().interactions, 6)
    }

    func testItemsImportIsIdempotentAndKeepsAttributesAndAvailability() throws {
        let db = try makeDatabase()
        let file = try writeFile("items.tsv", "item_id\tasin\ttitle\tavailable\n1\tB001\tRed lipstick\t1\n2\tB002\t\t0\n")
        var options = RecordImportOptions(format: .tsv)
        options.idColumn = "item_id"; options.titleColumn = "title"
        XCTAssertEqual(try db.importItems(from: file, options: options).createdItems, 2)
        let once = try fingerprint(db)
        XCTAssertEqual(try db.importItems(from: file, options: options).updatedItems, 2)
        XCTAssertEqual(try fingerprint(db), once)
        try db.read { tx in
            let one = try tx.item(externalID: "1")!
            XCTAssertEqual(one.title, "Red lipstick")
            XCTAssertEqual(one.attributes["asin"] as? String, "B001")
            XCTAssertNil(one.attributes["available"])
            let two = try tx.item(externalID: "2")!
            XCTAssertNil(two.title)
            XCTAssertFalse(two.isAvailable)
        }
        let jsonl = try writeFile("items.jsonl", #"{"item_id": 3, "title": "Mascara", "brand": "X", "categories": ["eyes"]}"# + "\n")
        try db.importItems(from: jsonl)
        XCTAssertEqual(try db.read { try $0.item(externalID: "3")?.attributes["brand"] as? String }, "X")
        let noID = try writeFile("noid.jsonl", #"{"title": "x"}"# + "\n")
        assertImportError(file: noID, line: 1, contains: "missing required") { try db.importItems(from: noID) }
    }

    func testNPYEmbeddingsDefaultRowMappingIdsFileAndF16() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeFile("s.txt", "u 1 2 3\n"), options: .init(format: .sequences))
        // Row 0 is padding (no item "0"), rows 1…3 are items, row 4 has no item: skipped and counted.
        let npy = try writeFile("e.npy", bytes: npyBytes(rows: 5, columns: 3, dtype: .f32) { r, c in Float(r * 10 + c) })
        let summary = try db.importEmbeddings(from: npy, options: .init(space: "emb", kind: .item))
        XCTAssertEqual(summary.vectors, 3)
        XCTAssertEqual(summary.skipped, 2)
        try db.read { tx in
            let id = try tx.itemID(for: "2")!
            XCTAssertEqual(try tx.vector(space: "emb", entity: id), [20, 21, 22])
            XCTAssertEqual(try tx.space(named: "emb")?.dimension, 3)
            XCTAssertEqual(try tx.space(named: "emb")?.dtype, .f32)
        }
        // Re-import is idempotent (same vectors, same count).
        try db.importEmbeddings(from: npy, options: .init(space: "emb", kind: .item))
        XCTAssertEqual(try db.read { try $0.space(named: "emb")?.count }, 3)

        let half = try writeFile("h.npy", bytes: npyBytes(rows: 2, columns: 4, dtype: .f16) { r, c in Float(r) + Float(c) * 0.5 })
        let ids = try writeFile("ids.txt", "3\n1\n")
        var options = EmbeddingImportOptions(space: "half", kind: .item)
        options.idsFile = ids
        XCTAssertEqual(try db.importEmbeddings(from: half, options: options).vectors, 2)
        try db.read { tx in
            XCTAssertEqual(try tx.space(named: "half")?.dtype, .f16)
            XCTAssertEqual(try tx.vector(space: "half", entity: try tx.itemID(for: "3")!), [0, 0.5, 1, 1.5])
            XCTAssertEqual(try tx.vector(space: "half", entity: try tx.itemID(for: "1")!), [1, 1.5, 2, 2.5])
        }
        try writeFile("ids.txt", "3\nghost\n")
        assertImportError(file: ids, line: 2, contains: "unknown item 'ghost'") { try db.importEmbeddings(from: half, options: options) }
    }

    func testUserVectorsByRowNeverCreateUsersButNamedOnesDo() throws {
        let db = try makeDatabase()
        try db.write { tx in for u in 1...2 { try tx.upsertUser(externalID: "\(u)") } }
        // Rows 0 (padding), 1, 2 and 3: users "1" and "2" exist; rows 0 and 3 are skipped, not created.
        let npy = try writeFile("p.npy", bytes: npyBytes(rows: 4, columns: 2, dtype: .f16) { r, c in Float(r + c) })
        let summary = try db.importEmbeddings(from: npy, options: .init(space: "profile", kind: .user))
        XCTAssertEqual(summary.vectors, 2)
        XCTAssertEqual(summary.skipped, 2)
        XCTAssertNil(try db.read { try $0.userID(for: "0") })
        XCTAssertEqual(try db.stats().users, 2)
        // With --ids (named rows) a profile may arrive before the user's first event.
        var options = EmbeddingImportOptions(space: "profile", kind: .user)
        options.idsFile = try writeFile("ids.txt", "1\n2\nnewcomer\n9\n")
        XCTAssertEqual(try db.importEmbeddings(from: npy, options: options).vectors, 4)
        XCTAssertNotNil(try db.read { tx in try tx.vector(space: "profile", entity: tx.userID(for: "newcomer")!) })
    }

    func testBadNPYFilesLeaveTheDatabaseUnchanged() throws {
        let db = try makeDatabase()
        try db.importInteractions(from: try writeFile("s.txt", "u 1 2 3\n"), options: .init(format: .sequences))
        try db.importEmbeddings(from: try writeFile("ok.npy", bytes: npyBytes(rows: 4, columns: 3, dtype: .f32) { _, _ in 1 }),
                                options: .init(space: "emb", kind: .item))
        let before = try fingerprint(db)
        let full = npyBytes(rows: 4, columns: 3, dtype: .f32) { r, c in Float(r + c) }
        let truncated = try writeFile("t.npy", bytes: Array(full.dropLast(20)))
        assertImportError(file: truncated, line: 2, contains: "truncated") {
            try db.importEmbeddings(from: truncated, options: .init(space: "emb2", kind: .item))
        }
        let nan = try writeFile("nan.npy", bytes: npyBytes(rows: 4, columns: 3, dtype: .f32) { r, c in r == 2 && c == 1 ? .nan : 1 })
        assertImportError(file: nan, line: 2, contains: "component 1 is nan") {
            try db.importEmbeddings(from: nan, options: .init(space: "emb2", kind: .item))
        }
        let wide = try writeFile("wide.npy", bytes: npyBytes(rows: 4, columns: 5, dtype: .f32) { _, _ in 1 })
        assertImportError(file: wide, line: nil, contains: "dimension 5 but space 'emb' has dimension 3") {
            try db.importEmbeddings(from: wide, options: .init(space: "emb", kind: .item))
        }
        let garbage = try writeFile("g.npy", "not numpy")
        assertImportError(file: garbage, line: nil, contains: "bad magic") {
            try db.importEmbeddings(from: garbage, options: .init(space: "emb2", kind: .item))
        }
        XCTAssertEqual(try fingerprint(db), before)
        XCTAssertNil(try db.read { try $0.space(named: "emb2") })
    }

    func testJSONEmbeddingsAndProfiles() throws {
        let db = try makeDatabase()
        let emb = try writeFile("p.json", """
            {"u1": [0.1, 0.2, -3e-1],
             "u2": [1, 2, 3]}
            """)
        let summary = try db.importEmbeddings(from: emb, options: .init(space: "profile", kind: .user))
        XCTAssertEqual(summary.vectors, 2)
        XCTAssertEqual(summary.createdUsers, 2, "u1 and u2 did not exist: the import created them")
        XCTAssertEqual(try db.stats().users, 2)
        XCTAssertEqual(try db.read { tx in try tx.vector(space: "profile", entity: try tx.userID(for: "u1")!) }, [0.1, 0.2, -0.3])
        let wrong = try writeFile("w.json", "{\"u3\": [1, 2, 3],\n \"u4\": [1, 2]}")
        assertImportError(file: wrong, line: 2, contains: "dimension 2, expected 3") {
            try db.importEmbeddings(from: wrong, options: .init(space: "profile", kind: .user))
        }
        let nan = try writeFile("n.json", "{\"u3\": [1, NaN, 3]}")
        assertImportError(file: nan, line: 1, contains: "is NaN") {
            try db.importEmbeddings(from: nan, options: .init(space: "profile", kind: .user))
        }
        let cut = try writeFile("cut.json", "{\"u3\": [1, 2, 3],\n \"u4\": [1, 2")
        assertImportError(file: cut, line: 2, contains: "truncated") {
            try db.importEmbeddings(from: cut, options: .init(space: "profile", kind: .user))
        }
        XCTAssertNil(try db.read { try $0.userID(for: "u3") })
        // Text after the object is an error, after an empty object too (the jsonvectors fuzz target's input).
        for (name, text) in [("after.json", "{\"u3\": [1, 2, 3]}\n}"), ("empty.json", "{}}}}}}}}}}}}\"u1\". \"lpsticktick\", \"u2\" ")] {
            let file = try writeFile(name, text)
            assertImportError(file: file, line: name == "after.json" ? 2 : 1, contains: "unexpected text after the closing '}'") {
                try db.importEmbeddings(from: file, options: .init(space: "profile", kind: .user))
            }
        }
        XCTAssertNil(try db.read { try $0.userID(for: "u3") })
        let unknownItem = try writeFile("i.json", "{\"nope\": [1, 2, 3]}")
        assertImportError(file: unknownItem, line: 1, contains: "unknown item 'nope'") {
            try db.importEmbeddings(from: unknownItem, options: .init(space: "items", kind: .item))
        }

        let profiles = try writeFile("profiles.json", #"{"u1": "Loves \"bold\" lipstick \u00e9", "new": "Minimalist."}"#)
        XCTAssertEqual(try db.importProfiles(from: profiles).profiles, 2)
        XCTAssertEqual(try db.read { tx in try tx.profile(user: try tx.userID(for: "u1")!)?.text }, #"Loves "bold" lipstick é"#)
        XCTAssertNotNil(try db.read { try $0.userID(for: "new") })
        let lines = try writeFile("profiles.jsonl", "{\"user\": \"u2\", \"text\": \"Gamer.\"}\n{\"user\": \"u2\"}\n")
        assertImportError(file: lines, line: 2, contains: "missing required \"text\"") { try db.importProfiles(from: lines) }
        XCTAssertNil(try db.read { tx in try tx.profile(user: try tx.userID(for: "u2")!) })
    }
}

extension ImportSummary {
}
