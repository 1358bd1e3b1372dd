import Foundation
import XCTest
@testable import RecDB

/// The issue #12 commands, run as a user would: each fails with one readable line, no signal, and leaves
/// the database byte-for-byte unchanged (`data.mdb` bytes, `stats --json`, `verify` clean).
final class HostileCommandTests: DatabaseTestCase {
    func testFailedCommandsLeaveTheDatabaseByteForByteUnchanged() throws {
        let rdbctl = try XCTUnwrap(builtProduct("rdbctl"), "rdbctl is built with the tests (`make test` builds every product)")
        let db = path("db")
        do {
            let database = try makeDatabase()
            try database.write { tx in
                try tx.createSpace(EmbeddingSpace(name: "emb", kind: .item, dimension: 4, metric: .cosine))
                for i in 1...6 {
                    let id = try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Item \(i)"))
                    try tx.putVector(space: "emb", entity: id, [Float(i), 1, Float(i % 3), 0.5])
                    let user = try tx.upsertUser(externalID: "u\(i)")
                    try tx.appendEvent(user: user, item: id, timestamp: Int64(i))
                }
            }
            _ = try database.buildIndex(space: "emb")
        }
        let dataFile = db + "/data.mdb"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dataFile))
        let (_, stats, _) = try runProcess(rdbctl, ["stats", db, "--json"])

        let dup = try writeFile("dup.csv", "user,user,item\n1,2,a\n")
        let long = try writeFile("long.csv", "user,item\nu1," + String(repeating: "x", count: 100) + "\n")
        let ts = try writeFile("ts.csv", "user,item,timestamp\nu1,i1,-7\n")
        let mac = try writeFile("ids.jsonl", "{\"item\": \"a\\u0000b\"}\n")
        let inter = try writeFile("t.inter", "user_id:token\titem_id:tokn\n1\t2\n")
        var npy: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        npy += [UInt8(header.utf8.count), 0] + Array(header.utf8) + [UInt8](repeating: 0, count: 48)
        let badNPY = try writeFile("bad.npy", bytes: npy)
        let failing: [([String], String)] = [
            (["import", "interactions", db, dup], "error: \(dup):1: column 'user' appears twice in the header (columns 1 and 2)"),
            (["import", "interactions", db, "/dev/zero", "--format", "csv"], "error: /dev/zero:1: line is longer than 1048576 bytes"),
            (["import", "interactions", db, long, "--max-line-bytes", "64"], "error: \(long):2: line is longer than 64 bytes"),
            (["import", "interactions", db, ts], "error: \(ts):2: timestamp -7 is outside the accepted range"),
            (["import", "items", db, mac], "error: \(mac):1: item id contains the control character U+0000"),
            (["import", "interactions", db, inter], "error: \(inter):1: RecBole header field 'item_id:tokn' has unknown type 'tokn'"),
            (["import", "embeddings", db, badNPY, "--space", "v"], "error: \(badNPY): shape (-3, 4) is not usable"),
            (["export", "items", db, dataFile], "error: refusing to export to \(dataFile)"),
            (["train", db, "--model", "m", "--epochs", "0"], "Error: --epochs must be ≥ 1"),
            (["train", db, "--model", "m", "--hidden", "100000000"], "error: training: "),
            (["recommend", db, "u1", "-k", "1000000000000"], "error: "),
        ]
        for (arguments, expected) in failing {
            let (status, _, err) = try runProcess(rdbctl, arguments)
            XCTAssertTrue(status == 1 || status == 64, "\(arguments): exit \(status) (a signal is > 128)")
            XCTAssertTrue(err.hasPrefix(expected), "\(arguments): \(err)")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dataFile)), bytes, "\(arguments) changed data.mdb")
        }
        // A huge k is clamped to the catalogue (read-only, succeeds).
        let (status, out, err) = try runProcess(rdbctl, ["similar", db, "i1", "--space", "emb", "-k", "1000000000000", "--json"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [Any])?.count, 5)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dataFile)), bytes)
        XCTAssertEqual(try runProcess(rdbctl, ["stats", db, "--json"]).1, stats)
        XCTAssertEqual(try runProcess(rdbctl, ["verify", db]).0, 0)
        let (_, help, _) = try runProcess(rdbctl, ["import", "interactions", "--help"])
        XCTAssertTrue(help.contains("--max-line-bytes") && help.contains("default: 1048576"), help)
    }
}
