// Interactions TSV and items CSV/TSV through the real importers; the first byte picks which.
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    let body = Array(bytes.dropFirst())
    switch first % 3 {
    case 0:
        let path = Scratch.write(body, as: "events.tsv")
        var options = InteractionImportOptions(format: .tsv)
        options.maxLineBytes = fuzzLineLimit
        options.allowDuplicateImport = true
        rolledBack { tx in var importer = try InteractionImporter(path: path, format: .tsv, options: options, tx: tx,
                                                                     spillDirectory: Scratch.directory); _ = try importer.run() }
    default:
        let format: RecordFormat = first % 3 == 1 ? .csv : .tsv
        let path = Scratch.write(body, as: "items." + format.rawValue)
        var options = RecordImportOptions(format: format)
        options.maxLineBytes = fuzzLineLimit
        rolledBack { tx in var importer = try RecordImporter(path: path, kind: .item, format: format, options: options, tx: tx); _ = try importer.run() }
    }
}
