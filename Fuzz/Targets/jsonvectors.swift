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
        try! Scratch.database.write { tx in try tx.dropSpace("fuzz") }
    }
}
