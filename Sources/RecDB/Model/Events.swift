import Foundation

/// One interaction of a user with an item.
public struct Event: Equatable, Sendable, Codable {
    /// Global, monotonically increasing number (the event log position).
    public var sequence: UInt64
    public var user: UInt32
    public var item: UInt32
    /// Seconds since 1970 (or, for imported sequence files, the position in the sequence).
    public var timestamp: Int64
    /// Event type name ("interaction" when none was given): view, click, purchase, rating, …
    public var type: String
    /// Optional value (a rating, a price, a dwell time).
    public var value: Float?
}

/// Raw event as stored, without the type name resolved (bulk paths use it).
struct EventPayload {
    var item: UInt32
    var typeCode: UInt16
    var value: Float?

    static let size = 11
    /// A `user_events` value: the payload and its checksum trailer (CRC-32C of key ‖ payload).
    static let storedSize = size + Seal.size

    /// The payload of a stored `user_events` entry after checking its key length and checksum.
    @inline(__always)
    static func open(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
        guard key.count == 20, value.count == storedSize, let body = Seal.payload(value, key: key, table: .userEvents) else {
            throw Seal.damaged(table: .userEvents, key: key, value: value)
        }
        return body
    }

    /// The item id of a stored `user_events` entry, checked (the serving hot path reads only it).
    @inline(__always)
    static func checkedItem(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws -> UInt32 {
        UInt32(littleEndian: try open(key: key, value: value).loadUnaligned(as: UInt32.self))
    }

    func write(to w: inout ByteWriter) {
        w.leU32(item)
        w.leU16(typeCode)
        w.u8(value == nil ? 0 : 1)
        w.leF32(value ?? 0)
    }

    static func read(_ r: inout ByteReader) throws -> EventPayload {
        let item = try r.leU32(), code = try r.leU16(), has = try r.u8(), value = try r.leF32()
        return EventPayload(item: item, typeCode: code, value: has == 0 ? nil : value)
    }
}

enum EventKeys {
    /// user_events key: (user u32 BE, timestamp i64 biased BE, sequence u64 BE) — 20 bytes.
    static func userEvent(user: UInt32, timestamp: Int64, sequence: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 20)
        w.beU32(user); w.beI64(timestamp); w.beU64(sequence)
        return w.bytes
    }

    static func decodeUserEvent(_ key: UnsafeRawBufferPointer) -> (user: UInt32, timestamp: Int64, sequence: UInt64) {
        let user = Keys.readU32(key, at: 0)
        let ts = Int64(bitPattern: Keys.readU64(key, at: 4) ^ (1 << 63))
        return (user, ts, Keys.readU64(key, at: 12))
    }
}

public let defaultEventType = "interaction"

extension ReadTransaction {
    func eventTypeName(_ code: UInt16) throws -> String {
        if eventTypeNames == nil {
            var names: [UInt16: String] = [0: defaultEventType]
            for (name, value) in try meta.scan(prefix: MetaKey.eventTypePrefix.rawValue) where value.count == 2 {
                names[UInt16(value[0]) | UInt16(value[1]) << 8] = name
            }
            eventTypeNames = names
        }
        // Every code an event carries was recorded with its name; a missing one is damage (a
        // hidden meta entry), not a type to show as "type#N".
        guard let name = eventTypeNames?[code] else {
            throw RecDBError.damaged(table: Table.meta.rawValue, key: "\(MetaKey.eventTypePrefix.rawValue)…", detail: "no name is recorded for event type code \(code)")
        }
        return name
    }

    /// The user's last `n` events in chronological order (one cursor range scan, backwards from the end).
    public func events(user: UInt32, last n: Int = .max) throws -> [Event] {
        var out: [Event] = []
        try forEachEventBackwards(user: user) { event in
            out.append(event)
            return out.count < n
        }
        out.reverse()
        return out
    }

    /// Item ids of the user's last `n` events, oldest first (the serving hot path: no names, no allocation per event).
    public func recentItems(user: UInt32, last n: Int) throws -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(min(n, 256))
        let cursor = try raw.cursor(.userEvents)
        var positioned = try cursor.seek(Keys.u32(user &+ 1)) { _, _ in true } != nil
        // Step back from the first key of the next user (or from the end of the table).
        var step: LMDBCursor.Move = positioned ? .previous : .last
        while out.count < n {
            let item: UInt32?? = try cursor.move(step) { k, v -> UInt32? in
                guard k.count >= 4, Keys.readU32(k) == user else { return nil }
                return try EventPayload.checkedItem(key: k, value: v)
            }
            guard let found = item, let id = found else { break }
            out.append(id)
            step = .previous
            positioned = true
        }
        out.reverse()
        return out
    }

    /// Visits the user's events newest first until `body` returns false.
    public func forEachEventBackwards(user: UInt32, _ body: (Event) throws -> Bool) throws {
        let cursor = try raw.cursor(.userEvents)
        let hasNext = try cursor.seek(Keys.u32(user &+ 1)) { _, _ in true } != nil
        var step: LMDBCursor.Move = hasNext ? .previous : .last
        while true {
            let decoded: (UInt32, Int64, UInt64, EventPayload)? = try cursor.move(step) { k, v in
                let payload = try EventPayload.open(key: k, value: v)
                let key = EventKeys.decodeUserEvent(k)
                var r = ByteReader(payload, what: "event of user \(key.user)")
                return (key.user, key.timestamp, key.sequence, try EventPayload.read(&r))
            }
            guard let (u, ts, seq, payload) = decoded, u == user else { return }
            let event = Event(sequence: seq, user: u, item: payload.item, timestamp: ts,
                              type: try eventTypeName(payload.typeCode), value: payload.value)
            guard try body(event) else { return }
            step = .previous
        }
    }

    /// Visits every user's events in (user, time) order — the training snapshot's bulk path.
    /// `body(user, item, timestamp)`; return false to stop.
    public func forEachUserEvent(_ body: (UInt32, UInt32, Int64) throws -> Bool) throws {
        let cursor = try raw.cursor(.userEvents)
        var step = LMDBCursor.Move.first
        while let keep = try cursor.move(step, { k, v -> Bool in
            let item = try EventPayload.checkedItem(key: k, value: v)
            let key = EventKeys.decodeUserEvent(k)
            return try body(key.user, item, key.timestamp)
        }) {
            guard keep else { return }
            step = .next
        }
    }

    /// Visits the global event log from sequence `after + 1` on, in sequence order.
    public func forEachEvent(after sequence: UInt64 = 0, _ body: (Event) throws -> Bool) throws {
        let cursor = try raw.cursor(.eventLog)
        var first = true
        while true {
            let event: Event? = try {
                let decode: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Event = { k, v in
                    guard k.count == 8 else { throw Seal.damaged(table: .eventLog, key: k, value: v) }
                    let seq = Keys.readU64(k)
                    var r = ByteReader(try Seal.open(v, key: k, table: .eventLog), what: "event \(seq)")
                    let user = try r.leU32()
                    let ts = try r.leI64()
                    let p = try EventPayload.read(&r)
                    return Event(sequence: seq, user: user, item: p.item, timestamp: ts,
                                 type: try self.eventTypeName(p.typeCode), value: p.value)
                }
                if first { return try cursor.seek(Keys.u64(sequence &+ 1), decode) }
                return try cursor.move(.next, decode)
            }()
            first = false
            guard let event else { return }
            guard try body(event) else { return }
        }
    }
}

extension WriteTransaction {
    func eventTypeCode(_ name: String?) throws -> UInt16 {
        guard let name, name != defaultEventType, !name.isEmpty else { return 0 }
        _ = try eventTypeName(0)  // loads the table
        if let code = eventTypeNames?.first(where: { $0.value == name })?.key { return code }
        let code = UInt16((eventTypeNames?.keys.max() ?? 0) + 1)
        try meta.setBytes(MetaKey.eventTypePrefix.rawValue + name, [UInt8(code & 0xff), UInt8(code >> 8)])
        eventTypeNames?[code] = name
        return code
    }

    /// Appends an event (to the user's history and to the global log) and returns its sequence number.
    @discardableResult
    public func appendEvent(user: UInt32, item: UInt32, timestamp: Int64, type: String? = nil, value: Float? = nil) throws -> UInt64 {
        guard user > 0, user <= UInt32(try counter(.lastUserID)) else { throw RecDBError.unknownUser("#\(user)") }
        guard item > 0, item <= UInt32(try counter(.lastItemID)) else { throw RecDBError.unknownItem("#\(item)") }
        if let value, !value.isFinite { throw RecDBError.invalidArgument("event value \(value) is not finite") }
        let code = try eventTypeCode(type)
        return try appendEventUnchecked(user: user, item: item, timestamp: timestamp, typeCode: code, value: value)
    }

    /// Appends without re-validating ids (importers validate in bulk first).
    func appendEventUnchecked(user: UInt32, item: UInt32, timestamp: Int64, typeCode: UInt16, value: Float?) throws -> UInt64 {
        let seq = try nextCounter(.lastEventSequence)
        let payload = EventPayload(item: item, typeCode: typeCode, value: value)
        var v = ByteWriter(capacity: EventPayload.storedSize)
        payload.write(to: &v)
        let key = EventKeys.userEvent(user: user, timestamp: timestamp, sequence: seq)
        Seal.append(to: &v.bytes, key: key, table: .userEvents)
        try raw.put(.userEvents, key: key, value: v.bytes)
        var log = ByteWriter(capacity: 12 + EventPayload.storedSize)
        log.leU32(user); log.leI64(timestamp)
        payload.write(to: &log)
        let logKey = Keys.u64(seq)
        Seal.append(to: &log.bytes, key: logKey, table: .eventLog)
        // Sequence numbers only grow, so the log is always appended at its end (MDB_APPEND: no search).
        try raw.put(.eventLog, key: logKey, value: log.bytes, append: true)
        return seq
    }
}
