import Foundation
import Learn

/// A decoded model version, cached per process (models are immutable once stored).
final class LoadedModel: Sendable {
    let info: ModelVersionInfo
    let recommender: SequentialRecommender
    /// Items of the training catalogue by descending interaction count (popularity fallback).
    let popularityOrder: [UInt32]
    let popularity: [Float]

    init(info: ModelVersionInfo, recommender: SequentialRecommender, popularity: [Float]) {
        self.info = info
        self.recommender = recommender
        self.popularity = popularity
        popularityOrder = (1..<UInt32(popularity.count)).sorted {
            popularity[Int($0)] != popularity[Int($1)] ? popularity[Int($0)] > popularity[Int($1)] : $0 < $1
        }
    }
}

/// A decoded record together with the raw bytes it came from: reused while the stored bytes are
/// identical, so hot paths do not decode JSON per call.
final class DecodedRecord<T: Sendable>: Sendable {
    let bytes: [UInt8]
    let value: T
    init(bytes: [UInt8], value: T) { self.bytes = bytes; self.value = value }
}

extension Database {
    /// The version of `name` that serves (`version` or the active one), decoded once per process.
    func servingVersion(_ tx: ReadTransaction, model name: String, version: UInt32?) throws -> ModelVersionInfo {
        let headerKey = "header:\(name)"
        let headerRecordKey = ModelKeys.header(name)
        let activeVersion: UInt32? = try tx.raw.withValue(.models, key: headerRecordKey) { stored -> UInt32? in
            let buf = try Seal.open(stored, key: headerRecordKey, table: .models)  // a flipped active version must not serve another model
            if let cached = runtime.value(headerKey, as: DecodedRecord<ModelHeader>.self), cached.bytes.elementsEqual(buf) {
                return cached.value.activeVersion
            }
            let header: ModelHeader
            do { header = try JSONDecoder().decode(ModelHeader.self, from: Data(buf)) } catch { throw RecDBError.corrupt("model \(name): \(error)") }
            // A changed header may mean versions were dropped and their numbers reused: forget them.
            runtime.removeAll(prefix: "version:\(name)@")
            runtime.removeAll(prefix: "model:\(name)@")
            runtime.set(headerKey, DecodedRecord(bytes: Array(buf), value: header))
            return header.activeVersion
        } ?? { throw RecDBError.unknownModel(name) }()
        guard let v = version ?? activeVersion else { throw RecDBError.unknownModel("\(name) has no active version") }
        let versionKey = "version:\(name)@\(v)"
        if let cached = runtime.value(versionKey, as: DecodedRecord<ModelVersionInfo>.self) { return cached.value }
        guard let info = try tx.modelVersionInfo(name, v) else { throw RecDBError.unknownModel("\(name) version \(v)") }
        runtime.set(versionKey, DecodedRecord(bytes: [], value: info))
        return info
    }

    /// The decoded model of `info`, loading it from the snapshot on first use.
    func loadedModel(_ tx: ReadTransaction, _ info: ModelVersionInfo) throws -> LoadedModel {
        let key = "model:\(info.model)@\(info.version)"
        if let cached = runtime.value(key, as: LoadedModel.self) { return cached }
        let parameters = try tx.parameters(model: info.model, version: info.version)
        let textTable = try tx.textTable(of: info)  // the rows it was trained with, not today's text space
        let recommender: SequentialRecommender
        do {
            recommender = try SequentialRecommender(configuration: info.configuration, numItems: info.numItems,
                                                    parameters: parameters, textTable: textTable)
        } catch { throw RecDBError.training("cannot load \(info.model)@\(info.version): \(error)") }
        recommender.freezeForServing()  // served only, never trained: inference on one history gets faster products
        let popularity = try tx.tensor(model: info.model, version: info.version, name: ModelTensor.popularity)?.values
            ?? [Float](repeating: 0, count: info.numItems + 1)
        let loaded = LoadedModel(info: info, recommender: recommender, popularity: popularity)
        runtime.set(key, loaded)
        return loaded
    }

    /// The model to use when the caller names none: the only model in the database.
    func defaultModelName(_ tx: ReadTransaction) throws -> String {
        let names = try tx.modelNames()
        guard names.count == 1 else {
            throw RecDBError.invalidArgument(names.isEmpty ? "the database has no trained model (run `rdbctl train`)"
                                                           : "several models exist (\(names.joined(separator: ", "))): name one")
        }
        return names[0]
    }
}
