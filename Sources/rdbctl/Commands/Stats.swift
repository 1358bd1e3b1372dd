import ArgumentParser
import Foundation
import RecDB

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counts of users, items, interactions, spaces and the file size.")
    @OptionGroup var db: DatabaseArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open(readOnly: true)
        let stats = try reportingErrors { try database.stats() }
        if output.json { try printJSON(stats); return }
        print("database      \(db.database) (format \(stats.formatVersion), \(formatBytes(stats.fileBytes)))")
        print("users         \(stats.users)")
        print("items         \(stats.items)")
        print("interactions  \(stats.interactions) (event version \(stats.eventVersion))")
        print("profiles      \(stats.profiles)")
        print("models        \(stats.models)")
        print("indexes       \(stats.indexes)")
        print("spaces        \(stats.spaces.isEmpty ? "none" : "")")
        for s in stats.spaces {
            print("  \(s.name): \(s.kind.rawValue), dim \(s.dim), \(s.dtype.rawValue), \(s.metric.rawValue), \(s.count) vectors")
        }
    }
}

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}
