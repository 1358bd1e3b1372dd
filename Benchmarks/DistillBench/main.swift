// distill-bench: the ECIR'26 profile-distillation experiment, run entirely through RecDB.
//
//  1. Amazon Beauty + the stand-in profiles (../shared/emb/beauty_profiles_titlemean.npy: the mean MiniLM
//     vector of each user's training-part item titles) in one database; SASRec `id` trained with and
//     without distillation for each seed; test Recall@10 / NDCG@10 mean ± std and seconds per epoch.
//  2. Held-out users: a second database without the events of N users drawn with a seeded generator
//     (`--heldout-seed`; their profiles kept); a distilled model (seed = the first of `--seeds`)
//     recommends to them from the profile alone (source `profile`); Recall@10 of their last item and of
//     all their items against the most-popular-items baseline on the same users, each with its standard
//     error, and the paired difference (per user, profile hit − popularity hit) with its standard error.
//
//   swift run -c release distill-bench [--shared ../shared] [--seeds 0,1,2] [--heldout 4000] [--heldout-seed 0]
//       [--max-epochs 200] [--heldout-only] [--pooling mean|exp|last] [--profile-weight 1] [--profile-targets last|all]
import Foundation
import RecDB

// This executable owns its process: opt into the OpenBLAS set-up the library never does itself (kernels for this
// CPU, one OpenBLAS thread; see `Database.configureProcess()`).
Database.configureProcess()

var shared = "../shared"
var seeds: [UInt64] = [0, 1, 2]
var heldOutCount = 4000
var heldOutSeed: UInt64 = 0
var maxEpochs = 200
var work = ".cache/bench-distill"
var heldOutOnly = false
var pooling = DistillationConfiguration.Pooling.mean
var profileWeight: Float? = nil
var profileTargets: DistillationConfiguration.ProfileTargets? = nil
var iterator = CommandLine.arguments.dropFirst().makeIterator()
while let a = iterator.next() {
    switch a {
    case "--shared": shared = iterator.next()!
    case "--seeds": seeds = iterator.next()!.split(separator: ",").map { UInt64($0)! }
    case "--heldout": heldOutCount = Int(iterator.next()!)!
    case "--heldout-seed": heldOutSeed = UInt64(iterator.next()!)!
    case "--profile-weight": profileWeight = Float(iterator.next()!)!
    case "--profile-targets": profileTargets = DistillationConfiguration.ProfileTargets(rawValue: iterator.next()!)!
    case "--max-epochs": maxEpochs = Int(iterator.next()!)!
    case "--work": work = iterator.next()!
    case "--heldout-only": heldOutOnly = true
    case "--pooling": pooling = DistillationConfiguration.Pooling(rawValue: iterator.next()!)!
    default: fatalError("unknown argument \(a)")
    }
}
func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
func meanStd(_ xs: [Double]) -> (Double, Double) {
    let m = xs.reduce(0, +) / Double(xs.count)
    let v = xs.count > 1 ? xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(xs.count - 1) : 0
    return (m, v.squareRoot())
}

let beauty = "\(shared)/data/amazon-beauty/Beauty.txt"
let profiles = "\(shared)/emb/beauty_profiles_titlemean.npy"
guard FileManager.default.fileExists(atPath: beauty), FileManager.default.fileExists(atPath: profiles) else {
    log("distill-bench needs \(beauty) and \(profiles)"); exit(2)
}
try? FileManager.default.removeItem(atPath: work)
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)

@MainActor  // reads the command-line settings, which are top-level (main-actor) variables
func makeDatabase(_ name: String, sequences: String, extraUsers: [String] = []) throws -> Database {
    let db = try Database(path: "\(work)/\(name)")
    try db.importInteractions(from: sequences, options: InteractionImportOptions(format: .sequences))
    // Users with a profile and no events exist before their profiles arrive.
    try db.write { tx in for user in extraUsers { try tx.upsertUser(externalID: user) } }
    var profileOptions = EmbeddingImportOptions(space: "profile", kind: .user)
    profileOptions.createMissingUsers = true
    try db.importEmbeddings(from: profiles, options: profileOptions)
    return db
}

@MainActor  // reads the command-line settings
func configuration(seed: UInt64, distill: Bool) -> ModelConfiguration {
    var c = ModelConfiguration()
    c.seed = seed
    c.maxEpochs = maxEpochs
    if distill {  // α 0.4, 10 epochs, MSE, last block; mean pooling unless --pooling
        var d = DistillationConfiguration()
        d.pooling = pooling
        if let profileWeight { d.profileRecommendationWeight = profileWeight }
        if let profileTargets { d.profileTargets = profileTargets }
        c.distillation = d
    }
    return c
}

@MainActor
func train(_ db: Database, _ name: String, seed: UInt64, distill: Bool) throws -> TrainingOutcome {
    var request = TrainingRequest(model: name, configuration: configuration(seed: seed, distill: distill))
    if distill { request.profileSpace = "profile" }
    request.progress = { p in
        let profile = p.profileRecommendationLoss.map { String(format: ", profile loss %.3f", $0) } ?? ""
        log("  \(name) epoch \(p.epoch): valid ndcg@10 \(String(format: "%.4f", p.valid.ndcg10)) (\(String(format: "%.1f", p.trainSeconds)) s\(profile))")
    }
    let outcome = try db.train(request)
    log(String(format: "%@: test recall@10 %.4f ndcg@10 %.4f, %d epochs, %.2f s/epoch", name, outcome.test.recall10, outcome.test.ndcg10, outcome.epochs, outcome.secondsPerEpoch))
    return outcome
}

// 1. With and without distillation, per seed.
log("importing Beauty and the stand-in profiles…")
var plain: [TrainingOutcome] = [], distilled: [TrainingOutcome] = []
if !heldOutOnly {
  let full = try makeDatabase("full.recdb", sequences: beauty)
  for seed in seeds {
    plain.append(try train(full, "plain\(seed)", seed: seed, distill: false))
    distilled.append(try train(full, "kd\(seed)", seed: seed, distill: true))
  }
}

// 2. Users held out of training entirely.
var lines = try String(contentsOfFile: beauty, encoding: .utf8).split(separator: "\n").map(String.init)
/// SplitMix64: a seeded generator, so that the same users are held out in every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
var generator = SplitMix64(state: heldOutSeed)
var heldOut: [(user: String, items: [String])] = []
var kept: [String] = []
let chosen = Set((0..<lines.count).shuffled(using: &generator).prefix(heldOutCount))
for (i, line) in lines.enumerated() {
    let parts = line.split(separator: " ").map(String.init)
    if chosen.contains(i) { heldOut.append((parts[0], Array(parts.dropFirst()))) } else { kept.append(line) }
}
lines = []
let keptPath = "\(work)/kept.txt"
try (kept.joined(separator: "\n") + "\n").write(toFile: keptPath, atomically: true, encoding: .utf8)
log("training without \(heldOut.count) held-out users…")
let partial = try makeDatabase("heldout.recdb", sequences: keptPath, extraUsers: heldOut.map(\.user))
_ = try train(partial, "kd", seed: seeds[0], distill: true)
// Popularity in the training data (what a system without profiles can do for a new user).
let popular = try partial.read { tx -> [String] in
    var counts: [UInt32: Int] = [:]
    try tx.forEachUserEvent { _, item, _ in counts[item, default: 0] += 1; return true }
    return try counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(10).map { try tx.item(id: $0.key)!.externalID }
}
// Per held-out user served from the profile: hit of the last item, recall of all items (profile, popularity).
var lastHits: [(profile: Double, popularity: Double)] = [], allRecall: [(profile: Double, popularity: Double)] = []
let popularSet = Set(popular)
for (user, items) in heldOut {
    let recommendations = try partial.recommend(user: user, k: 10, options: RecommendOptions(excludeSeen: false))
    guard recommendations.source == .profile else { continue }
    let top = Set(recommendations.items.map(\.item))
    let last = items.last!
    lastHits.append((top.contains(last) ? 1 : 0, popularSet.contains(last) ? 1 : 0))
    let all = Set(items)
    allRecall.append((Double(all.intersection(top).count) / Double(min(10, all.count)),
                      Double(all.intersection(popularSet).count) / Double(min(10, all.count))))
}
/// Mean and standard error of the mean.
func meanSE(_ xs: [Double]) -> (mean: Double, se: Double) {
    let (m, s) = meanStd(xs)
    return (m, xs.count > 1 ? s / Double(xs.count).squareRoot() : 0)
}
struct Comparison {
    let profile: (mean: Double, se: Double), popularity: (mean: Double, se: Double), difference: (mean: Double, se: Double)
    init(_ pairs: [(profile: Double, popularity: Double)]) {
        profile = meanSE(pairs.map(\.profile)); popularity = meanSE(pairs.map(\.popularity))
        difference = meanSE(pairs.map { $0.profile - $0.popularity })
    }
    var text: String {
        String(format: "profile %.4f ± %.4f vs popularity %.4f ± %.4f (paired difference %+.4f ± %.4f, z %.1f)",
               profile.mean, profile.se, popularity.mean, popularity.se, difference.mean, difference.se,
               difference.se > 0 ? difference.mean / difference.se : 0)
    }
    var json: [String: Double] {
        ["profile": profile.mean, "profile_se": profile.se, "popularity": popularity.mean, "popularity_se": popularity.se,
         "difference": difference.mean, "difference_se": difference.se]
    }
}
let lastComparison = Comparison(lastHits), allComparison = Comparison(allRecall)
let discordant = (profileOnly: lastHits.filter { $0.profile > $0.popularity }.count,
                  popularityOnly: lastHits.filter { $0.profile < $0.popularity }.count)
let heldOutSummary = String(format: "Held-out users (%d of %d drawn with seed %d, no events in training; profile only; ± standard error):\n  Recall@10 of the last item: %@; hit by profile only %d, popularity only %d\n  recall of all their items:  %@",
                            lastHits.count, heldOut.count, Int(heldOutSeed), lastComparison.text, discordant.profileOnly,
                            discordant.popularityOnly, allComparison.text)
let heldOutJSON: [String: Any] = ["users": lastHits.count, "seed": Int(heldOutSeed), "last_item": lastComparison.json,
                                  "all_items": allComparison.json, "hit_by_profile_only": discordant.profileOnly,
                                  "hit_by_popularity_only": discordant.popularityOnly]

if heldOutOnly {
    print(heldOutSummary)
    print(String(decoding: try JSONSerialization.data(withJSONObject: ["bench": "distill-heldout", "heldout": heldOutJSON], options: [.sortedKeys]), as: UTF8.self))
    exit(0)
}
let pr = meanStd(plain.map { $0.test.recall10 }), pn = meanStd(plain.map { $0.test.ndcg10 })
let kr = meanStd(distilled.map { $0.test.recall10 }), kn = meanStd(distilled.map { $0.test.ndcg10 })
let ps = meanStd(plain.map(\.secondsPerEpoch)), ks = meanStd(distilled.map(\.secondsPerEpoch))
print(String(format: "SASRec id, Beauty, seeds %@ (test, best validation epoch):", seeds.map(String.init).joined(separator: ",")))
print(String(format: "  without distillation: Recall@10 %.4f ± %.4f  NDCG@10 %.4f ± %.4f  (%.2f s/epoch)", pr.0, pr.1, pn.0, pn.1, ps.0))
print(String(format: "  with distillation:    Recall@10 %.4f ± %.4f  NDCG@10 %.4f ± %.4f  (%.2f s/epoch, %+.1f%% time per epoch)", kr.0, kr.1, kn.0, kn.1, ks.0, (ks.0 / ps.0 - 1) * 100))
print(heldOutSummary)
let json: [String: Any] = [
    "bench": "distill", "seeds": seeds.map { Int($0) },
    "plain": ["recall10_mean": pr.0, "recall10_std": pr.1, "ndcg10_mean": pn.0, "ndcg10_std": pn.1, "s_per_epoch": ps.0,
              "epochs": plain.map(\.epochs)],
    "distill": ["recall10_mean": kr.0, "recall10_std": kr.1, "ndcg10_mean": kn.0, "ndcg10_std": kn.1, "s_per_epoch": ks.0,
                "epochs": distilled.map(\.epochs)],
    "overhead_per_epoch": ks.0 / ps.0 - 1,
    "heldout": heldOutJSON,
]
print(String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self))
