import ArgumentParser
import Foundation
import RecDB

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Embed item texts (or profiles) with an in-store sentence encoder; keeps the space current afterwards.")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Embedding space to fill (created when new).") var space: String
    @Option(help: "Sentence-transformers model folder (BERT family, e.g. all-MiniLM-L6-v2).") var encoder: String
    @Option(help: "Text template: {title}, {text}, {<attribute>}, {profile}.") var template: String?
    @Option(help: "item or user (user embeds profile texts).") var kind: EntityKind = .item
    @Option(help: "Sentences per batch (one transaction per batch).") var batch: Int = 128
    @Flag(help: "Recompute vectors that already exist (default: resume).") var all = false
    @Flag(inversion: .prefixedNo, help: "Embed items (profiles) inserted later automatically.") var embedOnInsert = true
    @Option(help: "Storage type of a new space: f32 or f16.") var dtype: VectorDType = .f32
    @OptionGroup var output: OutputOptions

    func validate() throws { guard (1...65_536).contains(batch) else { throw ValidationError("--batch must be in 1...65536") } }

    func run() throws {
        let database = try db.open()
        var request = EmbedRequest(space: space, encoderDirectory: encoder)
        request.template = template ?? (kind == .item ? "{title}" : "{profile}")
        request.kind = kind
        request.batchSize = batch
        request.recomputeAll = all
        request.embedOnInsert = embedOnInsert
        request.dtype = dtype
        let progress = ProgressLine("embedding", quiet: output.json)
        request.progress = { done, total in progress.update(done: done, total: total, unit: "\(done)/\(total) texts") }
        let outcome = try reportingErrors { try database.embed(request) }
        progress.finish()
        if output.json { try printJSON(outcome); return }
        print(String(format: "embedded %d texts into '%@' (dim %d) in %.1f s, %.0f sentences/s; %d skipped (already embedded or empty)",
                     outcome.embedded, outcome.space, outcome.dimension, outcome.seconds, outcome.sentencesPerSecond, outcome.skipped))
    }
}
