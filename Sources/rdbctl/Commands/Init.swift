import ArgumentParser
import Foundation
import RecDB

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a new, empty database directory.")

    @Argument(help: "The database directory to create.")
    var database: String

    func run() throws {
        try reportingErrors {
            let existed = FileManager.default.fileExists(atPath: database + "/data.mdb")
            _ = try Database(path: database, options: databaseOptions(readOnly: false, create: true))
            print(existed ? "\(database) already is a RecDB database (format \(Database.formatVersion))" : "created \(database)")
        }
    }
}
