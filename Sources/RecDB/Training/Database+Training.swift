import Foundation
import Index
import Learn

/// What to train: `db.train(TrainingRequest(model: "sasrec", configuration: ...))`.
public struct TrainingRequest {
    /// Model name (letters, digits, `_`, `-`, `.`): versions accumulate under it.
    public var model: String
    public var configuration: ModelConfiguration
    /// Item space for `text` / `text+id` items (frozen embeddings + trainable adapter).
    public var textSpace: String?
    /// User space with profile embeddings to distil from (needs `configuration.distillation`).
    public var profileSpace: String?
    /// Reduce profiles to the hidden size with PCA before the trainable map T.
    public var reduceProfilesWithPCA = false
    /// Warm-start from the active version on the current data (new items get fresh rows).
    public var resume = false
    /// Faiss factory of the model's item index (nil: exact `Flat` below ~50k items, `HNSW32` above).
    public var indexFactory: String?
    /// Make the new version the active one.
    public var activate = true
    /// Called after every epoch (on the training thread).
    public var progress: ((EpochProgress) -> Void)?
    /// Polled between batches; returning true ends training early with the best weights so far.
    public var shouldStop: (() -> Bool)?

    public init(model: String, configuration: ModelConfiguration = ModelConfiguration()) {
        self.model = model
        self.configuration = configuration
    }
}

/// What a training run produced (printed by `rdbctl train --json`).
public struct TrainingOutcome: Codable, Sendable {
    public var model: String
    public var version: UInt32
    public var epochs: Int
    public var bestEpoch: Int
    public var secondsPerEpoch: Double
    public var valid: RankingMetrics
    public var test: RankingMetrics
    public var stopReason: String
    public var eventVersion: UInt64
    public var items: Int
    public var users: Int
    public var itemSpace: String
    public var indexFactory: String
    /// Training windows per epoch, optimiser steps run and the step whose weights were kept.
    public var trainExamples: Int = 0
    public var steps: Int = 0
    public var bestStep: Int = 0
    /// Median validation seconds.
    public var evaluationSecondsPerEpoch: Double = 0
    /// Per validation: [epoch, mean train loss, valid NDCG@10, valid Recall@10, steps] (`TrainingReport.curve`).
    public var curve: [[Double]] = []

    enum CodingKeys: String, CodingKey {
        case model, version, epochs, valid, test, items, users, steps, curve
        case bestEpoch = "best_epoch", secondsPerEpoch = "seconds_per_epoch", stopReason = "stop_reason"
        case eventVersion = "event_version", itemSpace = "item_space", indexFactory = "index_factory"
        case trainExamples = "train_examples", bestStep = "best_step", evaluationSecondsPerEpoch = "evaluation_seconds_per_epoch"
    }
}

/// Evaluation of a stored version (printed by `rdbctl eval --json`).
public struct EvaluationOutcome: Codable, Sendable {
    public var model: String
    public var version: UInt32
    public var split: String
    public var epochs: Int
    public var secondsPerEpoch: Double
    public var valid: RankingMetrics
    public var test: RankingMetrics
    /// The metrics recorded at training time, for comparison.
    public var recordedValid: RankingMetrics
    public var recordedTest: RankingMetrics

    enum CodingKeys: String, CodingKey {
        case model, version, split, epochs, valid, test
        case secondsPerEpoch = "seconds_per_epoch", recordedValid = "recorded_valid", recordedTest = "recorded_test"
    }
}

extension Database {
    /// The item space holding a model version's item vectors (model space), e.g. `sasrec@3`.
    public static func itemSpaceName(model: String, version: UInt32) -> String { "\(model)@\(version)" }

    static func validateModelName(_ name: String) throws {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "_-."))
        guard !name.isEmpty, name.utf8.count <= 100, name.unicodeScalars.allSatisfy(allowed.contains) else {
            throw RecDBError.invalidArgument("model name '\(name)' must be 1…100 letters, digits, '_', '-' or '.'")
        }
    }

    /// Trains a new version of `request.model` inside the store:
    /// 1. copies a consistent snapshot out of one read transaction (closed before training starts);
    /// 2. trains with Learn while other threads and processes keep reading and writing;
    /// 3. in one write transaction stores the version (configuration, weights, metrics, event version),
    ///    its item vectors as the space `<model>@<version>`, the item index of that space, and moves
    ///    the active pointer. A crash before that commit leaves the previous version active and intact.
    public func train(_ request: TrainingRequest) throws -> TrainingOutcome {
        try requireNoTransaction("train")
        try Database.validateModelName(request.model)
        var configuration = request.configuration
        do { try configuration.validate() } catch { throw RecDBError.training("\(error)") }
        // Zero epochs would store an untrained (random) version and make it active.
        guard configuration.maxEpochs >= 1 else { throw RecDBError.training("maxEpochs must be ≥ 1 (0 would store an untrained version)") }
        let needsText = configuration.items != .id
        if needsText && request.textSpace == nil {
            throw RecDBError.training("items '\(configuration.items.rawValue)' need a text space (--items \(configuration.items.rawValue):SPACE)")
        }
        if configuration.distillation != nil && request.profileSpace == nil {
            throw RecDBError.training("distillation needs a profile space (--distill SPACE)")
        }

        // 1. Snapshot (and the version to resume from), in one read transaction.
        let (snapshot, previous) = try read { tx -> (TrainingSnapshot, (ModelVersionInfo, [String: Tensor])?) in
            let snapshot = try tx.trainingSnapshot(textSpace: needsText ? request.textSpace : nil, profileSpace: request.profileSpace)
            var previous: (ModelVersionInfo, [String: Tensor])?
            if request.resume {
                let info = try tx.modelVersion(request.model)
                previous = (info, try tx.parameters(model: info.model, version: info.version))
            }
            return (snapshot, previous)
        }

        // Profiles: optionally reduced by PCA to the hidden size.
        var profiles = snapshot.profiles
        var reduction: PCA?
        if let p = profiles, request.reduceProfilesWithPCA {
            do {
                let pca = try p.fitPCA(components: min(configuration.hiddenSize, p.dimension))
                reduction = pca
                profiles = try p.reduced(by: pca)
            } catch let error as LearnError { throw RecDBError.training("PCA of the profiles: \(error)") }
        }

        try Database.checkTrainingMemory(configuration, numItems: snapshot.numItems)

        // 2. Train.
        var initialModel: SequentialRecommender?
        if let (info, parameters) = previous {
            guard info.configuration.architecture == configuration.architecture, info.configuration.items == configuration.items,
                  info.hiddenSize == configuration.hiddenSize else {
                throw RecDBError.training("--resume needs the active version's architecture, items and hidden size (\(info.configuration.architecture.rawValue), \(info.configuration.items.rawValue), \(info.hiddenSize))")
            }
            do {
                let old = try SequentialRecommender(configuration: info.configuration, numItems: info.numItems,
                                                    parameters: parameters, textTable: snapshot.textTable)
                initialModel = try old.expandingCatalogue(to: snapshot.numItems, textTable: snapshot.textTable, seed: configuration.seed)
            } catch { throw RecDBError.training("cannot resume from \(info.model)@\(info.version): \(error)") }
        }
        let result: TrainingResult
        do {
            result = try Trainer.train(dataset: snapshot.dataset, textTable: snapshot.textTable, profiles: profiles,
                                       configuration: configuration, initialModel: initialModel,
                                       progress: request.progress, shouldStop: request.shouldStop)
        } catch let error as LearnError {
            throw RecDBError.training(error.description)
        }
        configuration = result.model.configuration

        // The item index of the new version, built before the write transaction (which stays short).
        let itemVectors = result.model.itemVectors()
        let d = result.model.hiddenSize, n = snapshot.numItems
        let ids = (1...UInt32(n)).map { $0 }
        let rows = Array(itemVectors.values[d..<((n + 1) * d)])
        let factory = request.indexFactory ?? Database.defaultIndexFactory(vectorCount: n)
        let index = try makeIndex(factory: factory, dimension: d, metric: .innerProduct, ids: ids, vectors: rows)
        let defaults = index.defaultSearchParameters
        let parameters = result.model.exportParameters()

        // Room in the map for everything the commit writes, so it cannot outgrow the map after a long
        // training: the tensors, the item vectors (as a tensor and as a space), the index (its vectors
        // and HNSW links), twice over for B-tree pages and copy-on-write.
        let tensorBytes = (parameters.values.reduce(0) { $0 + $1.values.count } + (snapshot.textTable?.values.count ?? 0))
            * MemoryLayout<Float>.stride
        try reserve(bytes: 2 * (tensorBytes + 3 * rows.count * MemoryLayout<Float>.stride + n * 512) + (16 << 20))

        // 3. One write transaction: version, weights, item vectors, index, active pointer.
        return try write { tx in
            var header = try tx.modelHeader(request.model)
                ?? ModelHeader(name: request.model, activeVersion: nil, previousActive: [],
                               nextVersion: try tx.firstVersionNumber(model: request.model), createdAt: Clock.now())
            let version = header.nextVersion
            let spaceName = Database.itemSpaceName(model: request.model, version: version)
            for (name, tensor) in parameters { try tx.storeTensor(model: request.model, version: version, name: name, tensor) }
            try tx.storeTensor(model: request.model, version: version, name: ModelTensor.popularity,
                               Tensor(shape: [n + 1], values: snapshot.popularity))
            try tx.storeTensor(model: request.model, version: version, name: ModelTensor.itemVectors, itemVectors)
            if let text = snapshot.textTable {
                // The version's own copy of its text inputs: re-embedding the text space later must not
                // change what this version serves or how it evaluates.
                try tx.storeTensor(model: request.model, version: version, name: ModelTensor.textInputs,
                                   Tensor(shape: [text.numItems + 1, text.dimension], values: text.values))
            }
            if try tx.space(named: spaceName) != nil { try tx.dropSpace(spaceName) }
            try tx.createSpace(EmbeddingSpace(name: spaceName, kind: .item, dimension: d, dtype: .f32, metric: .innerProduct,
                                              normalized: false, provenance: "item vectors of model \(request.model) version \(version)"))
            try rows.withUnsafeBufferPointer { all in
                for (row, id) in ids.enumerated() {
                    try tx.putVector(space: spaceName, entity: id, UnsafeBufferPointer(rebasing: all[row * d..<(row + 1) * d]))
                }
            }
            let space = try tx.requireSpace(spaceName)
            _ = try tx.storeIndex(index, space: spaceName, factory: factory, metric: .innerProduct, dimension: d,
                                  spaceVersion: space.version, eventVersion: snapshot.eventVersion, vectors: n, defaults: defaults)
            let info = ModelVersionInfo(model: request.model, version: version, createdAt: Clock.now(), configuration: configuration,
                                        numItems: n, hiddenSize: d, textSpace: needsText ? request.textSpace : nil,
                                        profileSpace: request.profileSpace, profileReduction: reduction,
                                        eventVersion: snapshot.eventVersion, users: snapshot.userIDs.count, report: result.report,
                                        indexFactory: factory, resumedFrom: previous?.0.version,
                                        itemsWithoutText: snapshot.itemsWithoutText)
            try tx.storeModelVersion(info)
            if request.activate {
                if let old = header.activeVersion { header.previousActive.append(old) }
                header.activeVersion = version
            }
            header.nextVersion = version + 1
            try tx.storeModelHeader(header)
            var outcome = TrainingOutcome(model: request.model, version: version, epochs: result.report.epochsRun, bestEpoch: result.report.bestEpoch,
                                   secondsPerEpoch: result.report.secondsPerEpoch, valid: result.report.valid, test: result.report.test,
                                   stopReason: result.report.stopReason, eventVersion: snapshot.eventVersion, items: n,
                                   users: snapshot.userIDs.count, itemSpace: spaceName, indexFactory: factory)
            outcome.trainExamples = result.report.trainExamples
            outcome.steps = result.report.steps ?? 0
            outcome.bestStep = result.report.bestStep ?? 0
            outcome.evaluationSecondsPerEpoch = result.report.evaluationSecondsPerEpoch
            outcome.curve = result.report.curve
            return outcome
        }
    }

    /// Re-evaluates a stored version on the data it was trained on (events up to its event version)
    /// with Learn's protocol; with the training split this reproduces the recorded metrics.
    /// `options` adds cutoffs, coverage and seen-item exclusion (the defaults reproduce the recorded metrics).
    /// Validation and test cover the users the version was evaluated on at training time (its recorded
    /// `evaluationUsers`: the same seeded sample, or all), unless `evaluationUsers` asks for another count
    /// (0 = every user).
    public func evaluate(model: String, version: UInt32? = nil, split: ModelConfiguration.Split? = nil,
                         options: EvaluationOptions = EvaluationOptions(), evaluationUsers: Int? = nil) throws -> EvaluationOutcome {
        if let evaluationUsers, !(0...Int(Int32.max)).contains(evaluationUsers) {
            throw RecDBError.invalidArgument("evaluation users must be in 0...2147483647 (0 = all users), got \(evaluationUsers)")
        }
        let (info, recommender, snapshot) = try read { tx -> (ModelVersionInfo, SequentialRecommender, TrainingSnapshot) in
            let info = try tx.modelVersion(model, version: version)
            // The text rows stored with the version, not the text space's current ones.
            let snapshot = try tx.trainingSnapshot(textSpace: nil, profileSpace: nil, upToEvent: info.eventVersion, numItems: info.numItems)
            let textTable = try tx.textTable(of: info)
            var configuration = info.configuration
            if let split { configuration.split = split }
            // A version stored before `evaluationUsers` existed was evaluated on every user.
            configuration.evaluationUsers = evaluationUsers ?? configuration.evaluationUsers ?? 0
            let parameters = try tx.parameters(model: info.model, version: info.version)
            do {
                return (info, try SequentialRecommender(configuration: configuration, numItems: info.numItems,
                                                        parameters: parameters, textTable: textTable), snapshot)
            } catch { throw RecDBError.training("cannot load \(model)@\(info.version): \(error)") }
        }
        let metrics: (valid: RankingMetrics, test: RankingMetrics)
        do {
            metrics = options == EvaluationOptions() ? try recommender.evaluate(dataset: snapshot.dataset)
                                                     : try recommender.evaluate(dataset: snapshot.dataset, options: options)
        } catch { throw RecDBError.training("\(error)") }
        return EvaluationOutcome(model: info.model, version: info.version, split: (split ?? info.configuration.split).rawValue,
                                 epochs: info.report.epochsRun, secondsPerEpoch: info.report.secondsPerEpoch,
                                 valid: metrics.valid, test: metrics.test, recordedValid: info.report.valid, recordedTest: info.report.test)
    }

    /// Lists models and their versions with metrics.
    public func models() throws -> [ModelSummary] { try read { try $0.models() } }

    /// Makes `version` the active version of `model`.
    public func activate(model: String, version: UInt32) throws {
        try write { tx in
            guard var header = try tx.modelHeader(model) else { throw RecDBError.unknownModel(model) }
            guard try tx.modelVersionInfo(model, version) != nil else { throw RecDBError.unknownModel("\(model) version \(version)") }
            if let old = header.activeVersion, old != version { header.previousActive.append(old) }
            header.activeVersion = version
            try tx.storeModelHeader(header)
        }
    }

    /// Re-activates the version that was active before the current one. Returns it.
    @discardableResult
    public func rollback(model: String) throws -> UInt32 {
        try write { tx in
            guard var header = try tx.modelHeader(model) else { throw RecDBError.unknownModel(model) }
            while let previous = header.previousActive.popLast() {
                guard try tx.modelVersionInfo(model, previous) != nil else { continue }  // dropped since
                header.activeVersion = previous
                try tx.storeModelHeader(header)
                return previous
            }
            throw RecDBError.invalidArgument("model \(model) has no earlier active version to roll back to")
        }
    }

    /// Deletes a version (weights, item space, index). The active version cannot be dropped unless
    /// it is the last one; dropping the last version removes the model.
    public func dropModel(_ model: String, version: UInt32? = nil) throws {
        try write { tx in
            guard var header = try tx.modelHeader(model) else { throw RecDBError.unknownModel(model) }
            let versions = try version.map { [$0] } ?? tx.modelVersions(model)
            for v in versions {
                guard try tx.modelVersionInfo(model, v) != nil else { throw RecDBError.unknownModel("\(model) version \(v)") }
                let remaining = try tx.modelVersions(model).count
                if v == header.activeVersion && version != nil && remaining > 1 {
                    throw RecDBError.invalidArgument("version \(v) of \(model) is active; activate another version first")
                }
                try tx.deleteKeys(in: .models, prefix: ModelKeys.tensorPrefix(model, v))
                try tx.raw.delete(.models, key: ModelKeys.version(model, v))
                let space = Database.itemSpaceName(model: model, version: v)
                try tx.dropIndex(space: space)
                if try tx.space(named: space) != nil { try tx.dropSpace(space) }
                header.previousActive.removeAll { $0 == v }
                if header.activeVersion == v { header.activeVersion = nil }
                let cacheKey = "model:\(model)@\(v)"
                tx.onCommit { [self] in runtime.set(cacheKey, nil) }
            }
            if try tx.modelVersions(model).isEmpty {
                try tx.raw.delete(.models, key: ModelKeys.header(model))
                try tx.meta.setString(MetaKey.droppedModelPrefix.rawValue + model, String(header.nextVersion))
            } else {
                try tx.storeModelHeader(header)
            }
        }
    }
}

extension Database {
    /// Refuses a configuration whose weights and optimiser state alone would not fit in this machine's
    /// memory (`--hidden 100000000` would otherwise abort the process in an allocation). Counted in
    /// Double: no overflow whatever the arguments.
    static func checkTrainingMemory(_ c: ModelConfiguration, numItems: Int) throws {
        let d = Double(c.hiddenSize), f = d * Double(c.resolvedFeedForwardMultiplier)
        let parameters = (Double(numItems) + 2 + Double(c.maxLength)) * d + Double(c.blocks) * (4 * d * d + 2 * d * f)
        // Weights, gradients and two AdamW moments, 4 bytes each; activations of one batch (~16 floats per
        // position, hidden value and block).
        let bytes = parameters * 16 + Double(c.batchSize) * Double(c.maxLength) * d * Double(c.blocks) * 64
        let available = Double(ProcessInfo.processInfo.physicalMemory)
        guard bytes < available else {
            throw RecDBError.training(String(format: "this configuration needs about %.1f GB (hidden %ld, %ld blocks, %ld items, batch %ld × %ld positions) but the machine has %.1f GB",
                                             bytes / 1e9, c.hiddenSize, c.blocks, numItems, c.batchSize, c.maxLength, available / 1e9))
        }
    }
}

extension ReadTransaction {
    /// The first version number of a model that has no header: 1, or one past the last version of a
    /// model of that name that was dropped whole (version numbers are never reused).
    func firstVersionNumber(model: String) throws -> UInt32 {
        guard let text = try meta.string(MetaKey.droppedModelPrefix.rawValue + model) else { return 1 }
        guard let next = UInt32(text), next >= 1 else {
            throw RecDBError.damaged(table: Table.meta.rawValue, key: MetaKey.droppedModelPrefix.rawValue + model, detail: "'\(text)' is not a version number")
        }
        return next
    }
}
