import CChecksum

/// CRC-32C of byte buffers (see Sources/CChecksum: hardware instruction when the CPU has it).
enum CRC32C {
    @inline(__always)
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return recdb_crc32c(crc, base, bytes.count)
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { update(0, $0) } }

    /// The table path alone, whatever the CPU (tests compare the two paths).
    static func softwareUpdate(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return recdb_crc32c_software(crc, base, bytes.count)
    }
}

/// Sealed values: `payload ‖ u32 LE CRC-32C(key ‖ payload)`.
///
/// Every value RecDB reads back as data — records, events, vectors, tensors, catalogue JSON,
/// counters — carries this trailer, and every read checks it before the payload is used: a damaged
/// value is a `RecDBError.damaged` naming its table and key, never a result. The key is covered too,
/// because a flipped key byte silently moves a value (an event to another time, a vector to another
/// item). Exempt: the id maps (`item_ids`, `user_ids`: verified both ways against the records),
/// `meta`'s `format_version` (every build must be able to read it to report a mismatch), and the
/// serialized index blobs (their sealed header carries their FNV-1a checksum).
enum Seal {
    static let size = 4

    /// The checksum starts from the CRC of the table's name, so a value read through a damaged branch
    /// page from another table's leaf (same key bytes, e.g. user #5 for item #5) fails its check.
    @inline(__always)
    static func crc(table: Table, key: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> UInt32 {
        CRC32C.update(CRC32C.update(table.sealSeed, key), payload)
    }

    /// `payload` with its trailer appended.
    static func sealed(_ payload: [UInt8], key: [UInt8], table: Table) -> [UInt8] {
        var out = payload
        append(to: &out, key: key, table: table)
        return out
    }

    static func append(to payload: inout [UInt8], key: [UInt8], table: Table) {
        let c = key.withUnsafeBytes { k in payload.withUnsafeBytes { crc(table: table, key: k, payload: $0) } }
        withUnsafeBytes(of: c.littleEndian) { payload.append(contentsOf: $0) }
    }

    /// Writes the trailer of the first `payloadCount` bytes of `value` (which has room for it) in place.
    static func writeTrailer(_ value: UnsafeMutableRawBufferPointer, payloadCount: Int, key: UnsafeRawBufferPointer, table: Table) {
        // A programmer error: every writer reserves payload + trailer.
        precondition(value.count >= payloadCount + size)
        let c = crc(table: table, key: key, payload: UnsafeRawBufferPointer(rebasing: value[0..<payloadCount]))
        value.storeBytes(of: c.littleEndian, toByteOffset: payloadCount, as: UInt32.self)
    }

    /// The payload of a sealed value whose checksum matches, or nil.
    @inline(__always)
    static func payload(_ value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, table: Table) -> UnsafeRawBufferPointer? {
        guard value.count >= size else { return nil }
        let n = value.count - size
        let body = UnsafeRawBufferPointer(rebasing: value[0..<n])
        let stored = UInt32(littleEndian: value.loadUnaligned(fromByteOffset: n, as: UInt32.self))
        return stored == crc(table: table, key: key, payload: body) ? body : nil
    }

    /// The payload of a sealed value; throws `.damaged` naming table and key when the checksum fails.
    @inline(__always)
    static func open(_ value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, table: Table) throws -> UnsafeRawBufferPointer {
        if let body = payload(value, key: key, table: table) { return body }
        throw damaged(table: table, key: key, value: value)
    }

    static func open(_ value: UnsafeRawBufferPointer, key: [UInt8], table: Table) throws -> UnsafeRawBufferPointer {
        try key.withUnsafeBytes { try open(value, key: $0, table: table) }
    }

    static func damaged(table: Table, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> RecDBError {
        let detail = value.count < size ? "value of \(value.count) bytes has no checksum" : "checksum mismatch"
        return .damaged(table: table.rawValue, key: describeKey(key), detail: detail)
    }
}

/// A key as a reader can recognise it: printable ASCII as is, other bytes as \xNN (ids in keys are
/// big-endian binary), so `models` keys read as `t/sasrec/\x00\x00\x00\x01/@item_vectors`.
func describeKey(_ key: UnsafeRawBufferPointer) -> String {
    if key.count == 4 { return "#\(Keys.readU32(key))" }
    if key.count == 8, key.contains(where: { $0 < 0x20 || $0 > 0x7e }) {
        return "#\(Keys.readU32(key))/#\(Keys.readU32(key, at: 4))"
    }
    var out = ""
    for b in key.prefix(200) {
        if b >= 0x20 && b < 0x7f && b != UInt8(ascii: "\\") { out.unicodeScalars.append(Unicode.Scalar(b)) }
        else { out += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16) }
    }
    return key.count > 200 ? out + "…" : out
}

func describeKey(_ key: [UInt8]) -> String { key.withUnsafeBytes { describeKey($0) } }

extension Table {
    /// CRC-32C of the table's name: the starting value of its values' checksums (see `Seal`).
    var sealSeed: UInt32 {
        switch self {
        case .items: return 0x45EEF316  // CRC-32C of "items"
        case .itemIDs: return 0xB3EECBB3  // CRC-32C of "item_ids"
        case .users: return 0x2E526452  // CRC-32C of "users"
        case .userIDs: return 0xAB68903F  // CRC-32C of "user_ids"
        // One seed for both event tables: a block moves between them unchanged.
        case .userEvents, .userEventsDelta: return 0xCE322C27  // CRC-32C of "user_events"
        case .spaces: return 0x5904551C  // CRC-32C of "spaces"
        case .vectors: return 0xD9015F1B  // CRC-32C of "vectors"
        case .vectorLog: return 0x1F7DE11A  // CRC-32C of "vector_log"
        case .profiles: return 0xAD9E3DD5  // CRC-32C of "profiles"
        case .models: return 0x8B24B81C  // CRC-32C of "models"
        case .indexes: return 0x9F850F44  // CRC-32C of "indexes"
        case .meta: return 0x1B071095  // CRC-32C of "meta"
        }
    }
}
