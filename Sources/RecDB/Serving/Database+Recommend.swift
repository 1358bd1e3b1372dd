import Foundation
import Learn

/// How a recommendation list was produced.
public enum RecommendationSource: String, Codable, Sendable {
    /// The model's forward pass over the user's (or session's) recent events.
    case sequence
    /// No events: the user's profile embedding through the distillation map T (ECIR'26).
    case profile
    /// No events and no usable profile: the most popular items of the training snapshot.
    case popularity
}

public struct RecommendOptions: Sendable {
    /// Model name; nil uses the only model in the database.
    public var model: String?
    /// A specific version; nil uses the active one.
    public var version: UInt32?
    /// Leave out items the user has interacted with (on by default for serving).
    public var excludeSeen = true
    /// Explicit exclusions, allow-list and attribute filters; deleted/unavailable items are never served.
    public var filter = SearchFilter()
    /// Look up item titles for the results.
    public var titles = true

    public init(model: String? = nil, version: UInt32? = nil, excludeSeen: Bool = true, filter: SearchFilter = SearchFilter(), titles: Bool = true) {
        self.model = model
        self.version = version
        self.excludeSeen = excludeSeen
        self.filter = filter
        self.titles = titles
    }
}

public struct Recommendations: Codable, Sendable {
    public var user: String?
    public var model: String
    public var version: UInt32
    public var source: RecommendationSource
    public var items: [ScoredItem]
}

extension Database {
    /// Top-`k` items for `user` from their **current** last `maxLength` events (events written after
    /// training count: real-time personalisation without retraining). Users without events get
    /// profile-based (distilled models) or popularity results, labelled by `source`.
    public func recommend(user: String, k: Int, options: RecommendOptions = RecommendOptions()) throws -> Recommendations {
        try read { tx in
            guard let userID = try tx.userID(for: user) else { throw RecDBError.unknownUser(user) }
            return try recommend(tx, user: userID, externalUser: user, sequence: nil, k: k, options: options)
        }
    }

    /// Top-`k` items for an anonymous session (external item ids, oldest first).
    public func recommend(sequence: [String], k: Int, options: RecommendOptions = RecommendOptions()) throws -> Recommendations {
        try read { tx in
            let ids = try sequence.map { external -> UInt32 in
                guard let id = try tx.itemID(for: external) else { throw RecDBError.unknownItem(external) }
                return id
            }
            return try recommend(tx, user: nil, externalUser: nil, sequence: ids, k: k, options: options)
        }
    }

    /// Recommendations for many users, spread over all cores: each worker answers its share in batches of
    /// `recommendBatchSize` users through `recommend(_:)` (one snapshot and one forward pass a batch).
    public func recommend(users: [String], k: Int, options: RecommendOptions = RecommendOptions()) throws -> [Recommendations] {
        let results = ResultSlots<Recommendations>(count: users.count)
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, (users.count + Self.recommendBatchSize - 1) / Self.recommendBatchSize))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            // Worker w takes batches w, w + workers, …: contiguous users share a batch.
            var local: [(Int, Result<Recommendations, Error>)] = []
            var start = worker * Self.recommendBatchSize
            while start < users.count {
                let range = start..<min(users.count, start + Self.recommendBatchSize)
                let answers = self.recommend(range.map { RecommendationRequest(user: users[$0], k: k, options: options) })
                for (i, answer) in zip(range, answers) { local.append((i, answer)) }
                start += workers * Self.recommendBatchSize
            }
            results.store(local)
        }
        return try results.values.map { try $0!.get() }
    }

    /// Users a worker of `recommend(users:)` answers together: large enough that the forward pass runs over
    /// many rows at once, small enough that the two cores share the work evenly on a few hundred users.
    static let recommendBatchSize = 32

    /// Answers many requests from **one** snapshot on the calling thread, each as `recommend(user:k:options:)`
    /// would in that snapshot: the users with events go through the model in one forward pass per model
    /// version (far cheaper per user than one pass each: the products run over many rows), and their item
    /// space is searched for all of them at once (a flat index scans its rows once for each group of users).
    /// One request's error (unknown user, bad `k`, unknown model) is its own result and does not fail the others.
    /// No work is handed to other threads: a server's event loop answers the requests it has read together this way.
    public func recommend(_ requests: [RecommendationRequest]) -> [Result<Recommendations, Error>] {
        do {
            return try read { tx in recommend(tx, requests) }
        } catch {
            return requests.map { _ in .failure(error) }  // the snapshot itself could not be read
        }
    }

    /// `recommend(_:)` in the snapshot `tx`.
    func recommend(_ tx: ReadTransaction, _ requests: [RecommendationRequest]) -> [Result<Recommendations, Error>] {
        var results = [Result<Recommendations, Error>?](repeating: nil, count: requests.count)
        // The requests with events, by model: one forward pass each.
        var byModel: [ObjectIdentifier: (model: LoadedModel, members: [(index: Int, plan: RecommendationPlan)])] = [:]
        // The serving version of each (model, version) the requests name, looked up once: same snapshot, same answer.
        var choices: [ChoiceKey: Result<ServingChoice, Error>] = [:]
        for (index, request) in requests.enumerated() {
            do {
                guard let userID = try tx.userID(for: request.user) else { throw RecDBError.unknownUser(request.user) }
                let key = ChoiceKey(model: request.options.model, version: request.options.version)
                let choice = choices[key] ?? Result { try servingChoice(tx, options: request.options) }
                choices[key] = choice
                let plan = try recommendationPlan(tx, user: userID, sequence: nil, k: request.k, options: request.options, choice: choice)
                if plan.history.isEmpty {
                    results[index] = Result { try finishRecommendation(tx, plan, user: userID, externalUser: request.user, sequenceVector: nil,
                                                                       k: request.k, options: request.options) }
                } else {
                    byModel[ObjectIdentifier(plan.model), default: (plan.model, [])].members.append((index, plan))
                }
            } catch {
                results[index] = .failure(error)
            }
        }
        for (model, members) in byModel.values {
            let recommender = model.recommender
            let d = recommender.hiddenSize
            var vectors = [Float](repeating: 0, count: members.count * d)
            vectors.withUnsafeMutableBufferPointer {
                recommender.userRepresentations(members.map { $0.plan.history.map { Int32(bitPattern: $0) } }, into: $0, onCallingThreadOnly: true)
            }
            // One version, one item space: searched together (a flat index scans its rows once a group).
            let found = search(tx, space: members[0].plan.space, queries: (0..<members.count).map { Array(vectors[($0 * d)..<(($0 + 1) * d)]) },
                               ks: members.map { requests[$0.index].k }, filters: members.map { requests[$0.index].options.filter },
                               extraExcluded: members.map(\.plan.excluded), titles: members.map { requests[$0.index].options.titles })
            for (member, items) in zip(members, found) {
                let choice = member.plan.choice
                results[member.index] = items.map {
                    Recommendations(user: requests[member.index].user, model: choice.info.model, version: choice.info.version, source: .sequence, items: $0)
                }
            }
        }
        return results.map { $0! }
    }

    private struct ChoiceKey: Hashable {
        let model: String?
        let version: UInt32?
    }

    /// What a recommendation is computed from, read from the snapshot: the serving version, its loaded model
    /// and item space, the window of events the model reads, and the items to leave out.
    struct RecommendationPlan {
        let choice: ServingChoice
        let history: [UInt32]
        let excluded: [UInt32]  // may repeat ids: the filter deduplicates
        var info: ModelVersionInfo { choice.info }
        var model: LoadedModel { choice.model }
        var space: EmbeddingSpace { choice.space }
    }

    /// The version that serves `options` (its model and version, or the defaults), its loaded model and item space.
    /// A class: a batch's plans share one (copying the version's description into each cost a few dozen
    /// reference-count updates a request).
    final class ServingChoice {
        let info: ModelVersionInfo
        let model: LoadedModel
        let space: EmbeddingSpace

        init(info: ModelVersionInfo, model: LoadedModel, space: EmbeddingSpace) {
            self.info = info
            self.model = model
            self.space = space
        }
    }

    func servingChoice(_ tx: ReadTransaction, options: RecommendOptions) throws -> ServingChoice {
        let name = try options.model ?? defaultModelName(tx)
        let info = try servingVersion(tx, model: name, version: options.version)
        let model = try loadedModel(tx, info)
        let space = try tx.requireSpace(Database.itemSpaceName(model: info.model, version: info.version))
        return ServingChoice(info: info, model: model, space: space)
    }

    /// - Parameter choice: `servingChoice(tx, options:)`'s outcome when the caller already has it (a batch asks
    ///   once per model and version it names); its error is thrown after `k`'s, as without it.
    func recommendationPlan(_ tx: ReadTransaction, user: UInt32?, sequence: [UInt32]?, k: Int, options: RecommendOptions,
                            choice: Result<ServingChoice, Error>? = nil) throws -> RecommendationPlan {
        guard k > 0 else { throw RecDBError.invalidArgument("k must be positive") }
        let chosen = try choice?.get() ?? servingChoice(tx, options: options)
        let maxLength = chosen.info.configuration.maxLength
        let history: [UInt32]
        var excluded: [UInt32] = []
        if let sequence {
            history = Array(sequence.suffix(maxLength))
            if options.excludeSeen { excluded = sequence }
        } else if options.excludeSeen {
            // One pass over the user's blocks, oldest first, gives both: every item seen, and the last
            // `maxLength` of them (what `recentItems` reads backwards).
            try tx.forEachStoredEvent(user: user!) { e in excluded.append(e.item); return true }
            history = Array(excluded.suffix(maxLength))
        } else {
            history = try tx.recentItems(user: user!, last: maxLength)
        }
        return RecommendationPlan(choice: chosen, history: history, excluded: excluded)
    }

    func recommend(_ tx: ReadTransaction, user: UInt32?, externalUser: String?, sequence: [UInt32]?, k: Int,
                   options: RecommendOptions) throws -> Recommendations {
        let plan = try recommendationPlan(tx, user: user, sequence: sequence, k: k, options: options)
        let sequenceVector = plan.history.isEmpty ? nil : plan.model.recommender.userRepresentation(plan.history.map { Int32(bitPattern: $0) })
        return try finishRecommendation(tx, plan, user: user, externalUser: externalUser, sequenceVector: sequenceVector, k: k, options: options)
    }

    /// The answer from a plan and, when the user has events, the model's vector for them (`sequenceVector`);
    /// without events, the profile or popularity fallback.
    func finishRecommendation(_ tx: ReadTransaction, _ plan: RecommendationPlan, user: UInt32?, externalUser: String?,
                              sequenceVector: [Float]?, k: Int, options: RecommendOptions) throws -> Recommendations {
        let info = plan.info, model = plan.model
        var source = RecommendationSource.sequence
        var userVector = sequenceVector
        if userVector == nil {
            if let user, let profileSpace = info.profileSpace, model.recommender.profileDimension != nil,
               let profile = try tx.vector(space: profileSpace, entity: user) {
                // The profile space may have been recreated with another dimension since training: an error, not a trap.
                do {
                    let input = try info.profileReduction.map { try $0.transform(profile) } ?? profile
                    userVector = try model.recommender.userRepresentation(profile: input)
                } catch {
                    throw RecDBError.training("profile of user in space '\(profileSpace)' (\(profile.count) values) does not fit \(info.model)@\(info.version): \(error)")
                }
                source = .profile
            } else {
                source = .popularity
            }
        }

        let items: [ScoredItem]
        if let userVector {
            items = try search(tx, space: plan.space, query: userVector, k: k, filter: options.filter, extraExcluded: plan.excluded, titles: options.titles)
        } else {
            // Popularity within the same filters.
            let idFilter = try makeFilter(tx, kind: .item, filter: options.filter, extraExcluded: plan.excluded)
            var hits: [(UInt32, Float)] = []
            for id in model.popularityOrder where idFilter?.permits(id) ?? true {
                hits.append((id, model.popularity[Int(id)]))
                if hits.count == k { break }
            }
            items = try describe(tx, kind: .item, hits, titles: options.titles)
        }
        return Recommendations(user: externalUser, model: info.model, version: info.version, source: source, items: items)
    }
}

/// One request of a batch given to `Database.recommend(_:)`.
public struct RecommendationRequest: Sendable {
    public var user: String
    public var k: Int
    public var options: RecommendOptions

    public init(user: String, k: Int, options: RecommendOptions = RecommendOptions()) {
        self.user = user
        self.k = k
        self.options = options
    }
}

/// Results gathered from worker threads by index. An `NSLock` (a pthread mutex, which ThreadSanitizer
/// understands) rather than `Mutex`, whose uninstrumented lock TSan cannot see.
// Unchecked: `slots` is read and written only under `lock`.
private final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func store(_ results: [(Int, Result<T, Error>)]) { lock.withLock { for (index, result) in results { slots[index] = result } } }
    var values: [Result<T, Error>?] { lock.withLock { slots } }
}
