import Foundation

/// A user profile: text (e.g. written by an LLM) and when it was stored. Its embedding, when there
/// is one, lives in a user-kind embedding space (`putVector(space:entity:)` with the user's id).
public struct Profile: Equatable, Sendable, Codable {
    public var user: UInt32
    public var text: String
    public var updatedAt: Int64
}

enum ProfileRecord {
    static let version: UInt8 = 1
    static func encode(_ p: Profile) -> [UInt8] {
        var w = ByteWriter(capacity: 16 + p.text.utf8.count)
        w.u8(version); w.leI64(p.updatedAt); w.string(p.text)
        Seal.append(to: &w.bytes, key: Keys.u32(p.user), table: .profiles)  // every read checks it (see `Seal`)
        return w.bytes
    }
    static func decode(user: UInt32, _ stored: UnsafeRawBufferPointer) throws -> Profile {
        var key = user.bigEndian
        let raw = try withUnsafeBytes(of: &key) { try Seal.open(stored, key: $0, table: .profiles) }
        var r = ByteReader(raw, what: "profile of user \(user)")
        let v = try r.u8()
        guard v == version else { throw RecDBError.corrupt("profile of user \(user) has record version \(v)") }
        let ts = try r.leI64()
        return Profile(user: user, text: try r.string(), updatedAt: ts)
    }
}

extension ReadTransaction {
    public func profile(user: UInt32) throws -> Profile? {
        try raw.withValue(.profiles, key: Keys.u32(user)) { try ProfileRecord.decode(user: user, $0) }
    }

    public func profileCount() throws -> Int { try raw.count(.profiles) }

    /// Visits every profile in user-id order; return false to stop.
    public func forEachProfile(_ body: (Profile) throws -> Bool) throws {
        let cursor = try raw.cursor(.profiles)
        var step = LMDBCursor.Move.first
        while let p = try cursor.move(step, { k, v in try ProfileRecord.decode(user: Keys.readU32(k), v) }) {
            guard try body(p) else { return }
            step = .next
        }
    }
}

extension WriteTransaction {
    /// Stores (or replaces) the user's profile text.
    public func putProfile(user: UInt32, text: String, timestamp: Int64? = nil) throws {
        guard user > 0, UInt64(user) <= (try counter(.lastUserID)) else { throw RecDBError.unknownUser("#\(user)") }
        let p = Profile(user: user, text: text, updatedAt: timestamp ?? Clock.now())
        try raw.put(.profiles, key: Keys.u32(user), value: ProfileRecord.encode(p))
        changedProfiles.insert(user)
    }
}
