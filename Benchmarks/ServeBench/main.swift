// serve-bench: recommendation latency through RecDB (history read + SASRec forward + filtered index
// search + titles) on the Amazon Beauty catalogue, against the reference PyTorch model's forward +
// full scoring + top-10 on CPU, measured in the same run.
//
//   swift run -c release serve-bench [--shared ../shared] [--queries 20000] [--python $HOME/refvenv/bin/python]
//   swift run -c release serve-bench --gru4rec   # GRU4Rec vs SASRec recommend latency, interleaved in one run
import Foundation
import Index
import RecDB

// This executable owns its process: opt into the OpenBLAS set-up the library never does itself (kernels for this
// CPU, one OpenBLAS thread; see `Database.configureProcess()`).
Database.configureProcess()

var shared = "../shared"
var queries = 20_000
var python = ProcessInfo.processInfo.environment["HOME"].map { "\($0)/refvenv/bin/python" } ?? "python3"
var workDir = ".cache/bench-serve"
var throughputOnly = false
var latencyOnly = false
var nearestOnly = false
var compareGRU4Rec = false
var throughputSeconds = 0.0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let a = arguments.next() {
    switch a {
    case "--shared": shared = arguments.next()!
    case "--queries": queries = Int(arguments.next()!)!
    case "--python": python = arguments.next()!
    case "--work": workDir = arguments.next()!
    case "--latency-only": latencyOnly = true  // for profiling the single-user path
    case "--nearest-only": nearestOnly = true  // for profiling the similarity-search path
    case "--throughput-only": throughputOnly = true  // the in-process peer of scripts/bench-http.sh
    case "--seconds": throughputSeconds = Double(arguments.next()!)!  // repeat the throughput batch for at least this long
    case "--gru4rec": compareGRU4Rec = true
    default: fatalError("unknown argument \(a)")
    }
}

func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
/// The p-quantile of sorted samples; NaN when there are none (--nearest-only skips the recommend timings).
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(p * Double(sorted.count)))]
}

let beauty = "\(shared)/data/amazon-beauty/Beauty.txt"
guard FileManager.default.fileExists(atPath: beauty) else {
    log("serve-bench needs \(beauty) (the shared Amazon Beauty data)"); exit(2)
}
let dbPath = "\(workDir)/beauty.recdb"
// A database left by a build with another on-disk format is rebuilt, not an error.
if FileManager.default.fileExists(atPath: dbPath + "/data.mdb") {
    do { _ = try Database(path: dbPath, options: .init(create: false)) } catch RecDBError.formatVersion {
        log("rebuilding \(dbPath): it was written in another format")
        try FileManager.default.removeItem(atPath: dbPath)
    }
}
if !FileManager.default.fileExists(atPath: dbPath + "/data.mdb") {
    try? FileManager.default.removeItem(atPath: dbPath)
    let db = try Database(path: dbPath)
    log("importing Beauty…")
    try db.importInteractions(from: beauty, options: InteractionImportOptions(format: .sequences))
    var items = RecordImportOptions(format: .tsv)
    items.idColumn = "item_id"; items.titleColumn = "title"
    try db.importItems(from: "\(shared)/data/amazon-beauty/beauty_items.tsv", options: items)
    log("training SASRec (defaults, 2 epochs: latency does not depend on quality)…")
    var configuration = ModelConfiguration()
    configuration.maxEpochs = 2
    _ = try db.train(TrainingRequest(model: "sasrec", configuration: configuration))
}
let db = try Database(path: dbPath)
let numItems = try db.read { try $0.itemCount() }

// A user with a full 50-item history.
if try db.read({ try $0.userID(for: "bench-user") }) == nil {
    _ = try db.write { tx in
        let u = try tx.upsertUser(externalID: "bench-user")
        var g = SystemRandomNumberGenerator()
        for t in 0..<50 { try tx.appendEvent(user: u, item: UInt32.random(in: 1...UInt32(numItems), using: &g), timestamp: Int64(t)) }
    }
}

// GRU4Rec against SASRec, same database, user and filters: blocks of queries alternate between the two models
// (so load on the shared machine hits both alike), percentiles over all samples of each.
if compareGRU4Rec {
    if try !db.models().contains(where: { $0.name == "gru4rec" }) {
        log("training GRU4Rec (RecBole's defaults, 2 epochs: latency does not depend on quality)…")
        var configuration = ModelConfiguration(architecture: .gru4rec)
        configuration.maxEpochs = 2
        _ = try db.train(TrainingRequest(model: "gru4rec", configuration: configuration))
    }
    let models = ["sasrec", "gru4rec"]
    var samples: [String: [Double]] = [:]
    for m in models { for _ in 0..<500 { _ = try db.recommend(user: "bench-user", k: 10, options: RecommendOptions(model: m)) } }
    let rounds = 20, perRound = max(queries / rounds, 1)
    for _ in 0..<rounds {
        for m in models {
            let options = RecommendOptions(model: m)
            for _ in 0..<perRound {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let r = try db.recommend(user: "bench-user", k: 10, options: options)
                samples[m, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                precondition(r.items.count == 10 && r.source == .sequence && r.model == m)
            }
        }
    }
    for m in models {
        let sorted = samples[m]!.sorted()
        print(String(format: "%@ recommend (Beauty, %d items, 50-event history, k=10, exclude-seen, titles), 1 thread: p50 %.4f ms, p99 %.4f ms (%d queries, %d interleaved rounds)",
                     m, numItems, percentile(sorted, 0.5), percentile(sorted, 0.99), sorted.count, rounds))
    }
    // Beauty's own users (their whole histories: 8.9 events on average), the same users for both models.
    let beautyUsers = try db.read { tx -> [String] in
        var out: [String] = []
        try tx.forEachUser { if $0.externalID != "bench-user" { out.append($0.externalID) }; return out.count < 4_000 }
        return out
    }
    var own: [String: [Double]] = [:]
    for _ in 0..<max(queries / (2 * beautyUsers.count), 1) {
        for m in models {
            let options = RecommendOptions(model: m)
            for u in beautyUsers {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let r = try db.recommend(user: u, k: 10, options: options)
                own[m, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                precondition(r.source == .sequence && r.model == m)
            }
        }
    }
    for m in models {
        let sorted = own[m]!.sorted()
        print(String(format: "%@ recommend, Beauty's first %d users with their own histories: p50 %.4f ms, p99 %.4f ms (%d queries)",
                     m, beautyUsers.count, percentile(sorted, 0.5), percentile(sorted, 0.99), sorted.count))
    }
    exit(0)
}

// Warm-up: loads the model, the index and the filter caches.
if nearestOnly || throughputOnly { queries = 0 }
for _ in 0..<500 { _ = try db.recommend(user: "bench-user", k: 10) }
var latencies: [Double] = []
latencies.reserveCapacity(queries)
for _ in 0..<queries {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let r = try db.recommend(user: "bench-user", k: 10)
    let t1 = DispatchTime.now().uptimeNanoseconds
    precondition(r.items.count == 10 && r.source == .sequence)
    latencies.append(Double(t1 - t0) / 1e6)
}
latencies.sort()
let p50 = percentile(latencies, 0.5), p99 = percentile(latencies, 0.99)
if latencyOnly {
    print(String(format: "p50 %.4f ms, p99 %.4f ms", p50, p99))
    exit(0)
}

// Ablation, same run: the exact model-space search scanning the float rows (BLAS) instead of the int8 copy.
func medianLatency(_ count: Int) throws -> (p50: Double, p99: Double) {
    var samples: [Double] = []
    for _ in 0..<count {
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try db.recommend(user: "bench-user", k: 10)
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
    }
    samples.sort()
    return (percentile(samples, 0.5), percentile(samples, 0.99))
}
let reference = try db.recommend(user: "bench-user", k: 10)
VectorIndex.setQuantizedScan(enabled: false)
let floatScanItems = try db.recommend(user: "bench-user", k: 10).items.map(\.item)
precondition(floatScanItems == reference.items.map(\.item), "the int8-copy scan and the float scan must return the same items")
let floatScan = try medianLatency(nearestOnly ? 0 : max(queries / 4, 1))
VectorIndex.setQuantizedScan(enabled: true)

// Throughput with all cores: many users at once (each worker its own snapshot).
let users = try db.read { tx -> [String] in
    var out: [String] = []
    try tx.forEachUser { out.append($0.externalID); return out.count < 20_000 }
    return out
}
let cores = ProcessInfo.processInfo.activeProcessorCount
// With --seconds, the batch repeats until that much time has passed, so the in-process figure covers as long a
// stretch of the shared machine as the HTTP run beside it (one batch is well under a second).
/// CPU seconds this process has used (all threads): with the wall clock, what a user cost however loaded the machine.
func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}
let t0 = Date(), cpu0 = processCPUSeconds()
var batch: [Recommendations] = []
var served = 0
repeat {
    batch = try db.recommend(users: nearestOnly ? [] : users, k: 10)
    served += batch.count
} while Date().timeIntervalSince(t0) < throughputSeconds && !batch.isEmpty
let throughputElapsed = Date().timeIntervalSince(t0)
let throughput = Double(served) / throughputElapsed
if throughputOnly {
    print(String(format: "in-process batch recommend, %d cores: %.0f users/s (%d users in %.1f s, %.0f us CPU a user)",
                 cores, throughput, served, throughputElapsed, (processCPUSeconds() - cpu0) * 1e6 / Double(max(served, 1))))
    exit(0)
}

// The PyTorch peer, same machine, same run.
var peer: [String: Any] = [:]
if nearestOnly { python = "/bin/false" }
let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("torch_serve.py").path
let process = Process()
process.executableURL = URL(fileURLWithPath: python)
process.arguments = [script, "--reference", "\(shared)/reference", "--items", String(numItems), "--queries", "3000"]
let pipe = Pipe()
process.standardOutput = pipe
do {
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    peer = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
} catch {
    log("PyTorch peer not run (\(error)); install torch into \(python)")
}
let peerP50 = peer["p50_ms"] as? Double, peerP99 = peer["p99_ms"] as? Double

print(String(format: "RecDB recommend (Beauty, %d items, 50-event history, k=10, exclude-seen, titles), 1 thread: p50 %.4f ms, p99 %.4f ms (%d queries)", numItems, p50, p99, queries))
print(String(format: "  same with the exact search scanning float rows instead of the int8 copy: p50 %.4f ms, p99 %.4f ms", floatScan.p50, floatScan.p99))
print(String(format: "RecDB batch recommend, %d cores: %.0f users/s over %d users", cores, throughput, users.count))
if let peerP50, let peerP99 {
    print(String(format: "PyTorch %@ forward + scoring + top-10, 1 thread: p50 %.4f ms, p99 %.4f ms → RecDB is %.1fx faster at p50, %.1fx at p99",
                 (peer["torch"] as? String) ?? "", peerP50, peerP99, peerP50 / p50, peerP99 / p99))
}
// Similarity search through the whole database layer (read transaction, catalogue lookups, live-index
// check, deleted/unavailable filter, result mapping) against the same HNSW32 index driven directly
// through VectorIndex, on the Beauty MiniLM vectors, single thread, efSearch 16.
var throughDB = 0.0, direct = 0.0
let minilm = "\(shared)/emb/beauty_minilm.npy"
if FileManager.default.fileExists(atPath: minilm) {
    if try db.read({ try $0.space(named: "minilm") }) == nil {
        try db.importEmbeddings(from: minilm, options: EmbeddingImportOptions(space: "minilm", kind: .item))
    }
    try db.buildIndex(space: "minilm", factory: "HNSW32", metric: .cosine)
    let (ids, vectors) = try db.read { tx -> ([UInt32], [Float]) in
        var ids: [UInt32] = [], vectors: [Float] = []
        try tx.forEachVector(space: "minilm") { id, view in ids.append(id); vectors += view.toArray(); return true }
        return (ids, vectors)
    }
    let index = try VectorIndex(factory: "HNSW32", dimension: 384, metric: .cosine)
    try index.add(ids: ids, vectors: vectors)
    let queryCount = nearestOnly ? 40_000 : 4000
    let queries = (0..<queryCount).map { q in Array(vectors[(q * 7 % ids.count) * 384..<((q * 7 % ids.count) + 1) * 384]) }
    for q in queries.prefix(200) { _ = try db.nearest(to: q, k: 10, space: "minilm", titles: false); _ = try index.search(q, k: 10) }
    for round in 0..<6 {  // alternate A/B so drift hits both
        let t0 = Date()
        if round % 2 == 0 { for q in queries { _ = try db.nearest(to: q, k: 10, space: "minilm", titles: false) } } else { for q in queries { _ = try index.search(q, k: 10) } }
        let rate = Double(queryCount) / Date().timeIntervalSince(t0)
        if round % 2 == 0 { throughDB = max(throughDB, rate) } else { direct = max(direct, rate) }
    }
    print(String(format: "HNSW32 single-query search on Beauty MiniLM (12,101 x 384): through RecDB %.0f q/s, VectorIndex directly %.0f q/s (RecDB layer costs %.1f%%)",
                 throughDB, direct, (direct / throughDB - 1) * 100))
}

// JSON has no NaN: a figure that was not measured (--nearest-only) is null.
func figure(_ x: Double) -> Any { x.isNaN ? NSNull() : x }
let json: [String: Any] = ["bench": "serve", "nearest_qps_through_db": throughDB, "nearest_qps_direct": direct, "items": numItems, "p50_ms": figure(p50), "p99_ms": figure(p99),
                           "float_scan_p50_ms": figure(floatScan.p50), "float_scan_p99_ms": figure(floatScan.p99), "batch_users_per_s": throughput,
                           "cores": cores, "torch_p50_ms": peerP50 ?? NSNull(), "torch_p99_ms": peerP99 ?? NSNull()]
print(String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self))
