import Foundation

/// Per-user profile embeddings for distillation (ECIR'26): row `u` belongs to user ordinal `u` of the
/// dataset; users without a profile are marked absent and contribute no distillation loss.
public struct ProfileTable: Sendable {
    public let dimension: Int
    /// `users · dimension` values (zeros for absent users).
    public let values: [Float]
    /// Whether user `u` has a profile.
    public let present: [Bool]

    /// - Parameter profiles: one optional vector per user ordinal, each of `dimension` values.
    public init(dimension: Int, profiles: [[Float]?]) throws {
        var v = [Float](repeating: 0, count: profiles.count * dimension)
        var present = [Bool](repeating: false, count: profiles.count)
        for (u, p) in profiles.enumerated() {
            guard let p else { continue }
            guard p.count == dimension else { throw LearnError.shapeMismatch("profile of user \(u): \(p.count) values, expected \(dimension)") }
            for j in 0..<dimension { v[u * dimension + j] = p[j] }
            present[u] = true
        }
        self.dimension = dimension; values = v; self.present = present
    }

    /// Dense table: every user of `values` (`users × dimension`) has a profile.
    public init(dimension: Int, values: [Float]) throws {
        guard dimension > 0, values.count % dimension == 0 else { throw LearnError.shapeMismatch("profile table: \(values.count) values, dimension \(dimension)") }
        self.dimension = dimension; self.values = values
        present = [Bool](repeating: true, count: values.count / dimension)
    }
}

/// What the progress callback receives after each epoch.
public struct EpochProgress: Sendable {
    public var epoch: Int
    /// Mean training cross-entropy of the epoch.
    public var loss: Double
    /// Mean distillation loss of the epoch (nil when distillation is off in this epoch).
    public var distillationLoss: Double?
    /// Mean profile-path recommendation loss of the epoch (nil when it is off;
    /// `DistillationConfiguration.profileRecommendationWeight`).
    public var profileRecommendationLoss: Double?
    public var valid: RankingMetrics
    public var trainSeconds: Double
    public var evaluationSeconds: Double
    public var bestEpoch: Int
    /// Optimiser steps so far.
    public var step: Int = 0
}

/// The outcome of a training run (Codable; encode with `JSONEncoder` for the JSON form).
public struct TrainingReport: Codable, Sendable {
    public var configuration: ModelConfiguration
    public var numItems: Int
    public var trainExamples: Int
    public var parameterCount: Int
    /// Epoch whose weights were kept (best validation NDCG@10).
    public var bestEpoch: Int
    public var epochsRun: Int
    /// "patience", "maxEpochs", "stopped" (shouldStop) or "nonFinite".
    public var stopReason: String
    /// Validation metrics at the best epoch; test metrics with the best weights.
    public var valid: RankingMetrics
    public var test: RankingMetrics
    /// Median training seconds per completed epoch (excluding validation).
    public var secondsPerEpoch: Double
    public var evaluationSecondsPerEpoch: Double
    /// Per validation: [epoch, mean train loss since the previous validation, valid NDCG@10, valid
    /// Recall@10, optimiser steps so far] (one row per epoch unless `evaluateEvery` is set; reports
    /// stored before the step column existed have 4 columns).
    public var curve: [[Double]]
    /// Optimiser steps run, and the step whose weights were kept (nil in reports stored before these existed).
    public var steps: Int?
    public var bestStep: Int?
}

/// A trained model with its report.
public struct TrainingResult: Sendable {
    public let model: SequentialRecommender
    public let report: TrainingReport
}

/// Trains SASRec / BERT4Rec with AdamW, per-epoch validation and early stopping on validation NDCG@10,
/// then tests the best-epoch weights. Deterministic for a configuration (seed, threads).
public enum Trainer {
    /// - Parameters:
    ///   - dataset: chronological sequences (ids 1...numItems).
    ///   - textTable: frozen item text embeddings (required for `text` / `text+id`).
    ///   - profiles: user profile embeddings (required when `configuration.distillation` is set).
    ///   - initialModel: warm start from these weights (same architecture; may be the result of
    ///     `expandingCatalogue`; its catalogue must equal `dataset.numItems`).
    ///   - progress: called after every epoch on the training thread.
    ///   - shouldStop: polled before every batch; returning true abandons the current epoch at once
    ///     (it is not validated or counted), restores the best weights so far, evaluates the test
    ///     cases and returns normally with `stopReason` "stopped".
    /// - Throws: `LearnError` for invalid configuration/data or missing tables.
    public static func train(dataset: SequenceDataset, textTable: TextTable? = nil, profiles: ProfileTable? = nil,
                             configuration: ModelConfiguration, initialModel: SequentialRecommender? = nil,
                             progress: ((EpochProgress) -> Void)? = nil,
                             shouldStop: (() -> Bool)? = nil) throws -> TrainingResult {
        try configuration.validate()
        // The work split is bound for this call only (a task-local value), never set process-wide.
        let parts = configuration.threads > 0 ? configuration.threads : ProcessInfo.processInfo.activeProcessorCount
        return try Parallel.$parts.withValue(parts) {
            try trainValidated(dataset: dataset, textTable: textTable, profiles: profiles, configuration: configuration,
                               initialModel: initialModel, progress: progress, shouldStop: shouldStop)
        }
    }

    private static func trainValidated(dataset: SequenceDataset, textTable: TextTable?, profiles: ProfileTable?,
                                       configuration: ModelConfiguration, initialModel: SequentialRecommender?,
                                       progress: ((EpochProgress) -> Void)?,
                                       shouldStop: (() -> Bool)?) throws -> TrainingResult {
        // `loss: auto` and `windows: auto` are resolved here, so the network, the report and the stored
        // version carry what was trained.
        var resolved = configuration
        resolved.loss = resolved.resolvedLoss(numItems: dataset.numItems)
        // Recorded only where the table has a rate of its own (row-sparse): elsewhere an explicit value is not
        // used, and a version must not claim it was.
        resolved.itemTableLearningRate = resolved.updatesItemTableRowSparsely(numItems: dataset.numItems)
            ? resolved.resolvedItemTableLearningRate(numItems: dataset.numItems) : nil
        // `evaluationUsers: auto` too, so `rdbctl eval` of the version evaluates the same users.
        let whole = try DatasetSplit.unsampled(dataset, configuration: resolved)
        resolved.evaluationUsers = resolved.resolvedEvaluationUsers(eligibleUsers: whole.evaluationUserCount,
                                                                    numItems: dataset.numItems)
        let split = whole.restrictingEvaluation(toUsers: resolved.evaluationUsers!)
        let configuration = resolved.resolvingAutomaticWindows(train: split.train)
        let distill = configuration.distillation
        if distill != nil {
            guard let profiles else { throw LearnError.invalidData("distillation needs a profile table") }
            guard profiles.present.count >= dataset.sequences.count else {
                throw LearnError.shapeMismatch("profile table has \(profiles.present.count) users, the dataset \(dataset.sequences.count)")
            }
        }
        let network: SequenceNetwork
        if let initialModel {
            guard initialModel.numItems == dataset.numItems else {
                throw LearnError.shapeMismatch("initial model has \(initialModel.numItems) items, the dataset \(dataset.numItems); use expandingCatalogue")
            }
            guard initialModel.configuration.architecture == configuration.architecture,
                  initialModel.configuration.items == configuration.items,
                  initialModel.hiddenSize == configuration.hiddenSize else {
                throw LearnError.invalidConfiguration("warm start needs the same architecture, items and hidden size")
            }
            let weights = initialModel.exportParameters()
            network = try SequenceNetwork(configuration: configuration, numItems: dataset.numItems,
                                          text: initialModel.network.text ?? textTable,
                                          profileDimension: profiles?.dimension ?? initialModel.profileDimension)
            for p in network.parameters { if let t = weights[p.name], t.shape == p.shape { p.load(t) } }
            network.refreshItemTable()
        } else {
            network = try SequenceNetwork(configuration: configuration, numItems: dataset.numItems, text: textTable,
                                          profileDimension: distill != nil ? profiles!.dimension : nil)
        }
        let objective = configuration.architecture.model.makeObjective(train: split.train, configuration: configuration,
                                                                       numItems: dataset.numItems)
        let session = TrainingSession(network: network, objective: objective, configuration: configuration,
                                      profiles: profiles)
        let evaluator = RankingEvaluator(network: network, batchSize: configuration.evaluationBatchSize,
                                         maskSeen: configuration.maskSeen)
        var rng = Xoshiro256(seed: configuration.seed &+ 0x7EA1)
        var best = -1.0, bestEpoch = 0, bestStep = 0, bestEvaluation = 0
        var bestValid = RankingMetrics()
        var bestState: [[Float]]? = nil
        var curve: [[Double]] = []
        var trainTimes: [Double] = [], evalTimes: [Double] = []
        var stopReason = "maxEpochs"
        var epoch = 0, steps = 0, evaluations = 0
        // Index of the last validation that ran while distillation was on (patience counts from it).
        var lastDistillEvaluation = 0
        var order = Array(0..<objective.exampleCount)
        // Loss sums since the last validation (its curve point reports their mean).
        var lossSum = 0.0, distillSum = 0.0, profileSum = 0.0, batches = 0
        var trainSeconds = 0.0, epochSeconds = 0.0
        var epochTimes: [Double] = []
        /// Validates, records the curve point and the best weights; returns true when training must stop.
        func validate(useDistill: Bool) -> Bool {
            let t1 = Date()
            let valid = evaluator.evaluate(split.valid)
            evalTimes.append(Date().timeIntervalSince(t1))
            trainTimes.append(trainSeconds); trainSeconds = 0
            evaluations += 1
            let meanLoss = lossSum / Double(max(batches, 1))
            curve.append([Double(epoch), meanLoss, valid.ndcg10, valid.recall10, Double(steps)])
            let distillMean = distillSum / Double(max(batches, 1)), profileMean = profileSum / Double(max(batches, 1))
            lossSum = 0; distillSum = 0; profileSum = 0; batches = 0
            if !meanLoss.isFinite { stopReason = "nonFinite"; return true }
            if valid.ndcg10 > best {
                best = valid.ndcg10; bestEpoch = epoch; bestStep = steps; bestEvaluation = evaluations; bestValid = valid
                bestState = network.snapshot()
            }
            if useDistill { lastDistillEvaluation = evaluations }
            progress?(EpochProgress(epoch: epoch, loss: meanLoss, distillationLoss: useDistill ? distillMean : nil,
                                    profileRecommendationLoss: session.profileRecommendation != nil ? profileMean : nil,
                                    valid: valid, trainSeconds: trainTimes.last!, evaluationSeconds: evalTimes.last!,
                                    bestEpoch: bestEpoch, step: steps))
            // NOTE: while distillation is on, validation NDCG collapses by design (the KD term dominates; the
            // PyTorch reference behaves the same) and recovers once it switches off, so patience counts only
            // from the first validation without distillation — otherwise a run can stop before it ever trains plainly.
            let patienceStart = max(bestEvaluation, lastDistillEvaluation)
            if evaluations - patienceStart >= configuration.patience && steps >= configuration.minimumSteps {
                stopReason = "patience"; return true
            }
            return false
        }
        epochLoop: while epoch < configuration.maxEpochs {
            epoch += 1
            var t0 = Date()
            epochSeconds = 0
            order.shuffle(using: &rng)
            let useDistill = distill.map { epoch <= $0.distillEpochs } ?? false
            var start = 0
            while start < order.count {
                if shouldStop?() == true { stopReason = "stopped"; epoch -= 1; break epochLoop }
                let end = min(order.count, start + configuration.batchSize)
                let losses = session.step(order[start..<end], distill: useDistill, rng: &rng)
                lossSum += losses.crossEntropy; distillSum += losses.distillation; profileSum += losses.profileRecommendation
                batches += 1; steps += 1
                start = end
                if let every = configuration.evaluateEvery, steps % every == 0 {
                    let dt = Date().timeIntervalSince(t0)
                    trainSeconds += dt; epochSeconds += dt
                    if validate(useDistill: useDistill) { break epochLoop }
                    t0 = Date()
                }
            }
            let dt = Date().timeIntervalSince(t0)
            trainSeconds += dt; epochSeconds += dt
            epochTimes.append(epochSeconds)
            if configuration.evaluateEvery == nil, validate(useDistill: useDistill) { break }
        }
        // A step-cadence run that ended between validations validates its last steps too, so the
        // final weights are considered.
        if configuration.evaluateEvery != nil, batches > 0, stopReason != "stopped", stopReason != "nonFinite" {
            _ = validate(useDistill: distill.map { epoch <= $0.distillEpochs } ?? false)
        }
        if let bestState { network.restore(bestState) }
        let test = evaluator.evaluate(split.test)
        func median(_ xs: [Double]) -> Double {
            if xs.isEmpty { return 0 }
            let s = xs.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        let report = TrainingReport(configuration: configuration, numItems: dataset.numItems,
                                    trainExamples: objective.exampleCount,
                                    parameterCount: network.parameters.reduce(0) { $0 + $1.count },
                                    bestEpoch: bestEpoch, epochsRun: epoch, stopReason: stopReason,
                                    valid: bestValid, test: test, secondsPerEpoch: median(epochTimes),
                                    evaluationSecondsPerEpoch: median(evalTimes), curve: curve,
                                    steps: steps, bestStep: bestStep)
        return TrainingResult(model: SequentialRecommender(network: network), report: report)
    }
}

/// One training step's machinery: workspace, loss, optimiser and distillation buffers, allocated once.
final class TrainingSession {
    let network: SequenceNetwork
    let objective: SequenceObjective
    let configuration: ModelConfiguration
    let profiles: ProfileTable?
    let workspace: SequenceNetwork.Workspace
    let crossEntropy: SoftmaxCrossEntropy
    /// The sampled loss (`ModelConfiguration.loss == .sampled`); nil = full softmax.
    let sampled: SampledSoftmaxCrossEntropy?
    /// Whether the id table is updated row-sparsely (sampled loss on `id` items: only the rows a step
    /// touched get gradient, so zeroing and updating the whole table would make a step O(catalogue)).
    let sparseItemTable: Bool
    /// Rows of the id table touched by the last `computeGradients` (when `sparseItemTable`).
    var touchedRows: [Int32] = []
    var optimiser: AdamW
    var scoredRows: [Int32] = []
    var targets: [Int32] = []
    let selectedHidden = Buffer(1), selectedGrad = Buffer(1)
    let distillation: ProfileDistillation?
    /// The profile path's own recommendation loss (runs in every epoch, not only while distilling).
    let profileRecommendation: ProfileRecommendationLoss?

    /// The losses of one batch (each unweighted).
    struct Losses {
        var crossEntropy = 0.0
        /// L_distil (0 when distillation is off for the step).
        var distillation = 0.0
        /// L_profile (0 when off).
        var profileRecommendation = 0.0
    }

    init(network: SequenceNetwork, objective: SequenceObjective, configuration: ModelConfiguration, profiles: ProfileTable?) {
        self.network = network; self.objective = objective; self.configuration = configuration; self.profiles = profiles
        workspace = network.makeWorkspace()
        crossEntropy = SoftmaxCrossEntropy(chunkRows: max(8, min(configuration.lossChunkRows, 4_194_304 / max(network.numItems, 1))))
        sampled = configuration.loss == .sampled
            ? SampledSoftmaxCrossEntropy(negatives: configuration.negatives, chunkRows: configuration.lossChunkRows,
                                         groups: SampledSoftmaxCrossEntropy.trainingGroups) : nil
        sparseItemTable = configuration.updatesItemTableRowSparsely(numItems: network.numItems)
        optimiser = AdamW(learningRate: configuration.learningRate, beta1: configuration.beta1, beta2: configuration.beta2,
                          epsilon: configuration.adamEpsilon, weightDecay: configuration.weightDecay,
                          rowSparseLearningRate: sparseItemTable
                            ? configuration.resolvedItemTableLearningRate(numItems: network.numItems) : nil)
        if let d = configuration.distillation, let profiles {
            distillation = ProfileDistillation(configuration: d, network: network, profiles: profiles)
            profileRecommendation = d.profileRecommendationWeight > 0
                ? ProfileRecommendationLoss(network: network, profiles: profiles, targets: d.profileTargets,
                                            chunkRows: crossEntropy.chunkRows)
                : nil
        } else {
            distillation = nil; profileRecommendation = nil
        }
    }

    /// One AdamW step on the given examples. Returns the batch's losses.
    func step(_ batch: ArraySlice<Int>, distill: Bool, rng: inout Xoshiro256) -> Losses {
        let losses = computeGradients(batch, distill: distill, rng: &rng)
        if let clip = configuration.gradientClipNorm { AdamW.clipGradients(network.parameters, maxNorm: clip) }
        if sparseItemTable {
            optimiser.update(network.parameters, rowSparse: network.itemEmbedding, rows: touchedRows)
        } else {
            optimiser.update(network.parameters)
        }
        network.refreshItemTable()
        return losses
    }

    /// Forward and backward pass for one batch: fills every parameter's `grad` (zeroed first) with the
    /// gradient of `(1 − α)·CE + α·β·L_distil` (α = 0 without distillation), plus `λ·L_profile` for T's
    /// parameters only (whether or not `distill`; see `ProfileRecommendationLoss`). Returns the losses.
    func computeGradients(_ batch: ArraySlice<Int>, distill: Bool, rng: inout Xoshiro256) -> Losses {
        let ws = workspace, d = network.width, n = network.numItems
        objective.fillBatch(batch, into: ws, scoredRows: &scoredRows, targets: &targets, rng: &rng)
        network.zeroGradients(keepingItemEmbedding: sparseItemTable)
        network.forward(ws, training: true, rng: &rng)
        let rows = ws.layout.rows
        let scored = scoredRows.isEmpty ? rows : scoredRows.count
        let alpha = (distill && distillation != nil) ? configuration.distillation!.alpha : 0
        ws.gradHidden.reserve(rows * d)
        let hidden: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>
        if scoredRows.isEmpty {
            hidden = ws.hidden.p; grad = ws.gradHidden.p
        } else {
            selectedHidden.reserve(scored * d); selectedGrad.reserve(scored * d)
            for (k, r) in scoredRows.enumerated() { (selectedHidden.p + k * d).update(from: ws.hidden.p + Int(r) * d, count: d) }
            hidden = selectedHidden.p; grad = selectedGrad.p
        }
        let lossSum = targets.withUnsafeBufferPointer { t in
            if let sampled {
                return sampled.run(hidden: hidden, rows: scored, width: d, catalogue: network.itemTable + d, items: n,
                                   targets: t.baseAddress!, gradScale: (1 - alpha) / Float(scored), hiddenGrad: grad,
                                   catalogueGrad: network.itemTableGrad + d, rng: &rng)
            }
            return crossEntropy.run(hidden: hidden, rows: scored, width: d, catalogue: network.itemTable + d, items: n,
                             targets: t.baseAddress!, gradScale: (1 - alpha) / Float(scored), hiddenGrad: grad,
                             catalogueGrad: network.itemTableGrad + d)
        }
        let ce = lossSum / Double(max(scored, 1))
        if !scoredRows.isEmpty {
            ws.gradHidden.zero(rows * d)
            for (k, r) in scoredRows.enumerated() { (ws.gradHidden.p + Int(r) * d).update(from: grad + k * d, count: d) }
        }
        var kd = 0.0
        if alpha > 0, let distillation {
            kd = distillation.prepare(batch: batch, objective: objective, workspace: ws, crossEntropy: ce)
            network.backward(ws) { l, g in distillation.addGradient(block: l, workspace: ws, into: g) }
        } else {
            network.backward(ws)
        }
        network.backpropagateItemTable()
        if sparseItemTable, let sampled { touchedRows = sampled.touchedRows(inputs: ws.items, targets: targets, items: n) }
        var profileLoss = 0.0
        if let profileRecommendation {
            profileLoss = profileRecommendation.run(batch: batch, objective: objective,
                                                    scale: configuration.distillation!.profileRecommendationWeight)
        }
        return Losses(crossEntropy: ce, distillation: kd, profileRecommendation: profileLoss)
    }
}
