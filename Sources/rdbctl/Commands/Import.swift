import ArgumentParser
import Foundation
import RecDB

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import interactions, items, users, embeddings or profiles (all or nothing).",
        subcommands: [ImportInteractions.self, ImportItems.self, ImportUsers.self, ImportEmbeddings.self, ImportProfiles.self]
    )
}

/// Prints an import's summary (JSON or one line) — shared by the import subcommands.
func report(_ summary: ImportSummary, json: Bool) throws {
    if json { try printJSON(summary); return }
    var parts = ["\(summary.rows) rows"]
    if summary.events > 0 { parts.append("\(summary.events) events") }
    if summary.createdUsers > 0 { parts.append("\(summary.createdUsers) new users") }
    if summary.createdItems > 0 { parts.append("\(summary.createdItems) new items") }
    if summary.updatedItems > 0 { parts.append("\(summary.updatedItems) updated items") }
    if summary.vectors > 0 { parts.append("\(summary.vectors) vectors into '\(summary.space ?? "")'") }
    if summary.profiles > 0 { parts.append("\(summary.profiles) profiles") }
    if summary.skipped > 0 { parts.append("\(summary.skipped) rows skipped (no matching id)") }
    print("imported \(summary.kind) from \(summary.file): \(parts.joined(separator: ", ")) in \(String(format: "%.2f", summary.seconds)) s")
}

/// `--max-line-bytes`, shared by the import subcommands.
struct LineLimit: ParsableArguments {
    @Option(help: "Longest accepted line in bytes; a longer one stops the import with FILE:LINE.")
    var maxLineBytes: Int = ImportLimits.defaultMaxLineBytes

    func validate() throws {
        guard (1...(1 << 30)).contains(maxLineBytes) else { throw ValidationError("--max-line-bytes must be in 1...1073741824") }
    }
}

func progressHandler(_ line: ProgressLine) -> ImportProgressHandler {
    { p in line.update(done: p.bytesDone, total: p.bytesTotal, unit: "\(p.rows) rows") }
}

struct ImportInteractions: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "interactions", abstract: "Import user–item events (CSV, TSV, JSONL, RecBole .inter, sequence files).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "The file to import.") var file: String
    @Option(help: "csv, tsv, jsonl, recbole or sequences (default: from the file name).") var format: InteractionFormat?
    @Option(help: "User column (default: user / user_id).") var userColumn: String?
    @Option(help: "Item column (default: item / item_id).") var itemColumn: String?
    @Option(help: "Time column (default: timestamp when present).") var timeColumn: String?
    @Option(help: "Event-type column (default: type / event when present).") var typeColumn: String?
    @Option(help: "Value column (default: value / rating when present).") var valueColumn: String?
    @Option(help: "Event type for rows without one.") var eventType: String?
    @Flag(help: "Import even if the same contents were imported before (duplicates events).") var allowDuplicate = false
    @Option(help: "Directory for the sort's temporary runs (unnamed files, ~8 bytes an event; default: the database directory).") var tempDir: String?
    @OptionGroup var limit: LineLimit
    @OptionGroup var output: OutputOptions

    /// Files from this size on are imported writing through the memory map (`Database.Options.writeMap`):
    /// anonymous memory then stays flat however large the file (LMDB would otherwise hold up to 512 MiB of
    /// dirty pages), while smaller imports keep a rolled-back write from touching even unused file bytes.
    /// `RDBCTL_WRITE_MAP=1` or `0` forces the choice.
    static let writeMapFileBytes = 64 << 20

    func run() throws {
        let writeMap: Bool
        switch ProcessInfo.processInfo.environment["RDBCTL_WRITE_MAP"] {
        case "1": writeMap = true
        case "0": writeMap = false
        default:
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            writeMap = size >= Self.writeMapFileBytes
        }
        let database = try db.open(writeMap: writeMap)
        let progress = ProgressLine("importing", quiet: output.json)
        var options = InteractionImportOptions(format: format)
        options.userColumn = userColumn; options.itemColumn = itemColumn; options.timeColumn = timeColumn
        options.typeColumn = typeColumn; options.valueColumn = valueColumn; options.eventType = eventType
        options.allowDuplicateImport = allowDuplicate
        options.temporaryDirectory = tempDir
        options.maxLineBytes = limit.maxLineBytes
        options.progress = progressHandler(progress)
        let summary = try reportingErrors { try database.importInteractions(from: file, options: options) }
        progress.finish()
        try report(summary, json: output.json)
    }
}

struct RecordColumns: ParsableArguments {
    @Option(help: "csv, tsv, jsonl or recbole (default: from the file name).") var format: RecordFormat?
    @Option(help: "Id column.") var idColumn: String?
    @Option(help: "Title column (items).") var titleColumn: String?
    @Option(parsing: .upToNextOption, help: "Columns joined into the item's text.") var textColumns: [String] = []
    @Option(parsing: .upToNextOption, help: "Columns kept as attributes (default: all others).") var attributeColumns: [String] = []
    @Option(help: "Availability column (0/1, true/false).") var availabilityColumn: String?
    @OptionGroup var limit: LineLimit

    /// Runs an items or users import with these columns and prints its report.
    func run(_ database: Database, file: String, kind: EntityKind, output: OutputOptions) throws {
        let progress = ProgressLine("importing", quiet: output.json)
        let summary = try reportingErrors {
            kind == .item ? try database.importItems(from: file, options: options(progress: progress))
                          : try database.importUsers(from: file, options: options(progress: progress))
        }
        progress.finish()
        try report(summary, json: output.json)
    }

    func options(progress: ProgressLine) -> RecordImportOptions {
        var o = RecordImportOptions(format: format)
        o.idColumn = idColumn; o.titleColumn = titleColumn; o.textColumns = textColumns
        o.attributeColumns = attributeColumns.isEmpty ? nil : attributeColumns
        o.availabilityColumn = availabilityColumn
        o.maxLineBytes = limit.maxLineBytes
        o.progress = progressHandler(progress)
        return o
    }
}

struct ImportItems: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "items", abstract: "Import or update items (titles, text, attributes).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "The file to import.") var file: String
    @OptionGroup var columns: RecordColumns
    @OptionGroup var output: OutputOptions

    func run() throws { try columns.run(try db.open(), file: file, kind: .item, output: output) }
}

struct ImportUsers: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "users", abstract: "Import or update users (attributes).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "The file to import.") var file: String
    @OptionGroup var columns: RecordColumns
    @OptionGroup var output: OutputOptions

    func run() throws { try columns.run(try db.open(), file: file, kind: .user, output: output) }
}

struct ImportEmbeddings: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "embeddings", abstract: "Import vectors from .npy (float32/float16) or JSON {\"id\": [floats]}.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "The .npy or .json file.") var file: String
    @Option(help: "Embedding space name (created when new).") var space: String
    @Option(help: "item or user.") var kind: EntityKind = .item
    @Option(help: "Storage type of a new space: f32 or f16 (default: the file's).") var dtype: VectorDType?
    @Option(help: "Metric of a new space: cosine, ip or l2.") var metric: VectorMetric = .cosine
    @Flag(help: "L2-normalise vectors on write (new spaces).") var normalize = false
    @Option(help: "File with one external id per line for the rows of an .npy.") var ids: String?
    @Option(help: "Provenance text for a new space.") var provenance: String?
    @OptionGroup var limit: LineLimit
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open()
        let progress = ProgressLine("importing", quiet: output.json)
        var options = EmbeddingImportOptions(space: space, kind: kind)
        options.dtype = dtype; options.metric = metric; options.normalize = normalize
        options.idsFile = ids; options.provenance = provenance
        options.maxLineBytes = limit.maxLineBytes
        options.progress = progressHandler(progress)
        let summary = try reportingErrors { try database.importEmbeddings(from: file, options: options) }
        progress.finish()
        try report(summary, json: output.json)
    }
}

struct ImportProfiles: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "profiles", abstract: "Import user profile texts from JSON {\"user\": \"text\"} or JSONL.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "The .json or .jsonl file.") var file: String
    @Option(help: "JSONL key of the user id.") var userKey = "user"
    @Option(help: "JSONL key of the text.") var textKey = "text"
    @OptionGroup var limit: LineLimit
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open()
        let progress = ProgressLine("importing", quiet: output.json)
        var options = ProfileImportOptions()
        options.userKey = userKey; options.textKey = textKey
        options.maxLineBytes = limit.maxLineBytes
        options.progress = progressHandler(progress)
        let summary = try reportingErrors { try database.importProfiles(from: file, options: options) }
        progress.finish()
        try report(summary, json: output.json)
    }
}

extension InteractionFormat: ExpressibleByArgument {}
extension RecordFormat: ExpressibleByArgument {}
extension EntityKind: ExpressibleByArgument {}
extension VectorDType: ExpressibleByArgument {}
extension VectorMetric: ExpressibleByArgument {}
