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

    @inline(__always)
    static func crc(key: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> UInt32 {
        CRC32C.update(CRC32C.update(0, key), payload)
    }

    /// `payload` with its trailer appended.
    static func sealed(_ payload: [UInt8], key: [UInt8]) -> [UInt8] {
        var out = payload
        append(to: &out, key: key)
        return out
    }

    static func append(to payload: inout [UInt8], key: [UInt8]) {
        let c = key.withUnsafeBytes { k in payload.withUnsafeBytes { crc(key: k, payload: $0) } }
        withUnsafeBytes(of: c.littleEndian) { payload.append(contentsOf: $0) }
    }

    /// Writes the trailer of the first `payloadCount` bytes of `value` (which has room for it) in place.
    static func writeTrailer(_ value: UnsafeMutableRawBufferPointer, payloadCount: Int, key: UnsafeRawBufferPointer) {
        precondition(value.count >= payloadCount + size)
        let c = crc(key: key, payload: UnsafeRawBufferPointer(rebasing: value[0..<payloadCount]))
        value.storeBytes(of: c.littleEndian, toByteOffset: payloadCount, as: UInt32.self)
    }

    /// The payload of a sealed value whose checksum matches, or nil.
    @inline(__always)
    static func payload(_ value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard value.count >= size else { return nil }
        let n = value.count - size
        let body = UnsafeRawBufferPointer(rebasing: value[0..<n])
        let stored = UInt32(littleEndian: value.loadUnaligned(fromByteOffset: n, as: UInt32.self))
        return stored == crc(key: key, payload: body) ? body : nil
    }

    /// The payload of a sealed value; throws `.damaged` naming table and key when the checksum fails.
    @inline(__always)
    static func open(_ value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, table: Table) throws -> UnsafeRawBufferPointer {
        if let body = payload(value, key: key) { return body }
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
