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

    /// Recommendations for many users, spread over all cores (each worker reads its own snapshot).
    public func recommend(users: [String], k: Int, options: RecommendOptions = RecommendOptions()) throws -> [Recommendations] {
        let results = ResultSlots<Recommendations>(count: users.count)
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, users.count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var i = worker
            var local: [(Int, Result<Recommendations, Error>)] = []
            while i < users.count {
                local.append((i, Result { try self.recommend(user: users[i], k: k, options: options) }))
                i += workers
            }
            results.store(local)
        }
        return try results.values.map { try $0!.get() }
    }

    func recommend(_ tx: ReadTransaction, user: UInt32?, externalUser: String?, sequence: [UInt32]?, k: Int,
                   options: RecommendOptions) throws -> Recommendations {
        guard k > 0 else { throw RecDBError.invalidArgument("k must be positive") }
        let name = try options.model ?? defaultModelName(tx)
        let info = try servingVersion(tx, model: name, version: options.version)
        let model = try loadedModel(tx, info)
        let maxLength = info.configuration.maxLength
        let history: [UInt32]
        var excluded: [UInt32] = []  // may repeat ids: the filter deduplicates
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
        let spaceName = Database.itemSpaceName(model: info.model, version: info.version)
        let space = try tx.requireSpace(spaceName)

        var source = RecommendationSource.sequence
        var userVector: [Float]?
        if !history.isEmpty {
            userVector = model.recommender.userRepresentation(history.map { Int32(bitPattern: $0) })
        } else if let user, let profileSpace = info.profileSpace, model.recommender.profileDimension != nil,
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

        let items: [ScoredItem]
        if let userVector {
            items = try search(tx, space: space, query: userVector, k: k, filter: options.filter, extraExcluded: excluded, titles: options.titles)
        } else {
            // Popularity within the same filters.
            let idFilter = try makeFilter(tx, kind: .item, filter: options.filter, extraExcluded: excluded)
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
