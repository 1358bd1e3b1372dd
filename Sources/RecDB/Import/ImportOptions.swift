import Foundation

/// Layouts an interactions file can have.
public enum InteractionFormat: String, Codable, Sendable, CaseIterable {
    /// Comma-separated with a header row (RFC 4180 quoting).
    case csv
    /// Tab-separated with a header row.
    case tsv
    /// One JSON object per line.
    case jsonl
    /// RecBole atomic file (`.inter`): tab-separated, header `name:type` (`user_id:token item_id:token rating:float timestamp:float`).
    case recbole
    /// `user item1 item2 ...` per line, chronological (the SASRec / S3-Rec / LLM2Rec data layout).
    /// Events get the position in the sequence (1, 2, …) as timestamp.
    case sequences

    /// The format a file name suggests, if any.
    public static func guess(path: String) -> InteractionFormat? {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "csv": return .csv
        case "tsv", "tab": return .tsv
        case "jsonl", "ndjson": return .jsonl
        case "inter": return .recbole
        case "txt": return .sequences
        default: return nil
        }
    }
}

/// Layouts an items or users file can have.
public enum RecordFormat: String, Codable, Sendable, CaseIterable {
    case csv, tsv, jsonl
    /// RecBole `.item` / `.user` atomic file.
    case recbole

    public static func guess(path: String) -> RecordFormat? {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "csv": return .csv
        case "tsv", "tab": return .tsv
        case "jsonl", "ndjson": return .jsonl
        case "item", "user": return .recbole
        default: return nil
        }
    }
}

/// Progress of a long import: rows so far and bytes of the file consumed.
public struct ImportProgress: Sendable {
    public var rows: Int
    public var bytesDone: Int
    public var bytesTotal: Int
}

public typealias ImportProgressHandler = (ImportProgress) -> Void

public struct InteractionImportOptions {
    public var format: InteractionFormat?
    /// Header columns (CSV/TSV/RecBole, with RecBole's `:type` suffix removed) or JSON keys.
    /// nil picks the defaults: `user`/`item`/`timestamp` (RecBole: `user_id`/`item_id`/`timestamp`).
    public var userColumn: String?
    public var itemColumn: String?
    public var timeColumn: String?
    /// Optional event-type column (default: `type` or `event` when present).
    public var typeColumn: String?
    /// Optional value column (default: `value` or `rating` when present).
    public var valueColumn: String?
    /// Event type for rows that carry none.
    public var eventType: String?
    /// Allow importing a file whose exact contents were imported before (duplicating its events).
    public var allowDuplicateImport = false
    /// Longest accepted line in bytes (default 1 MiB); a longer line stops the import with FILE:LINE.
    public var maxLineBytes = ImportLimits.defaultMaxLineBytes
    /// Where the import's sort spills its runs (unnamed files, gone when the import ends however it
    /// ends); nil: the database directory (same disk as the data; `/tmp` may be RAM).
    public var temporaryDirectory: String?
    public var progress: ImportProgressHandler?
    /// Events per sort run (32 bytes each, twice: the run and the radix sort's copy): 2M = 128 MiB.
    var runEvents = 1 << 21
    /// Into a database holding ids: ids met for the first time looked up together, in key order (the
    /// rows naming them wait in the sort buffer; fewer when the buffer fills first).
    var idLookupBatch = 1 << 16

    public init(format: InteractionFormat? = nil) { self.format = format }
}

public struct RecordImportOptions {
    public var format: RecordFormat?
    /// Column (or JSON key) with the external id. nil: `item_id`/`user_id`, then `item`/`user`, then `id`.
    public var idColumn: String?
    /// Item title column. nil: `title`, `name` or a column whose name contains `title` when present.
    public var titleColumn: String?
    /// Columns joined (with ". ") into the item's free text.
    public var textColumns: [String] = []
    /// Columns kept as attributes. nil: every column not used above.
    public var attributeColumns: [String]?
    /// Column holding availability (`0/1`, `true/false`); absent means available.
    public var availabilityColumn: String?
    /// Longest accepted line in bytes (default 1 MiB); a longer line stops the import with FILE:LINE.
    public var maxLineBytes = ImportLimits.defaultMaxLineBytes
    public var progress: ImportProgressHandler?

    public init(format: RecordFormat? = nil) { self.format = format }
}

public struct EmbeddingImportOptions {
    public var space: String
    public var kind: EntityKind
    /// Storage type of a new space; nil keeps the file's type (.npy) or f32 (JSON).
    public var dtype: VectorDType?
    public var metric: VectorMetric = .cosine
    /// L2-normalise vectors on write (new spaces only).
    public var normalize = false
    /// File with one external id per line: line r names the entity of row r. Without it, row r is the
    /// entity whose external id is the decimal string of r; rows with no such entity are skipped and counted.
    public var idsFile: String?
    /// Create users that do not exist yet (user spaces, JSON files and `.npy` with `idsFile`; rows mapped
    /// by position never create users).
    public var createMissingUsers = true
    public var provenance: String?
    /// Longest accepted line of `idsFile` in bytes (default 1 MiB).
    public var maxLineBytes = ImportLimits.defaultMaxLineBytes
    public var progress: ImportProgressHandler?

    public init(space: String, kind: EntityKind) { self.space = space; self.kind = kind }
}

public struct ProfileImportOptions {
    /// JSON Lines keys (JSON files are `{"user": "text"}` objects).
    public var userKey = "user"
    public var textKey = "text"
    /// Longest accepted JSON Lines line in bytes (default 1 MiB).
    public var maxLineBytes = ImportLimits.defaultMaxLineBytes
    public var progress: ImportProgressHandler?
    public init() {}
}

/// Limits every import applies to its input (documented in the README's import section).
public enum ImportLimits {
    /// Default longest line (1 MiB). Reading never buffers more than the limit, whatever the file.
    public static let defaultMaxLineBytes = LineReader.defaultMaxLineBytes
    /// Accepted timestamps: 0 ... 253_402_300_799_999, i.e. 1970-01-01 up to the end of year 9999 in
    /// seconds, and the same range in milliseconds (many logs use milliseconds). Anything outside is
    /// a unit mistake or damage: negative values and absurd magnitudes are refused with FILE:LINE.
    public static let timestampRange: ClosedRange<Int64> = 0...253_402_300_799_999
    /// RecBole atomic-file field types (`name:type` in the header).
    public static let recboleTypes: Set<String> = ["token", "token_seq", "float", "float_seq"]
}

/// What an import did.
public struct ImportSummary: Codable, Sendable, Equatable {
    public var file: String
    public var kind: String
    public var format: String
    /// Data rows (or vectors / profiles) read.
    public var rows: Int = 0
    public var events: Int = 0
    public var createdUsers: Int = 0
    public var createdItems: Int = 0
    public var updatedItems: Int = 0
    public var vectors: Int = 0
    public var profiles: Int = 0
    /// Rows skipped because no entity matched (default `.npy` row mapping only).
    public var skipped: Int = 0
    public var space: String?
    public var seconds: Double = 0

    enum CodingKeys: String, CodingKey {
        case file, kind, format, rows, events, vectors, profiles, skipped, space, seconds
        case createdUsers = "created_users", createdItems = "created_items", updatedItems = "updated_items"
    }
}

extension Database {
    /// Runs one import: makes room in the map for about `bytesPerFileByte` × the file's size (so a large
    /// import is not retried after growing the map), runs `body` in one write transaction — all or
    /// nothing — and times it.
    func runImport(_ path: String, bytesPerFileByte: Int, _ body: (WriteTransaction) throws -> ImportSummary) throws -> ImportSummary {
        try requireNoTransaction("an import")
        let start = Date()
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        try reserve(bytes: fileSize * bytesPerFileByte + (16 << 20))
        var summary = try write(body)
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }
}

extension LineReader {
    /// The next line, checked to be UTF-8; reports progress every `progressInterval` lines (a power of two).
    func nextValidLine(rows: Int, progressInterval: Int, progress: ImportProgressHandler?) throws -> UnsafeRawBufferPointer? {
        guard let line = try next() else { return nil }
        guard UTF8Check.isValid(line) else { throw error("not valid UTF-8") }
        if lineNumber & (progressInterval - 1) == 0, let progress {
            progress(ImportProgress(rows: rows, bytesDone: bytesConsumed, bytesTotal: totalBytes))
        }
        return line
    }

    /// Splits `line` into `fields`, turning a quoting error into an error naming this file and line.
    func split(_ line: UnsafeRawBufferPointer, with splitter: FieldSplitter, into fields: inout [String]) throws {
        do { try splitter.split(line, into: &fields) } catch { throw self.error("\(error)") }
    }

    /// Reads the header row: column names, trimmed, with RecBole's `:type` suffix removed when asked.
    func header(_ splitter: FieldSplitter, recbole: Bool) throws -> [String] {
        guard let line = try nextValidLine(rows: 0, progressInterval: 1 << 14, progress: nil) else {
            throw error("the file is empty (a header row is expected)", line: 1)
        }
        var fields: [String] = []
        try split(line, with: splitter, into: &fields)
        var names: [String] = []
        var seen: [String: Int] = [:]
        for (index, field) in fields.enumerated() {
            var name = field.trimmingCharacters(in: .whitespaces)
            if recbole {
                // RecBole itself refuses a field without a known type; so do we, naming the column.
                guard let colon = name.lastIndex(of: ":") else {
                    throw error("RecBole header field '\(name.prefix(40))' has no ':type' (one of \(ImportLimits.recboleTypes.sorted().joined(separator: ", ")))", line: 1)
                }
                let type = String(name[name.index(after: colon)...])
                guard ImportLimits.recboleTypes.contains(type) else {
                    throw error("RecBole header field '\(name.prefix(40))' has unknown type '\(type.prefix(20))' (one of \(ImportLimits.recboleTypes.sorted().joined(separator: ", ")))", line: 1)
                }
                name = String(name[..<colon])
            }
            // A repeated name would make every column lookup pick the first one silently.
            if let first = seen[name] {
                throw error("column '\(name.prefix(40))' appears twice in the header (columns \(first + 1) and \(index + 1))", line: 1)
            }
            seen[name] = index
            names.append(name)
        }
        return names
    }
}
