import ArgumentParser
import Foundation
import RecDB

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Export interactions or items to CSV or JSONL (readable by import).")

    enum What: String, ExpressibleByArgument { case interactions, items }

    @Argument(help: "interactions or items.") var what: What
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "Output file.") var file: String
    @Option(help: "csv or jsonl (default: from the file name, else csv).") var format: ExportFormat?
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open(readOnly: true)
        let chosen = format ?? (file.hasSuffix(".jsonl") ? .jsonl : .csv)
        let rows = try reportingErrors {
            what == .interactions ? try database.exportInteractions(to: file, format: chosen) : try database.exportItems(to: file, format: chosen)
        }
        if output.json { print("{\"rows\":\(rows),\"file\":\"\(file)\"}") } else { print("exported \(rows) \(what.rawValue) to \(file)") }
    }
}

extension ExportFormat: ExpressibleByArgument {}
