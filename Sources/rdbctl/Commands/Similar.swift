import ArgumentParser
import Foundation
import RecDB

struct Similar: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Items most similar to an item in an embedding space (or a model's item space).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "External item id.") var item: String
    @Option(help: "Embedding space (e.g. minilm, or sasrec@1 for a model's item vectors).") var space: String?
    @Option(help: "Use the active version's item space of this model.") var model: String?
    @Option(name: .short, help: "Number of results.") var k: Int = 10
    @Option(help: "Only items whose attribute KEY equals VALUE (KEY=VALUE, repeatable).") var attribute: [String] = []
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (space == nil) != (model == nil) else { throw ValidationError("give exactly one of --space and --model") }
        guard k > 0 else { throw ValidationError("-k must be positive") }
    }

    func run() throws {
        let database = try db.open(readOnly: true)
        let results = try reportingErrors { () throws -> [ScoredItem] in
            let spaceName = try space ?? database.read { tx in
                let info = try tx.modelVersion(model!)
                return Database.itemSpaceName(model: info.model, version: info.version)
            }
            return try database.similarItems(to: item, k: k, space: spaceName, filter: try parseAttributes(attribute))
        }
        try printResults(results, json: output.json)
    }
}

/// `KEY=VALUE` pairs into an attribute filter.
func parseAttributes(_ pairs: [String]) throws -> SearchFilter {
    var filter = SearchFilter()
    for pair in pairs {
        guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else { throw ValidationError("--attribute takes KEY=VALUE, got '\(pair)'") }
        filter.attributes[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
    }
    return filter
}

struct ResultRow: Encodable {
    var item: String
    var score: Float
    var title: String?
}

func printResults(_ results: [ScoredItem], json: Bool) throws {
    if json { try printJSON(results.map { ResultRow(item: $0.item, score: $0.score, title: $0.title) }); return }
    for (rank, r) in results.enumerated() {
        print(String(format: "%3d. %-12@ %8.4f  ", rank + 1, r.item, r.score) + (r.title ?? ""))
    }
}
