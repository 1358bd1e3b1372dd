import Foundation

/// A catalogue item as stored.
public struct Item: Equatable, Sendable, Codable {
    /// Dense internal id, from 1 (0 is the models' padding row).
    public var id: UInt32
    public var externalID: String
    public var title: String?
    public var text: String?
    /// A JSON object (categories, brand, price, …) as text, or nil.
    public var attributesJSON: String?
    /// Unavailable items are kept (their events stay valid) but never recommended or returned by searches.
    public var isAvailable: Bool
    /// Deleted items keep their id and events; they are invisible to searches and recommendations.
    public var isDeleted: Bool
    public var createdAt: Int64
    public var updatedAt: Int64

    /// The attributes decoded as a dictionary (empty when none).
    public var attributes: [String: Any] {
        guard let json = attributesJSON, let data = json.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object
    }
}

/// What a caller supplies to create or update an item.
public struct ItemInput: Sendable {
    public var externalID: String
    public var title: String?
    public var text: String?
    public var attributesJSON: String?
    public var isAvailable: Bool

    public init(externalID: String, title: String? = nil, text: String? = nil, attributesJSON: String? = nil, isAvailable: Bool = true) {
        self.externalID = externalID
        self.title = title
        self.text = text
        self.attributesJSON = attributesJSON
        self.isAvailable = isAvailable
    }
}

enum ItemRecord {
    static let version: UInt8 = 1
    static let availableFlag: UInt8 = 1
    static let deletedFlag: UInt8 = 2

    static func encode(_ item: Item) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u8(version)
        w.u8((item.isAvailable ? availableFlag : 0) | (item.isDeleted ? deletedFlag : 0))
        w.leI64(item.createdAt)
        w.leI64(item.updatedAt)
        w.string(item.externalID)
        w.optionalString(item.title)
        w.optionalString(item.text)
        w.optionalString(item.attributesJSON)
        Seal.append(to: &w.bytes, key: Keys.u32(item.id), table: .items)  // every read checks it (see `Seal`)
        return w.bytes
    }

    /// The record without its checksum trailer; throws `.damaged` when the checksum fails.
    static func payload(id: UInt32, _ raw: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
        var key = id.bigEndian
        return try withUnsafeBytes(of: &key) { try Seal.open(raw, key: $0, table: .items) }
    }

    static func decode(id: UInt32, _ stored: UnsafeRawBufferPointer) throws -> Item {
        let raw = try payload(id: id, stored)
        var r = ByteReader(raw, what: "item \(id)")
        let v = try r.u8()
        guard v == version else { throw RecDBError.corrupt("item \(id) has record version \(v)") }
        let flags = try r.u8()
        let created = try r.leI64(), updated = try r.leI64()
        let ext = try r.string()
        return Item(id: id, externalID: ext, title: try r.optionalString(), text: try r.optionalString(),
                    attributesJSON: try r.optionalString(), isAvailable: flags & availableFlag != 0,
                    isDeleted: flags & deletedFlag != 0, createdAt: created, updatedAt: updated)
    }

    /// Reads only the external id and, when asked, the title (hot path for search results).
    static func externalIDAndTitle(id: UInt32, _ stored: UnsafeRawBufferPointer, title wantTitle: Bool) throws -> (String, String?) {
        var r = ByteReader(try payload(id: id, stored), what: "item \(id)")
        let v = try r.u8()
        guard v == version else { throw RecDBError.corrupt("item \(id) has record version \(v)") }
        _ = try r.u8(); _ = try r.leI64(); _ = try r.leI64()
        let external = try r.string()
        return (external, wantTitle ? try r.optionalString() : nil)
    }

    /// Reads only the flags byte (hot path for filters), after checking the record's checksum: a
    /// flipped flag would otherwise serve a deleted item.
    static func flags(id: UInt32, _ stored: UnsafeRawBufferPointer) throws -> UInt8 {
        let raw = try payload(id: id, stored)
        guard raw.count > 1 else { throw RecDBError.corrupt("item \(id): record truncated") }
        return raw[1]
    }
}

/// The longest external id, in bytes of UTF-8 (LMDB's keys end at 511).
let maxExternalIDBytes = 500

/// External ids are LMDB keys: non-empty, at most 500 bytes of UTF-8, not blank and without control
/// characters (a NUL or a line break in an id cannot be exported, typed or told apart when printed).
func validateExternalID(_ id: String, kind: String) throws {
    let n = id.utf8.count
    guard n > 0 else { throw RecDBError.invalidArgument("empty \(kind) id") }
    guard n <= maxExternalIDBytes else { throw RecDBError.invalidArgument("\(kind) id longer than \(maxExternalIDBytes) bytes: \(id.prefix(40))…") }
    if let c = id.unicodeScalars.first(where: { $0.properties.generalCategory == .control }) {
        throw RecDBError.invalidArgument("\(kind) id contains the control character U+\(String(format: "%04X", c.value)): \(id.debugDescription.prefix(60))")
    }
    guard !id.allSatisfy(\.isWhitespace) else { throw RecDBError.invalidArgument("\(kind) id is blank (only whitespace)") }
}

extension ReadTransaction {
    /// Internal id of the item with external id `externalID`, or nil.
    public func itemID(for externalID: String) throws -> UInt32? {
        try raw.withValue(.itemIDs, key: Array(externalID.utf8)) { try Keys.storedID($0, table: .itemIDs, externalID: externalID) }
    }

    public func item(id: UInt32) throws -> Item? {
        if let item = try raw.withValue(.items, key: Keys.u32(id), { try ItemRecord.decode(id: id, $0) }) { return item }
        try requireAbsentItem(id)
        return nil
    }

    /// Ids are dense and records never removed: a missing record below the counter is a damaged
    /// table (a hidden node), not an absent item. Checked only when a lookup finds nothing.
    func requireAbsentItem(_ id: UInt32) throws {
        if id > 0, UInt64(id) <= (try meta.counter(.lastItemID)) {
            throw RecDBError.damaged(table: Table.items.rawValue, key: "#\(id)", detail: "the record of an existing item cannot be found")
        }
    }

    public func item(externalID: String) throws -> Item? {
        guard let id = try itemID(for: externalID) else { return nil }
        return try item(id: id)
    }

    /// Whether the item may be returned by searches and recommendations (exists, available, not deleted).
    public func isServable(item id: UInt32) throws -> Bool {
        if let servable = try raw.withValue(.items, key: Keys.u32(id), { raw -> Bool in
            let f = try ItemRecord.flags(id: id, raw)
            return f & ItemRecord.availableFlag != 0 && f & ItemRecord.deletedFlag == 0
        }) { return servable }
        try requireAbsentItem(id)
        return false
    }

    /// Calls `body` for every item in id order; stop early by returning false.
    public func forEachItem(_ body: (Item) throws -> Bool) throws {
        let cursor = try raw.cursor(.items)
        var step = LMDBCursor.Move.first
        while let item = try cursor.move(step, { k, v in try ItemRecord.decode(id: Keys.readU32(k), v) }) {
            guard try body(item) else { return }
            step = .next
        }
    }
}

extension WriteTransaction {
    /// Creates the item, or updates its fields when the external id exists (fields given as nil keep
    /// their stored value). Returns the internal id.
    @discardableResult
    public func upsertItem(_ input: ItemInput) throws -> UInt32 {
        try validateExternalID(input.externalID, kind: "item")
        if let attrs = input.attributesJSON { try validateJSONObject(attrs, what: "attributes of item \(input.externalID)") }
        let now = Clock.now()
        if let id = try itemID(for: input.externalID), let old = try item(id: id) {
            var item = old
            item.title = input.title ?? item.title
            item.text = input.text ?? item.text
            item.attributesJSON = input.attributesJSON ?? item.attributesJSON
            item.isAvailable = input.isAvailable
            item.isDeleted = false
            // Re-importing an unchanged item writes nothing: no new item state (filters stay cached)
            // and no re-embedding (which would also grow the vector log).
            guard item != old else { return id }
            item.updatedAt = now
            try raw.put(.items, key: Keys.u32(id), value: ItemRecord.encode(item))
            // Only the fields an embedding template can read ({title}, {text}, {<attribute>}), or a
            // revival (deleted items are not embedded), make embed-on-insert embed the item again.
            let textChanged = item.title != old.title || item.text != old.text || item.attributesJSON != old.attributesJSON
            try itemStateChanged(id, embed: textChanged || old.isDeleted)
            return id
        }
        let id = UInt32(try nextCounter(.lastItemID))
        let item = Item(id: id, externalID: input.externalID, title: input.title, text: input.text,
                        attributesJSON: input.attributesJSON, isAvailable: input.isAvailable, isDeleted: false,
                        createdAt: now, updatedAt: now)
        try raw.put(.items, key: Keys.u32(id), value: ItemRecord.encode(item))
        try raw.put(.itemIDs, key: Array(input.externalID.utf8), value: Keys.u32(id))
        try itemCreated(id)
        return id
    }

    /// Internal id for `externalID`, creating a bare item (no title) when it does not exist.
    @discardableResult
    public func itemID(forCreating externalID: String) throws -> UInt32 {
        if let id = try itemID(for: externalID) { return id }
        return try upsertItem(ItemInput(externalID: externalID))
    }

    /// Marks the item available or not. Unavailable items are never served.
    public func setAvailability(item id: UInt32, _ available: Bool) throws {
        guard var item = try item(id: id) else { throw RecDBError.unknownItem("#\(id)") }
        guard item.isAvailable != available else { return }
        item.isAvailable = available
        item.updatedAt = Clock.now()
        try raw.put(.items, key: Keys.u32(id), value: ItemRecord.encode(item))
        try itemStateChanged(id, embed: false)
    }

    /// Deletes the item logically: its id and past events stay (models and logs refer to them),
    /// but it is never returned by a search or recommendation again. Upserting it revives it.
    public func deleteItem(id: UInt32) throws {
        guard var item = try item(id: id) else { throw RecDBError.unknownItem("#\(id)") }
        guard !item.isDeleted else { return }
        item.isDeleted = true
        item.updatedAt = Clock.now()
        try raw.put(.items, key: Keys.u32(id), value: ItemRecord.encode(item))
        try itemStateChanged(id, embed: false)
    }

    /// A stored item changed: filters built for the previous item state are stale; `embed` also
    /// queues it for embed-on-insert (`changedItems`). Availability and deletion alone change no
    /// embedding text.
    private func itemStateChanged(_ id: UInt32, embed: Bool) throws {
        if embed { changedItems.insert(id) }
        _ = try nextCounter(.itemStateVersion)
    }
}

func validateJSONObject(_ text: String, what: String) throws {
    guard let data = text.data(using: .utf8),
          (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
        throw RecDBError.invalidArgument("\(what) is not a JSON object: \(text.prefix(60))")
    }
}
