import ArgumentParser
import Foundation
import RecDB

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a deterministic synthetic interactions file (app-scale benchmarks and tests).",
        discussion: """
        Users with lognormal history lengths, Zipf item popularity inside item clusters, a Markov chain over
        clusters (planted sequential structure), timestamps increasing per user; CSV rows in global time order.
        The same seed and sizes always give the same file; CSV and sequence output hold the same histories.
        """)

    @Argument(help: "The file to write (replaced).") var output: String
    @Option(help: "Number of events.") var rows: Int
    @Option(help: "Number of users (default rows / 50).") var users: Int?
    @Option(help: "Catalogue size (default rows / 100 clamped to 50,000...1,000,000).") var items: Int?
    @Option(help: "Item clusters (default items / 500).") var clusters: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(help: "First timestamp (seconds since 1970).") var startTime: Int64 = 1_600_000_000
    @Option(help: "Users are named u<offset + k> (a second file with an offset shares users with the first).") var userOffset = 0
    @Option(help: "csv (user,item,timestamp) or sequences (user item1 item2 ...).") var format: SyntheticInteractions.Output = .csv
    @OptionGroup var outputOptions: OutputOptions

    func run() throws {
        try reportingErrors {
            var generator = SyntheticInteractions(rows: rows, users: users, items: items, clusters: clusters, seed: seed)
            generator.startTime = startTime
            generator.userOffset = userOffset
            let summary = try generator.write(to: output, format: format)
            if outputOptions.json { try printJSON(summary); return }
            print("wrote \(output): \(summary.rows) events, \(summary.users) users, \(summary.items) items in \(summary.clusters) clusters, \(summary.bytes) bytes in \(String(format: "%.2f", summary.seconds)) s")
        }
    }
}

extension SyntheticInteractions.Output: ExpressibleByArgument {}
