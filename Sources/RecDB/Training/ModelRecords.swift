import Foundation
import Learn

/// A stored model version: what was trained, on which data, how well, and how it is served.
public struct ModelVersionInfo: Codable, Sendable {
    public var model: String
    public var version: UInt32
    public var createdAt: Int64
    public var configuration: ModelConfiguration
    /// Items 1...numItems were in the training catalogue.
    public var numItems: Int
    public var hiddenSize: Int
    /// The item space feeding `text` / `text+id` items.
    public var textSpace: String?
    /// The user space distilled from (ECIR'26 profile distillation).
    public var profileSpace: String?
    /// PCA basis applied to profiles before T, when `--reduce pca` was used.
    public var profileReduction: PCA?
    /// The last event the training snapshot contained.
    public var eventVersion: UInt64
    /// Users with at least one event in the snapshot.
    public var users: Int
    public var report: TrainingReport
    /// Faiss factory string of the stored item index.
    public var indexFactory: String
    /// The version this one was warm-started from (`--resume`).
    public var resumedFrom: UInt32?
    /// Items that had no vector in `textSpace` (their text rows were zeros).
    public var itemsWithoutText: Int
}

/// Which models exist and which version of each serves.
public struct ModelSummary: Codable, Sendable {
    public var name: String
    public var activeVersion: UInt32?
    public var versions: [ModelVersionInfo]
}

enum TensorCodec {
    /// u32 LE rank, rank × u32 LE dims, the f32 LE values, then the CRC-32C of (key ‖ all that)
    /// (see `Seal`): a model version's weights (parameters, item vectors, popularity, T) are checked
    /// every time they are loaded for serving, training or evaluation.
    static func encode(_ t: Tensor, key: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: 4 + 4 * t.shape.count + 4 * t.count + Seal.size)
        w.leU32(UInt32(t.shape.count))
        for d in t.shape { w.leU32(UInt32(d)) }
        t.values.withUnsafeBytes { w.bytes.append(contentsOf: $0) }
        Seal.append(to: &w.bytes, key: key, table: .models)
        return w.bytes
    }

    static func decode(_ stored: UnsafeRawBufferPointer, key: [UInt8], what: String) throws -> Tensor {
        var r = ByteReader(try Seal.open(stored, key: key, table: .models), what: what)
        let rank = Int(try r.leU32())
        guard rank <= 8 else { throw RecDBError.corrupt("\(what): tensor rank \(rank)") }
        var shape: [Int] = []
        var count = 1
        for _ in 0..<rank {
            let d = Int(try r.leU32())
            shape.append(d)
            let (c, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, c <= Int32.max else { throw RecDBError.corrupt("\(what): tensor shape \(shape) is too large") }
            count = c
        }
        let rest = try r.rest()
        guard rest.count == count * 4 else { throw RecDBError.corrupt("\(what): \(rest.count) bytes for shape \(shape)") }
        let values = [Float](unsafeUninitializedCapacity: count) { buf, n in
            _ = memcpy(buf.baseAddress!, rest.baseAddress!, count * 4)
            n = count
        }
        return Tensor(shape: shape, values: values)
    }
}

extension ReadTransaction {
    func modelVersionInfo(_ name: String, _ version: UInt32) throws -> ModelVersionInfo? {
        let key = ModelKeys.version(name, version)
        return try raw.withValue(.models, key: key) { stored in
            let buf = try Seal.open(stored, key: key, table: .models)
            do { return try JSONDecoder().decode(ModelVersionInfo.self, from: Data(buf)) } catch {
                throw RecDBError.corrupt("model \(name) version \(version): \(error)")
            }
        }
    }

    /// The stored versions of `name`, oldest first.
    func modelVersions(_ name: String) throws -> [UInt32] {
        let prefix = ModelKeys.versionPrefix(name)
        return try keys(in: .models, prefix: prefix).compactMap { key in
            guard key.count == prefix.count + 4 else { return nil }
            return key.withUnsafeBytes { Keys.readU32($0, at: prefix.count) }
        }
    }

    /// Every model with its versions.
    public func models() throws -> [ModelSummary] {
        try modelNames().map { name in
            let header = try modelHeader(name)
            let versions = try modelVersions(name).compactMap { try modelVersionInfo(name, $0) }
            return ModelSummary(name: name, activeVersion: header?.activeVersion, versions: versions)
        }
    }

    /// The version that serves `name` (the active one, or `version` when given).
    public func modelVersion(_ name: String, version: UInt32? = nil) throws -> ModelVersionInfo {
        guard let header = try modelHeader(name) else { throw RecDBError.unknownModel(name) }
        guard let v = version ?? header.activeVersion else { throw RecDBError.unknownModel("\(name) has no active version") }
        guard let info = try modelVersionInfo(name, v) else { throw RecDBError.unknownModel("\(name) version \(v)") }
        return info
    }

    func tensor(model: String, version: UInt32, name: String) throws -> Tensor? {
        let key = ModelKeys.tensor(model, version, name)
        return try raw.withValue(.models, key: key) {
            try TensorCodec.decode($0, key: key, what: "tensor \(name) of \(model)/\(version)")
        }
    }

    /// The text table a `text` / `text+id` version serves and evaluates with: the rows stored with the
    /// version, or — for versions stored before those were kept — the text space's current rows.
    func textTable(of info: ModelVersionInfo) throws -> TextTable? {
        guard let space = info.textSpace else { return nil }
        if let stored = try tensor(model: info.model, version: info.version, name: ModelTensor.textInputs) {
            guard stored.shape.count == 2, stored.shape[0] == info.numItems + 1 else {
                throw RecDBError.corrupt("text inputs of \(info.model)@\(info.version) have shape \(stored.shape), expected [\(info.numItems + 1), d]")
            }
            do { return try TextTable(numItems: info.numItems, dimension: stored.shape[1], values: stored.values) } catch {
                throw RecDBError.corrupt("text inputs of \(info.model)@\(info.version): \(error)")
            }
        }
        let (values, d, _) = try denseTable(space: space, count: info.numItems)
        do { return try TextTable(numItems: info.numItems, dimension: d, values: values) } catch { throw RecDBError.training("\(error)") }
    }

    /// All tensors of a version except the serving-side ones.
    func parameters(model: String, version: UInt32) throws -> [String: Tensor] {
        let prefix = ModelKeys.tensorPrefix(model, version)
        var out: [String: Tensor] = [:]
        for key in try keys(in: .models, prefix: prefix) {
            let name = String(decoding: key[prefix.count...], as: UTF8.self)
            guard !ModelTensor.servingOnly.contains(name) else { continue }
            out[name] = try raw.withValue(.models, key: key) { try TensorCodec.decode($0, key: key, what: "tensor \(name) of \(model)/\(version)") }
        }
        return out
    }
}

/// Names of tensors stored beside the parameters.
enum ModelTensor {
    /// `[numItems + 1, hidden]`: the output item vectors in model space.
    static let itemVectors = "@item_vectors"
    /// `[numItems + 1]`: interaction counts in the training snapshot (popularity fallback).
    static let popularity = "@popularity"
    /// `[numItems + 1, textDimension]`: the frozen text rows (`text` / `text+id` items) the version was
    /// trained with. Serving and evaluation read them, never the text space, which may be re-embedded
    /// later: a version computes exactly what it was trained and committed with. Versions stored
    /// before this tensor existed have none and read the text space (as they always did).
    static let textInputs = "@text_inputs"
    /// Tensors stored beside the parameters (not model weights).
    static let servingOnly: Set<String> = [itemVectors, popularity, textInputs]
}

extension WriteTransaction {
    func storeTensor(model: String, version: UInt32, name: String, _ tensor: Tensor) throws {
        let key = ModelKeys.tensor(model, version, name)
        try raw.put(.models, key: key, value: TensorCodec.encode(tensor, key: key))
    }

    func storeModelHeader(_ header: ModelHeader) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let key = ModelKeys.header(header.name)
        try raw.put(.models, key: key, value: Seal.sealed(Array(try encoder.encode(header)), key: key, table: .models))
    }

    func storeModelVersion(_ info: ModelVersionInfo) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let key = ModelKeys.version(info.model, info.version)
        try raw.put(.models, key: key, value: Seal.sealed(Array(try encoder.encode(info)), key: key, table: .models))
    }

    func deleteKeys(in table: Table, prefix: [UInt8]) throws {
        for key in try keys(in: table, prefix: prefix) { try raw.delete(table, key: key) }
    }
}
