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

/// An event as a block stores it (type as its code, user implied by the block).
struct StoredEvent: Equatable {
    var timestamp: Int64
    var sequence: UInt64
    var item: UInt32
    var typeCode: UInt16
    var value: Float?

    /// Plain events (default type, no value) need no type byte in a plain block.
    var isPlain: Bool { typeCode == 0 && value == nil }

    /// (timestamp, sequence) order: the order of a user's history.
    @inline(__always)
    func precedes(_ other: StoredEvent) -> Bool {
        timestamp != other.timestamp ? timestamp < other.timestamp : sequence < other.sequence
    }
}

/// `user_events` (format 3): each user's history is a run of **blocks**, each holding up to ~2 KB of
/// consecutive events, so an event costs a few bytes instead of a B-tree entry (format 2 stored two
/// entries per event, 109 bytes at 15M events; sqlite stores ~33 bytes per row with its index).
///
/// - Key (20 bytes): user u32 BE, then the block's first event's timestamp (i64, sign bit flipped, BE)
///   and sequence (u64 BE). Key order is (user, time) order, so a user's newest events are in the last
///   block before the next user's first key: one short backwards cursor scan.
/// - Value: `u8 flags` (bit 0: every event is plain — default type, no value — and carries no type
///   field), `varint count` (≥ 1), `varint maxSequence − firstSequence` (lets sequence-filtered scans skip a
///   block), then the events in (timestamp, sequence) order: the first one's time and sequence are the
///   key's; each later one has `varint Δtimestamp` (≥ 0) and `zigzag varint Δsequence` (≠ 0 when
///   Δtimestamp is 0); every event has `varint item`; non-plain blocks add `varint (typeCode << 1 | hasValue)`
///   and, with a value, `f32 LE`. The `Seal` CRC-32C trailer covers key and value.
/// - Blocks of one user do not overlap in (timestamp, sequence): a block's events are ≥ its key and
///   < the next block's key. Values stay under LMDB's inline node limit (no overflow pages).
enum EventBlock {
    /// Largest value (with its header and trailer): two blocks fill a 4 KiB leaf page, and a node of
    /// 8 + 20 + 2010 bytes is the most LMDB keeps inside a page.
    static let maxValueBytes = 2_000
    /// Room kept for the header (flags, count, max-sequence delta) and the trailer.
    static let headerReserve = 1 + 5 + 10 + Seal.size
    static let keyBytes = 20
    static let plainFlag: UInt8 = 1

    static func key(user: UInt32, timestamp: Int64, sequence: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: keyBytes)
        w.beU32(user); w.beI64(timestamp); w.beU64(sequence)
        return w.bytes
    }

    static func key(user: UInt32, first: StoredEvent) -> [UInt8] { key(user: user, timestamp: first.timestamp, sequence: first.sequence) }

    static func decodeKey(_ key: UnsafeRawBufferPointer) -> (user: UInt32, timestamp: Int64, sequence: UInt64) {
        let user = Keys.readU32(key, at: 0)
        let ts = Int64(bitPattern: Keys.readU64(key, at: 4) ^ (1 << 63))
        return (user, ts, Keys.readU64(key, at: 12))
    }

    /// Bytes an event adds to a block after `previous` (nil: it is the block's first event).
    @inline(__always)
    static func encodedSize(_ e: StoredEvent, after previous: StoredEvent?, plain: Bool) -> Int {
        var n = Varint.size(UInt64(e.item))
        if let p = previous {
            n += Varint.size(UInt64(bitPattern: e.timestamp &- p.timestamp))
            n += Varint.size(Varint.zigzag(Int64(bitPattern: e.sequence &- p.sequence)))
        }
        if !plain { n += Varint.size(UInt64(e.typeCode) << 1 | 1) + (e.value == nil ? 0 : 4) }
        return n
    }

    /// The sealed value of a block holding `events` (sorted, non-empty) of `user`.
    static func encode(user: UInt32, _ events: UnsafeBufferPointer<StoredEvent>, into out: inout [UInt8]) {
        let plain = events.allSatisfy(\.isPlain)
        let first = events[0]
        var maxSequence = first.sequence
        for e in events where e.sequence > maxSequence { maxSequence = e.sequence }
        out.removeAll(keepingCapacity: true)
        out.append(plain ? plainFlag : 0)
        Varint.append(UInt64(events.count), to: &out)
        Varint.append(maxSequence - first.sequence, to: &out)
        var previous: StoredEvent?
        for e in events {
            if let p = previous {
                Varint.append(UInt64(bitPattern: e.timestamp &- p.timestamp), to: &out)
                Varint.append(Varint.zigzag(Int64(bitPattern: e.sequence &- p.sequence)), to: &out)
            }
            Varint.append(UInt64(e.item), to: &out)
            if !plain {
                Varint.append(UInt64(e.typeCode) << 1 | (e.value == nil ? 0 : 1), to: &out)
                if let v = e.value { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            }
            previous = e
        }
        let k = key(user: user, first: first)
        Seal.append(to: &out, key: k, table: .userEvents)
    }

    /// The block's header after checking key length and checksum: (plain, count, max sequence, events' bytes).
    @inline(__always)
    static func open(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws
        -> (plain: Bool, count: Int, maxSequence: UInt64, body: UnsafeRawBufferPointer) {
        guard key.count == keyBytes, let payload = Seal.payload(value, key: key, table: .userEvents) else {
            throw Seal.damaged(table: .userEvents, key: key, value: value)
        }
        var r = VarintReader(payload)
        guard let flags = r.byte(), flags & ~plainFlag == 0, let count = r.next(), count >= 1, count <= UInt64(payload.count),
              let span = r.next() else {
            throw malformed(key, "bad block header")
        }
        let firstSequence = Keys.readU64(key, at: 12)
        let (maxSequence, overflow) = firstSequence.addingReportingOverflow(span)
        guard !overflow else { throw malformed(key, "bad block header") }
        return (flags & plainFlag != 0, Int(count), maxSequence, UnsafeRawBufferPointer(rebasing: payload[r.offset...]))
    }

    /// Decodes a block, handing each event (oldest first) to `body`. Checks checksum, bounds and order.
    @inline(__always)
    static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, _ body: (StoredEvent) throws -> Void) throws {
        let (plain, count, maxSequence, bytes) = try open(key: key, value: value)
        let k = decodeKey(key)
        var r = VarintReader(bytes)
        var e = StoredEvent(timestamp: k.timestamp, sequence: k.sequence, item: 0, typeCode: 0, value: nil)
        for i in 0..<count {
            if i > 0 {
                guard let dt = r.next(), let ds = r.next() else { throw malformed(key, "event \(i) truncated") }
                let t = e.timestamp.addingReportingOverflow(Int64(bitPattern: dt))
                let s = Int64(bitPattern: e.sequence).addingReportingOverflow(Varint.unzigzag(ds))
                guard dt <= UInt64(Int64.max), !t.overflow, !s.overflow, s.partialValue > 0, dt > 0 || ds & 1 == 0 && ds != 0 else {
                    throw malformed(key, "event \(i) out of order")
                }
                e.timestamp = t.partialValue
                e.sequence = UInt64(s.partialValue)
            }
            guard let item = r.next(), item <= UInt64(UInt32.max) else { throw malformed(key, "event \(i) truncated") }
            e.item = UInt32(item)
            if !plain {
                guard let tv = r.next(), tv >> 1 <= UInt64(UInt16.max) else { throw malformed(key, "event \(i) truncated") }
                e.typeCode = UInt16(tv >> 1)
                if tv & 1 != 0 {
                    guard let bits = r.u32() else { throw malformed(key, "event \(i) truncated") }
                    e.value = Float(bitPattern: bits)
                } else {
                    e.value = nil
                }
            }
            guard e.sequence <= maxSequence else { throw malformed(key, "event \(i) beyond the block's sequence range") }
            try body(e)
        }
        guard r.atEnd else { throw malformed(key, "bytes after the last event") }
    }

    static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws -> [StoredEvent] {
        var out: [StoredEvent] = []
        try decode(key: key, value: value) { out.append($0) }
        return out
    }

    static func malformed(_ key: UnsafeRawBufferPointer, _ detail: String) -> RecDBError {
        .damaged(table: Table.userEvents.rawValue, key: describeKey(key), detail: detail)
    }
}

/// Unsigned LEB128 varints (7 bits a byte, low first) and zigzag for signed deltas.
enum Varint {
    @inline(__always) static func size(_ v: UInt64) -> Int { v == 0 ? 1 : (64 - v.leadingZeroBitCount + 6) / 7 }
    @inline(__always) static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    @inline(__always) static func unzigzag(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }

    @inline(__always)
    static func append(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 { out.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    /// Writes at `p` and returns the bytes written (at most 10).
    @inline(__always)
    static func write(_ value: UInt64, to p: UnsafeMutablePointer<UInt8>) -> Int {
        var v = value, n = 0
        while v >= 0x80 { p[n] = UInt8(truncatingIfNeeded: v) | 0x80; v >>= 7; n += 1 }
        p[n] = UInt8(v)
        return n + 1
    }
}

/// Reads varints from a buffer; nil (never a read past the end) when the bytes run out or a varint is over 10 bytes.
struct VarintReader {
    let buffer: UnsafeRawBufferPointer
    var offset = 0
    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    var atEnd: Bool { offset == buffer.count }

    @inline(__always)
    mutating func byte() -> UInt8? {
        guard offset < buffer.count else { return nil }
        defer { offset += 1 }
        return buffer[offset]
    }

    @inline(__always)
    mutating func next() -> UInt64? {
        var result: UInt64 = 0, shift: UInt64 = 0
        while offset < buffer.count {
            let b = buffer[offset]
            offset += 1
            if shift == 63 && b > 1 { return nil }  // more than 64 bits
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    @inline(__always)
    mutating func u32() -> UInt32? {
        guard offset + 4 <= buffer.count else { return nil }
        defer { offset += 4 }
        return UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
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

    func event(_ e: StoredEvent, user: UInt32) throws -> Event {
        Event(sequence: e.sequence, user: user, item: e.item, timestamp: e.timestamp, type: try eventTypeName(e.typeCode), value: e.value)
    }

    /// Visits the user's blocks newest first (`body` gets each block's events, oldest first) until it returns false.
    func forEachBlockBackwards(user: UInt32, _ body: ([StoredEvent]) throws -> Bool) throws {
        let cursor = try EventsCursor(raw)
        let mine = { (k: UnsafeRawBufferPointer, v: UnsafeRawBufferPointer) throws -> [StoredEvent]? in
            guard k.count >= 4, Keys.readU32(k) == user else { return nil }
            return try EventBlock.decode(key: k, value: v)
        }
        // Step back from the first key of the next user (or from the end of the table).
        var block = try (user == UInt32.max ? cursor.move(.last, mine) : cursor.seekBefore(Keys.u32(user &+ 1), mine)) ?? nil
        while let events = block, try body(events) {
            block = try cursor.move(.previous, mine) ?? nil
        }
    }

    /// Visits the user's stored events oldest first until `body` returns false.
    func forEachStoredEvent(user: UInt32, _ body: (StoredEvent) throws -> Bool) throws {
        let cursor = try EventsCursor(raw)
        var stop = false
        let visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool = { k, v in
            guard k.count >= 4, Keys.readU32(k) == user else { return false }
            try EventBlock.decode(key: k, value: v) { e in if !stop, try !body(e) { stop = true } }
            return !stop
        }
        var more = try cursor.seek(Keys.u32(user), visit) ?? false
        while more { more = try cursor.move(.next, visit) ?? false }
    }

    /// The user's last `n` events in chronological order (the last block or few, read backwards).
    public func events(user: UInt32, last n: Int = .max) throws -> [Event] {
        var out: [Event] = []
        try forEachEventBackwards(user: user) { event in
            out.append(event)
            return out.count < n
        }
        out.reverse()
        return out
    }

    /// Item ids of the user's last `n` events, oldest first (the serving hot path: no names; a 50-event
    /// history is usually one block).
    public func recentItems(user: UInt32, last n: Int) throws -> [UInt32] {
        guard n > 0 else { return [] }
        var out: [UInt32] = []
        out.reserveCapacity(min(n, 256))
        try forEachBlockBackwards(user: user) { block in
            for e in block.reversed() {
                out.append(e.item)
                if out.count == n { return false }
            }
            return true
        }
        out.reverse()
        return out
    }

    /// Visits the user's events newest first until `body` returns false.
    public func forEachEventBackwards(user: UInt32, _ body: (Event) throws -> Bool) throws {
        try forEachBlockBackwards(user: user) { block in
            for e in block.reversed() { guard try body(try event(e, user: user)) else { return false } }
            return true
        }
    }

    /// Visits every stored event in (user, time) order, with its sequence — the bulk scan.
    func forEachStoredEvent(_ body: (UInt32, StoredEvent) throws -> Bool) throws {
        let cursor = try EventsCursor(raw)
        var step = LMDBCursor.Move.first
        var stop = false
        while try cursor.move(step, { k, v -> Bool in
            let user = EventBlock.decodeKey(k).user
            try EventBlock.decode(key: k, value: v) { e in if !stop, try !body(user, e) { stop = true } }
            return true
        }) != nil, !stop {
            step = .next
        }
    }

    /// Visits every user's events in (user, time) order — the training snapshot's bulk path.
    /// `body(user, item, timestamp)`; return false to stop.
    public func forEachUserEvent(_ body: (UInt32, UInt32, Int64) throws -> Bool) throws {
        try forEachStoredEvent { user, e in try body(user, e.item, e.timestamp) }
    }

    /// Visits the events from sequence `after + 1` on, in sequence order. Events are stored per user, so
    /// this scans every block (skipping, undecoded, those holding only older events) and sorts what it
    /// keeps: memory grows with the events after `after` (about 32 bytes each) — meant for catching up
    /// on recent events, not for dumping a large database (`export` reads per user).
    public func forEachEvent(after sequence: UInt64 = 0, _ body: (Event) throws -> Bool) throws {
        var kept: [(UInt32, StoredEvent)] = []
        let cursor = try EventsCursor(raw)
        var step = LMDBCursor.Move.first
        while try cursor.move(step, { k, v -> Bool in
            guard try EventBlock.open(key: k, value: v).maxSequence > sequence else { return true }
            let user = EventBlock.decodeKey(k).user
            try EventBlock.decode(key: k, value: v) { e in if e.sequence > sequence { kept.append((user, e)) } }
            return true
        }) != nil {
            step = .next
        }
        kept.sort { $0.1.sequence < $1.1.sequence }
        for (user, e) in kept { guard try body(try event(e, user: user)) else { return } }
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

    /// Appends an event to the user's history and returns its sequence number.
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
        let writer = UserBlockWriter(tx: self)
        let event = StoredEvent(timestamp: timestamp, sequence: seq, item: item, typeCode: typeCode, value: value)
        // Only the block the event falls into is re-packed (usually the user's last).
        try writer.begin(user: user, existing: true, first: event, last: event)
        try writer.add(event)
        try writer.end()
        return seq
    }
}

/// Writes one user's new events (in (timestamp, sequence) order, all newer in sequence than any stored
/// event) into `user_events`, packing blocks greedily. For a user that may have events, the stored
/// blocks from the one the first new event falls into onwards are read, deleted and re-packed with the
/// new events (usually just the last block: new events are mostly newer in time too). A new user's
/// blocks are appended at the end of the table (MDB_APPEND: no search, full pages), so a bulk import
/// writes new users in ascending id order after every existing key.
///
/// A bulk import (events streamed, `last` not given) leaves a user's stored last block as it is and
/// writes the new events as blocks of their own after it when they all come after its last event and
/// either side holds at least `appendMinEvents` events: decoding and re-packing that block was most of
/// the extra work of importing into users with events (perf, 1M rows into a 51M-event database). Where
/// neither side holds that many, the block is re-packed as before, so of two neighbouring blocks of a
/// user at least one holds `appendMinEvents` events or is full: a latest-50 read still needs at most
/// two blocks, and a block's ~37 bytes of key, header and node are spread over many events.
final class UserBlockWriter {
    /// See the type's comment: the serving window (50 events) fits in a block and its neighbour.
    static let appendMinEvents = 50
    let tx: WriteTransaction
    // Touched for every event of a bulk import, from one thread: no dynamic exclusivity bookkeeping.
    @exclusivity(unchecked) private var user: UInt32 = 0
    @exclusivity(unchecked) private var append = false
    @exclusivity(unchecked) private var pending: [StoredEvent] = []
    @exclusivity(unchecked) private var pendingBytes = 0
    @exclusivity(unchecked) private var pendingPlain = true
    /// Stored events after the insertion point, merged in front of new events as they come.
    @exclusivity(unchecked) private var tail: [StoredEvent] = []
    @exclusivity(unchecked) private var tailIndex = 0
    /// A bulk import's new events held back until it is known whether they go after the stored last
    /// block (`appendMinEvents` of them, or the stored block holds that many) or are merged into it.
    @exclusivity(unchecked) private var deferred: [StoredEvent] = []
    @exclusivity(unchecked) private var undecided = false
    /// The table this user's new blocks go to (see `begin`).
    @exclusivity(unchecked) private var destination = Table.userEvents
    /// A key ≥ every key of `user_events_delta` (nil: the table is empty), while a bulk import writes it:
    /// a block with a greater key is appended (MDB_APPEND: no search, full pages).
    private var deltaBound: [UInt8]?
    private var deltaBoundKnown = false
    /// This user's events come from a bulk import (not a single event).
    @exclusivity(unchecked) private var bulk = false
    private var value: [UInt8] = []
    private(set) var blocksWritten = 0

    init(tx: WriteTransaction) {
        self.tx = tx
        pending.reserveCapacity(512)
        value.reserveCapacity(EventBlock.maxValueBytes + 16)
    }

    /// Starts `user`. `existing`: the user may have stored events (otherwise the caller guarantees its
    /// keys sort after every key in `user_events`).
    /// `last`, when known (a single event), bounds the stored blocks to re-pack: those holding
    /// `first`…`last`; otherwise every block from `first` on (a bulk import streams its events).
    ///
    /// Where the blocks go: a new user's are appended to `user_events`. A single event is re-packed into
    /// the block it falls into, in the table that holds that block. A bulk import writes an existing
    /// user's new blocks to `user_events_delta` and never rewrites the user's blocks in `user_events`
    /// (unless new events fall before stored ones: those blocks are re-packed, and go to the delta table).
    func begin(user: UInt32, existing: Bool, first: StoredEvent, last: StoredEvent? = nil) throws {
        self.user = user
        append = !existing
        destination = .userEvents
        bulk = last == nil
        pending.removeAll(keepingCapacity: true)
        pendingBytes = 0
        pendingPlain = true
        tail.removeAll(keepingCapacity: true)
        tailIndex = 0
        deferred.removeAll(keepingCapacity: true)
        undecided = false
        guard existing else { return }
        guard last == nil else { return try loadTail(from: first, through: last) }
        destination = .userEventsDelta
        switch try storedLastBlock(before: first) {
        case .none:
            break  // nothing stored: the new events' blocks are the user's only ones
        case .after(let count, .userEventsDelta) where count < Self.appendMinEvents:
            undecided = true  // a short last block in the delta table may be merged with short new events
        case .after:
            break  // the new events go after the stored last block, left as it is
        case .overlapping:
            try loadTail(from: first, through: nil)
        }
    }

    private enum StoredLastBlock {
        /// The user has no stored events.
        case none
        /// The user's last stored block (holding `count` events, in `table`) ends before the first new event.
        case after(count: Int, table: Table)
        /// A stored event comes at or after the first new event: the blocks from there are re-packed.
        case overlapping
    }

    /// Where the first new event falls among the user's stored blocks: one seek, and the last block
    /// decoded (checksum and order checked) for its last event.
    private func storedLastBlock(before first: StoredEvent) throws -> StoredLastBlock {
        let cursor = try tx.eventsCursor()
        let user = self.user
        let key = EventBlock.key(user: user, first: first)
        // A block of this user at or after the first new event's key: not the last block's tail.
        let atOrAfter = try key.withUnsafeBytes { k in
            try cursor.seek(k) { found, _ in found.count >= 4 && Keys.readU32(found) == user }
        }
        if atOrAfter == true { return .overlapping }
        // The entry before that key (or the table's last, when no key follows) is the user's last block, if it is theirs.
        let lastBlock = try cursor.move(atOrAfter == nil ? .last : .previous) { k, v -> (count: Int, last: StoredEvent)? in
            guard k.count >= 4, Keys.readU32(k) == user else { return nil }
            var count = 0
            var lastEvent = first
            try EventBlock.decode(key: k, value: v) { e in count += 1; lastEvent = e }
            return (count, lastEvent)
        } ?? nil
        guard let lastBlock, let table = cursor.currentTable else { return .none }
        return lastBlock.last.precedes(first) ? .after(count: lastBlock.count, table: table) : .overlapping
    }

    /// Ends holding back: the held events go after the stored last block, or are merged into it.
    private func decide(append: Bool) throws {
        undecided = false
        if !append, let first = deferred.first { try loadTail(from: first, through: nil) }
        for e in deferred { try add(e) }
        deferred.removeAll(keepingCapacity: true)
    }

    private func loadTail(from first: StoredEvent, through last: StoredEvent?) throws {
        let cursor = try tx.eventsCursor()
        let key = EventBlock.key(user: user, first: first)
        let user = self.user
        let isMine: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool = { k, _ in k.count >= 4 && Keys.readU32(k) == user }
        // The block the new event falls into is the last one whose key is below it; without one, the
        // user's first block (every stored event is newer).
        let atOrAfter = try key.withUnsafeBytes { try cursor.seek($0, isMine) }
        var positioned: Bool
        if atOrAfter != nil {
            positioned = try cursor.move(.previous, isMine) ?? false
            // Not mine, or nothing before (a failed MDB_PREV leaves the cursor where it was): seek again.
            if !positioned { positioned = try key.withUnsafeBytes { try cursor.seek($0, isMine) } ?? false }
        } else {
            positioned = try cursor.move(.last, isMine) ?? false
        }
        var keys: [(key: [UInt8], table: Table)] = []
        while positioned {
            guard let table = cursor.currentTable else { break }
            _ = try cursor.move(.current) { k, v in
                try EventBlock.decode(key: k, value: v) { tail.append($0) }
                keys.append((Array(k), table))
            }
            positioned = try cursor.move(.next) { k, _ -> Bool in
                guard isMine(k, k) else { return false }
                // A later block starts after the last new event: it needs no re-packing.
                if let last { let next = EventBlock.decodeKey(k); return !last.precedes(StoredEvent(timestamp: next.timestamp, sequence: next.sequence, item: 0, typeCode: 0, value: nil)) }
                return true
            } ?? false
        }
        // Deleted by key after the scan (usually one block): no reliance on where a cursor stands after a delete.
        for k in keys { _ = try k.key.withUnsafeBytes { try tx.raw.delete(k.table, key: $0) } }
        // A single event goes back to the table of the block it falls into.
        if last != nil, let first = keys.first { destination = first.table }
    }

    func add(_ e: StoredEvent) throws {
        if undecided {
            deferred.append(e)
            if deferred.count >= Self.appendMinEvents { try decide(append: true) }
            return
        }
        while tailIndex < tail.count, tail[tailIndex].precedes(e) {
            try push(tail[tailIndex])
            tailIndex += 1
        }
        try push(e)
    }

    private func push(_ e: StoredEvent) throws {
        // Stored blocks that overlap (damage the checksums could not see) must not become a block out of order.
        if let p = pending.last, !p.precedes(e) {
            throw RecDBError.damaged(table: Table.userEvents.rawValue, key: "#\(user)", detail: "events overlap between blocks at sequence \(e.sequence)")
        }
        let plain = pendingPlain && e.isPlain
        if plain != pendingPlain { pendingBytes = recount(plain: plain) }
        let size = EventBlock.encodedSize(e, after: pending.last, plain: plain)
        if !pending.isEmpty, pendingBytes + size + EventBlock.headerReserve > EventBlock.maxValueBytes {
            try flush()
            return try push(e)
        }
        pending.append(e)
        pendingBytes += size
        pendingPlain = plain
    }

    private func recount(plain: Bool) -> Int {
        var n = 0
        var previous: StoredEvent?
        for e in pending { n += EventBlock.encodedSize(e, after: previous, plain: plain); previous = e }
        return n
    }

    private func flush() throws {
        guard !pending.isEmpty else { return }
        pending.withUnsafeBufferPointer { EventBlock.encode(user: user, $0, into: &value) }
        let key = EventBlock.key(user: user, first: pending[0])
        // A single event re-packed in the delta table is put, not appended: finding the table's last key
        // takes a cursor, and a cursor per event (kept until the transaction ends) made writes quadratic.
        let appending = destination == .userEvents ? append : bulk ? try appendsToDelta(key) : false
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { try tx.raw.put(destination, key: k, value: $0, append: appending) } }
        blocksWritten += 1
        pending.removeAll(keepingCapacity: true)
        pendingBytes = 0
        pendingPlain = true
    }

    /// Whether a block with `key` can be appended to `user_events_delta`: its key is above every key there.
    /// Asked for bulk imports only (one writer per import), so the table's last key is read once.
    private func appendsToDelta(_ key: [UInt8]) throws -> Bool {
        if !deltaBoundKnown {
            deltaBound = try tx.raw.cursor(.userEventsDelta).move(.last) { k, _ in Array(k) }
            deltaBoundKnown = true
        }
        if let bound = deltaBound, key.withUnsafeBytes({ k in bound.withUnsafeBytes { EventsCursor.compare(k, $0) } }) <= 0 { return false }
        deltaBound = key
        return true
    }

    func end() throws {
        if undecided { try decide(append: false) }
        while tailIndex < tail.count { try push(tail[tailIndex]); tailIndex += 1 }
        try flush()
    }
}
