// Sequence files (`user item1 item2 ...`) through the interactions importer.
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    let path = Scratch.write(bytes, as: "Beauty.txt")
    var options = InteractionImportOptions(format: .sequences)
    options.maxLineBytes = fuzzLineLimit
    options.allowDuplicateImport = true
    rolledBack { tx in var importer = try InteractionImporter(path: path, format: .sequences, options: options, tx: tx,
                                                                     spillDirectory: Scratch.directory); _ = try importer.run() }
}
