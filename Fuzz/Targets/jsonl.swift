// JSON Lines: interactions, items, users and profiles; the first byte picks which.
import Foundation
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    let path = Scratch.write(Array(bytes.dropFirst()), as: "input.jsonl")
    switch first % 4 {
    case 0:
        var options = InteractionImportOptions(format: .jsonl)
        options.maxLineBytes = fuzzLineLimit
        options.allowDuplicateImport = true
        rolledBack { tx in var importer = try InteractionImporter(path: path, format: .jsonl, options: options, tx: tx,
                                                                     spillDirectory: Scratch.directory); _ = try importer.run() }
    case 1, 2:
        var options = RecordImportOptions(format: .jsonl)
        options.maxLineBytes = fuzzLineLimit
        let kind: EntityKind = first % 4 == 1 ? .item : .user
        rolledBack { tx in var importer = try RecordImporter(path: path, kind: kind, format: .jsonl, options: options, tx: tx); _ = try importer.run() }
    default:
        // The profiles import runs its own transaction: it writes into a separate database that is
        // recreated every 256 successful imports, so the store the other cases see never changes.
        var options = ProfileImportOptions()
        options.maxLineBytes = fuzzLineLimit
        if (try? Profiles.database.importProfiles(from: path, options: options)) != nil {
            Profiles.successes += 1
            if Profiles.successes % 256 == 0 { Profiles.reset() }
        }
    }
}

enum Profiles {
    static var successes = 0
    static var generation = 0
    static var database = make()
    static func make() -> Database {
        generation += 1
        try? FileManager.default.removeItem(atPath: Scratch.directory + "/profiles-db-\(generation - 1)")
        return try! Database(path: Scratch.directory + "/profiles-db-\(generation)", options: .init(initialMapSize: 16 << 20))
    }
    static func reset() { database = make() }
}
