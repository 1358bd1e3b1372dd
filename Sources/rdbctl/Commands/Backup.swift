import ArgumentParser
import Foundation
import RecDB

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Consistent, compacting copy of a database while others keep using it.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "Destination directory (new or empty).") var destination: String

    func run() throws {
        let database = try db.open(readOnly: true)
        try reportingErrors { try database.backup(to: destination) }
        print("backed up \(db.database) to \(destination)")
    }
}
