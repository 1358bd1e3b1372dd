import CFaiss
import Foundation

/// An approximate-nearest-neighbour index over fixed-dimension float vectors, backed by Faiss 1.7.3.
///
/// **Kinds.** Created from a Faiss factory string — `"Flat"` (exact), `"HNSW32"`, `"IVF256,Flat"`,
/// `"IVF1024,PQ16"`, `"OPQ16,IVF256,PQ16"`, … — and a ``Metric``. Kinds with a quantizer (IVF, PQ, OPQ) must be
/// ``train(vectors:)``ed before vectors are added; check ``isTrained``. `IDMap` strings are refused: ids are
/// managed here.
///
/// **Ids.** Every vector has a `UInt32` id chosen by the caller (RecDB's dense internal ids; 0 is reserved).
/// Faiss labels are insertion positions, and the index keeps the position ↔ id map (serialized with it),
/// so ids work identically for every kind, including HNSW, which in Faiss cannot `add_with_ids`.
/// Adding an id that is already present replaces its vector.
///
/// **Removal.** IVF kinds delete rows physically. Flat and HNSW cannot (HNSW has no deletion at all); their
/// removed or replaced rows become *tombstones*: they stay in Faiss, and every search excludes them inside
/// Faiss, so a removed id never comes back. ``deadFraction`` says how much of the index is tombstones; when it
/// grows large (searches slow down, HNSW recall for the live rows may drop), call ``compact()`` (Flat, HNSW) or
/// rebuild from the source vectors.
///
/// **Thread safety.** A `VectorIndex` may be shared between threads. Reads — searches, ``reconstruct(id:)``,
/// ``serialized()``, and the properties — run concurrently; writes — ``train(vectors:)``, `add`, `remove`,
/// ``setDefaultSearchParameters(_:)``, ``compact()`` — are exclusive: an internal readers-writer lock makes a
/// write wait for running reads and blocks new reads until it is done. Batch searches use Faiss's OpenMP
/// threads; single-query searches run on the calling thread only.
///
/// **Failure.** Data errors throw ``IndexError`` (Faiss's own message for Faiss failures); no C++ exception
/// reaches Swift.
// Unchecked: the Faiss handle is a C pointer; every use of it holds `lock` (shared for reads, exclusive for writes).
public final class VectorIndex: @unchecked Sendable {
    /// What is needed to create an empty index; stored by RecDB as the index's metadata.
    public struct Configuration: Codable, Sendable, Hashable {
        /// A Faiss `index_factory` string, e.g. `"HNSW32"`.
        public var factory: String
        /// Vector length (> 0).
        public var dimension: Int
        public var metric: Metric

        public init(factory: String, dimension: Int, metric: Metric) {
            self.factory = factory
            self.dimension = dimension
            self.metric = metric
        }
    }

    /// The shim handle. Only this file and VectorIndex+Search.swift touch it.
    let handle: OpaquePointer
    let lock = ReadWriteLock()

    /// Vector length.
    public let dimension: Int
    public let metric: Metric
    /// The Faiss factory string the index was created with.
    public let factory: String

    public var configuration: Configuration { Configuration(factory: factory, dimension: dimension, metric: metric) }

    /// Creates an empty index.
    /// - Throws: ``IndexError`` `.faiss` (with Faiss's message) for a factory string Faiss cannot parse,
    ///   `.invalidArgument` for a non-positive dimension or an `IDMap` string.
    public init(factory: String, dimension: Int, metric: Metric) throws {
        guard dimension > 0, dimension <= Int(Int32.max) else {
            throw IndexError(.invalidArgument, "dimension must be positive, got \(dimension)")
        }
        var created: OpaquePointer?
        try check(cfaiss_index_create(factory, Int32(dimension), metric.cValue, &created),
                  "cannot create index '\(factory)' (dimension \(dimension), metric \(metric.rawValue))")
        handle = created!
        self.dimension = dimension
        self.metric = metric
        self.factory = factory
    }

    public convenience init(_ configuration: Configuration) throws {
        try self.init(factory: configuration.factory, dimension: configuration.dimension, metric: configuration.metric)
    }

    /// Loads an index from bytes produced by ``serialized()``.
    /// - Throws: ``IndexError`` `.corruptData` when the bytes are truncated, altered or not an index.
    ///   (RecDB checks its own checksum first; this is the structural check.)
    public convenience init(serialized bytes: [UInt8]) throws {
        try self.init(adopting: bytes.withUnsafeBytes { try Self.deserialize($0) })
    }

    /// Loads an index from bytes produced by ``serializedData()``.
    public convenience init(serialized data: Data) throws {
        try self.init(adopting: data.withUnsafeBytes { try Self.deserialize($0) })
    }

    /// Loads from memory valid for the duration of the call (e.g. an LMDB value inside a read transaction);
    /// the bytes are copied into Faiss's structures, so the buffer may be released afterwards.
    public convenience init(serializedBuffer bytes: UnsafeRawBufferPointer) throws {
        try self.init(adopting: Self.deserialize(bytes))
    }

    private static func deserialize(_ bytes: UnsafeRawBufferPointer) throws -> OpaquePointer {
        var loaded: OpaquePointer?
        try check(cfaiss_index_deserialize(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &loaded),
                  "cannot load serialized index (\(bytes.count) bytes)")
        return loaded!
    }

    private init(adopting loaded: OpaquePointer) {
        handle = loaded
        dimension = Int(cfaiss_index_dimension(loaded))
        metric = Metric(cValue: cfaiss_index_metric(loaded))
        factory = String(cString: cfaiss_index_factory(loaded))
    }

    deinit { cfaiss_index_free(handle) }

    // MARK: - State

    /// Whether vectors can be added and searched; false for a new IVF/PQ/OPQ index until ``train(vectors:)``.
    public var isTrained: Bool { lock.read { cfaiss_index_is_trained(handle) != 0 } }

    /// Number of live (searchable) vectors.
    public var count: Int { lock.read { Int(cfaiss_index_count(handle)) } }

    /// Whether this index's inner-product HNSW build decided (in ``InnerProductLinking/automatic`` mode) to link
    /// through the MIPS→L2 reduction. False for every other kind of index and before the decision.
    public var linksThroughMipsReduction: Bool { lock.read { cfaiss_index_links_through_mips_reduction(handle) != 0 } }

    /// Rows Faiss holds, including tombstones (Faiss's `ntotal`).
    public var storedRowCount: Int { lock.read { Int(cfaiss_index_stored_rows(handle)) } }

    /// Fraction of stored rows that are tombstones (0 for IVF kinds, which delete physically). A search still
    /// visits tombstones and skips them; rebuild or ``compact()`` when this grows (e.g. above 0.2).
    public var deadFraction: Double {
        lock.read {
            let stored = cfaiss_index_stored_rows(handle)
            return stored == 0 ? 0 : Double(stored - cfaiss_index_count(handle)) / Double(stored)
        }
    }

    /// Whether exact searches scan an int8 copy of the rows and re-score candidates in float32 (plain `Flat` under
    /// inner product or cosine, on CPUs with AVX512-VNNI): same results as a float scan, a quarter of the bytes.
    public var scansQuantizedCopy: Bool { lock.read { cfaiss_index_scans_quantized_copy(handle) != 0 } }

    /// Whether `id` is live in the index.
    public func contains(id: UInt32) -> Bool { lock.read { cfaiss_index_contains(handle, id) != 0 } }

    /// All live ids, ascending.
    public var ids: [UInt32] {
        lock.read {
            var total = 0
            _ = cfaiss_index_live_ids(handle, nil, 0, &total)
            return [UInt32](unsafeUninitializedCapacity: total) { buffer, initialized in
                var written = 0
                _ = cfaiss_index_live_ids(handle, buffer.baseAddress, total, &written)
                initialized = min(written, total)
            }
        }
    }

    /// The parameters a search uses when it does not give its own: `efSearch` for HNSW kinds, `nprobe` for IVF
    /// kinds (`nil` for kinds they do not apply to). Serialized with the index.
    public var defaultSearchParameters: SearchParameters {
        lock.read {
            var raw = cfaiss_search_params_t()
            _ = cfaiss_index_get_default_params(handle, &raw)
            return SearchParameters(efSearch: raw.ef_search > 0 ? Int(raw.ef_search) : nil,
                                    nprobe: raw.nprobe > 0 ? Int(raw.nprobe) : nil)
        }
    }

    /// Sets the defaults for searches that pass no parameters. Write operation.
    public func setDefaultSearchParameters(_ parameters: SearchParameters) throws {
        var raw = try parameters.cValue()
        try lock.write { try check(cfaiss_index_set_default_params(handle, &raw), "cannot set search parameters") }
    }

    // MARK: - Writes

    /// Trains the quantizers of IVF/PQ/OPQ kinds on `vectors` (row-major, `n × dimension`); a no-op for kinds
    /// that need no training. Write operation.
    ///
    /// Faiss's warnings (e.g. "please provide at least N training points" when there are fewer than ~39 points
    /// per centroid) are captured instead of printed.
    /// - Returns: the captured Faiss output (empty when Faiss had nothing to say).
    /// - Throws: `.dimensionMismatch`, or `.faiss` (e.g. fewer training points than centroids).
    @discardableResult
    public func train(vectors: [Float]) throws -> String {
        try vectors.withUnsafeBufferPointer { try train(vectors: $0) }
    }

    @discardableResult
    public func train(vectors: UnsafeBufferPointer<Float>) throws -> String {
        let n = try rowCount(of: vectors.count, what: "training vectors")
        return try lock.write {
            try check(cfaiss_index_train(handle, n, vectors.baseAddress), "training '\(factory)' on \(n) vectors failed")
            return String(cString: cfaiss_index_training_log(handle))
        }
    }

    /// Adds `vectors` (row-major, `ids.count × dimension`) under `ids`. An id already present is replaced (the
    /// update path: its old row is deleted or tombstoned); if an id repeats in one call, the last row wins.
    /// Write operation.
    /// - Throws: `.dimensionMismatch`, `.invalidArgument` (id 0), `.notTrained`, `.faiss`.
    ///
    /// - Parameter progress: when given, the rows are added in chunks of `progressChunk` and `progress(added,
    ///   total)` is called after each (building HNSW over 12,000 × 384 floats takes seconds). Each chunk is its
    ///   own write: searches may run between chunks and see the rows added so far. If a chunk fails, the
    ///   earlier chunks stay added.
    public func add(ids: [UInt32], vectors: [Float], progressChunk: Int = 10_000,
                    progress: ((_ added: Int, _ total: Int) -> Void)? = nil) throws {
        try ids.withUnsafeBufferPointer { idBuffer in
            try vectors.withUnsafeBufferPointer {
                try add(ids: idBuffer, vectors: $0, progressChunk: progressChunk, progress: progress)
            }
        }
    }

    public func add(ids: UnsafeBufferPointer<UInt32>, vectors: UnsafeBufferPointer<Float>, progressChunk: Int = 10_000,
                    progress: ((_ added: Int, _ total: Int) -> Void)? = nil) throws {
        guard vectors.count == ids.count * dimension else {
            throw IndexError(.dimensionMismatch,
                             "\(ids.count) ids need \(ids.count * dimension) floats (dimension \(dimension)), got \(vectors.count)")
        }
        guard !ids.isEmpty else { return }
        let chunk = progress == nil ? ids.count : max(1, progressChunk)
        var start = 0
        while start < ids.count {
            let end = min(start + chunk, ids.count)
            try lock.write {
                try check(cfaiss_index_add(handle, end - start, vectors.baseAddress! + start * dimension,
                                           ids.baseAddress! + start),
                          "adding \(end - start) vectors to '\(factory)' failed")
            }
            progress?(end, ids.count)
            start = end
        }
    }

    /// Replaces the vector of `id` (or adds it). Same as `add(ids: [id], vectors: vector)`.
    public func update(id: UInt32, vector: [Float]) throws {
        try add(ids: [id], vectors: vector)
    }

    /// Removes `ids`; ids not in the index are ignored. Write operation.
    /// - Returns: how many ids were removed.
    @discardableResult
    public func remove(ids: [UInt32]) throws -> Int {
        try lock.write {
            var removed = 0
            try check(cfaiss_index_remove(handle, ids.count, ids, &removed), "removing \(ids.count) ids failed")
            return removed
        }
    }

    /// Drops tombstones by re-adding the live rows to a fresh index (ids are kept; labels change). Only for
    /// kinds whose rows are stored exactly and need no training (`Flat`, `HNSW<M>`); a no-op without
    /// tombstones. Write operation; O(live rows) time, HNSW graph rebuilt.
    /// - Throws: `.unsupported` for other kinds: rebuild them from the source vectors.
    public func compact() throws {
        try lock.write { try check(cfaiss_index_compact(handle), "compacting '\(factory)' failed") }
    }

    // MARK: - Reads

    /// The stored vector of `id`: exact for Flat/HNSW/IVF-Flat, the decoded approximation for PQ kinds,
    /// normalised for ``Metric/cosine``.
    /// - Throws: `.unknownID` when `id` is not live.
    public func reconstruct(id: UInt32) throws -> [Float] {
        try lock.read {
            try [Float](unsafeUninitializedCapacity: dimension) { buffer, initialized in
                try check(cfaiss_index_reconstruct(handle, id, buffer.baseAddress), "cannot reconstruct id \(id)")
                initialized = dimension
            }
        }
    }

    /// The index and its id map as bytes, for ``init(serialized:)``. Read operation.
    public func serialized() throws -> [UInt8] {
        try withSerializedBytes { [UInt8]($0) }
    }

    public func serializedData() throws -> Data {
        try withSerializedBytes { Data($0) }
    }

    /// Calls `body` with the serialized bytes (valid only during the call), e.g. to write them into an LMDB
    /// value without an intermediate copy.
    public func withSerializedBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        var pointer: UnsafeMutablePointer<UInt8>?
        var size = 0
        try lock.read { try check(cfaiss_index_serialize(handle, &pointer, &size), "cannot serialize '\(factory)'") }
        defer { cfaiss_free(pointer) }
        return try body(UnsafeRawBufferPointer(start: pointer, count: size))
    }

    // MARK: - Helpers

    func rowCount(of floatCount: Int, what: String) throws -> Int {
        guard floatCount % dimension == 0 else {
            throw IndexError(.dimensionMismatch,
                             "\(what): \(floatCount) floats is not a multiple of the dimension \(dimension)")
        }
        return floatCount / dimension
    }

    /// Sets the OpenMP thread count Faiss uses for batch work (training, adding, batch searches) started from
    /// the calling thread. Single-query searches always run on the caller's thread alone.
    public static func setThreadCount(_ threads: Int) {
        cfaiss_set_thread_count(Int32(clamping: threads))
    }

    /// Turns the int8-copy scan of exact flat searches (``scansQuantizedCopy``) on or off for the whole process.
    /// Results are the same either way; benchmarks switch it off to measure what it buys.
    public static func setQuantizedScan(enabled: Bool) {
        cfaiss_set_quantized_scan(enabled ? 1 : 0)
    }

    /// How inner-product `HNSW<M>` builds link their rows.
    public enum InnerProductLinking: Sendable {
        /// Decide per index (the default): through the MIPS→L2 reduction when the longest rows dominate the other
        /// rows' nearest candidates (a trained model's item vectors, whose few long rows would become hubs that every
        /// insertion links to and waits on), plainly otherwise (there the reduction costs recall at equal efSearch).
        /// Decided once an index holds 1,000 rows, from a sample; see ``linksThroughMipsReduction``.
        case automatic
        /// Always through the reduction: rows augmented to a common norm and linked under L2.
        case mipsReduction
        /// Always the raw rows under inner product, as Faiss does.
        case plain
    }

    /// Sets how inner-product `HNSW<M>` builds link rows, for the whole process. Searches and the stored format are
    /// the same in every mode; benchmarks and tests force a mode to measure what the reduction buys.
    public static func setHNSWInnerProductLinking(_ linking: InnerProductLinking) {
        switch linking {
        case .automatic: cfaiss_set_hnsw_mips_reduction(CFAISS_MIPS_REDUCTION_AUTOMATIC)
        case .mipsReduction: cfaiss_set_hnsw_mips_reduction(CFAISS_MIPS_REDUCTION_ALWAYS)
        case .plain: cfaiss_set_hnsw_mips_reduction(CFAISS_MIPS_REDUCTION_NEVER)
        }
    }
}

extension Metric {
    var cValue: Int32 {
        switch self {
        case .innerProduct: return Int32(CFAISS_METRIC_INNER_PRODUCT)
        case .l2: return Int32(CFAISS_METRIC_L2)
        case .cosine: return Int32(CFAISS_METRIC_COSINE)
        }
    }

    init(cValue: Int32) {
        switch Int(cValue) {
        case Int(CFAISS_METRIC_L2): self = .l2
        case Int(CFAISS_METRIC_COSINE): self = .cosine
        default: self = .innerProduct
        }
    }
}

extension SearchParameters {
    func cValue() throws -> cfaiss_search_params_t {
        if let ef = efSearch, ef < 1 || ef > Int(Int32.max) {
            throw IndexError(.invalidArgument, "efSearch must be positive, got \(ef)")
        }
        if let probe = nprobe, probe < 1 || probe > Int(Int32.max) {
            throw IndexError(.invalidArgument, "nprobe must be positive, got \(probe)")
        }
        return cfaiss_search_params_t(ef_search: Int32(efSearch ?? 0), nprobe: Int32(nprobe ?? 0))
    }
}
