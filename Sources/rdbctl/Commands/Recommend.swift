import ArgumentParser
import Foundation
import RecDB

struct Recommend: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Top-k recommendations for a user from their current history.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "External user id.") var user: String
    @Option(name: .short, help: "Number of results.") var k: Int = 10
    @Option(help: "Model name (default: the only model).") var model: String?
    @Option(help: "Model version (default: the active one).") var version: UInt32?
    @Flag(help: "Leave out items the user has already seen (default), or keep them.") var seen: SeenPolicy = .excludeSeen
    @Option(help: "Never return this item (repeatable).") var exclude: [String] = []
    @Option(help: "Only these items (repeatable).") var allow: [String] = []
    @Option(help: "Only items whose attribute KEY equals VALUE (KEY=VALUE, repeatable).") var attribute: [String] = []
    @OptionGroup var output: OutputOptions

    /// `--exclude-seen` / `--include-seen`.
    enum SeenPolicy: EnumerableFlag { case excludeSeen, includeSeen }

    func validate() throws { guard k > 0 else { throw ValidationError("-k must be positive") } }

    func run() throws {
        let database = try db.open(readOnly: true)
        var options = RecommendOptions(model: model, version: version, excludeSeen: seen == .excludeSeen)
        options.filter = try parseAttributes(attribute)
        options.filter.excludeItems = exclude
        options.filter.allowItems = allow.isEmpty ? nil : allow
        let result = try reportingErrors { try database.recommend(user: user, k: k, options: options) }
        if output.json { try printResults(result.items, json: true); return }
        print("\(result.items.count) recommendations for \(user) from \(result.model)@\(result.version) (\(result.source.rawValue))")
        try printResults(result.items, json: false)
    }
}
