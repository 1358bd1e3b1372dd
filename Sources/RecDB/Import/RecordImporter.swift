import Foundation

extension Database {
    /// Imports (creates or updates, by external id) the items of a CSV/TSV/JSONL/RecBole `.item`
    /// file in one write transaction: all of it or nothing. Importing the same file again is
    /// idempotent (the same ids get the same fields).
    @discardableResult
    public func importItems(from path: String, options: RecordImportOptions = .init()) throws -> ImportSummary {
        try importRecords(from: path, kind: .item, options: options)
    }

    /// Imports users (external id + attributes) like `importItems`.
    @discardableResult
    public func importUsers(from path: String, options: RecordImportOptions = .init()) throws -> ImportSummary {
        try importRecords(from: path, kind: .user, options: options)
    }

    private func importRecords(from path: String, kind: EntityKind, options: RecordImportOptions) throws -> ImportSummary {
        guard let format = options.format ?? RecordFormat.guess(path: path) else {
            throw RecDBError.invalidArgument("cannot tell the format of \(path) from its name; give one of \(RecordFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return try runImport(path, bytesPerFileByte: 4) { tx in
            var importer = try RecordImporter(path: path, kind: kind, format: format, options: options, tx: tx)
            return try importer.run()
        }
    }
}

struct RecordImporter {
    let kind: EntityKind
    let format: RecordFormat
    let options: RecordImportOptions
    let tx: WriteTransaction
    let reader: LineReader
    var summary: ImportSummary

    init(path: String, kind: EntityKind, format: RecordFormat, options: RecordImportOptions, tx: WriteTransaction) throws {
        self.kind = kind
        self.format = format
        self.options = options
        self.tx = tx
        reader = try LineReader(path: path, maxLineBytes: options.maxLineBytes)
        summary = ImportSummary(file: path, kind: kind == .item ? "items" : "users", format: format.rawValue)
    }

    /// One parsed record: column → text (JSON values other than strings keep their JSON text).
    typealias Row = [(name: String, value: Any)]

    mutating func run() throws -> ImportSummary {
        switch format {
        case .jsonl:
            let schema = try JSONSchema.bundled(kind == .item ? "import/items.jsonl.schema.json" : "import/users.jsonl.schema.json")
            while let line = try nextLine() {
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                    throw reader.error("not a JSON object")
                }
                if options.idColumn == nil, let problem = schema.violation(of: object) { throw reader.error(problem) }
                try store(object.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 })
            }
        case .csv, .tsv, .recbole:
            let splitter = FieldSplitter(style: format == .csv ? .csv : .tsv)
            var fields: [String] = []
            let header = try reader.header(splitter, recbole: format == .recbole)
            try checkColumns(header)
            while let line = try nextLine() {
                if line.isEmpty { continue }
                try reader.split(line, with: splitter, into: &fields)
                guard fields.count == header.count else { throw reader.error("expected \(header.count) fields, found \(fields.count)") }
                try store(zip(header, fields).map { ($0, $1 as Any) })
            }
        }
        return summary
    }

    private func nextLine() throws -> UnsafeRawBufferPointer? {
        try reader.nextValidLine(rows: summary.rows, progressInterval: 1 << 14, progress: options.progress)
    }

    private var idCandidates: [String] {
        if let id = options.idColumn { return [id] }
        return kind == .item ? ["item_id", "item", "id", "itemId", "movieId"] : ["user_id", "user", "id", "userId"]
    }

    private func titleColumn(_ names: [String]) -> String? {
        if let t = options.titleColumn { return t }
        guard kind == .item else { return nil }
        if names.contains("title") { return "title" }
        if names.contains("name") { return "name" }
        return names.first { $0.lowercased().contains("title") }
    }

    private func checkColumns(_ header: [String]) throws {
        guard idCandidates.contains(where: header.contains) else {
            throw reader.error("no id column: expected \(idCandidates.joined(separator: " or ")) (columns: \(LineReader.describe(columns: header))); name it with --id-column", line: 1)
        }
        for name in [options.titleColumn].compactMap({ $0 }) + options.textColumns + (options.attributeColumns ?? []) + [options.availabilityColumn].compactMap({ $0 }) {
            guard header.contains(name) else { throw reader.error("no column '\(name)' (columns: \(LineReader.describe(columns: header)))", line: 1) }
        }
    }

    private func text(_ value: Any) -> String? {
        switch value {
        case let s as String: return s.isEmpty ? nil : s
        case is NSNull: return nil
        case let n as NSNumber where String(cString: n.objCType) == "c": return n.boolValue ? "true" : "false"
        default:
            if let n = jsonNumber(value) { return n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n) }
            // data(withJSONObject:) traps (it does not throw) on anything but an array or object at the top:
            // check first (found by fuzz-jsonl with "available": true).
            guard JSONSerialization.isValidJSONObject(value),
                  let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
    }

    private mutating func store(_ row: Row) throws {
        let names = row.map(\.name)
        guard let idName = idCandidates.first(where: names.contains), let idValue = row.first(where: { $0.name == idName })?.value,
              let external = text(idValue) else {
            throw reader.error("missing id (\(idCandidates.joined(separator: " or ")))")
        }
        let title = titleColumn(names).flatMap { name in row.first { $0.name == name }.flatMap { text($0.value) } }
        let textParts = options.textColumns.compactMap { name in row.first { $0.name == name }.flatMap { text($0.value) } }
        var available = true
        if let col = options.availabilityColumn ?? (names.contains("available") ? "available" : nil),
           let raw = row.first(where: { $0.name == col })?.value {
            switch text(raw)?.lowercased() {
            case "1", "true", "yes", nil: available = true
            case "0", "false", "no": available = false
            case let other?: throw reader.error("availability '\(other)' is not 0/1 or true/false")
            }
        }
        let used = Set([idName, titleColumn(names), options.availabilityColumn ?? "available"].compactMap { $0} + options.textColumns)
        let attributeNames = options.attributeColumns ?? names.filter { !used.contains($0) }
        var attributes: [String: Any] = [:]
        for name in attributeNames {
            guard let value = row.first(where: { $0.name == name })?.value else { continue }
            if value is NSNull { continue }
            if let s = value as? String, s.isEmpty { continue }
            attributes[name] = value
        }
        var attributesJSON: String?
        if !attributes.isEmpty {
            guard JSONSerialization.isValidJSONObject(attributes),
                  let data = try? JSONSerialization.data(withJSONObject: attributes, options: [.sortedKeys]) else {
                throw reader.error("attributes cannot be encoded as JSON")
            }
            attributesJSON = String(decoding: data, as: UTF8.self)
        }
        do {
            switch kind {
            case .item:
                let existed = try tx.itemID(for: external) != nil
                try tx.upsertItem(ItemInput(externalID: external, title: title, text: textParts.isEmpty ? nil : textParts.joined(separator: ". "),
                                            attributesJSON: attributesJSON, isAvailable: available))
                if existed { summary.updatedItems += 1 } else { summary.createdItems += 1 }
            case .user:
                let existed = try tx.userID(for: external) != nil
                try tx.upsertUser(externalID: external, attributesJSON: attributesJSON)
                if !existed { summary.createdUsers += 1 }
            }
        } catch let error as RecDBError {
            if case .importFailed = error { throw error }
            throw reader.error("\(error)")
        }
        summary.rows += 1
    }
}
