import Foundation

/// Which kind of entity a space's vectors describe.
public enum EntityKind: String, Codable, Sendable, CaseIterable { case item, user }

/// How a space stores its components. `f16` halves the size of large LLM embeddings.
public enum VectorDType: String, Codable, Sendable, CaseIterable {
    case f32, f16
    public var byteWidth: Int { self == .f32 ? 4 : 2 }
}

/// The similarity a space's vectors are compared with.
public enum VectorMetric: String, Codable, Sendable, CaseIterable {
    /// Inner product of L2-normalised vectors.
    case cosine
    case innerProduct = "ip"
    case l2
}

/// Catalogue entry of an embedding space.
public struct EmbeddingSpace: Codable, Equatable, Sendable {
    public var id: UInt32
    public var name: String
    public var kind: EntityKind
    public var dimension: Int
    public var dtype: VectorDType
    public var metric: VectorMetric
    /// Vectors are L2-normalised on write.
    public var normalized: Bool
    /// Where the vectors came from (model, file, template…), free text.
    public var provenance: String
    public var createdAt: Int64
    /// Number of stored vectors.
    public var count: Int
    /// Incremented by every vector write; the `vector_log` maps versions to entities.
    public var version: UInt64
    /// Optional text encoder attached to the space (model folder and template), for in-store embedding.
    public var encoder: EncoderBinding?

    public init(id: UInt32 = 0, name: String, kind: EntityKind, dimension: Int, dtype: VectorDType = .f32,
                metric: VectorMetric = .cosine, normalized: Bool = false, provenance: String = "",
                createdAt: Int64 = 0, count: Int = 0, version: UInt64 = 0, encoder: EncoderBinding? = nil) {
        self.id = id; self.name = name; self.kind = kind; self.dimension = dimension; self.dtype = dtype
        self.metric = metric; self.normalized = normalized; self.provenance = provenance
        self.createdAt = createdAt; self.count = count; self.version = version; self.encoder = encoder
    }

    public var bytesPerVector: Int { dimension * dtype.byteWidth }
}

/// A text encoder attached to a space: the model folder and the text template (`{title}`, `{title}. {text}`).
public struct EncoderBinding: Codable, Equatable, Sendable {
    public var modelDirectory: String
    public var template: String
    /// Embed items (or profiles) automatically when they are inserted.
    public var embedOnInsert: Bool
    public init(modelDirectory: String, template: String, embedOnInsert: Bool = true) {
        self.modelDirectory = modelDirectory; self.template = template; self.embedOnInsert = embedOnInsert
    }
}

/// A borrowed view of one stored vector: LMDB's own bytes, read in place (no copy, no conversion).
///
/// The bytes belong to the transaction's snapshot: LMDB unmaps or reuses them once the transaction
/// ends. So a view cannot leave the closure that received it: it is non-copyable and handed out
/// `borrowing`, which means it can be neither returned, stored, captured nor copied (the compiler
/// refuses `try db.read { tx in try tx.withVector(...) { $0 } }`), and it exposes no pointer —
/// read it through the subscript, `copy(into:)` or `toArray()`.
///
/// - warning: Inside a **write** transaction the bytes are LMDB's dirty page, which the next write
///   may move or overwrite: a view is dead after the next write of that transaction. Do not write
///   (`putVector`, imports, …) inside the closure that holds a view.
public struct VectorView: ~Copyable {
    public let dtype: VectorDType
    /// Internal on purpose: a public pointer would let the bytes escape the transaction.
    let raw: UnsafeRawBufferPointer
    public var count: Int { raw.count / dtype.byteWidth }
    /// Size of the stored value in bytes.
    public var byteCount: Int { raw.count }

    init(dtype: VectorDType, raw: UnsafeRawBufferPointer) {
        self.dtype = dtype
        self.raw = raw
    }

    public subscript(i: Int) -> Float {
        // A programmer error, like an array index: stored views are checked against their space's dimension.
        precondition(i >= 0 && i < count, "component \(i) of a \(count)-component vector")
        switch dtype {
        case .f32: return Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        case .f16: return Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))))
        }
    }

    /// Converts into `out` (which must hold `count` floats).
    public func copy(into out: UnsafeMutableBufferPointer<Float>) {
        // A programmer error: the caller's buffer.
        precondition(out.count >= count)
        switch dtype {
        case .f32:
            if count > 0 { _ = memcpy(out.baseAddress!, raw.baseAddress!, count * 4) }
        case .f16:
            for i in 0..<count { out[i] = self[i] }
        }
    }

    public func toArray() -> [Float] {
        let n = count
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            copy(into: buf)
            initialized = n
        }
    }
}

enum VectorEncoding {
    /// A stored vector's components: `dimension × dtype` bytes followed by the CRC-32C of
    /// (key ‖ components) — checked on every read, so a flipped bit is an error, never a score.
    @inline(__always)
    static func open(_ value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, space: EmbeddingSpace) throws -> UnsafeRawBufferPointer {
        guard value.count == space.bytesPerVector + Seal.size, let body = Seal.payload(value, key: key, table: .vectors) else {
            throw RecDBError.damaged(table: Table.vectors.rawValue, key: "\(space.name)/#\(key.count == 8 ? Keys.readU32(key, at: 4) : 0)",
                                     detail: value.count == space.bytesPerVector + Seal.size ? "checksum mismatch"
                                         : "\(value.count) bytes, expected \(space.bytesPerVector) + \(Seal.size)")
        }
        return body
    }

    /// Encodes `values` as the space's dtype (little-endian), normalising when the space asks for it.
    static func encode(_ values: UnsafeBufferPointer<Float>, space: EmbeddingSpace, into out: UnsafeMutableRawBufferPointer) {
        var scale: Float = 1
        if space.normalized {
            var sum: Float = 0
            for v in values { sum += v * v }
            if sum > 0 { scale = 1 / sum.squareRoot() }
        }
        switch space.dtype {
        case .f32:
            for i in 0..<values.count { out.storeBytes(of: (values[i] * scale).bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self) }
        case .f16:
            for i in 0..<values.count { out.storeBytes(of: Float16(values[i] * scale).bitPattern.littleEndian, toByteOffset: i * 2, as: UInt16.self) }
        }
    }
}

extension ReadTransaction {
    /// The space named `name`, or nil.
    public func space(named name: String) throws -> EmbeddingSpace? {
        if let cached = spaceCache[name] { return cached }
        let space = try cachedJSON(EmbeddingSpace.self, table: .spaces, key: Array(name.utf8), what: "space \(name)", sealed: true)
        if let space { spaceCache[name] = space }
        return space
    }

    func requireSpace(_ name: String) throws -> EmbeddingSpace {
        guard let space = try space(named: name) else { throw RecDBError.unknownSpace(name) }
        return space
    }

    /// Every space, by name.
    public func spaces() throws -> [EmbeddingSpace] {
        let cursor = try raw.cursor(.spaces)
        var names: [String] = []
        var step = LMDBCursor.Move.first
        while let name = try cursor.move(step, { k, _ in String(decoding: k, as: UTF8.self) }) {
            names.append(name)
            step = .next
        }
        return try names.map { try requireSpace($0) }
    }

    /// Zero-copy access to a stored vector: `body` gets LMDB's bytes (no copy, no conversion), after
    /// their checksum was verified (a damaged vector throws `.damaged`), as a borrowed view that cannot
    /// outlive the call (see `VectorView`; in a write transaction it is also dead after the next write).
    public func withVector<T>(space: String, entity: UInt32, _ body: (borrowing VectorView) throws -> T) throws -> T? {
        let s = try requireSpace(space)
        let key = Keys.pair(s.id, entity)
        return try key.withUnsafeBytes { k in
            try raw.withValue(.vectors, key: k) { buf in
                try body(VectorView(dtype: s.dtype, raw: try VectorEncoding.open(buf, key: k, space: s)))
            }
        }
    }

    /// A copy of the stored vector as Float (converted from f16 when needed).
    public func vector(space: String, entity: UInt32) throws -> [Float]? {
        try withVector(space: space, entity: entity) { $0.toArray() }
    }

    /// Visits every vector of a space in entity-id order (borrowed views that cannot outlive their
    /// call; see `VectorView`). Return false to stop.
    public func forEachVector(space: String, _ body: (UInt32, borrowing VectorView) throws -> Bool) throws {
        let s = try requireSpace(space)
        let cursor = try raw.cursor(.vectors)
        var more = try cursor.seek(Keys.pair(s.id, 0)) { k, v -> Bool in
            guard k.count == 8, Keys.readU32(k) == s.id else { return false }
            return try body(Keys.readU32(k, at: 4), VectorView(dtype: s.dtype, raw: try VectorEncoding.open(v, key: k, space: s)))
        } ?? false
        while more {
            more = try cursor.move(.next) { k, v -> Bool in
                guard k.count == 8, Keys.readU32(k) == s.id else { return false }
                return try body(Keys.readU32(k, at: 4), VectorView(dtype: s.dtype, raw: try VectorEncoding.open(v, key: k, space: s)))
            } ?? false
        }
    }

    /// Entities whose vectors in `space` changed after `version` (from the vector log), oldest first.
    public func vectorChanges(space: String, after version: UInt64) throws -> [UInt32] {
        let s = try requireSpace(space)
        let cursor = try raw.cursor(.vectorLog)
        var w = ByteWriter(capacity: 12); w.beU32(s.id); w.beU64(version &+ 1)
        var out: [UInt32] = []
        let visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool = { k, v in
            guard k.count >= 4, Keys.readU32(k) == s.id else { return false }
            let entity = try Seal.open(v, key: k, table: .vectorLog)
            guard entity.count == 4 else { throw Seal.damaged(table: .vectorLog, key: k, value: v) }
            out.append(UInt32(littleEndian: entity.loadUnaligned(as: UInt32.self)))
            return true
        }
        var more = try cursor.seek(w.bytes, visit) ?? false
        while more {
            more = try cursor.move(.next, visit) ?? false
        }
        return out
    }
}

extension WriteTransaction {
    /// Creates a space. Space names are 1…200 bytes of UTF-8.
    @discardableResult
    public func createSpace(_ space: EmbeddingSpace) throws -> EmbeddingSpace {
        guard !space.name.isEmpty, space.name.utf8.count <= 200 else { throw RecDBError.invalidArgument("space name must be 1…200 bytes") }
        guard space.dimension > 0, space.dimension <= 65_536 else { throw RecDBError.invalidArgument("space dimension \(space.dimension) is out of range 1…65536") }
        if try self.space(named: space.name) != nil { throw RecDBError.invalidArgument("space '\(space.name)' already exists") }
        var s = space
        s.id = UInt32(try nextCounter(.lastSpaceID))
        s.createdAt = Clock.now()
        s.count = 0
        s.version = 0
        try storeSpace(s)
        spaceCache[s.name] = s
        return s
    }

    /// Replaces the catalogue entry (count and version are kept as stored).
    public func updateSpace(_ space: EmbeddingSpace) throws {
        var current = try requireSpace(space.name)
        guard current.dimension == space.dimension, current.dtype == space.dtype, current.kind == space.kind else {
            throw RecDBError.invalidArgument("a space's kind, dimension and dtype cannot change")
        }
        current.metric = space.metric
        current.normalized = space.normalized
        current.provenance = space.provenance
        current.encoder = space.encoder
        spaceCache[space.name] = current
        dirtySpaces.insert(space.name)
    }

    func storeSpace(_ space: EmbeddingSpace) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let key = Array(space.name.utf8)
        try raw.put(.spaces, key: key, value: Seal.sealed(Array(try encoder.encode(space)), key: key, table: .spaces))
    }

    /// Stores `values` as the vector of `entity` in `space` (replacing any earlier one).
    /// - throws: `.dimensionMismatch`, `.invalidArgument` for NaN/Inf, `.unknownItem`/`.unknownUser`.
    public func putVector(space name: String, entity: UInt32, _ values: [Float]) throws {
        try values.withUnsafeBufferPointer { try putVector(space: name, entity: entity, $0) }
    }

    public func putVector(space name: String, entity: UInt32, _ values: UnsafeBufferPointer<Float>) throws {
        var space = try requireSpace(name)
        guard values.count == space.dimension else {
            throw RecDBError.dimensionMismatch(space: name, expected: space.dimension, got: values.count)
        }
        for (i, v) in values.enumerated() where !v.isFinite {
            throw RecDBError.invalidArgument("component \(i) of the vector is \(v)")
        }
        let limit = space.kind == .item ? try counter(.lastItemID) : try counter(.lastUserID)
        guard entity > 0, UInt64(entity) <= limit else {
            throw space.kind == .item ? RecDBError.unknownItem("#\(entity)") : RecDBError.unknownUser("#\(entity)")
        }
        let key = Keys.pair(space.id, entity)
        // Writing the value already stored changes nothing: no version, no log entry, no cold start
        // (re-imports and re-embeddings of unchanged items would otherwise grow the vector log).
        // A stored value whose checksum fails is never "the same": it is rewritten.
        let stored: Bool? = try key.withUnsafeBytes { k in
            try raw.withValue(.vectors, key: k) { current -> Bool in
                guard current.count == space.bytesPerVector + Seal.size,
                      let body = Seal.payload(current, key: k, table: .vectors), body.count == space.bytesPerVector else { return false }
                return withUnsafeTemporaryAllocation(byteCount: space.bytesPerVector, alignment: 4) { encoded in
                    VectorEncoding.encode(values, space: space, into: encoded)
                    return memcmp(encoded.baseAddress!, body.baseAddress!, space.bytesPerVector) == 0
                }
            }
        }
        if stored == true { return }
        let existed = stored != nil
        try key.withUnsafeBytes { k in
            try raw.putReserved(.vectors, key: k, count: space.bytesPerVector + Seal.size) { out in
                VectorEncoding.encode(values, space: space, into: out)
                Seal.writeTrailer(out, payloadCount: space.bytesPerVector, key: k, table: .vectors)
            }
        }
        if !existed { space.count += 1 }
        space.version += 1
        var logKey = ByteWriter(capacity: 12); logKey.beU32(space.id); logKey.beU64(space.version)
        var logValue = ByteWriter(capacity: 8); logValue.leU32(entity)
        try raw.put(.vectorLog, key: logKey.bytes, value: Seal.sealed(logValue.bytes, key: logKey.bytes, table: .vectorLog))
        spaceCache[name] = space
        dirtySpaces.insert(name)
        changedVectors[name, default: []].insert(entity)
    }
}

extension ReadTransaction {
    /// The oldest version still in the vector log of `space` (entries are consecutive from there to
    /// `space.version`), or nil when the log holds none.
    func firstLoggedVersion(_ space: EmbeddingSpace) throws -> UInt64? {
        let cursor = try raw.cursor(.vectorLog)
        var start = ByteWriter(capacity: 12); start.beU32(space.id); start.beU64(0)
        return try cursor.seek(start.bytes) { k, _ -> UInt64? in
            guard Keys.readU32(k) == space.id else { return nil }
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: k[4...]), what: "vector log key")
            return try r.beU64()
        } ?? nil
    }
}

extension WriteTransaction {
    /// Deletes the vector log entries of `space` up to and including `version`.
    func pruneVectorLog(_ space: EmbeddingSpace, through version: UInt64) throws {
        let log = try raw.cursor(.vectorLog)
        var start = ByteWriter(capacity: 12); start.beU32(space.id); start.beU64(0)
        while try log.seek(start.bytes, { k, _ -> Bool in
            guard Keys.readU32(k) == space.id else { return false }
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: k[4...]), what: "vector log key")
            return try r.beU64() <= version
        }) == true {
            try log.deleteCurrent()
        }
    }
}

extension WriteTransaction {
    /// Deletes a space with its vectors, its vector log and its stored index.
    public func dropSpace(_ name: String) throws {
        let space = try requireSpace(name)
        let cursor = try raw.cursor(.vectors)
        while try cursor.seek(Keys.pair(space.id, 0), { k, _ in Keys.readU32(k) == space.id }) == true {
            try cursor.deleteCurrent()
        }
        let log = try raw.cursor(.vectorLog)
        var start = ByteWriter(capacity: 12); start.beU32(space.id); start.beU64(0)
        while try log.seek(start.bytes, { k, _ in Keys.readU32(k) == space.id }) == true {
            try log.deleteCurrent()
        }
        try dropIndex(space: name)
        try raw.delete(.spaces, key: Array(name.utf8))
        spaceCache[name] = nil
        dirtySpaces.remove(name)
        changedVectors[name] = nil
    }
}
