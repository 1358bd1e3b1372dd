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
        // Events take ~5–10 bytes in blocks for ~20 bytes of CSV; ids and their maps come on top.
        return try runImport(path, bytesPerFileByte: 4) { tx in
            var importer = try InteractionImporter(path: path, format: format, options: options, tx: tx,
                                                   spillDirectory: options.temporaryDirectory ?? self.path)
            return try importer.run()
        }
    }
}

/// The streaming interactions importer; lives for one write transaction.
///
/// Rows are parsed (delimited rows without quotes straight from the line's bytes, ids through a
/// byte-keyed map: no String per row), numbered, and fed to an external sort by (user, time) in
/// bounded memory (`EventRunSorter`); the sorted stream is then written user by user as packed
/// blocks — appended at the end of `user_events` for users new to the database, merged into the last
/// blocks for users that had events. Time is linear in the rows; memory is one sort run plus the id maps.
struct InteractionImporter {
    let path: String
    let format: InteractionFormat
    let options: InteractionImportOptions
    let tx: WriteTransaction
    let reader: LineReader
    var summary: ImportSummary
    let users = ExternalIDMap()
    let items = ExternalIDMap()
    /// The id tables were empty before the import (a new database): an id missing from the maps is
    /// new, with no B-tree lookup (1M random lookups into a 1M-key table at 50M rows, perf).
    let noUsersBefore: Bool
    let noItemsBefore: Bool
    /// Ids of the database met for the first time are looked up in batches, in key order (see
    /// `UnseenIDs`): the rows naming them go to the sort buffer with provisional numbers, and their
    /// places are marked here until their batch fills them in — before the buffer is sorted or spilled.
    /// (Copies of the waiting rows, or lists of their places, in growing arrays cost more in page faults
    /// than the lookups saved: a delta's first batch can span most of it.)
    let batchesLookups: Bool
    let unseenUsers = UnseenIDs()
    let unseenItems = UnseenIDs()
    let provisionalUsers: PlaceBits?
    let provisionalItems: PlaceBits?
    var typeCache: [String: UInt16] = [:]
    let sorter: EventRunSorter
    /// Parsed rows whose ids are not looked up yet (see `PendingRows`).
    let pending = PendingRows()
    /// Set when resolving a queued row threw: nothing more is resolved (the import fails with that error).
    var resolveFailed = false
    /// Users up to this id existed before the import (their blocks are merged, not appended).
    let usersBefore: UInt32
    let firstSequence: UInt64
    var nextSequence: UInt64
    let now = Clock.now()
    /// Of the data lines; the header and the options that give the columns meaning are added by `ledgerKey`.
    var fingerprint = LineFingerprint()
    /// The header row's column names (delimited formats), part of what the ledger fingerprints.
    var headerColumns: [String] = []
    /// One formatter per import: creating one per ISO-8601 timestamp cost more than the rest of the row.
    let isoDates = ISO8601DateFormatter()

    init(path: String, format: InteractionFormat, options: InteractionImportOptions, tx: WriteTransaction, spillDirectory: String) throws {
        self.path = path
        self.format = format
        self.options = options
        self.tx = tx
        reader = try LineReader(path: path, maxLineBytes: options.maxLineBytes, bufferSize: 1 << 22)
        summary = ImportSummary(file: path, kind: "interactions", format: format.rawValue)
        guard options.runEvents >= 2 else { throw RecDBError.invalidArgument("a sort run must hold at least 2 events") }
        sorter = EventRunSorter(capacity: options.runEvents, directory: spillDirectory)
        usersBefore = UInt32(try tx.userCount())
        noUsersBefore = try tx.raw.count(.userIDs) == 0
        noItemsBefore = try tx.raw.count(.itemIDs) == 0
        batchesLookups = !(noUsersBefore && noItemsBefore)
        provisionalUsers = batchesLookups ? PlaceBits(places: options.runEvents) : nil
        provisionalItems = batchesLookups ? PlaceBits(places: options.runEvents) : nil
        guard options.idLookupBatch >= 1 else { throw RecDBError.invalidArgument("an id lookup batch must hold at least 1 id") }
        firstSequence = try tx.eventVersion()
        nextSequence = firstSequence
    }

    struct Columns {
        var user: Int, item: Int, time: Int?, type: Int?, value: Int?
    }

    mutating func run() throws -> ImportSummary {
        do {
            switch format {
            case .csv, .tsv, .recbole: try runDelimited()
            case .jsonl: try runJSONLines()
            case .sequences: try runSequences()
            }
        } catch {
            // A parse error: a queued row before the failing line may hold the file's first error, and
            // that one is reported. A failure resolving a row (the sorter, the store) ends the import.
            if !resolveFailed { try resolvePending() }
            throw error
        }
        try resolvePending()
        try writeEvents()
        try tx.advanceCounter(.lastEventSequence, to: nextSequence)
        try recordInLedger()
        return summary
    }

    /// Merges the sorted runs into `user_events`, one user at a time.
    private func writeEvents() throws {
        let writer = UserBlockWriter(tx: tx)
        var current: UInt32 = 0  // no user has id 0
        try sorter.merge { r in
            let e = r.stored
            if r.user != current {
                if current != 0 { try writer.end() }
                current = r.user
                try writer.begin(user: r.user, existing: r.user <= usersBefore, first: e)
            }
            try writer.add(e)
        }
        if current != 0 { try writer.end() }
    }

    // MARK: - Formats

    private mutating func runDelimited() throws {
        let splitter = FieldSplitter(style: format == .csv ? .csv : .tsv)
        var fields: [String] = []
        let header = try reader.header(splitter, recbole: format == .recbole)
        headerColumns = header
        let columns = try resolveColumns(header)
        let delimiter: UInt8 = format == .csv ? 0x2C : 0x09
        let fieldCount = header.count
        var starts = [Int](repeating: 0, count: fieldCount + 1)
        // The fast path: a row of plain fields (no quotes), ids and an integer time read from its bytes.
        let plainRows = columns.type == nil && columns.value == nil
        let defaultType = try resolveType(options.eventType)
        while let line = try nextLine() {
            if line.isEmpty { continue }
            if plainRows, format != .csv || memchr(line.baseAddress!, 0x22, line.count) == nil {
                var n = 1
                starts[0] = 0
                for i in 0..<line.count where line[i] == delimiter {
                    if n < fieldCount { starts[n] = i + 1 }
                    n += 1
                }
                guard n == fieldCount else { throw reader.error("expected \(fieldCount) fields, found \(n)") }
                starts[fieldCount] = line.count + 1
                func field(_ c: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: line[starts[c]..<starts[c + 1] - 1]) }
                let ts: Int64
                if let t = columns.time { ts = try fastTimestamp(field(t)) } else { ts = Int64(reader.lineNumber) }
                try add(user: field(columns.user), item: field(columns.item), timestamp: ts, typeCode: defaultType, value: nil)
                continue
            }
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
        let typeCode = try resolveType(options.eventType)
        var tokens: [(Int, Int)] = []
        while let line = try nextLine() {
            // Tokens split at spaces and tabs, as `FieldSplitter(.whitespace)`, without Strings.
            tokens.removeAll(keepingCapacity: true)
            var s = -1
            for i in 0...line.count {
                let isSpace = i == line.count || line[i] == 0x20 || line[i] == 0x09
                if isSpace {
                    if s >= 0 { tokens.append((s, i)); s = -1 }
                } else if s < 0 { s = i }
            }
            if tokens.isEmpty { continue }
            guard tokens.count >= 2 else { throw reader.error("a sequence line needs a user and at least one item") }
            let user = UnsafeRawBufferPointer(rebasing: line[tokens[0].0..<tokens[0].1])
            for position in 1..<tokens.count {
                try add(user: user, item: UnsafeRawBufferPointer(rebasing: line[tokens[position].0..<tokens[position].1]),
                        timestamp: Int64(position), typeCode: typeCode, value: nil)
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
                    throw reader.error("no column '\(explicit)' for the \(what) (columns: \(LineReader.describe(columns: header)))", line: 1)
                }
                return i
            }
            for name in defaults { if let i = header.firstIndex(of: name) { return i } }
            if required {
                throw reader.error("no \(what) column: expected one of \(defaults.joined(separator: ", ")) (columns: \(LineReader.describe(columns: header))); name it with --\(what)-column", line: 1)
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

    /// A plain decimal timestamp read from its bytes; anything else goes through `parseTimestamp`.
    private func fastTimestamp(_ bytes: UnsafeRawBufferPointer) throws -> Int64 {
        if bytes.count >= 1 && bytes.count <= 18 {
            var v: Int64 = 0
            var digits = true
            for b in bytes {
                guard b >= 0x30 && b <= 0x39 else { digits = false; break }
                v = v * 10 + Int64(b - 0x30)
            }
            if digits {
                guard ImportLimits.timestampRange.contains(v) else { throw outOfRange(String(decoding: bytes, as: UTF8.self)) }
                return v
            }
        }
        return try parseTimestamp(String(decoding: bytes, as: UTF8.self))
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
        var user = user, item = item
        let typeCode = try resolveType(type ?? options.eventType)
        try user.withUTF8 { u in
            try item.withUTF8 { i in
                try add(user: UnsafeRawBufferPointer(u), item: UnsafeRawBufferPointer(i), timestamp: timestamp, typeCode: typeCode, value: value)
            }
        }
    }

    /// Queues a parsed row and prefetches its id-map slots; the row queued `PendingRows.depth` rows
    /// earlier is resolved first when the queue is full.
    @inline(__always)
    private mutating func add(user: UnsafeRawBufferPointer, item: UnsafeRawBufferPointer, timestamp: Int64, typeCode: UInt16, value: Float?) throws {
        if pending.isFull { try resolveOldest() }
        let userHash = ExternalIDMap.hash(user), itemHash = ExternalIDMap.hash(item)
        users.prefetch(hash: userHash)
        items.prefetch(hash: itemHash)
        pending.push(user: user, userHash: userHash, item: item, itemHash: itemHash, timestamp: timestamp, typeCode: typeCode,
                     value: value, line: reader.lineNumber)
    }

    /// Looks up (or creates) the ids of the oldest queued row, numbers it and hands it to the sorter.
    @inline(__always)
    private mutating func resolveOldest() throws {
        do { try resolveOldestRow() } catch { resolveFailed = true; throw error }
    }

    @inline(__always)
    private mutating func resolveOldestRow() throws {
        if let provisionalUsers, let provisionalItems { return try resolveOldestRowBatched(provisionalUsers, provisionalItems) }
        let row = pending.oldest
        let user = pending.userKey(of: row), item = pending.itemKey(of: row)
        let r = pending.rows[row]
        let knownUser = users.find(user, hash: r.userHash), knownItem = items.find(item, hash: r.itemHash)
        pending.popOldest()
        nextSequence += 1
        summary.rows += 1
        summary.events += 1
        let userID = try knownUser ?? create(.user, user, hash: r.userHash, line: r.line)
        let itemID = try knownItem ?? create(.item, item, hash: r.itemHash, line: r.line)
        try sorter.add(EventRecord(timestamp: r.timestamp, sequence: nextSequence, user: userID, item: itemID,
                                   valueBits: r.valueBits, typeCode: r.typeCode, hasValue: r.hasValue))
    }

    /// `resolveOldestRow` into a database holding ids. Kept out of line: inlined beside the empty
    /// database's path in the parse loop, it slowed that path by ~4 % (task-clock, 1M rows, alternated).
    @inline(never)
    private mutating func resolveOldestRowBatched(_ provisionalUsers: PlaceBits, _ provisionalItems: PlaceBits) throws {
        // A full sort buffer is sorted and spilled by the next add: no provisional number may be in it
        // then. Resolved before this row's ids are read: resolving rewrites the maps' provisional numbers.
        if sorter.isFull && hasProvisional { try resolveUnseen() }
        let row = pending.oldest
        let user = pending.userKey(of: row), item = pending.itemKey(of: row)
        let r = pending.rows[row]
        // One probe a row and kind: a map value is a stored or created id, or a tagged provisional number.
        var userNumber = users.find(user, hash: r.userHash), itemNumber = items.find(item, hash: r.itemHash)
        pending.popOldest()
        nextSequence += 1
        summary.rows += 1
        summary.events += 1
        let tag = UnseenIDs.provisionalTag
        if userNumber == nil {
            let n = unseenUsers.add(user, hash: r.userHash, line: r.line)
            users.insert(user, hash: r.userHash, id: tag | n)
            userNumber = tag | n
        }
        if itemNumber == nil {
            let n = unseenItems.add(item, hash: r.itemHash, line: r.line)
            items.insert(item, hash: r.itemHash, id: tag | n)
            itemNumber = tag | n
        }
        let u = userNumber!, i = itemNumber!
        // Numbered now, in file order, like every row: a provisional id is filled in where it lies.
        try sorter.add(EventRecord(timestamp: r.timestamp, sequence: nextSequence, user: u & ~tag, item: i & ~tag,
                                   valueBits: r.valueBits, typeCode: r.typeCode, hasValue: r.hasValue))
        if u & tag != 0 || i & tag != 0 {
            let place = sorter.count - 1
            if u & tag != 0 { provisionalUsers.set(place) }
            if i & tag != 0 { provisionalItems.set(place) }
            if unseenUsers.count + unseenItems.count >= options.idLookupBatch
                || unseenUsers.arenaBytes + unseenItems.arenaBytes >= 16 << 20 {
                try resolveUnseen()
            }
        }
    }

    private mutating func resolvePending() throws {
        while !pending.isEmpty { try resolveOldest() }
        if hasProvisional {
            do { try resolveUnseen() } catch { resolveFailed = true; throw error }
        }
    }

    private var hasProvisional: Bool { !(provisionalUsers?.isEmpty ?? true) || !(provisionalItems?.isEmpty ?? true) }

    /// Resolves the batch of ids met for the first time: looks them up in key order, creates the ones
    /// not stored — users and items in the order of their first rows, as resolving row by row would
    /// (same ids, and the file's first invalid id is the one reported) — and fills them in in the sort buffer.
    private mutating func resolveUnseen() throws {
        var userIDs = [UInt32](repeating: 0, count: unseenUsers.count), itemIDs = [UInt32](repeating: 0, count: unseenItems.count)
        var userFailures: [Int: Error] = [:], itemFailures: [Int: Error] = [:]
        do {
            if !noUsersBefore { (userIDs, userFailures) = try unseenUsers.storedIDs(in: .userIDs, tx: tx) }
            if !noItemsBefore { (itemIDs, itemFailures) = try unseenItems.storedIDs(in: .itemIDs, tx: tx) }
        } catch {
            // Opening a cursor failed: the batch's first row (entries are in file order) names it.
            let line = min(unseenUsers.entries.first?.line ?? .max, unseenItems.entries.first?.line ?? .max)
            throw reader.error("\(error)", line: line)
        }
        // A failed lookup fails the import at its row; rows before it are only checked, for an earlier
        // invalid id (the store may refuse every write after a failure, and none would be kept).
        let checkOnly = !userFailures.isEmpty || !itemFailures.isEmpty
        var u = 0, i = 0
        while u < userIDs.count || i < itemIDs.count {
            // A row's user before its item (and a sequence line's user before its items).
            let isUser = i == itemIDs.count || (u < userIDs.count && unseenUsers.entries[u].line <= unseenItems.entries[i].line)
            let kind: EntityKind = isUser ? .user : .item
            let unseen = isUser ? unseenUsers : unseenItems
            let index = isUser ? u : i
            let e = unseen.entries[index]
            if let failure = isUser ? userFailures[index] : itemFailures[index] { throw reader.error("\(failure)", line: e.line) }
            let stored = isUser ? userIDs[index] : itemIDs[index]
            let id = try unseen.withKey(index) { key -> UInt32 in
                if checkOnly {
                    if stored == 0 { try validate(kind, key, line: e.line) }
                    return stored
                }
                if stored == 0 { return try create(kind, key, hash: e.hash, line: e.line, replacing: true) }
                // Only a database numbering 2^31 users or items holds such an id; a bulk import into it cannot tag beside it.
                guard stored < UnseenIDs.provisionalTag else {
                    throw reader.error("\(kind.rawValue) \(String(decoding: key, as: UTF8.self)) has id \(stored): a bulk import into this database cannot number past 2^31 - 1 \(kind.rawValue)s", line: e.line)
                }
                (isUser ? users : items).setID(key, hash: e.hash, id: stored)
                return stored
            }
            if isUser { userIDs[u] = id; u += 1 } else { itemIDs[i] = id; i += 1 }
        }
        precondition(!checkOnly, "unreachable: the walk throws at the entry whose lookup failed")
        provisionalUsers?.drain { place in sorter.update(place) { $0.user = userIDs[Int($0.user)] } }
        provisionalItems?.drain { place in sorter.update(place) { $0.item = itemIDs[Int($0.item)] } }
        unseenUsers.removeAll()
        unseenItems.removeAll()
    }

    /// Ids made beside provisional numbers (see `UnseenIDs.provisionalTag`) stay below the tag.
    private func checkBelowTag(_ id: UInt32, _ kind: EntityKind) throws {
        guard !batchesLookups || id < UnseenIDs.provisionalTag else {
            throw RecDBError.invalidArgument("a bulk import into a database holding ids cannot number past 2^31 - 1 \(kind.rawValue)s")
        }
    }

    private func validate(_ kind: EntityKind, _ bytes: UnsafeRawBufferPointer, line: Int) throws {
        do {
            try validateExternalID(String(decoding: bytes, as: UTF8.self), kind: kind.rawValue)
        } catch let e as RecDBError {
            throw reader.error("\(e)", line: line)
        }
    }

    /// A new user or item (validated, appended: ids only grow) for an id known not to be stored, added
    /// to its map (`replacing` its provisional number there). `line`: its first row's, for errors.
    private mutating func create(_ kind: EntityKind, _ bytes: UnsafeRawBufferPointer, hash: UInt32, line: Int,
                                 replacing: Bool = false) throws -> UInt32 {
        let external = String(decoding: bytes, as: UTF8.self)
        let id: UInt32
        do {
            switch kind {
            case .user:
                try validateExternalID(external, kind: "user")
                id = UInt32(try tx.nextCounter(.lastUserID))
                try checkBelowTag(id, kind)
                let record = User(id: id, externalID: external, attributesJSON: nil, createdAt: now)
                try tx.raw.put(.users, key: Keys.u32(id), value: UserRecord.encode(record), append: true)
                try tx.raw.put(.userIDs, key: Array(bytes), value: Keys.u32(id))
                summary.createdUsers += 1
                if replacing { users.setID(bytes, hash: hash, id: id) } else { users.insert(bytes, hash: hash, id: id) }
            case .item:
                try validateExternalID(external, kind: "item")
                id = UInt32(try tx.nextCounter(.lastItemID))
                try checkBelowTag(id, kind)
                let record = Item(id: id, externalID: external, title: nil, text: nil, attributesJSON: nil, isAvailable: true,
                                  isDeleted: false, createdAt: now, updatedAt: now)
                try tx.raw.put(.items, key: Keys.u32(id), value: ItemRecord.encode(record), append: true)
                try tx.raw.put(.itemIDs, key: Array(bytes), value: Keys.u32(id))
                try tx.itemCreated(id)
                summary.createdItems += 1
                if replacing { items.setID(bytes, hash: hash, id: id) } else { items.insert(bytes, hash: hash, id: id) }
            }
        } catch let e as RecDBError {
            if case .importFailed = e { throw e }
            throw reader.error("\(e)", line: line)
        }
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

/// Parsed rows waiting for their id lookups: a ring of `depth` rows with copies of their id bytes.
///
/// The user map of an app-sized import does not fit the caches (1M users: 32 MiB of slots, every row a
/// random user), and looking ids up as each row is parsed waited for one memory load per row (81 % of
/// the row's own time at 50M rows, perf). Queued, the slots of `depth` rows are prefetched while
/// earlier rows are parsed and resolved. Rows are resolved strictly in file order, each against the
/// maps as all earlier rows left them, so ids and sequences are those of resolving at once.
final class PendingRows {
    static let depth = 16
    struct Row {
        var userHash: UInt32, itemHash: UInt32
        var userLength: Int, itemLength: Int
        var timestamp: Int64
        var valueBits: UInt32
        var typeCode: UInt16
        var hasValue: Bool
        var line: Int
    }
    // Touched for every row of a bulk import, from one thread: no dynamic exclusivity bookkeeping.
    @exclusivity(unchecked) private(set) var rows: UnsafeMutablePointer<Row>
    /// Row i's user id bytes at i * 2 * keyStride, its item id bytes keyStride further.
    @exclusivity(unchecked) private var keys: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var keyStride = 64
    @exclusivity(unchecked) private(set) var oldest = 0
    @exclusivity(unchecked) private var count = 0

    init() {
        rows = .allocate(capacity: Self.depth)
        keys = .allocate(byteCount: Self.depth * 2 * keyStride, alignment: 16)
    }
    deinit {
        rows.deallocate()
        keys.deallocate()
    }

    var isFull: Bool { count == Self.depth }
    var isEmpty: Bool { count == 0 }

    @inline(__always)
    func userKey(of row: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: keys + row * 2 * keyStride, count: rows[row].userLength)
    }
    @inline(__always)
    func itemKey(of row: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: keys + (row * 2 + 1) * keyStride, count: rows[row].itemLength)
    }

    @inline(__always)
    func push(user: UnsafeRawBufferPointer, userHash: UInt32, item: UnsafeRawBufferPointer, itemHash: UInt32,
              timestamp: Int64, typeCode: UInt16, value: Float?, line: Int) {
        precondition(count < Self.depth)  // unreachable from input: `add` resolves the oldest row whenever the queue is full
        if user.count > keyStride || item.count > keyStride { widen(to: max(user.count, item.count)) }
        let i = (oldest + count) & (Self.depth - 1)
        if let base = user.baseAddress { (keys + i * 2 * keyStride).copyMemory(from: base, byteCount: user.count) }
        if let base = item.baseAddress { (keys + (i * 2 + 1) * keyStride).copyMemory(from: base, byteCount: item.count) }
        rows[i] = Row(userHash: userHash, itemHash: itemHash, userLength: user.count, itemLength: item.count, timestamp: timestamp,
                      valueBits: value?.bitPattern ?? 0, typeCode: typeCode, hasValue: value != nil, line: line)
        count += 1
    }

    @inline(__always)
    func popOldest() {
        oldest = (oldest + 1) & (Self.depth - 1)
        count -= 1
    }

    /// Room for ids of `length` bytes (bounded by the line length limit), keeping the queued rows' ids.
    private func widen(to length: Int) {
        var stride = keyStride
        while stride < length { stride *= 2 }
        let wider = UnsafeMutableRawPointer.allocate(byteCount: Self.depth * 2 * stride, alignment: 16)
        for i in 0..<Self.depth {
            (wider + i * 2 * stride).copyMemory(from: keys + i * 2 * keyStride, byteCount: keyStride)
            (wider + (i * 2 + 1) * stride).copyMemory(from: keys + (i * 2 + 1) * keyStride, byteCount: keyStride)
        }
        keys.deallocate()
        keys = wider
        keyStride = stride
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
