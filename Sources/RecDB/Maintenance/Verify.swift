import Foundation
import Learn

/// What `verify` found. `problems` is empty for a sound database.
public struct VerifyReport: Codable, Sendable {
    public var checked: [String: Int]
    public var problems: [String]
    public var isClean: Bool { problems.isEmpty }
}

extension Database {
    /// Checks the whole database in one snapshot: it walks every table with a cursor and checks
    /// every entry's key shape and checksum (records, events, vectors, tensors, catalogue JSON,
    /// counters; index blobs against the checksum in their header), then every cross-reference: id
    /// maps both ways, events against users, items and the other event table, vectors and the
    /// vector log against spaces and entities, profiles against users, model versions against their
    /// header and tensors, active pointers, indexes against their spaces. LMDB errors met while
    /// walking (a damaged B-tree page) are problems too. At most `maxProblems` are listed.
    public func verify(maxProblems: Int = 100) throws -> VerifyReport {
        try read { tx in
            // First the pages themselves, read from the file: LMDB trusts what is inside a page, and a
            // cursor walk over a damaged one could read outside the map instead of failing. Inside the
            // read transaction, so no writer reuses a page of the newest snapshot while it is read.
            let pages = PageCheck.run(directory: path, maxProblems: maxProblems)
            guard pages.problems.isEmpty else {
                return VerifyReport(checked: ["pages": pages.pages], problems: pages.problems.map { "data.mdb: \($0)" })
            }
            var verifier = Verifier(tx: tx, maxProblems: maxProblems)
            verifier.run()
            verifier.checked["pages"] = pages.pages
            return VerifyReport(checked: verifier.checked, problems: verifier.problems)
        }
    }
}

/// One pass of `verify`. Each table is walked independently; a failure in one (an LMDB error on a
/// damaged page) is recorded and the walk goes on with the next table.
private struct Verifier {
    let tx: ReadTransaction
    let maxProblems: Int
    var problems: [String] = []
    var checked: [String: Int] = [:]

    init(tx: ReadTransaction, maxProblems: Int) {
        self.tx = tx
        self.maxProblems = maxProblems
    }

    mutating func problem(_ text: String) { if problems.count < maxProblems { problems.append(text) } }
    var full: Bool { problems.count >= maxProblems }

    /// Visits every entry of `table` in key order; errors (LMDB's or `body`'s) become problems.
    mutating func walk(_ table: Table, _ body: (inout Verifier, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) {
        var n = 0
        do {
            let cursor = try tx.raw.cursor(table)
            var step = LMDBCursor.Move.first
            while !full {
                let more = try cursor.move(step) { k, v -> Bool in
                    n += 1
                    do { try body(&self, k, v) } catch { problem("\(table.rawValue) \(describeKey(k)): \(error)") }
                    return true
                }
                guard more != nil else { break }
                step = .next
            }
            // LMDB's entry count (stored in the main tree, without a checksum) must agree with the walk.
            if !full, let recorded = try? tx.raw.count(table), recorded != n {
                problem("\(table.rawValue): LMDB records \(recorded) entries but the table holds \(n)")
            }
        } catch {
            problem("\(table.rawValue): cannot walk the table after \(n) entries: \(error)")
        }
        checked[table.rawValue] = n
    }

    /// Runs a check whose error is a problem rather than the end of `verify`.
    mutating func guarded(_ what: String, _ body: (inout Verifier) throws -> Void) {
        do { try body(&self) } catch { problem("\(what): \(error)") }
    }

    mutating func run() {
        var lastItem: UInt64 = 0, lastUser: UInt64 = 0, lastSeq: UInt64 = 0, lastSpace: UInt64 = 0
        var eventTypes: Set<UInt16> = [0]

        // meta: every value sealed (format_version bare), counters 8 bytes.
        walk(.meta) { v, k, value in
            let key = String(decoding: k, as: UTF8.self)
            if key == MetaKey.formatVersion.rawValue {
                guard value.count == 8, Database.readableFormatVersions.contains(Int(clamping: UInt64(littleEndian: value.loadUnaligned(as: UInt64.self)))) else {
                    v.problem("meta format_version is not one of \(Database.readableFormatVersions.map(String.init).joined(separator: ", "))"); return
                }
                return
            }
            let body = try Seal.open(value, key: k, table: .meta)
            if key.hasPrefix(MetaKey.eventTypePrefix.rawValue) {
                guard body.count == 2 else { v.problem("meta \(key): \(body.count) bytes, expected 2"); return }
                eventTypes.insert(UInt16(body[0]) | UInt16(body[1]) << 8)
            } else if key.hasPrefix(MetaKey.droppedModelPrefix.rawValue) {
                if UInt32(String(decoding: body, as: UTF8.self)).map({ $0 >= 1 }) != true { v.problem("meta \(key): not a version number") }
            } else if !key.hasPrefix(MetaKey.importPrefix.rawValue) {
                guard body.count == 8 else { v.problem("meta \(key): \(body.count) bytes, expected 8"); return }
                let n = UInt64(littleEndian: body.loadUnaligned(as: UInt64.self))
                switch MetaKey(rawValue: key) {
                case .lastItemID?: lastItem = n
                case .lastUserID?: lastUser = n
                case .lastEventSequence?: lastSeq = n
                case .lastSpaceID?: lastSpace = n
                case .createdAt?, .itemStateVersion?: break
                default: v.problem("meta has an unknown key '\(key)'")
                }
            }
        }

        // items ↔ item_ids, users ↔ user_ids: both directions.
        var itemExternal: [UInt32: String] = [:]
        walk(.items) { v, k, value in
            guard k.count == 4 else { v.problem("items: key of \(k.count) bytes"); return }
            let item = try ItemRecord.decode(id: Keys.readU32(k), value)
            if item.id == 0 || UInt64(item.id) > lastItem { v.problem("item #\(item.id) is beyond the id counter \(lastItem)") }
            itemExternal[item.id] = item.externalID
            if try v.tx.itemID(for: item.externalID) != item.id { v.problem("item #\(item.id) '\(item.externalID)' is not mapped back by item_ids") }
        }
        walk(.itemIDs) { v, k, value in
            guard value.count == 4 else { v.problem("item_ids '\(describeKey(k))': value of \(value.count) bytes"); return }
            let id = Keys.readU32(value)
            if itemExternal[id] != String(decoding: k, as: UTF8.self) { v.problem("item_ids maps '\(describeKey(k))' to #\(id), whose record says '\(itemExternal[id] ?? "(none)")'") }
        }
        if UInt64(itemExternal.count) != lastItem { problem("items holds \(itemExternal.count) records but the id counter is \(lastItem)") }
        var userExternal: [UInt32: String] = [:]
        walk(.users) { v, k, value in
            guard k.count == 4 else { v.problem("users: key of \(k.count) bytes"); return }
            let user = try UserRecord.decode(id: Keys.readU32(k), value)
            if user.id == 0 || UInt64(user.id) > lastUser { v.problem("user #\(user.id) is beyond the id counter \(lastUser)") }
            userExternal[user.id] = user.externalID
            if try v.tx.userID(for: user.externalID) != user.id { v.problem("user #\(user.id) '\(user.externalID)' is not mapped back by user_ids") }
        }
        walk(.userIDs) { v, k, value in
            guard value.count == 4 else { v.problem("user_ids '\(describeKey(k))': value of \(value.count) bytes"); return }
            let id = Keys.readU32(value)
            if userExternal[id] != String(decoding: k, as: UTF8.self) { v.problem("user_ids maps '\(describeKey(k))' to #\(id), whose record says '\(userExternal[id] ?? "(none)")'") }
        }
        if UInt64(userExternal.count) != lastUser { problem("users holds \(userExternal.count) records but the id counter is \(lastUser)") }

        // Events: per-user blocks, each decoded and checked (checksum, bounds, order inside the block);
        // a user's blocks do not overlap; every event refers to a known user, item and type; sequences
        // are unique and dense from 1 to the counter (so the counter is the event count).
        var events = 0
        if lastSeq > 1 << 40 { problem("meta last_event_seq \(lastSeq) is implausibly large") }
        var seen = [UInt64](repeating: 0, count: Int(min(lastSeq, 1 << 40) / 64) + 1)
        // Both event tables, each in key order: the checks of one block, and no overlap with the block
        // before it in the same table. A user with blocks in user_events_delta is then read through the
        // merged cursor, as every reader reads it: no key in both tables, no overlap across them.
        var usersInDelta: [UInt32] = []
        if !tx.raw.hasTable(.userEventsDelta) {
            guarded("user_events_delta") { v in try EventsCursor.checkStillFormat3(v.tx.raw) }
        }
        for table in [Table.userEvents, .userEventsDelta] where tx.raw.hasTable(table) {
            var previous: (user: UInt32, event: StoredEvent)?
            let name = table.rawValue
            walk(table) { v, k, value in
                guard k.count == EventBlock.keyBytes else { v.problem("\(name): key of \(k.count) bytes"); return }
                let user = EventBlock.decodeKey(k).user
                if userExternal[user] == nil { v.problem("\(name): block \(describeKey(k)) belongs to unknown user #\(user)") }
                if table == .userEventsDelta, usersInDelta.last != user { usersInDelta.append(user) }
                if let p = previous, p.user == user, let first = try EventBlock.decode(key: k, value: value).first, !p.event.precedes(first) {
                    v.problem("\(name): block \(describeKey(k)) of user #\(user) overlaps the block before it")
                }
                var problems: [String] = []
                var last: StoredEvent?
                try EventBlock.decode(key: k, value: value) { e in
                    events += 1
                    last = e
                    if itemExternal[e.item] == nil { problems.append("event \(e.sequence) of user #\(user) refers to unknown item #\(e.item)") }
                    if !eventTypes.contains(e.typeCode) { problems.append("event \(e.sequence) has unknown type code \(e.typeCode)") }
                    if let f = e.value, !f.isFinite { problems.append("event \(e.sequence) has value \(f)") }
                    if e.sequence == 0 || e.sequence > lastSeq {
                        problems.append("event \(e.sequence) is beyond the sequence counter \(lastSeq)")
                    } else {
                        let (word, bit) = (Int(e.sequence / 64), UInt64(1) << (e.sequence % 64))
                        if seen[word] & bit != 0 { problems.append("sequence \(e.sequence) appears twice") }
                        seen[word] |= bit
                    }
                }
                for p in problems { v.problem("\(name): \(p)") }
                if let last { previous = (user, last) }
            }
        }
        var merged: EventsCursor?  // one cursor for every such user: each walk starts with a seek
        if !usersInDelta.isEmpty { guarded("user_events and user_events_delta") { v in merged = try EventsCursor(v.tx.raw) } }
        for user in usersInDelta where !full {
            guard let cursor = merged else { break }
            guarded("user_events and user_events_delta, user #\(user)") { v in
                var previous: StoredEvent?
                var step: StoredEvent?
                var more = try cursor.seek(Keys.u32(user)) { k, _ in k.count >= 4 && Keys.readU32(k) == user } ?? false
                while more {
                    _ = try cursor.move(.current) { k, value in
                        let events = try EventBlock.decode(key: k, value: value)
                        if let p = previous, let first = events.first, !p.precedes(first) {
                            v.problem("user_events_delta: block \(describeKey(k)) of user #\(user) overlaps the block before it (the two event tables read together)")
                        }
                        step = events.last
                    }
                    if let step { previous = step }
                    more = try cursor.move(.next) { k, _ in k.count >= 4 && Keys.readU32(k) == user } ?? false
                }
            }
        }
        if UInt64(events) != lastSeq { problem("user_events and user_events_delta hold \(events) events but the sequence counter is \(lastSeq) (sequences are dense from 1)") }
        checked["events"] = events

        // Spaces, vectors and the vector log.
        var spacesByID: [UInt32: EmbeddingSpace] = [:]
        walk(.spaces) { v, k, value in
            let body = try Seal.open(value, key: k, table: .spaces)
            let space = try JSONDecoder().decode(EmbeddingSpace.self, from: Data(body))
            if space.name != String(decoding: k, as: UTF8.self) { v.problem("spaces: record '\(describeKey(k))' names itself '\(space.name)'") }
            if space.id == 0 || UInt64(space.id) > lastSpace { v.problem("space \(space.name) has id \(space.id) beyond the counter \(lastSpace)") }
            if spacesByID[space.id] != nil { v.problem("space id \(space.id) is used twice") }
            if space.dimension < 1 || space.dimension > 65_536 { v.problem("space \(space.name) has dimension \(space.dimension)") }
            spacesByID[space.id] = space
        }
        var vectorCounts: [UInt32: Int] = [:]
        var vectorKeys: Set<UInt64> = []
        walk(.vectors) { v, k, value in
            guard k.count == 8 else { v.problem("vectors: key of \(k.count) bytes"); return }
            let (sid, entity) = (Keys.readU32(k), Keys.readU32(k, at: 4))
            guard let space = spacesByID[sid] else { v.problem("vector #\(sid)/#\(entity) belongs to no space"); return }
            // Counted before its checksum is checked: a damaged vector is one problem, not three.
            vectorCounts[sid, default: 0] += 1
            vectorKeys.insert(UInt64(sid) << 32 | UInt64(entity))
            let view = VectorView(dtype: space.dtype, raw: try VectorEncoding.open(value, key: k, space: space))
            for i in 0..<view.count where !view[i].isFinite { v.problem("vector \(space.name)/#\(entity) has component \(i) = \(view[i])"); break }
            let known = space.kind == .item ? itemExternal[entity] != nil : userExternal[entity] != nil
            if !known { v.problem("vector \(space.name)/#\(entity) refers to an unknown \(space.kind.rawValue)") }
        }
        var logVersions: [UInt32: (count: Int, min: UInt64, max: UInt64)] = [:]
        walk(.vectorLog) { v, k, value in
            guard k.count == 12 else { v.problem("vector_log: key of \(k.count) bytes"); return }
            let sid = Keys.readU32(k), version = Keys.readU64(k, at: 4)
            let body = try Seal.open(value, key: k, table: .vectorLog)
            guard body.count == 4 else { v.problem("vector_log #\(sid)/\(version): \(body.count) bytes"); return }
            let entity = UInt32(littleEndian: body.loadUnaligned(as: UInt32.self))
            guard let space = spacesByID[sid] else { v.problem("vector_log entry #\(sid)/\(version) belongs to no space"); return }
            if !vectorKeys.contains(UInt64(sid) << 32 | UInt64(entity)) { v.problem("vector_log \(space.name)/\(version) names #\(entity), which has no vector") }
            let seen = logVersions[sid] ?? (0, UInt64.max, 0)
            logVersions[sid] = (seen.count + 1, min(seen.min, version), max(seen.max, version))
        }
        for space in spacesByID.values.sorted(by: { $0.id < $1.id }) {
            let n = vectorCounts[space.id] ?? 0
            if n != space.count { problem("space \(space.name) records \(space.count) vectors but holds \(n)") }
            // The log is pruned from its old end (entries an index no longer needs), so what is kept must be
            // exactly the newest versions, consecutive up to the space's; an index's catch-up is checked below.
            let log = logVersions[space.id] ?? (0, 0, 0)
            if log.count > 0 && (UInt64(log.count) > space.version || log.max != space.version || log.min != space.version - UInt64(log.count) + 1) {
                problem("space \(space.name) is at version \(space.version) but its vector log has \(log.count) entries from \(log.min) to \(log.max)")
            }
        }
        checked["vectors"] = vectorCounts.values.reduce(0, +)

        walk(.profiles) { v, k, value in
            guard k.count == 4 else { v.problem("profiles: key of \(k.count) bytes"); return }
            let p = try ProfileRecord.decode(user: Keys.readU32(k), value)
            if userExternal[p.user] == nil { v.problem("a profile refers to unknown user #\(p.user)") }
        }

        // Models: headers, versions and tensors, each sealed; versions ↔ headers ↔ tensors ↔ item spaces.
        var headers: [String: ModelHeader] = [:]
        var versions: [String: [UInt32: ModelVersionInfo]] = [:]
        var tensors: [String: Set<String>] = [:]  // "name/version" → tensor names
        walk(.models) { v, k, value in
            let body = try Seal.open(value, key: k, table: .models)
            let key = Array(k)
            if key.starts(with: Array("m/".utf8)) {
                let header = try JSONDecoder().decode(ModelHeader.self, from: Data(body))
                let name = String(decoding: key.dropFirst(2), as: UTF8.self)
                if header.name != name { v.problem("models: header '\(name)' names itself '\(header.name)'") }
                headers[name] = header
            } else if key.starts(with: Array("v/".utf8)) {
                let info = try JSONDecoder().decode(ModelVersionInfo.self, from: Data(body))
                if ModelKeys.version(info.model, info.version) != key { v.problem("models: version record \(describeKey(k)) describes \(info.model)/\(info.version)") }
                versions[info.model, default: [:]][info.version] = info
            } else if key.starts(with: Array("t/".utf8)) {
                _ = try TensorCodec.decode(value, key: key, what: "tensor \(describeKey(k))")
                // t/<name>/<u32 BE version>/<tensor>: the name may contain '/', the version is 4 raw bytes.
                guard let slash = key.lastIndex(of: UInt8(ascii: "/")), slash >= 7, key[slash - 5] == UInt8(ascii: "/") else {
                    v.problem("models: malformed tensor key \(describeKey(k))"); return
                }
                let name = String(decoding: key[2..<(slash - 5)], as: UTF8.self)
                let version = key.withUnsafeBytes { Keys.readU32($0, at: slash - 4) }
                tensors["\(name)/\(version)", default: []].insert(String(decoding: key[(slash + 1)...], as: UTF8.self))
            } else {
                v.problem("models: unknown key \(describeKey(k))")
            }
        }
        for (name, header) in headers.sorted(by: { $0.key < $1.key }) {
            let stored = versions[name] ?? [:]
            if let active = header.activeVersion, stored[active] == nil { problem("model \(name) points at version \(active), which does not exist") }
            for v in header.previousActive where stored[v] == nil { problem("model \(name) keeps version \(v) for rollback, which does not exist") }
            if let top = stored.keys.max(), top >= header.nextVersion { problem("model \(name) has version \(top) but numbers the next \(header.nextVersion)") }
        }
        for (name, byVersion) in versions.sorted(by: { $0.key < $1.key }) {
            if headers[name] == nil { problem("model \(name) has versions but no header") }
            for (version, info) in byVersion.sorted(by: { $0.key < $1.key }) {
                let names = tensors["\(name)/\(version)"] ?? []
                // Text inputs are stored only by versions that read a text space.
                let required = info.textSpace == nil ? ModelTensor.servingOnly.subtracting([ModelTensor.textInputs]) : ModelTensor.servingOnly
                for tensor in required.sorted() where !names.contains(tensor) { problem("model \(name)/\(version) has no \(tensor) tensor") }
                if names.subtracting(ModelTensor.servingOnly).isEmpty { problem("model \(name)/\(version) has no parameters") }
                let space = Database.itemSpaceName(model: name, version: version)
                if !spacesByID.values.contains(where: { $0.name == space }) { problem("model \(name)/\(version) has no item space \(space)") }
                if info.numItems < 0 || UInt64(info.numItems) > lastItem { problem("model \(name)/\(version) trained on \(info.numItems) items, beyond the id counter \(lastItem)") }
            }
        }
        for key in tensors.keys.sorted() {
            let parts = key.split(separator: "/", omittingEmptySubsequences: false)
            let (name, version) = (parts.dropLast().joined(separator: "/"), UInt32(parts.last ?? "") ?? 0)
            if versions[name]?[version] == nil { problem("tensors of \(name)/\(version) belong to no version record") }
        }
        checked["model_versions"] = versions.values.reduce(0) { $0 + $1.count }

        // Indexes: sealed headers; each blob matches the size and FNV-1a checksum its header records.
        var indexHeaders: [String: IndexInfo] = [:]
        var blobs: [String: (bytes: Int, checksum: String)] = [:]
        walk(.indexes) { v, k, value in
            let key = String(decoding: k, as: UTF8.self)
            if key.hasPrefix("h/space:") {
                let info = try JSONDecoder().decode(IndexInfo.self, from: Data(try Seal.open(value, key: k, table: .indexes)))
                indexHeaders[String(key.dropFirst(8))] = info
            } else if key.hasPrefix("b/space:") {
                blobs[String(key.dropFirst(8))] = (value.count, Checksum.fnv1a64(value))
            } else {
                v.problem("indexes: unknown key \(describeKey(k))")
            }
        }
        for (space, info) in indexHeaders.sorted(by: { $0.key < $1.key }) {
            if info.space != space { problem("index of \(space) names its space '\(info.space)'") }
            guard let stored = spacesByID.values.first(where: { $0.name == space }) else { problem("index of \(space) serves no existing space"); continue }
            if info.dimension != stored.dimension { problem("index of \(space) has dimension \(info.dimension), its space \(stored.dimension)") }
            if info.spaceVersion > stored.version { problem("index of \(space) is at space version \(info.spaceVersion), beyond the space's \(stored.version)") }
            let kept = UInt64(logVersions[stored.id]?.count ?? 0)
            if info.spaceVersion <= stored.version && stored.version - info.spaceVersion > kept {
                problem("index of \(space) is at space version \(info.spaceVersion), but the vector log keeps only the last \(kept) of the \(stored.version - info.spaceVersion) changes since")
            }
            if info.eventVersion > lastSeq { problem("index of \(space) records event version \(info.eventVersion), beyond \(lastSeq)") }
            guard let blob = blobs[space] else { problem("index of \(space) has no stored bytes"); continue }
            if blob.bytes != info.bytes || blob.checksum != info.checksum {
                problem("index of \(space): stored bytes (\(blob.bytes), checksum \(blob.checksum)) do not match the header (\(info.bytes), \(info.checksum))")
            }
        }
        for space in blobs.keys.sorted() where indexHeaders[space] == nil { problem("index bytes of \(space) have no header") }
        checked["indexes"] = indexHeaders.count
    }
}
