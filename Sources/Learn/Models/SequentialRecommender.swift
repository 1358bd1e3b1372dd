import Foundation

/// A trained sequential model (SASRec, BERT4Rec, …): the object the store keeps, serves and re-evaluates.
///
/// - Scores: `score(user, item) = dot(userRepresentation(history), itemVectors[item])`.
/// - Persistence: `exportParameters()` gives named tensors (PyTorch-like names and shapes);
///   `init(configuration:numItems:parameters:textTable:)` re-creates an identical model.
///   The frozen text table is NOT part of the parameters (the store owns it) and must be passed back.
/// - Thread safety: an instance is immutable after creation; every query method may be called
///   concurrently from any number of threads (each call borrows a private scratch workspace from a
///   small locked pool, so steady-state queries do not allocate buffers).
// Unchecked: `network` (a non-Sendable class) is never mutated after init; queries take scratch from the locked `pool`.
public final class SequentialRecommender: @unchecked Sendable {
    public let configuration: ModelConfiguration
    let network: SequenceNetwork
    private let pool = WorkspacePool()

    init(network: SequenceNetwork) {
        self.network = network
        configuration = network.configuration
    }

    /// Re-creates a model from exported parameters.
    /// - Parameters:
    ///   - numItems: catalogue size the parameters were trained for (`item_emb` has numItems + 1 rows).
    ///   - textTable: the frozen table (required for `text` / `text+id`; at least numItems + 1 rows).
    /// - Throws: `LearnError.missingParameter` / `.shapeMismatch` / `.missingTextTable` / `.invalidConfiguration`.
    public convenience init(configuration: ModelConfiguration, numItems: Int, parameters: [String: Tensor],
                            textTable: TextTable? = nil) throws {
        let profileDimension = parameters["profile_proj.weight"].map { $0.shape[1] }
        let net = try SequenceNetwork(configuration: configuration, numItems: numItems, text: textTable,
                                      profileDimension: profileDimension)
        try net.importParameters(parameters)
        self.init(network: net)
    }

    /// Catalogue size: item ids are 1...numItems.
    public var numItems: Int { network.numItems }
    /// Width of user and item vectors.
    public var hiddenSize: Int { network.width }
    /// Dimension of the text embeddings the adapter takes (text modes), else nil.
    public var textDimension: Int? { network.adapterWeight?.shape[1] }
    /// Dimension of profile embeddings accepted by `userRepresentation(profile:)`, if distilled.
    public var profileDimension: Int? { network.profileWeight?.shape[1] }

    /// Every trainable parameter by name, as `[name: Tensor]` (copies). Names: `item_emb` `[N+1, d]`,
    /// `adapter.weight` `[d, textDim]`, `adapter.bias`, `mask_emb` `[1, d]`, `pos_emb` `[maxLength+1, d]`,
    /// `blocks.{i}.{ln1,ln2}.{weight,bias}`, `blocks.{i}.attn.{qkv,out}.{weight,bias}`,
    /// `blocks.{i}.ffn.{l1,l2}.{weight,bias}`, `ln_f.{weight,bias}`, `profile_proj.{weight,bias}`.
    public func exportParameters() -> [String: Tensor] { network.exportParameters() }

    /// Marks the model as serving-only: single-history inference then uses transposed weight copies (~1.5×
    /// faster products on one user's rows) and projects only the last row's query in the last block. Scores
    /// equal the training-path ones up to float rounding. Training this model again drops the copies.
    public func freezeForServing() { network.freezeForServing() }

    // MARK: - User representations

    /// The user vector (`hiddenSize` floats) for a chronological history: the final hidden state at the
    /// last position of the model's window (last `maxLength` items; BERT4Rec: last `maxLength − 1` plus
    /// [MASK]). Ids outside `1...numItems` (e.g. items added after training) are skipped. An empty
    /// history gives zeros (SASRec) or the [MASK]-only representation (BERT4Rec).
    public func userRepresentation(_ history: [Int32]) -> [Float] {
        var out = [Float](repeating: 0, count: hiddenSize)
        out.withUnsafeMutableBufferPointer { userRepresentation(history, into: $0) }
        return out
    }

    /// Allocation-free variant of `userRepresentation(_:)`: writes `hiddenSize` floats into `out`.
    public func userRepresentation(_ history: [Int32], into out: UnsafeMutableBufferPointer<Float>) {
        // A programmer error: the caller's buffer (RecDB passes hiddenSize floats).
        precondition(out.count >= hiddenSize)
        let ws = pool.take { network.makeWorkspace() }
        defer { pool.give(ws) }
        ws.reset()
        let n = numItems
        if history.allSatisfy({ $0 >= 1 && Int($0) <= n }) {
            network.appendEvaluationWindow(history, to: ws)
        } else {
            network.appendEvaluationWindow(history.filter { $0 >= 1 && Int($0) <= n }, to: ws)
        }
        if ws.layout.rows == 0 { out.baseAddress!.update(repeating: 0, count: hiddenSize); return }
        network.forwardLastRows(ws)
        out.baseAddress!.update(from: ws.hidden.p, count: hiddenSize)
    }

    /// User vectors for many histories at once (`[histories.count, hiddenSize]`), using all cores.
    public func userRepresentations(_ histories: [[Int32]]) -> Tensor {
        var values = [Float](repeating: 0, count: histories.count * hiddenSize)
        values.withUnsafeMutableBufferPointer { userRepresentations(histories, into: $0, onCallingThreadOnly: false) }
        return Tensor(shape: [histories.count, hiddenSize], values: values)
    }

    /// User vectors for many histories in one forward pass over the packed batch, written row by row into
    /// `out` (`histories.count × hiddenSize` floats; an empty history gives zeros, as `userRepresentation`).
    /// Row k equals `userRepresentation(histories[k])` up to float rounding (the products run over more rows).
    ///
    /// With `onCallingThreadOnly`, no work is handed to other threads: what a server's event loop uses to score
    /// the requests it has read together (its other cores serve other loops), and what a caller that spreads
    /// batches over the cores itself uses.
    public func userRepresentations(_ histories: [[Int32]], into out: UnsafeMutableBufferPointer<Float>, onCallingThreadOnly: Bool) {
        let d = hiddenSize, n = numItems
        // A programmer error: the caller sizes `out` from the same count.
        precondition(out.count >= histories.count * d)
        out.baseAddress!.update(repeating: 0, count: histories.count * d)
        let ws = pool.take { network.makeWorkspace() }
        defer { pool.give(ws) }
        let batch = max(1, configuration.evaluationBatchSize)
        var start = 0
        while start < histories.count {
            let end = min(histories.count, start + batch)
            ws.reset()
            for h in histories[start..<end] {
                if h.allSatisfy({ $0 >= 1 && Int($0) <= n }) {
                    network.appendEvaluationWindow(h, to: ws)
                } else {
                    network.appendEvaluationWindow(h.filter { $0 >= 1 && Int($0) <= n }, to: ws)
                }
            }
            if ws.layout.rows > 0 {
                if onCallingThreadOnly { Parallel.$parts.withValue(1) { network.forwardLastRows(ws) } } else { network.forwardLastRows(ws) }
                for k in 0..<(end - start) where ws.layout.rowStart[k + 1] > ws.layout.rowStart[k] {
                    (out.baseAddress! + (start + k) * d).update(from: ws.hidden.p + k * d, count: d)
                }
            }
            start = end
        }
    }

    // MARK: - Item vectors

    /// Output item vectors `[(numItems + 1), hiddenSize]` (row 0 = padding = zeros): the tied item table.
    public func itemVectors() -> Tensor {
        let count = (numItems + 1) * hiddenSize
        return Tensor(shape: [numItems + 1, hiddenSize], values: Array(UnsafeBufferPointer(start: network.itemTable, count: count)))
    }

    /// The model-space vector of a brand-new item from its text embedding alone: `adapter(text)`.
    /// For `text+id` the (unknown) id part is taken as zero. Cold start without retraining.
    /// - Throws: `LearnError.invalidConfiguration` for `id` models, `.shapeMismatch` for a wrong dimension.
    public func itemVector(fromTextEmbedding text: [Float]) throws -> [Float] {
        guard let dim = textDimension else {
            throw LearnError.invalidConfiguration("an id-only model cannot embed items from text")
        }
        guard text.count == dim else { throw LearnError.shapeMismatch("text embedding has \(text.count) values, the adapter takes \(dim)") }
        var out = [Float](repeating: 0, count: hiddenSize)
        text.withUnsafeBufferPointer { t in out.withUnsafeMutableBufferPointer { network.adapt(text: t.baseAddress!, into: $0.baseAddress!) } }
        return out
    }

    /// The user vector of a user known only by a profile embedding: `LN_f(T(profile))`.
    ///
    /// Distillation trains T(profile) to match the pooled block output *before* the final LayerNorm
    /// (as the ECIR'26 code does), while sequence users are scored with the final hidden state *after* it.
    /// So T(profile) is put through the same final LayerNorm to land in the space items are scored in.
    /// NOTE: raw T(profile), used before, scored held-out users below popularity on Beauty; so did
    /// LN_f(T(profile)) with T trained by distillation alone. With `profileRecommendationWeight` > 0 (the
    /// default) T is trained on exactly these scores (`ProfileRecommendationLoss`).
    /// - Throws: when the model was not trained with profile distillation.
    public func userRepresentation(profile: [Float]) throws -> [Float] {
        guard let w = network.profileWeight, let b = network.profileBias else {
            throw LearnError.invalidConfiguration("this model was not trained with profile distillation")
        }
        guard profile.count == w.shape[1] else { throw LearnError.shapeMismatch("profile has \(profile.count) values, T takes \(w.shape[1])") }
        var mapped = Array(UnsafeBufferPointer(start: b.value.p, count: hiddenSize))
        profile.withUnsafeBufferPointer { p in
            mapped.withUnsafeMutableBufferPointer { BLAS.gemv(m: hiddenSize, n: w.shape[1], a: w.value.p, lda: w.shape[1],
                                                              x: p.baseAddress!, beta: 1, y: $0.baseAddress!) }
        }
        // Architectures without a final normalisation (GRU4Rec) score T(profile) itself.
        guard let norm = network.encoder.outputNorm else { return mapped }
        var out = [Float](repeating: 0, count: hiddenSize)
        var mean: Float = 0, rstd: Float = 0
        mapped.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                Kernels.layerNormForward(x.baseAddress!, rows: 1, width: hiddenSize, gamma: norm.gamma.value.p,
                                         beta: norm.beta.value.p, eps: configuration.layerNormEpsilon,
                                         into: y.baseAddress!, mean: &mean, rstd: &rstd)
            }
        }
        return out
    }

    // MARK: - Warm start

    /// A copy of this model for a larger catalogue (`newNumItems ≥ numItems`): trained rows are kept,
    /// new id rows are freshly initialised (seeded), text modes read new items through the adapter
    /// from `textTable` (required for text modes). Pass the result to `Trainer.train(initialModel:)`.
    public func expandingCatalogue(to newNumItems: Int, textTable: TextTable? = nil, seed: UInt64 = 0) throws -> SequentialRecommender {
        guard newNumItems >= numItems else { throw LearnError.invalidData("cannot shrink the catalogue from \(numItems) to \(newNumItems)") }
        let copy = try SequenceNetwork(configuration: configuration, numItems: numItems,
                                       text: network.text ?? textTable, profileDimension: profileDimension)
        try copy.importParameters(exportParameters())
        try copy.growCatalogue(to: newNumItems, text: textTable ?? network.text, seed: seed)
        return SequentialRecommender(network: copy)
    }

    /// A deep copy (for continued training without touching this instance).
    func copyNetwork() throws -> SequenceNetwork {
        let copy = try SequenceNetwork(configuration: configuration, numItems: numItems, text: network.text,
                                       profileDimension: profileDimension)
        try copy.importParameters(exportParameters())
        return copy
    }

    // MARK: - Evaluation

    /// Full-ranking metrics on the given cases, exactly as computed during training.
    public func evaluate(_ cases: [EvaluationCase], maskSeen: Bool? = nil) -> RankingMetrics {
        RankingEvaluator(network: network, batchSize: configuration.evaluationBatchSize,
                         maskSeen: maskSeen ?? configuration.maskSeen).evaluate(cases)
    }

    /// Splits `dataset` with the configuration's split and returns (validation, test) metrics.
    public func evaluate(dataset: SequenceDataset) throws -> (valid: RankingMetrics, test: RankingMetrics) {
        let split = try DatasetSplit.make(dataset, configuration: configuration)
        return (evaluate(split.valid), evaluate(split.test))
    }

    /// Full-ranking metrics with the extra cutoffs, coverage and seen-item choice of `options`.
    /// - Throws: `LearnError.invalidConfiguration` for a cutoff outside 1...numItems.
    public func evaluate(_ cases: [EvaluationCase], options: EvaluationOptions) throws -> RankingMetrics {
        for k in options.cutoffs where !(1...numItems).contains(k) {
            throw LearnError.invalidConfiguration("cutoff \(k) must be in 1...\(numItems)")
        }
        return RankingEvaluator(network: network, batchSize: configuration.evaluationBatchSize,
                                maskSeen: options.excludeSeen ?? configuration.maskSeen).evaluate(cases, options: options)
    }

    /// `evaluate(dataset:)` with `options`.
    public func evaluate(dataset: SequenceDataset, options: EvaluationOptions) throws -> (valid: RankingMetrics, test: RankingMetrics) {
        let split = try DatasetSplit.make(dataset, configuration: configuration)
        return (try evaluate(split.valid, options: options), try evaluate(split.test, options: options))
    }
}

/// A tiny locked free-list of inference workspaces (one per concurrently running query).
// Unchecked: `free` is read and written only under `lock`, and each workspace is lent to one caller at a time.
final class WorkspacePool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [SequenceNetwork.Workspace] = []

    func take(_ make: () -> SequenceNetwork.Workspace) -> SequenceNetwork.Workspace {
        lock.lock()
        if let w = free.popLast() { lock.unlock(); return w }
        lock.unlock()
        return make()
    }

    func give(_ w: SequenceNetwork.Workspace) { lock.lock(); free.append(w); lock.unlock() }
}
