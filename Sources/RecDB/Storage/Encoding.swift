import Foundation

/// Builds a value or key byte by byte. Integers in keys are big-endian so that LMDB's
/// lexicographic key order is numeric order; integers in values are little-endian.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 32) { bytes.reserveCapacity(capacity) }

    mutating func beU32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func beU64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    /// Signed 64-bit as an order-preserving big-endian unsigned (sign bit flipped).
    mutating func beI64(_ v: Int64) { beU64(UInt64(bitPattern: v) ^ (1 << 63)) }
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func leU16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func leU32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func leI64(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func leF32(_ v: Float) { leU32(v.bitPattern) }
    /// Length-prefixed (u32 LE) UTF-8 string.
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            leU32(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }
    mutating func optionalString(_ s: String?) {
        if let s { u8(1); string(s) } else { u8(0) }
    }
    mutating func raw(_ data: [UInt8]) { bytes.append(contentsOf: data) }
}

/// Reads what `ByteWriter` wrote. Throws `RecDBError.corrupt` instead of reading past the end.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    var offset = 0
    let what: String

    init(_ buffer: UnsafeRawBufferPointer, what: String) {
        self.buffer = buffer
        self.what = what
    }

    var remaining: Int { buffer.count - offset }

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, offset + n <= buffer.count else {
            throw RecDBError.corrupt("\(what): record truncated (needs \(offset + n) bytes, has \(buffer.count))")
        }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + n])
    }

    mutating func beU32() throws -> UInt32 { UInt32(bigEndian: try take(4).loadUnaligned(as: UInt32.self)) }
    mutating func beU64() throws -> UInt64 { UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self)) }
    mutating func beI64() throws -> Int64 { Int64(bitPattern: try beU64() ^ (1 << 63)) }
    mutating func u8() throws -> UInt8 { try take(1)[0] }
    mutating func leU16() throws -> UInt16 { UInt16(littleEndian: try take(2).loadUnaligned(as: UInt16.self)) }
    mutating func leU32() throws -> UInt32 { UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self)) }
    mutating func leI64() throws -> Int64 { Int64(littleEndian: try take(8).loadUnaligned(as: Int64.self)) }
    mutating func leF32() throws -> Float { Float(bitPattern: try leU32()) }
    mutating func string() throws -> String {
        let n = Int(try leU32())
        let raw = try take(n)
        return String(decoding: raw, as: UTF8.self)
    }
    mutating func optionalString() throws -> String? {
        try u8() == 0 ? nil : try string()
    }
    mutating func rest() throws -> UnsafeRawBufferPointer { try take(remaining) }
}

/// Fixed-size keys built on the stack.
enum Keys {
    /// The id an external-id table (`user_ids`, `item_ids`) stores for `externalID`: exactly 4 bytes, never 0.
    /// These values carry no checksum, so anything else is damage, reported as such — never id 0 used as an id.
    static func storedID(_ raw: UnsafeRawBufferPointer, table: Table, externalID: String) throws -> UInt32 {
        let id = raw.count == 4 ? readU32(raw) : 0
        guard id != 0 else {
            throw RecDBError.damaged(table: table.rawValue, key: String(externalID.prefix(60)),
                                     detail: "an id entry of \(raw.count) bytes\(raw.count == 4 ? " holding id 0" : "") (a stored id is 4 bytes, never 0)")
        }
        return id
    }

    static func u32(_ v: UInt32) -> [UInt8] { var w = ByteWriter(capacity: 4); w.beU32(v); return w.bytes }
    static func u64(_ v: UInt64) -> [UInt8] { var w = ByteWriter(capacity: 8); w.beU64(v); return w.bytes }
    static func pair(_ a: UInt32, _ b: UInt32) -> [UInt8] { var w = ByteWriter(capacity: 8); w.beU32(a); w.beU32(b); return w.bytes }
    /// Reads a big-endian id from a key; 0 (never a valid id) when a damaged key is too short,
    /// instead of reading past it — the checksum of the value, which covers the key, then fails.
    static func readU32(_ raw: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt32 {
        guard offset >= 0, raw.count >= offset + 4 else { return 0 }
        return UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    static func readU64(_ raw: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt64 {
        guard offset >= 0, raw.count >= offset + 8 else { return 0 }
        return UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

extension LMDBTransaction {
    // Convenience overloads taking [UInt8] keys/values.
    func withValue<T>(_ table: Table, key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        try key.withUnsafeBytes { try withValue(table, key: $0, body) }
    }
    func get(_ table: Table, key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { try get(table, key: $0) }
    }
    func put(_ table: Table, key: [UInt8], value: [UInt8], append: Bool = false) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(table, key: k, value: v, append: append) } }
    }
    @discardableResult
    func delete(_ table: Table, key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete(table, key: $0) }
    }
    func contains(_ table: Table, key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try contains(table, key: $0) }
    }
    func stringKey(_ s: String) -> [UInt8] { Array(s.utf8) }
}

extension LMDBCursor {
    func seek<T>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> T) throws -> T? {
        try key.withUnsafeBytes { try seek($0, body) }
    }
}
