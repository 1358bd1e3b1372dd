// RecBole atomic files: `.inter` through the interactions importer, `.item`/`.user` through the record importer.
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    let body = Array(bytes.dropFirst())
    if first & 1 == 0 {
        let path = Scratch.write(body, as: "data.inter")
        var options = InteractionImportOptions(format: .recbole)
        options.maxLineBytes = fuzzLineLimit
        options.allowDuplicateImport = true
        rolledBack { tx in var importer = try InteractionImporter(path: path, format: .recbole, options: options, tx: tx,
                                                                     spillDirectory: Scratch.directory); _ = try importer.run() }
    } else {
        let kind: EntityKind = first & 2 == 0 ? .item : .user
        let path = Scratch.write(body, as: kind == .item ? "data.item" : "data.user")
        var options = RecordImportOptions(format: .recbole)
        options.maxLineBytes = fuzzLineLimit
        rolledBack { tx in var importer = try RecordImporter(path: path, kind: kind, format: .recbole, options: options, tx: tx); _ = try importer.run() }
    }
}
