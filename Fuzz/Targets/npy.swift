// `.npy` headers and rows: the reader alone (every row), then the embeddings import into a rolled-back space.
import Foundation
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    let path = Scratch.write(bytes, as: "vectors.npy")
    if let npy = try? NPYReader(path: path) {
        var row: [Float] = []
        for r in 0..<min(npy.rows, 64) { _ = try? npy.read(row: r, into: &row) }
    }
    // The public import (its own transaction) into a space that exists only if the import succeeds;
    // the space is dropped again so every input meets the same store.
    let options = EmbeddingImportOptions(space: "fuzz", kind: .item)
    if (try? Scratch.database.importEmbeddings(from: path, options: options)) != nil {
        try! Scratch.database.write { tx in try tx.dropSpace("fuzz") }
    }
}
