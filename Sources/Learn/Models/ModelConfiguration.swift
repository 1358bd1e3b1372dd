import Foundation

/// Everything that defines a sequential-recommender training run. Defaults are the reference
/// configuration of `../shared/reference/README.md` (hidden 64, 2 blocks, heads 1 SASRec / 2 BERT4Rec,
/// FFN d→d ReLU / d→4d GELU, LayerNorm eps 1e-8, dropout 0.2, maxlen 50, batch 256, AdamW lr 1e-3,
/// betas (0.9, 0.98), weight decay 1e-4, Xavier-normal init, early stopping on validation NDCG@10 with
/// patience 10, leave-one-out split).
///
/// JSON: every key is optional when decoding (missing keys take the defaults); the layout is
/// described by `schemas/model-configuration.schema.json` (a test keeps both in sync).
public struct ModelConfiguration: Codable, Equatable, Sendable {
    /// Which sequential model.
    public enum Architecture: String, Codable, Sendable, CaseIterable {
        /// SASRec (Kang & McAuley 2018): causal self-attention, next-item loss at every position.
        case sasrec
        /// BERT4Rec (Sun et al. 2019): bidirectional self-attention, masked-item loss.
        case bert4rec
        /// GRU4Rec (Hidasi et al. 2016) as RecBole builds it: a bias-free GRU over the item vectors, projected
        /// to the item space; next-item loss at every position.
        case gru4rec
    }

    /// How items are represented (the LLM2Rec protocol).
    public enum ItemRepresentation: String, Codable, Sendable, CaseIterable {
        /// A trainable id table `[(items+1), hidden]`.
        case id
        /// A frozen text-embedding table passed through a trainable linear adapter to `hidden`.
        case text
        /// Adapter output plus a trainable id table.
        case textAndID = "text+id"

        /// Whether a frozen text table is required.
        public var usesText: Bool { self != .id }
        /// Whether a trainable id table exists.
        public var usesID: Bool { self != .text }
    }

    /// The training loss over the catalogue.
    public enum Loss: String, Codable, Sendable, CaseIterable {
        /// `ce` up to `sampledLossCatalogueThreshold` items, `sampled` above (resolved when training starts;
        /// a trained version records the resolved choice).
        case auto
        /// Full softmax cross-entropy over every item: cost O(positions × catalogue) per step.
        case ce
        /// Sampled softmax over the positive and `negatives` draws shared by a quarter of the batch's
        /// positions (each quarter draws its own: half from its targets, half uniform), logQ-corrected:
        /// cost O(positions × negatives) (`SampledSoftmaxCrossEntropy`).
        case sampled
    }

    /// How the data is split into train / validation / test.
    public enum Split: String, Codable, Sendable, CaseIterable {
        /// Leave-one-out: last item test, second-to-last validation, rest training.
        case leaveOneOut = "loo"
        /// Global temporal split at timestamp quantiles (`temporalValidQuantile`, `temporalTestQuantile`).
        case temporal
    }

    public var architecture: Architecture = .sasrec
    public var items: ItemRepresentation = .id
    /// Model width d.
    public var hiddenSize: Int = 64
    /// Number of transformer blocks (GRU4Rec: GRU layers; default 1 for it).
    public var blocks: Int = 2
    /// GRU4Rec: state size H of the GRU; nil = 2 × hiddenSize (RecBole's 128 for its item size 64).
    public var gruHiddenSize: Int? = nil
    /// Attention heads; nil = 1 (SASRec) / 2 (BERT4Rec).
    public var heads: Int? = nil
    /// Feed-forward inner size as a multiple of d; nil = 1 (SASRec) / 4 (BERT4Rec).
    public var feedForwardMultiplier: Int? = nil
    /// Feed-forward activation ("relu" / "gelu"); nil = ReLU (SASRec) / GELU (BERT4Rec).
    public var activation: String? = nil
    /// Window length: the last `maxLength` items of a history are used.
    public var maxLength: Int = 50
    /// Dropout probability (embeddings, attention probabilities, feed-forward; GRU4Rec: the item vectors
    /// only, default 0.3 for it).
    public var dropout: Float = 0.2
    public var layerNormEpsilon: Float = 1e-8
    public var batchSize: Int = 256
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 1e-4
    public var beta1: Float = 0.9
    public var beta2: Float = 0.98
    public var adamEpsilon: Float = 1e-8
    /// Clip gradients to this global L2 norm; nil = no clipping (the reference does not clip).
    public var gradientClipNorm: Float? = nil
    /// Upper bound on training epochs.
    public var maxEpochs: Int = 200
    /// Early stopping: stop after this many validations without a better validation NDCG@10 (one
    /// validation per epoch, or per `evaluateEvery` steps).
    public var patience: Int = 10
    /// Which windows of each user's training part are trained (`TrainingWindows`). New configurations
    /// default to `.auto` (resolved from the data when training starts, `AutomaticWindows.swift`; on
    /// histories no longer than `maxLength` on average it is `.last`, bit for bit); absent in a stored configuration = `.last`, the only
    /// behaviour before this option existed.
    public var windows: TrainingWindows = .auto
    /// Validate every this many optimiser steps instead of after every epoch (nil = per epoch). On
    /// small data an epoch is a handful of steps, so epoch-counted patience stops before the model
    /// has trained; counting in steps makes the cadence independent of the data size.
    public var evaluateEvery: Int? = nil
    /// Early stopping never ends a run before this many optimiser steps (0 = no minimum).
    public var minimumSteps: Int = 0
    /// Seed of every random choice (initialisation, shuffling, masking, dropout).
    public var seed: UInt64 = 0
    /// BERT4Rec: probability of masking each real position.
    public var maskProbability: Float = 0.2
    /// BERT4Rec: probability that a training window masks only its last item (the next-item task that
    /// evaluation and serving pose: the history followed by [MASK]) instead of the Cloze masks; RecBole's
    /// `ft_ratio`. 0 = Cloze only (the behaviour before the option existed, bit for bit: no extra draw).
    /// nil (the default; also a stored configuration without the key) = chosen when training starts
    /// (`resolvingAutomaticWindows`): 0.5 when `windows: auto` resolves to stride windows on long
    /// histories, otherwise 0 — so configurations stored before the option still mean Cloze only.
    public var lastMaskProbability: Float? = nil
    /// `lastMaskProbability` as training uses it (nil = 0: unresolved means no last-item masks).
    public var resolvedLastMaskProbability: Float { lastMaskProbability ?? 0 }
    public var split: Split = .leaveOneOut
    /// Temporal split: events before this quantile of all timestamps are training data.
    public var temporalValidQuantile: Double = 0.8
    /// Temporal split: the first event at or after this quantile is a user's test target.
    public var temporalTestQuantile: Double = 0.9
    /// Evaluation: exclude the user's history items from the ranking (default off, as the reference).
    public var maskSeen: Bool = false
    /// Worker count for the engine's own parallelism; 0 = all cores. Results are deterministic for a
    /// given seed AND worker count.
    public var threads: Int = 0
    /// Training loss (`auto` picks `ce` or `sampled` by catalogue size).
    public var loss: Loss = .auto
    /// Sampled loss: draws per group of positions (the candidate set shared by a quarter of the batch's
    /// positions). 2048 because on Beauty 512 reached 83 % of full CE's test NDCG@10 and 2048 ≥ 97 % with
    /// the four groups (95 % with one draw per batch; README), while the loss stays a fraction of a
    /// full-CE step at 50k items.
    public var negatives: Int = 2048
    /// Catalogue size above which `auto` trains with the sampled loss (see the README's measurements).
    public static let sampledLossCatalogueThreshold = 50_000
    /// Learning rate of the item table's rows when they are updated row-sparsely (the sampled loss over
    /// `id` items: a step moves only the rows of its targets and draws, "lazy" AdamW). nil = automatic
    /// (`resolvedItemTableLearningRate`), resolved when training starts and recorded in the version (nil
    /// in a version whose table was not row-sparse: the value was not used there).
    /// Why it is separate: under lazy AdamW a row moves about one learning rate per step that touches
    /// it, and a row of a large catalogue is touched rarely (at 20M events × 1M items ~20 times an epoch
    /// as a target and ~10 as a uniform draw of the 4 groups), so at `learningRate` the table barely leaves
    /// its initialisation in an epoch (README, #14: 5M events × 200k items, one draw per batch, valid
    /// NDCG@10 after one epoch 0.0013 at 1e-3, 0.124 with only the table at 5e-3, 0.013 with every
    /// parameter at 5e-3).
    public var itemTableLearningRate: Float? = nil
    /// The automatic item-table rate is `learningRate` times this above `sampledLossCatalogueThreshold`
    /// items (where `auto` trains with the sampled loss), times 1 at or below it, where the README's
    /// Beauty comparison of the two losses was measured at the table's rate equal to `learningRate`.
    public static let largeCatalogueItemTableLearningRateFactor: Float = 5

    /// The factor the automatic item-table learning rate applies to `learningRate` on `numItems` items.
    public static func itemTableLearningRateFactor(numItems: Int) -> Float {
        numItems > sampledLossCatalogueThreshold ? largeCatalogueItemTableLearningRateFactor : 1
    }

    /// Whether a run on `numItems` items updates the item table row-sparsely: the sampled loss over `id`
    /// items (the one place this rule lives; `text`/`text+id` recompute the adapter over every item).
    public func updatesItemTableRowSparsely(numItems: Int) -> Bool {
        resolvedLoss(numItems: numItems) == .sampled && items == .id
    }

    /// The item table's learning rate a run on `numItems` items trains with (nil `itemTableLearningRate`
    /// resolved); equal to `learningRate` unless the table is updated row-sparsely.
    public func resolvedItemTableLearningRate(numItems: Int) -> Float {
        guard updatesItemTableRowSparsely(numItems: numItems) else { return learningRate }
        return itemTableLearningRate ?? learningRate * Self.itemTableLearningRateFactor(numItems: numItems)
    }

    /// The loss a run on `numItems` items trains with (`auto` resolved).
    public func resolvedLoss(numItems: Int) -> Loss {
        loss != .auto ? loss : numItems > Self.sampledLossCatalogueThreshold ? .sampled : .ce
    }

    /// Catalogue softmax: rows of logits computed at once per worker (capped so that one chunk holds
    /// at most 4 Mi logits, i.e. 16 MiB per worker, whatever the catalogue size).
    public var lossChunkRows: Int = 256
    /// Users per evaluation batch.
    public var evaluationBatchSize: Int = 1024
    /// Users whose validation and test cases are evaluated (each still ranked exactly against the whole
    /// catalogue): nil = auto (`resolvedEvaluationUsers`; a trained version records what it resolved to),
    /// 0 = every user, N = a fixed seeded sample of N users, the same for validation, test and every later
    /// evaluation of the version (`DatasetSplit.restrictingEvaluation`).
    public var evaluationUsers: Int? = nil
    /// `auto` evaluates every user while users × items stays within this budget (2³², about 4.3 G scores:
    /// ~0.55 TFLOP at d = 64, a few seconds per validation here; Beauty is 0.27 G), else a sample of
    /// max(`minimumEvaluationSample`, budget / items) users — continuous at the threshold.
    public static let evaluationScoreBudget = 1 << 32
    /// The smallest sample `auto` takes (NDCG@10 of ~0.03 then has a standard error of about 0.001).
    public static let minimumEvaluationSample = 10_000

    /// The evaluated-user count of a split with `eligibleUsers` users having a validation or test case on a
    /// `numItems` catalogue (0 = all): `evaluationUsers` when set, otherwise the `auto` rule above.
    public func resolvedEvaluationUsers(eligibleUsers: Int, numItems: Int) -> Int {
        if let evaluationUsers { return evaluationUsers }
        let perItem = Self.evaluationScoreBudget / max(numItems, 1)
        if eligibleUsers <= perItem { return 0 }
        return max(Self.minimumEvaluationSample, perItem)
    }
    /// Profile distillation (ECIR'26); nil = off.
    public var distillation: DistillationConfiguration? = nil

    public init(architecture: Architecture = .sasrec, items: ItemRepresentation = .id) {
        self.architecture = architecture
        self.items = items
        architecture.model.applyDefaults(to: &self)
    }

    // MARK: resolved architecture-dependent defaults

    public var resolvedHeads: Int { heads ?? architecture.model.defaultHeads }
    public var resolvedFeedForwardMultiplier: Int { feedForwardMultiplier ?? architecture.model.defaultFeedForwardMultiplier }
    public var resolvedGRUHiddenSize: Int { gruHiddenSize ?? 2 * hiddenSize }
    var resolvedActivation: Kernels.Activation {
        if let a = activation, let v = Kernels.Activation(rawValue: a) { return v }
        return architecture.model.defaultActivation
    }

    /// Checks ranges; throws `LearnError.invalidConfiguration`.
    public func validate() throws {
        func fail(_ m: String) throws -> Never { throw LearnError.invalidConfiguration(m) }
        // Upper bounds too: these sizes come from arguments and size allocations (products of them are
        // formed unchecked in the engine), so each is kept far below overflow and far above any real model.
        if !(1...16_384).contains(hiddenSize) { try fail("hiddenSize must be in 1...16384") }
        if !(1...256).contains(blocks) { try fail("blocks must be in 1...256") }
        if let g = gruHiddenSize, !(1...16_384).contains(g) { try fail("gruHiddenSize must be in 1...16384") }
        if resolvedHeads > hiddenSize { try fail("heads must be ≤ hiddenSize") }
        if resolvedFeedForwardMultiplier > 64 { try fail("feedForwardMultiplier must be ≤ 64") }
        if maxLength > 65_536 { try fail("maxLength must be ≤ 65536") }
        if batchSize > 1 << 20 { try fail("batchSize must be ≤ 1048576") }
        if !(1...1_048_576).contains(negatives) { try fail("negatives must be in 1...1048576") }
        if maxEpochs > 1_000_000 { try fail("maxEpochs must be ≤ 1000000") }
        if resolvedHeads < 1 || hiddenSize % resolvedHeads != 0 { try fail("hiddenSize must be divisible by heads") }
        if resolvedFeedForwardMultiplier < 1 { try fail("feedForwardMultiplier must be ≥ 1") }
        if let a = activation, Kernels.Activation(rawValue: a) == nil { try fail("activation must be relu or gelu") }
        if maxLength < 2 { try fail("maxLength must be ≥ 2") }
        if !(0..<1).contains(dropout) { try fail("dropout must be in [0, 1)") }
        if batchSize < 1 { try fail("batchSize must be ≥ 1") }
        if !(learningRate > 0 && learningRate.isFinite) { try fail("learningRate must be finite and > 0") }
        if let r = itemTableLearningRate, !(r > 0 && r.isFinite) { try fail("itemTableLearningRate must be finite and > 0") }
        if maxEpochs < 0 || patience < 1 { try fail("maxEpochs must be ≥ 0 and patience ≥ 1") }
        if case .stride(let n) = windows, n < 1 { try fail("windows stride must be ≥ 1") }
        if case .prefixes(let k) = windows {
            if k < 1 { try fail("windows prefixes:K needs K ≥ 1") }
            if architecture != .sasrec { try fail("windows prefixes trains next-item targets (SASRec); BERT4Rec takes last, all or stride:N") }
        }
        if let e = evaluateEvery, e < 1 { try fail("evaluateEvery must be ≥ 1") }
        if minimumSteps < 0 { try fail("minimumSteps must be ≥ 0") }
        if !(maskProbability > 0 && maskProbability < 1) { try fail("maskProbability must be in (0, 1)") }
        if let q = lastMaskProbability {
            if !(q >= 0 && q <= 1) { try fail("lastMaskProbability must be in [0, 1]") }
            if q > 0 && architecture != .bert4rec { try fail("lastMaskProbability is a BERT4Rec option (masked-item training)") }
        }
        if !(temporalValidQuantile > 0 && temporalValidQuantile < temporalTestQuantile && temporalTestQuantile < 1) {
            try fail("need 0 < temporalValidQuantile < temporalTestQuantile < 1")
        }
        if lossChunkRows < 1 || evaluationBatchSize < 1 || threads < 0 { try fail("chunk/batch sizes must be ≥ 1") }
        if let e = evaluationUsers, !(0...Int(Int32.max)).contains(e) { try fail("evaluationUsers must be in 0...2147483647 (0 = all users)") }
        if let c = gradientClipNorm, !(c > 0) { try fail("gradientClipNorm must be > 0") }
        if let d = distillation { try d.validate(blocks: blocks) }
        try architecture.model.validate(self)
    }

    // MARK: Codable with defaults for missing keys

    enum CodingKeys: String, CodingKey, CaseIterable {
        case architecture, items, hiddenSize, blocks, gruHiddenSize, heads, feedForwardMultiplier, activation, maxLength, dropout
        case layerNormEpsilon, batchSize, learningRate, weightDecay, beta1, beta2, adamEpsilon, gradientClipNorm
        case maxEpochs, patience, seed, maskProbability, split, temporalValidQuantile, temporalTestQuantile
        case maskSeen, threads, lossChunkRows, evaluationBatchSize, distillation
        case windows, evaluateEvery, minimumSteps, lastMaskProbability
        case loss, negatives
        case evaluationUsers
        case itemTableLearningRate
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ k: CodingKeys, _ d: T) throws -> T { try c.decodeIfPresent(T.self, forKey: k) ?? d }
        architecture = try c.decodeIfPresent(Architecture.self, forKey: .architecture) ?? .sasrec
        // Missing keys take the defaults of the decoded architecture.
        let d = ModelConfiguration(architecture: architecture)
        items = try get(.items, d.items)
        hiddenSize = try get(.hiddenSize, d.hiddenSize)
        blocks = try get(.blocks, d.blocks)
        gruHiddenSize = try c.decodeIfPresent(Int.self, forKey: .gruHiddenSize)
        heads = try c.decodeIfPresent(Int.self, forKey: .heads)
        feedForwardMultiplier = try c.decodeIfPresent(Int.self, forKey: .feedForwardMultiplier)
        activation = try c.decodeIfPresent(String.self, forKey: .activation)
        maxLength = try get(.maxLength, d.maxLength)
        dropout = try get(.dropout, d.dropout)
        layerNormEpsilon = try get(.layerNormEpsilon, d.layerNormEpsilon)
        batchSize = try get(.batchSize, d.batchSize)
        learningRate = try get(.learningRate, d.learningRate)
        weightDecay = try get(.weightDecay, d.weightDecay)
        beta1 = try get(.beta1, d.beta1)
        beta2 = try get(.beta2, d.beta2)
        adamEpsilon = try get(.adamEpsilon, d.adamEpsilon)
        gradientClipNorm = try c.decodeIfPresent(Float.self, forKey: .gradientClipNorm)
        maxEpochs = try get(.maxEpochs, d.maxEpochs)
        patience = try get(.patience, d.patience)
        seed = try get(.seed, d.seed)
        maskProbability = try get(.maskProbability, d.maskProbability)
        split = try get(.split, d.split)
        temporalValidQuantile = try get(.temporalValidQuantile, d.temporalValidQuantile)
        temporalTestQuantile = try get(.temporalTestQuantile, d.temporalTestQuantile)
        maskSeen = try get(.maskSeen, d.maskSeen)
        threads = try get(.threads, d.threads)
        lossChunkRows = try get(.lossChunkRows, d.lossChunkRows)
        evaluationBatchSize = try get(.evaluationBatchSize, d.evaluationBatchSize)
        distillation = try c.decodeIfPresent(DistillationConfiguration.self, forKey: .distillation)
        // Absent in configurations stored before whole-history training: they decode to what those
        // models were trained with (last window, per-epoch validation, no minimum).
        windows = try c.decodeIfPresent(TrainingWindows.self, forKey: .windows) ?? .last
        evaluateEvery = try c.decodeIfPresent(Int.self, forKey: .evaluateEvery)
        minimumSteps = try c.decodeIfPresent(Int.self, forKey: .minimumSteps) ?? 0
        // Absent = nil: resolved to 0 unless `windows` is auto (absent windows decode to last), so a
        // configuration stored before the option still trains Cloze only.
        lastMaskProbability = try c.decodeIfPresent(Float.self, forKey: .lastMaskProbability)
        // Absent = auto: configurations stored before the option trained with full CE, which is what
        // auto resolves to on the catalogues they were trained on (below the threshold) and what a
        // stored version's `loss` never affects (evaluation and serving do not use the loss).
        loss = try get(.loss, d.loss)
        negatives = try get(.negatives, d.negatives)
        // Absent = auto for a new configuration. A version stored before the option existed evaluated every
        // user; `Database.evaluate` reads it back that way.
        evaluationUsers = try c.decodeIfPresent(Int.self, forKey: .evaluationUsers)
        // Absent = automatic. A version trained before the option moved its table at `learningRate`; its
        // stored configuration is only read back for evaluation and serving, which no learning rate affects.
        itemTableLearningRate = try c.decodeIfPresent(Float.self, forKey: .itemTableLearningRate)
    }
}

/// User-profile knowledge distillation (ECIR'26, "Pre-trained LLMs Meet Sequential Recommenders:
/// Efficient User-Centric Knowledge Distillation"): the pooled hidden states of one block are pulled
/// towards a trainable linear map T of the user's (frozen) profile embedding.
public struct DistillationConfiguration: Codable, Equatable, Sendable {
    /// How the student representation pools a block's hidden states over a sequence.
    public enum Pooling: String, Codable, Sendable, CaseIterable {
        /// Mean over non-padding positions. NOTE: the paper's code averaged padding in; we do not.
        case mean
        /// Mean weighted by e^(γ·t) (t = position index, later positions weigh more).
        case exponential = "exp"
        /// The last position.
        case last
    }

    /// Distillation loss between student and T(profile).
    public enum Loss: String, Codable, Sendable, CaseIterable { case mse, rmse, cosine }

    /// Which of a user's training items the profile path is trained to rank first.
    public enum ProfileTargets: String, Codable, Sendable, CaseIterable {
        /// Only the most recent training item (the default: on Beauty, held-out users' next item
        /// Recall@10 0.038 against 0.026 with `all`, popularity 0.015).
        case last
        /// Every item of the user's training part, equally weighted (a multi-label softmax): better at
        /// recalling items like those already in the profile, worse at the next one.
        case all
    }

    /// α in `α·β·L_distil + (1 − α)·L_rec`.
    public var alpha: Float = 0.4
    /// Distillation is active for epochs 1...distillEpochs; afterwards the loss is L_rec alone.
    public var distillEpochs: Int = 10
    public var loss: Loss = .mse
    public var pooling: Pooling = .mean
    /// γ of the exponential pooling.
    public var gamma: Float = 0.1
    /// 1-based block whose output is pooled; nil = the last block.
    public var reconstructionLayer: Int? = nil
    /// β = L_rec / L_distil as a stop-gradient scale (on by default); off = β 1.
    public var adaptiveScale: Bool = true
    /// λ of the profile-path recommendation loss (NOT in the paper): full-softmax cross-entropy of
    /// LN_f(T(profile))·Eᵀ — the very scores a user with a profile and no events is served with — against
    /// the user's training items (`profileTargets`), added as λ·L_profile in EVERY epoch. Its gradient
    /// reaches T only (E and LN_f are held constant), so the sequence model is never pulled by it.
    /// 0 = off: T then learns only to agree with the student, as in the paper, which on Beauty left
    /// profile-only users below the most-popular baseline.
    public var profileRecommendationWeight: Float = 1
    /// What the profile path is trained to rank first (see `profileRecommendationWeight`).
    public var profileTargets: ProfileTargets = .last

    public init() {}

    func validate(blocks: Int) throws {
        if !(alpha >= 0 && alpha <= 1) { throw LearnError.invalidConfiguration("distillation.alpha must be in [0, 1]") }
        if distillEpochs < 0 { throw LearnError.invalidConfiguration("distillation.distillEpochs must be ≥ 0") }
        if !(profileRecommendationWeight >= 0 && profileRecommendationWeight.isFinite) {
            throw LearnError.invalidConfiguration("distillation.profileRecommendationWeight must be ≥ 0")
        }
        if let k = reconstructionLayer, !(1...blocks).contains(k) {
            throw LearnError.invalidConfiguration("distillation.reconstructionLayer must be in 1...\(blocks)")
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case alpha, distillEpochs, loss, pooling, gamma, reconstructionLayer, adaptiveScale
        case profileRecommendationWeight, profileTargets
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DistillationConfiguration()
        alpha = try c.decodeIfPresent(Float.self, forKey: .alpha) ?? d.alpha
        distillEpochs = try c.decodeIfPresent(Int.self, forKey: .distillEpochs) ?? d.distillEpochs
        loss = try c.decodeIfPresent(Loss.self, forKey: .loss) ?? d.loss
        pooling = try c.decodeIfPresent(Pooling.self, forKey: .pooling) ?? d.pooling
        gamma = try c.decodeIfPresent(Float.self, forKey: .gamma) ?? d.gamma
        reconstructionLayer = try c.decodeIfPresent(Int.self, forKey: .reconstructionLayer)
        adaptiveScale = try c.decodeIfPresent(Bool.self, forKey: .adaptiveScale) ?? d.adaptiveScale
        // Absent = a configuration stored before this option existed: those models were trained without the
        // loss, so they read back as 0 rather than the default for new configurations.
        profileRecommendationWeight = try c.decodeIfPresent(Float.self, forKey: .profileRecommendationWeight) ?? 0
        profileTargets = try c.decodeIfPresent(ProfileTargets.self, forKey: .profileTargets) ?? d.profileTargets
    }
}

/// Errors of the Learn module (data and configuration problems; programmer errors trap instead).
public enum LearnError: Error, CustomStringConvertible, Equatable {
    case invalidConfiguration(String)
    case invalidData(String)
    case missingTextTable
    case shapeMismatch(String)
    case missingParameter(String)
    case io(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let m): return "invalid configuration: \(m)"
        case .invalidData(let m): return "invalid data: \(m)"
        case .missingTextTable: return "this item representation needs a text table, none was given"
        case .shapeMismatch(let m): return "shape mismatch: \(m)"
        case .missingParameter(let m): return "missing parameter: \(m)"
        case .io(let m): return "I/O error: \(m)"
        }
    }
}
