import Foundation

extension Database {
    /// Imports an interactions file in one write transaction: all of it or, on any error, nothing.
    ///
    /// Users and items named by the file are created when new. Importing a file with exactly the
    /// same contents twice is refused with `RecDBError.alreadyImported` (its fingerprint is kept in
    /// an import ledger) unless `allowDuplicateImport` is set, so a retried script cannot double events.
    /// - throws: `RecDBError.importFailed` naming file, line and problem; the database is unchanged.
    @discardableResult
    public func importInteractions(from path: String, options: InteractionImportOptions = .init()) throws -> ImportSummary {
        guard let format = options.format ?? InteractionFormat.guess(path: path) else {
            throw RecDBError.invalidArgument("cannot tell the format of \(path) from its name; give one of \(InteractionFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        // About 80 bytes of B-tree per event (two tables) for ~10–20 bytes of CSV.
        return try runImport(path, bytesPerFileByte: 8) { tx in
            var importer = try InteractionImporter(path: path, format: format, options: options, tx: tx)
            return try importer.run()
        }
    }
}

/// The streaming interactions importer; lives for one write transaction.
struct InteractionImporter {
    let path: String
    let format: InteractionFormat
    let options: InteractionImportOptions
    let tx: WriteTransaction
    let reader: LineReader
    var summary: ImportSummary
    var userCache: [String: UInt32] = [:]
    var itemCache: [String: UInt32] = [:]
    var typeCache: [String: UInt16] = [:]
    /// Per-user events buffered and written in key order (sorted batches are much faster to insert).
    var pending: [PendingEvent] = []
    /// Scratch buffers for keys and values: no allocation per row.
    var keyScratch = [UInt8](repeating: 0, count: 20)
    var valueScratch = [UInt8](repeating: 0, count: 32)
    /// Of the data lines; the header and the options that give the columns meaning are added by `ledgerKey`.
    var fingerprint = FNV64()
    /// The header row's column names (delimited formats), part of what the ledger fingerprints.
    var headerColumns: [String] = []
    /// One formatter per import: creating one per ISO-8601 timestamp cost more than the rest of the row.
    let isoDates = ISO8601DateFormatter()

    init(path: String, format: InteractionFormat, options: InteractionImportOptions, tx: WriteTransaction) throws {
        self.path = path
        self.format = format
        self.options = options
        self.tx = tx
        reader = try LineReader(path: path, maxLineBytes: options.maxLineBytes)
        summary = ImportSummary(file: path, kind: "interactions", format: format.rawValue)
        pending.reserveCapacity(Self.batch)
    }

    static let batch = 1 << 17

    struct Columns {
        var user: Int, item: Int, time: Int?, type: Int?, value: Int?
    }

    mutating func run() throws -> ImportSummary {
        switch format {
        case .csv, .tsv, .recbole: try runDelimited()
        case .jsonl: try runJSONLines()
        case .sequences: try runSequences()
        }
        try flushPending()
        try recordInLedger()
        return summary
    }

    // MARK: - Formats

    private mutating func runDelimited() throws {
        let splitter = FieldSplitter(style: format == .csv ? .csv : .tsv)
        var fields: [String] = []
        let header = try reader.header(splitter, recbole: format == .recbole)
        headerColumns = header
        let columns = try resolveColumns(header)
        while let line = try nextLine() {
            if line.isEmpty { continue }
            try reader.split(line, with: splitter, into: &fields)
            guard fields.count == header.count else {
                throw reader.error("expected \(header.count) fields, found \(fields.count)")
            }
            let ts: Int64
            if let t = columns.time { ts = try parseTimestamp(fields[t]) } else { ts = Int64(reader.lineNumber) }
            let value: Float? = try columns.value.map { try parseValue(fields[$0]) } ?? nil
            try add(user: fields[columns.user], item: fields[columns.item], timestamp: ts,
                    type: columns.type.map { fields[$0] }, value: value)
        }
    }

    private mutating func runJSONLines() throws {
        let userKey = options.userColumn ?? "user", itemKey = options.itemColumn ?? "item"
        let timeKey = options.timeColumn ?? "timestamp"
        // The line schema names the default keys; with renamed keys only the code's own checks apply.
        let usesDefaultKeys = options.userColumn == nil && options.itemColumn == nil && options.timeColumn == nil
            && options.typeColumn == nil && options.valueColumn == nil
        let schema = try JSONSchema.bundled("import/interactions.jsonl.schema.json")
        while let line = try nextLine() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw reader.error("not a JSON object")
            }
            if usesDefaultKeys, let problem = schema.violation(of: object) { throw reader.error(problem) }
            let user = try jsonID(object, userKey), item = try jsonID(object, itemKey)
            let ts: Int64
            switch object[timeKey] {
            case nil: ts = Int64(reader.lineNumber)
            case let s as String: ts = try parseTimestamp(s)
            case let raw?:
                guard let n = jsonNumber(raw) else { throw reader.error("\"\(timeKey)\" must be a number or a string") }
                ts = try timestamp(fromNumber: n)
            }
            var type: String?
            if let key = options.typeColumn ?? (object["type"] != nil ? "type" : object["event"] != nil ? "event" : nil) {
                guard let t = object[key] as? String else { throw reader.error("\"\(key)\" must be a string") }
                type = t
            }
            var value: Float?
            if let key = options.valueColumn ?? (object["value"] != nil ? "value" : object["rating"] != nil ? "rating" : nil), let raw = object[key] {
                guard let n = jsonNumber(raw) else { throw reader.error("\"\(key)\" must be a number") }
                value = Float(n)
                guard value!.isFinite else { throw reader.error("\"\(key)\" is not finite") }
            }
            try add(user: user, item: item, timestamp: ts, type: type, value: value)
        }
    }

    private func jsonID(_ object: [String: Any], _ key: String) throws -> String {
        switch object[key] {
        case let s as String: return s
        case nil: throw reader.error("missing \"\(key)\"")
        case let n as NSNumber where jsonNumber(n) != nil: return n.stringValue
        default: throw reader.error("\"\(key)\" must be a string or a number")
        }
    }

    private mutating func runSequences() throws {
        let splitter = FieldSplitter(style: .whitespace)
        var fields: [String] = []
        while let line = try nextLine() {
            try reader.split(line, with: splitter, into: &fields)
            if fields.isEmpty { continue }
            guard fields.count >= 2 else { throw reader.error("a sequence line needs a user and at least one item") }
            for position in 1..<fields.count {
                try add(user: fields[0], item: fields[position], timestamp: Int64(position), type: nil, value: nil)
            }
        }
    }

    // MARK: - Rows

    private mutating func nextLine() throws -> UnsafeRawBufferPointer? {
        guard let line = try reader.nextValidLine(rows: summary.rows, progressInterval: 1 << 16, progress: options.progress) else { return nil }
        fingerprint.add(line)
        return line
    }

    private func resolveColumns(_ header: [String]) throws -> Columns {
        func find(_ explicit: String?, _ defaults: [String], required: Bool, what: String) throws -> Int? {
            if let explicit {
                guard let i = header.firstIndex(of: explicit) else {
                    throw reader.error("no column '\(explicit)' for the \(what) (columns: \(header.joined(separator: ", ")))", line: 1)
                }
                return i
            }
            for name in defaults { if let i = header.firstIndex(of: name) { return i } }
            if required {
                throw reader.error("no \(what) column: expected one of \(defaults.joined(separator: ", ")) (columns: \(header.joined(separator: ", "))); name it with --\(what)-column", line: 1)
            }
            return nil
        }
        let recbole = format == .recbole
        return Columns(
            user: try find(options.userColumn, recbole ? ["user_id", "user"] : ["user", "user_id", "userId"], required: true, what: "user")!,
            item: try find(options.itemColumn, recbole ? ["item_id", "item"] : ["item", "item_id", "itemId", "movieId"], required: true, what: "item")!,
            time: try find(options.timeColumn, ["timestamp", "time", "ts"], required: false, what: "time"),
            type: try find(options.typeColumn, ["type", "event", "event_type"], required: false, what: "type"),
            value: try find(options.valueColumn, ["value", "rating"], required: false, what: "value"))
    }

    private func parseTimestamp(_ text: String) throws -> Int64 {
        if let v = Int64(text) { return try checked(v, text) }
        if let d = Double(text) { return try timestamp(fromNumber: d) }
        if let date = isoDates.date(from: text) {
            return try timestamp(fromNumber: date.timeIntervalSince1970.rounded(.down))
        }
        throw reader.error("timestamp '\(text.prefix(40))' is neither a number nor an ISO-8601 date")
    }

    private func timestamp(fromNumber d: Double) throws -> Int64 {
        // Compared as Double first: Int64(d) traps outside Int64's range.
        guard d.isFinite, d >= Double(ImportLimits.timestampRange.lowerBound), d <= Double(ImportLimits.timestampRange.upperBound) else {
            throw outOfRange("\(d)")
        }
        return Int64(d)
    }

    private func checked(_ v: Int64, _ text: String) throws -> Int64 {
        guard ImportLimits.timestampRange.contains(v) else { throw outOfRange(text) }
        return v
    }

    private func outOfRange(_ text: String) -> RecDBError {
        reader.error("timestamp \(text.prefix(40)) is outside the accepted range \(ImportLimits.timestampRange.lowerBound)...\(ImportLimits.timestampRange.upperBound) (seconds or milliseconds since 1970, up to year 9999)")
    }

    private func parseValue(_ text: String) throws -> Float? {
        if text.isEmpty { return nil }
        guard let v = Float(text) else { throw reader.error("value '\(text.prefix(40))' is not a number") }
        guard v.isFinite else { throw reader.error("value '\(text)' is not finite") }
        return v
    }

    private mutating func add(user: String, item: String, timestamp: Int64, type: String?, value: Float?) throws {
        let userID = try resolveUser(user)
        let itemID = try resolveItem(item)
        let typeCode = try resolveType(type ?? options.eventType)
        let seq = try tx.nextCounter(.lastEventSequence)
        let event = PendingEvent(user: userID, timestamp: timestamp, sequence: seq, item: itemID, typeCode: typeCode, value: value)
        // The global log is keyed by a growing sequence: appended at its end right away.
        try keyScratch.withUnsafeMutableBytes { key in
            try valueScratch.withUnsafeMutableBytes { value in
                key.storeBytes(of: seq.bigEndian, toByteOffset: 0, as: UInt64.self)
                value.storeBytes(of: userID.littleEndian, toByteOffset: 0, as: UInt32.self)
                value.storeBytes(of: timestamp.littleEndian, toByteOffset: 4, as: Int64.self)
                event.writePayload(into: value, at: 12)
                let logKey = UnsafeRawBufferPointer(rebasing: key[0..<8])
                Seal.writeTrailer(value, payloadCount: 12 + EventPayload.size, key: logKey, table: .eventLog)
                try tx.raw.put(.eventLog, key: logKey,
                               value: UnsafeRawBufferPointer(rebasing: value[0..<12 + EventPayload.size + Seal.size]), append: true)
            }
        }
        pending.append(event)
        if pending.count >= Self.batch { try flushPending() }
        summary.rows += 1
        summary.events += 1
    }

    private mutating func flushPending() throws {
        pending.sort { ($0.user, $0.biasedTimestamp, $0.sequence) < ($1.user, $1.biasedTimestamp, $1.sequence) }
        try keyScratch.withUnsafeMutableBytes { key in
            try valueScratch.withUnsafeMutableBytes { value in
                for event in pending {
                    key.storeBytes(of: event.user.bigEndian, toByteOffset: 0, as: UInt32.self)
                    key.storeBytes(of: event.biasedTimestamp.bigEndian, toByteOffset: 4, as: UInt64.self)
                    key.storeBytes(of: event.sequence.bigEndian, toByteOffset: 12, as: UInt64.self)
                    event.writePayload(into: value, at: 0)
                    Seal.writeTrailer(value, payloadCount: EventPayload.size, key: UnsafeRawBufferPointer(key), table: .userEvents)
                    try tx.raw.put(.userEvents, key: UnsafeRawBufferPointer(key),
                                   value: UnsafeRawBufferPointer(rebasing: value[0..<EventPayload.storedSize]))
                }
            }
        }
        pending.removeAll(keepingCapacity: true)
    }

    private mutating func resolveUser(_ external: String) throws -> UInt32 {
        if let id = userCache[external] { return id }
        let id: UInt32
        if let existing = try tx.userID(for: external) {
            id = existing
        } else {
            do { id = try tx.upsertUser(externalID: external) } catch let e as RecDBError { throw reader.error("\(e)") }
            summary.createdUsers += 1
        }
        userCache[external] = id
        return id
    }

    private mutating func resolveItem(_ external: String) throws -> UInt32 {
        if let id = itemCache[external] { return id }
        let id: UInt32
        if let existing = try tx.itemID(for: external) {
            id = existing
        } else {
            do { id = try tx.upsertItem(ItemInput(externalID: external)) } catch let e as RecDBError { throw reader.error("\(e)") }
            summary.createdItems += 1
        }
        itemCache[external] = id
        return id
    }

    private mutating func resolveType(_ name: String?) throws -> UInt16 {
        guard let name, !name.isEmpty else { return 0 }
        if let code = typeCache[name] { return code }
        let code = try tx.eventTypeCode(name)
        typeCache[name] = code
        return code
    }

    /// The ledger key of this import: the data lines, and everything that decides what they mean — the
    /// format, the header (a file with its user and item columns swapped is different data) and the
    /// column and type options.
    private var ledgerKey: String {
        var layout = FNV64()
        let description = ([format.rawValue] + headerColumns + [options.userColumn, options.itemColumn, options.timeColumn,
                            options.typeColumn, options.valueColumn, options.eventType].map { $0 ?? "\u{0}" })
            .joined(separator: "\u{1F}")
        description.utf8CString.withUnsafeBytes { layout.add(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        return MetaKey.importPrefix.rawValue
            + String(format: "%016llx-%016llx-%llu", fingerprint.value, layout.value, UInt64(reader.bytesConsumed))
    }

    /// Refuses a second import of identical contents (unless allowed) and records this one.
    private mutating func recordInLedger() throws {
        let key = ledgerKey
        if let previous = try tx.meta.string(key), !options.allowDuplicateImport {
            throw RecDBError.alreadyImported(file: path, fingerprint: String(key.dropFirst(MetaKey.importPrefix.rawValue.count)) + ", \(previous)")
        }
        try tx.meta.setString(key, "\(summary.events) events from \(URL(fileURLWithPath: path).lastPathComponent) at \(Clock.now())")
    }
}

/// One parsed event waiting for its sorted insert into `user_events`.
struct PendingEvent {
    var user: UInt32
    /// The timestamp with its sign bit flipped, so unsigned order is time order (as in the key).
    var biasedTimestamp: UInt64
    var sequence: UInt64
    var item: UInt32
    var typeCode: UInt16
    var value: Float?

    init(user: UInt32, timestamp: Int64, sequence: UInt64, item: UInt32, typeCode: UInt16, value: Float?) {
        self.user = user
        biasedTimestamp = UInt64(bitPattern: timestamp) ^ (1 << 63)
        self.sequence = sequence
        self.item = item
        self.typeCode = typeCode
        self.value = value
    }

    /// The 11-byte payload layout of `EventPayload`.
    func writePayload(into out: UnsafeMutableRawBufferPointer, at offset: Int) {
        out.storeBytes(of: item.littleEndian, toByteOffset: offset, as: UInt32.self)
        out.storeBytes(of: typeCode.littleEndian, toByteOffset: offset + 4, as: UInt16.self)
        out.storeBytes(of: value == nil ? 0 : 1, toByteOffset: offset + 6, as: UInt8.self)
        out.storeBytes(of: (value ?? 0).bitPattern.littleEndian, toByteOffset: offset + 7, as: UInt32.self)
    }
}

/// 64-bit FNV-1a over the bytes read: a fingerprint of a file's contents for the import ledger.
struct FNV64 {
    private(set) var value: UInt64 = 0xcbf29ce484222325
    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        h = (h ^ 0x0A) &* 0x100000001b3  // the line break, so line boundaries count
        value = h
    }
}

/// The value of a JSON number (JSONSerialization also hands out booleans as NSNumber; those are not numbers).
func jsonNumber(_ any: Any?) -> Double? {
    guard let n = any as? NSNumber, String(cString: n.objCType) != "c" else { return nil }
    return n.doubleValue
}
