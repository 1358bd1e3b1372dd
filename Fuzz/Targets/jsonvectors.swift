// JSON objects of vectors (`{"id": [floats]}`) and of profiles (`{"user": "text"}`) through the streaming reader,
// then through the embeddings import.
import Foundation
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    let path = Scratch.write(bytes, as: "vectors.json")
    if var stream = try? JSONObjectStream(path: path) {
        var n = 0
        while n < 10_000, let entry = try? stream.next() { _ = entry; n += 1 }
    }
    let options = EmbeddingImportOptions(space: "fuzz", kind: .item)
    if (try? Scratch.database.importEmbeddings(from: path, options: options)) != nil {
        // An empty object imports nothing and creates no space (its dimension comes from the first vector).
        try! Scratch.database.write { tx in if try tx.space(named: "fuzz") != nil { try tx.dropSpace("fuzz") } }
    }
}
