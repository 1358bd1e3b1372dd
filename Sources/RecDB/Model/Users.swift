import Foundation

public struct User: Equatable, Sendable, Codable {
    /// Dense internal id, from 1.
    public var id: UInt32
    public var externalID: String
    /// A JSON object as text, or nil.
    public var attributesJSON: String?
    public var createdAt: Int64
}

enum UserRecord {
    static let version: UInt8 = 1

    static func encode(_ user: User) -> [UInt8] {
        var w = ByteWriter(capacity: 32)
        w.u8(version)
        w.leI64(user.createdAt)
        w.string(user.externalID)
        w.optionalString(user.attributesJSON)
        Seal.append(to: &w.bytes, key: Keys.u32(user.id), table: .users)  // every read checks it (see `Seal`)
        return w.bytes
    }

    static func decode(id: UInt32, _ stored: UnsafeRawBufferPointer) throws -> User {
        var key = id.bigEndian
        let raw = try withUnsafeBytes(of: &key) { try Seal.open(stored, key: $0, table: .users) }
        var r = ByteReader(raw, what: "user \(id)")
        let v = try r.u8()
        guard v == version else { throw RecDBError.corrupt("user \(id) has record version \(v)") }
        let created = try r.leI64()
        return User(id: id, externalID: try r.string(), attributesJSON: try r.optionalString(), createdAt: created)
    }
}

extension ReadTransaction {
    public func userID(for externalID: String) throws -> UInt32? {
        try raw.withValue(.userIDs, key: Array(externalID.utf8)) { try Keys.storedID($0, table: .userIDs, externalID: externalID) }
    }

    public func user(id: UInt32) throws -> User? {
        if let user = try raw.withValue(.users, key: Keys.u32(id), { try UserRecord.decode(id: id, $0) }) { return user }
        // Ids are dense and records never removed: a missing one below the counter is damage.
        if id > 0, UInt64(id) <= (try meta.counter(.lastUserID)) {
            throw RecDBError.damaged(table: Table.users.rawValue, key: "#\(id)", detail: "the record of an existing user cannot be found")
        }
        return nil
    }

    public func user(externalID: String) throws -> User? {
        guard let id = try userID(for: externalID) else { return nil }
        return try user(id: id)
    }

    /// Calls `body` for every user in id order; stop early by returning false.
    public func forEachUser(_ body: (User) throws -> Bool) throws {
        let cursor = try raw.cursor(.users)
        var step = LMDBCursor.Move.first
        while let user = try cursor.move(step, { k, v in try UserRecord.decode(id: Keys.readU32(k), v) }) {
            guard try body(user) else { return }
            step = .next
        }
    }
}

extension WriteTransaction {
    /// Creates the user (or updates its attributes when given) and returns the internal id.
    @discardableResult
    public func upsertUser(externalID: String, attributesJSON: String? = nil) throws -> UInt32 {
        try validateExternalID(externalID, kind: "user")
        if let attrs = attributesJSON { try validateJSONObject(attrs, what: "attributes of user \(externalID)") }
        if let id = try userID(for: externalID) {
            if let attributesJSON, var user = try user(id: id) {
                user.attributesJSON = attributesJSON
                try raw.put(.users, key: Keys.u32(id), value: UserRecord.encode(user))
            }
            return id
        }
        let id = UInt32(try nextCounter(.lastUserID))
        let user = User(id: id, externalID: externalID, attributesJSON: attributesJSON, createdAt: Clock.now())
        try raw.put(.users, key: Keys.u32(id), value: UserRecord.encode(user))
        try raw.put(.userIDs, key: Array(externalID.utf8), value: Keys.u32(id))
        return id
    }
}
