// distill-bench: the ECIR'26 profile-distillation experiment, run entirely through RecDB.
//
//  1. Amazon Beauty + the stand-in profiles (../shared/emb/beauty_profiles_titlemean.npy: the mean MiniLM
//     vector of each user's training-part item titles) in one database; SASRec `id` trained with and
//     without distillation for each seed; test Recall@10 / NDCG@10 mean ± std and seconds per epoch.
//  2. Held-out users: a second database without the events of N random users (their profiles kept);
//     a distilled model recommends to them from the profile alone (source `profile`); Recall@10 of their
//     last item against the most-popular-items baseline.
//
//   swift run -c release distill-bench [--shared ../shared] [--seeds 0,1,2] [--heldout 2000] [--max-epochs 200]
import Foundation
import RecDB

var shared = "../shared"
var seeds: [UInt64] = [0, 1, 2]
var heldOutCount = 2000
var maxEpochs = 200
var work = ".cache/bench-distill"
var heldOutOnly = false
var pooling = DistillationConfiguration.Pooling.mean
var iterator = CommandLine.arguments.dropFirst().makeIterator()
while let a = iterator.next() {
    switch a {
    case "--shared": shared = iterator.next()!
    case "--seeds": seeds = iterator.next()!.split(separator: ",").map { UInt64($0)! }
    case "--heldout": heldOutCount = Int(iterator.next()!)!
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

func configuration(seed: UInt64, distill: Bool) -> ModelConfiguration {
    var c = ModelConfiguration()
    c.seed = seed
    c.maxEpochs = maxEpochs
    if distill {  // α 0.4, 10 epochs, MSE, last block; mean pooling unless --pooling
        var d = DistillationConfiguration()
        d.pooling = pooling
        c.distillation = d
    }
    return c
}

func train(_ db: Database, _ name: String, seed: UInt64, distill: Bool) throws -> TrainingOutcome {
    var request = TrainingRequest(model: name, configuration: configuration(seed: seed, distill: distill))
    if distill { request.profileSpace = "profile" }
    request.progress = { p in log("  \(name) epoch \(p.epoch): valid ndcg@10 \(String(format: "%.4f", p.valid.ndcg10)) (\(String(format: "%.1f", p.trainSeconds)) s)") }
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
var generator = SystemRandomNumberGenerator()
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
var profileHits = 0, popularityHits = 0, profileAllRecall = 0.0, popularityAllRecall = 0.0, served = 0
let popularSet = Set(popular)
for (user, items) in heldOut {
    let recommendations = try partial.recommend(user: user, k: 10, options: RecommendOptions(excludeSeen: false))
    guard recommendations.source == .profile else { continue }
    served += 1
    let top = Set(recommendations.items.map(\.item))
    let last = items.last!
    if top.contains(last) { profileHits += 1 }
    if popularSet.contains(last) { popularityHits += 1 }
    let all = Set(items)
    profileAllRecall += Double(all.intersection(top).count) / Double(min(10, all.count))
    popularityAllRecall += Double(all.intersection(popularSet).count) / Double(min(10, all.count))
}

if heldOutOnly {
    print(String(format: "Held-out users (%d, no events in training; profile only): Recall@10 of the last item: profile %.4f vs popularity %.4f; recall of all their items: profile %.4f vs popularity %.4f",
                 served, Double(profileHits) / Double(max(served, 1)), Double(popularityHits) / Double(max(served, 1)),
                 profileAllRecall / Double(max(served, 1)), popularityAllRecall / Double(max(served, 1))))
    exit(0)
}
let pr = meanStd(plain.map { $0.test.recall10 }), pn = meanStd(plain.map { $0.test.ndcg10 })
let kr = meanStd(distilled.map { $0.test.recall10 }), kn = meanStd(distilled.map { $0.test.ndcg10 })
let ps = meanStd(plain.map(\.secondsPerEpoch)), ks = meanStd(distilled.map(\.secondsPerEpoch))
print(String(format: "SASRec id, Beauty, seeds %@ (test, best validation epoch):", seeds.map(String.init).joined(separator: ",")))
print(String(format: "  without distillation: Recall@10 %.4f ± %.4f  NDCG@10 %.4f ± %.4f  (%.2f s/epoch)", pr.0, pr.1, pn.0, pn.1, ps.0))
print(String(format: "  with distillation:    Recall@10 %.4f ± %.4f  NDCG@10 %.4f ± %.4f  (%.2f s/epoch, %+.1f%% time per epoch)", kr.0, kr.1, kn.0, kn.1, ks.0, (ks.0 / ps.0 - 1) * 100))
print(String(format: "Held-out users (%d, no events in training; profile only): Recall@10 of the last item: profile %.4f vs popularity %.4f; recall of all their items: profile %.4f vs popularity %.4f",
             served, Double(profileHits) / Double(max(served, 1)), Double(popularityHits) / Double(max(served, 1)),
             profileAllRecall / Double(max(served, 1)), popularityAllRecall / Double(max(served, 1))))
let json: [String: Any] = [
    "bench": "distill", "seeds": seeds.map { Int($0) },
    "plain": ["recall10_mean": pr.0, "recall10_std": pr.1, "ndcg10_mean": pn.0, "ndcg10_std": pn.1, "s_per_epoch": ps.0,
              "epochs": plain.map(\.epochs)],
    "distill": ["recall10_mean": kr.0, "recall10_std": kr.1, "ndcg10_mean": kn.0, "ndcg10_std": kn.1, "s_per_epoch": ks.0,
                "epochs": distilled.map(\.epochs)],
    "overhead_per_epoch": ks.0 / ps.0 - 1,
    "heldout": ["users": served, "profile_recall10_last": Double(profileHits) / Double(max(served, 1)),
                "popularity_recall10_last": Double(popularityHits) / Double(max(served, 1)),
                "profile_recall_all": profileAllRecall / Double(max(served, 1)),
                "popularity_recall_all": popularityAllRecall / Double(max(served, 1))],
]
print(String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self))
