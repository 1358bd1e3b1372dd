// Interactions CSV through the real importer (RFC 4180 fields, header resolution, timestamps, ids).
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    let path = Scratch.write(bytes, as: "events.csv")
    var options = InteractionImportOptions(format: .csv)
    options.maxLineBytes = fuzzLineLimit
    options.allowDuplicateImport = true
    rolledBack { tx in var importer = try InteractionImporter(path: path, format: .csv, options: options, tx: tx,
                                                                     spillDirectory: Scratch.directory); _ = try importer.run() }
}
