// IndexBench — release-mode benchmarks of RecDB's Faiss binding (issue 5).
//
//   swift run -c release IndexBench [--rows 200000] [--queries 1000] [--rounds 7] [--overhead-queries 4000]
//                                   [--threads 2] [--skip-clustered] [--python PATH] [--quiet]
//
// 1. Recall@10 of HNSW32 against exact search on the Beauty MiniLM vectors (../shared/emb/beauty_minilm.npy),
//    at Faiss's default search parameters (efSearch 16). Skipped with a message when the file is absent.
// 2. On a generated clustered 200,000 × 128 set (see ClusteredData.swift): recall@10 and single-query
//    queries/s for efSearch 16, 32, 64, 128, 256.
// 3. Single-query HNSW queries/s through VectorIndex against the same Faiss index driven directly from C++
//    (the IndexBenchDirect target) — and, with --python, from the faiss-cpu wheel — interleaved in one run.
// Prints tables on stdout, progress on stderr, and one final line `JSON {...}`.
//
//   IndexBench --build-compare N [--rounds R] [--queries Q] [--vectors FILE.npy] [--metric ip] [--faiss-budget S]
//              [--without-reduction-too]
// only compares HNSW32 builds (issue #14): VectorIndex.add (HNSWBuild.h) against Faiss's IndexHNSWFlat::add on the
// same N rows (generated clusters, or the first N rows of FILE.npy, e.g. a model's items exported by
// `scale-bench DB --export-space SPACE FILE.npy`), alternated, with recall@10 of each graph against exact search.
// --faiss-budget stops Faiss's build (added in calls of 20,000 rows) once S seconds have passed and says how many rows
// it linked; --without-reduction-too adds our build without the MIPS→L2 reduction (inner product), bounded alike.
import Foundation
import Index
import IndexBenchDirect

// MARK: - Options

struct Options {
    var rows = 200_000
    var queries = 1000
    var rounds = 7
    var overheadQueries = 4000
    var threads = 2
    var skipClustered = false
    /// Rows of the build comparison (0 = off): HNSW32 over ROWS × 64 through VectorIndex vs IndexHNSWFlat::add.
    var buildCompare = 0
    /// Build-compare input: rows of a float32 .npy instead of generated clusters.
    var vectorsPath: String?
    /// Build-compare metric: inner product (`--metric ip`) instead of L2.
    var innerProduct = false
    /// Build-compare: bound Faiss's build (and the no-reduction build) to this many seconds (0 = unbounded).
    var faissBudget = 0.0
    /// Build-compare: also build through VectorIndex without the MIPS→L2 reduction (bounded like Faiss's).
    var plainToo = false
    var python: String?
    var quiet = false
    var beautyPath = "../shared/emb/beauty_minilm.npy"
    var profilesPath = "../shared/emb/beauty_profiles_titlemean.npy"

    init(_ arguments: [String]) {
        var i = 1
        func value() -> String {
            i += 1
            guard i < arguments.count else { fatalError("missing value after \(arguments[i - 1])") }
            return arguments[i]
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--rows": rows = Int(value())!
            case "--queries": queries = Int(value())!
            case "--rounds": rounds = Int(value())!
            case "--overhead-queries": overheadQueries = Int(value())!
            case "--threads": threads = Int(value())!
            case "--skip-clustered": skipClustered = true
            case "--build-compare": buildCompare = Int(value())!
            case "--vectors": vectorsPath = value()
            case "--metric": innerProduct = value() == "ip"
            case "--faiss-budget": faissBudget = Double(value())!
            case "--without-reduction-too": plainToo = true
            case "--python": python = value()
            case "--quiet": quiet = true
            case "--beauty": beautyPath = value()
            default: fatalError("unknown argument \(arguments[i])")
            }
            i += 1
        }
    }
}

let options = Options(CommandLine.arguments)
func progress(_ message: String) {
    if !options.quiet { FileHandle.standardError.write(Data((message + "\n").utf8)) }
}
func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}
func fmt(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }
func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }

VectorIndex.setThreadCount(options.threads)
var report: [String: Any] = [:]

// MARK: - 0. HNSW build at scale (issue #14): VectorIndex.add vs IndexHNSWFlat::add, alternated

if options.buildCompare > 0 {
    let k = 10, queryCount = options.queries
    let efSearches: [Int32] = [16, 64, 128]
    let metric: Metric = options.innerProduct ? .innerProduct : .l2
    let d: Int, vectors: [Float], queries: [Float]
    if let path = options.vectorsPath {
        // Real vectors (e.g. a model's items, `scale-bench DB --export-space m@1 FILE.npy`): the first N rows are built;
        // the queries are rows spread evenly over the whole file (under inner product an item is a fair stand-in
        // for a user's query vector, which lives in the same space; `scale-bench --exact-db` measures real users).
        let matrix = try NPYMatrix(contentsOf: URL(fileURLWithPath: path))
        d = matrix.columns
        let n = min(options.buildCompare, matrix.rows)
        vectors = Array(matrix.values[0..<(n * d)])
        var q: [Float] = []
        for i in 0..<queryCount {
            let r = (i * 7919 + 13) % matrix.rows
            q += matrix.values[(r * d)..<((r + 1) * d)]
        }
        queries = q
        progress("Build: \(n) × \(d) rows of \(path) + \(queryCount) query rows, \(metric.rawValue)")
    } else {
        var generator = ClusteredData(ClusteredData.Parameters(dimension: 64))
        d = 64
        progress("Build: generating \(options.buildCompare) × \(d) + \(queryCount) queries (\(generator.parameters)), \(metric.rawValue)")
        vectors = generator.sample(options.buildCompare)
        queries = generator.sample(queryCount)
    }
    let n = vectors.count / d
    let ids = (1...n).map(UInt32.init)
    // Exact top-10 of every query (Flat), the reference of every graph's recall.
    let exactIndex = try VectorIndex(factory: "Flat", dimension: d, metric: metric)
    try exactIndex.add(ids: ids, vectors: vectors)
    let truth = try exactIndex.search(batch: queries, k: k)
    func recallOf(_ found: [[UInt32]]) -> Double {
        var hits = 0
        for (t, f) in zip(truth, found) {
            let exact = Set(t.prefix(k).map(\.id))
            hits += f.prefix(k).filter { exact.contains($0) }.count
        }
        return Double(hits) / Double(truth.count * k)
    }
    let budget = options.faissBudget
    let chunk = budget > 0 ? 20_000 : 0
    var ours: [Double] = [], theirs: [Double] = [], plain: [Double] = []
    var ourRecall: [Double] = [], theirRecall: [Double] = [], plainRecall: [Double] = []
    var theirRows: [Int] = [], plainRows: [Int] = []
    for round in 0..<options.rounds {
        let measureRecall = round == 0
        /// VectorIndex.add: one call (one HNSWBuild.h build inside the shim), or, with a budget, calls of `chunk`
        /// rows until it is spent. Returns the rows linked.
        func buildOurs(reduction: Bool, bounded: Bool, times: inout [Double], recalls: inout [Double]) throws -> Int {
            // Ours as shipped (automatic: the reduction where the long rows would be hubs), or forced plain.
            VectorIndex.setHNSWInnerProductLinking(reduction ? .automatic : .plain)
            defer { VectorIndex.setHNSWInnerProductLinking(.automatic) }
            let start = seconds()
            let index = try VectorIndex(factory: "HNSW32", dimension: d, metric: metric)
            var linked = 0
            if bounded && chunk > 0 {
                while linked < n && seconds() - start < budget {
                    let end = min(n, linked + chunk)
                    try index.add(ids: Array(ids[linked..<end]), vectors: Array(vectors[(linked * d)..<(end * d)]))
                    linked = end
                }
            } else {
                try index.add(ids: ids, vectors: vectors)
                linked = n
            }
            times.append(seconds() - start)
            if reduction && metric == .innerProduct && round == 0 {
                print("  inner-product linking chosen automatically: \(index.linksThroughMipsReduction ? "through the MIPS→L2 reduction" : "plain")")
            }
            if measureRecall && linked == n {
                // Searched by the same graph search as the peer's graph (HNSWSearch.h), one query at a time.
                VectorIndex.setThreadCount(1)
                for ef in efSearches {
                    let found = try queries.withUnsafeBufferPointer { q in
                        try (0..<queryCount).map { i in
                            try index.search(Array(q[(i * d)..<((i + 1) * d)]), k: k, parameters: SearchParameters(efSearch: Int(ef))).map(\.id)
                        }
                    }
                    recalls.append(recallOf(found))
                }
                VectorIndex.setThreadCount(options.threads)
            }
            return linked
        }
        func buildTheirs() {
            var labels = [Int64](repeating: -1, count: measureRecall ? efSearches.count * queryCount * k : 0)
            var linked = 0
            let elapsed = vectors.withUnsafeBufferPointer { x in
                queries.withUnsafeBufferPointer { q in
                    efSearches.withUnsafeBufferPointer { e in
                        labels.withUnsafeMutableBufferPointer { l in
                            indexbench_direct_hnsw_build_bounded(x.baseAddress!, n, d, 32, metric == .innerProduct ? 1 : 0, budget, chunk,
                                                                 &linked, q.baseAddress!, measureRecall ? queryCount : 0, k,
                                                                 e.baseAddress!, e.count, l.baseAddress)
                        }
                    }
                }
            }
            theirs.append(elapsed)
            theirRows.append(linked)
            if measureRecall && linked == n {
                for e in 0..<efSearches.count {
                    let found = (0..<queryCount).map { q in
                        labels[((e * queryCount + q) * k)..<((e * queryCount + q + 1) * k)].filter { $0 >= 0 }.map { UInt32($0 + 1) }
                    }
                    theirRecall.append(recallOf(found))
                }
            }
        }
        // Alternate which build goes first, so a drift in the machine's load does not favour one side.
        var order: [Int] = options.plainToo ? [0, 1, 2] : [0, 1]
        if round % 2 == 1 { order.reverse() }
        for side in order {
            switch side {
            case 0: _ = try buildOurs(reduction: true, bounded: false, times: &ours, recalls: &ourRecall)
            case 1: buildTheirs()
            default: plainRows.append(try buildOurs(reduction: false, bounded: true, times: &plain, recalls: &plainRecall))
            }
        }
        progress("  round \(round + 1): VectorIndex \(fmt(ours.last!, 1)) s, IndexHNSWFlat::add \(fmt(theirs.last!, 1)) s (\(theirRows.last!) of \(n) rows)"
                 + (options.plainToo ? ", VectorIndex without the MIPS reduction \(fmt(plain.last!, 1)) s (\(plainRows.last!) rows)" : ""))
    }
    func rowsNote(_ rows: [Int]) -> String { rows.allSatisfy { $0 == n } ? "" : " (budget \(fmt(budget, 0)) s: rows linked \(rows))" }
    print("HNSW32 build over \(n) × \(d) (\(metric.rawValue)), \(indexbench_direct_omp_threads()) threads, \(options.rounds) alternated rounds (median): " +
          "VectorIndex.add \(fmt(median(ours), 2)) s, Faiss IndexHNSWFlat::add \(fmt(median(theirs), 2)) s\(rowsNote(theirRows)), " +
          (theirRows.allSatisfy { $0 == n } ? "Faiss / ours \(fmt(median(theirs) / median(ours), 2))×"
              : "ours \(fmt(Double(n) / median(ours), 0)) rows/s, Faiss \(fmt(Double(theirRows.sorted()[theirRows.count / 2]) / median(theirs), 0)) rows/s before its budget ran out") +
          "; rounds ours \(ours.map { fmt($0, 2) }), Faiss \(theirs.map { fmt($0, 2) })")
    if options.plainToo {
        print("  VectorIndex.add without the MIPS→L2 reduction: \(fmt(median(plain), 2)) s\(rowsNote(plainRows)); rounds \(plain.map { fmt($0, 2) })")
    }
    for (e, ef) in efSearches.enumerated() {
        func value(_ recalls: [Double]) -> String { e < recalls.count ? fmt(recalls[e], 4) : "not measured (build not finished)" }
        print("  recall@10 vs exact at efSearch \(ef) (\(queryCount) queries, same graph search): " +
              "ours \(value(ourRecall)), Faiss-built \(value(theirRecall))" + (options.plainToo ? ", ours without the reduction \(value(plainRecall))" : ""))
    }
    exit(0)
}

// MARK: - Helpers

/// Mean fraction of the exact top-k found.
func recall(truth: [[Neighbor]], found: [[UInt32]], k: Int) -> Double {
    var hits = 0
    for (t, f) in zip(truth, found) {
        let exact = Set(t.prefix(k).map(\.id))
        hits += f.prefix(k).filter { exact.contains($0) }.count
    }
    return Double(hits) / Double(truth.count * k)
}

/// Single-query loop through the allocation-free API; returns elapsed seconds and the ids (n × k).
func swiftBufferLoop(_ index: VectorIndex, _ queries: [Float], n: Int, k: Int, efSearch: Int) throws -> (Double, [UInt32]) {
    let d = index.dimension
    var ids = [UInt32](repeating: 0, count: n * k)
    var scores = [Float](repeating: 0, count: k)
    let parameters = SearchParameters(efSearch: efSearch)
    let start = seconds()
    try queries.withUnsafeBufferPointer { q in
        try ids.withUnsafeMutableBufferPointer { idBuffer in
            try scores.withUnsafeMutableBufferPointer { scoreBuffer in
                for i in 0..<n {
                    try index.search(queries: UnsafeBufferPointer(rebasing: q[(i * d)..<((i + 1) * d)]), k: k,
                                     parameters: parameters,
                                     ids: UnsafeMutableBufferPointer(rebasing: idBuffer[(i * k)..<((i + 1) * k)]),
                                     scores: scoreBuffer)
                }
            }
        }
    }
    return (seconds() - start, ids)
}

/// Single-query loop through the everyday API (`[Float]` in, `[Neighbor]` out).
func swiftArrayLoop(_ index: VectorIndex, _ rows: [[Float]], k: Int, efSearch: Int) throws -> (Double, [UInt32]) {
    var ids: [UInt32] = []
    ids.reserveCapacity(rows.count * k)
    let parameters = SearchParameters(efSearch: efSearch)
    let start = seconds()
    for row in rows {
        let result = try index.search(row, k: k, parameters: parameters)
        for neighbor in result { ids.append(neighbor.id) }
    }
    return (seconds() - start, ids)
}

// MARK: - Python peer (optional)

/// A long-lived `faiss_python_peer.py` process: loads the same Faiss payload and the same queries, then runs one
/// timed single-query loop per "run" line, so its rounds interleave with ours.
final class PythonPeer {
    let process = Process()
    let input = Pipe(), output = Pipe()
    var buffer = Data()

    init(python: String, script: String, faissPayload: URL, queries: URL, k: Int, efSearch: Int) throws {
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, faissPayload.path, queries.path, String(k), String(efSearch)]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        _ = try readLine()  // "ready <version>"
    }

    func readLine() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                return line
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw NSError(domain: "PythonPeer", code: 1, userInfo: [NSLocalizedDescriptionKey: "peer exited"]) }
            buffer.append(chunk)
        }
    }

    /// Returns (seconds, labels).
    func run() throws -> (Double, [Int64]) {
        input.fileHandleForWriting.write(Data("run\n".utf8))
        let parts = try readLine().split(separator: " ")
        let elapsed = Double(parts[0])!
        let labels = parts.dropFirst().map { Int64($0)! }
        return (elapsed, labels)
    }

    func close() {
        input.fileHandleForWriting.write(Data("quit\n".utf8))
        process.waitUntilExit()
    }
}

// MARK: - Overhead benchmark (3)

/// Interleaved single-query QPS of the wrapper and its C++ (and Python) peers on the same index and queries.
func overheadBenchmark(name: String, index built: VectorIndex, queries: [Float], n: Int, efSearch: Int) throws -> [String: Any] {
    let k = 10, d = built.dimension
    let bytes = try built.serialized()
    // Both sides search a copy freshly loaded from the same bytes (as RecDB loads a stored index), so neither
    // benefits from a different memory layout (an index grown by many adds vs one loaded in a single allocation).
    let index = try VectorIndex(serialized: bytes)
    var error: UnsafePointer<CChar>?
    guard let direct = bytes.withUnsafeBufferPointer({ indexbench_direct_load($0.baseAddress, $0.count, &error) }) else {
        throw NSError(domain: "IndexBench", code: 1, userInfo: [NSLocalizedDescriptionKey: String(cString: error!)])
    }
    defer { indexbench_direct_free(direct) }
    let rows = (0..<n).map { Array(queries[($0 * d)..<(($0 + 1) * d)]) }
    var labels = [Int64](repeating: -1, count: n * k)

    var python: PythonPeer?
    if let pythonPath = options.python {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("indexbench-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let payload = dir.appendingPathComponent("\(name).faiss"), queryFile = dir.appendingPathComponent("\(name).f32")
        try faissPayload(of: bytes).write(to: payload)
        try queries.prefix(n * d).withUnsafeBufferPointer { Data(buffer: $0) }.write(to: queryFile)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("faiss_python_peer.py").path
        python = try PythonPeer(python: pythonPath, script: script, faissPayload: payload, queries: queryFile, k: k, efSearch: efSearch)
    }
    defer { python?.close() }

    typealias Variant = (name: String, run: () throws -> (Double, [UInt32]))
    var variants: [Variant] = [
        ("VectorIndex.search -> [Neighbor]", { try swiftArrayLoop(index, rows, k: k, efSearch: efSearch) }),
        ("VectorIndex.search(buffers)", { try swiftBufferLoop(index, queries, n: n, k: k, efSearch: efSearch) }),
        ("C++ Faiss API: IndexHNSW::search", {
            let t = queries.withUnsafeBufferPointer { indexbench_direct_search_each(direct, $0.baseAddress, n, k, Int32(efSearch), &labels) }
            return (t, labels.map { UInt32($0 + 1) })
        }),
        ("C++ HNSW::search + shim kernels", {
            let t = queries.withUnsafeBufferPointer { indexbench_direct_hnsw_loop(direct, $0.baseAddress, n, k, Int32(efSearch), &labels) }
            return (t, labels.map { UInt32($0 + 1) })
        }),
    ]
    if let python {
        variants.append(("faiss-cpu (Python) index.search, 1 query", {
            let (t, l) = try python.run()
            return (t, l.map { UInt32($0 + 1) })
        }))
    }
    var qps = [[Double]](repeating: [], count: variants.count)
    var reference: [UInt32]?
    // Mean fraction of VectorIndex's top-k ids that a variant also returned (1.0 = the same sets). Faiss's own
    // kernels and the wheel's sum floats in another order, so ties can flip at the margin.
    var overlap = [Double](repeating: 1, count: variants.count)
    func agreement(_ ids: [UInt32], _ reference: [UInt32]) -> Double {
        var shared = 0
        for q in 0..<n {
            let expected = Set(reference[(q * k)..<((q + 1) * k)])
            shared += ids[(q * k)..<((q + 1) * k)].filter { expected.contains($0) }.count
        }
        return Double(shared) / Double(n * k)
    }
    for round in 0..<options.rounds {
        // Rotate the order every round so no variant always runs first (caches, frequency scaling). The first
        // round of the rotation starts with VectorIndex, whose ids are the reference for the overlap column.
        for offset in 0..<variants.count {
            let v = (round + offset) % variants.count
            let (elapsed, ids) = try variants[v].run()
            qps[v].append(Double(n) / elapsed)
            if v == 0 && reference == nil { reference = ids }
            if let reference { overlap[v] = min(overlap[v], agreement(ids, reference)) }
        }
        progress("  \(name) ef=\(efSearch) round \(round + 1)/\(options.rounds): " +
                 variants.indices.map { "\(Int(qps[$0].last!))" }.joined(separator: " / ") + " q/s")
    }
    let medians = qps.map(median)
    // Paired per-round ratios against the C++ peer running the same path: robust to the load drifting between
    // rounds on a shared machine (both sides of a pair ran back to back).
    let pairedRatios = qps.map { runs in median(zip(runs, qps[3]).map { $0 / $1 }) }
    let floor = medians[3]
    print("\nSingle-query HNSW search, \(name), \(n) queries, k=\(k), efSearch=\(efSearch), \(options.rounds) interleaved rounds (median q/s):")
    print(pad("variant", 44) + pad("q/s", 10) + pad("µs/query", 10) + pad("vs C++ same path*", 19) + "top-10 overlap with VectorIndex")
    var rowsJSON: [[String: Any]] = []
    for (i, variant) in variants.enumerated() {
        let ratio = pairedRatios[i]
        print(pad(variant.name, 44) + pad(String(Int(medians[i])), 10) + pad(fmt(1e6 / medians[i], 1), 10)
              + pad(fmt(ratio, 3), 19) + fmt(overlap[i], 4))
        rowsJSON.append(["variant": variant.name, "qps_median": medians[i], "qps_rounds": qps[i],
                         "ratio_to_cpp_same_path": ratio, "top10_overlap_with_vectorindex": overlap[i]])
    }
    let wrapperCost = 1 - pairedRatios[1], wrapperCostArray = 1 - pairedRatios[0]
    let vsFaissAPI = pairedRatios[1] / pairedRatios[2]
    _ = floor
    print("* median over rounds of (variant q/s ÷ C++ same-path q/s in the same round)")
    print("wrapper cost vs the same search in C++: buffer API \(fmt(100 * wrapperCost, 1))%, array API \(fmt(100 * wrapperCostArray, 1))%; " +
          "VectorIndex vs plain Faiss C++ API: \(fmt(vsFaissAPI, 2))x")
    return ["dataset": name, "efSearch": efSearch, "queries": n, "rounds": options.rounds, "variants": rowsJSON,
            "wrapper_cost_buffer_api": wrapperCost, "wrapper_cost_array_api": wrapperCostArray,
            "speed_vs_cpp_faiss_api": vsFaissAPI]
}

/// The Faiss bytes inside a RecDB-serialized index (layout in cfaiss.cpp).
func faissPayload(of bytes: [UInt8]) -> Data {
    func u32(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
    func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }
    var p = 8 + 4 + 4 + 4
    p += 4 + u32(p)
    p += 8 + 4 * u64(p)
    let length = u64(p)
    return Data(bytes[(p + 8)..<(p + 8 + length)])
}

var overheadResults: [[String: Any]] = []

// MARK: - 1. Beauty MiniLM recall

let beautyURL = URL(fileURLWithPath: options.beautyPath)
if FileManager.default.fileExists(atPath: beautyURL.path) {
    progress("Beauty: loading \(beautyURL.path)")
    let matrix = try NPYMatrix(contentsOf: beautyURL)
    let d = matrix.columns, n = matrix.rows - 1  // row 0 is padding
    let vectors = Array(matrix.values[d...])
    let ids = (1...n).map(UInt32.init)
    let exact = try VectorIndex(factory: "Flat", dimension: d, metric: .innerProduct)
    try exact.add(ids: ids, vectors: vectors)
    var start = seconds()
    let hnsw = try VectorIndex(factory: "HNSW32", dimension: d, metric: .innerProduct)
    try hnsw.add(ids: ids, vectors: vectors)
    let buildSeconds = seconds() - start
    progress("Beauty: HNSW32 built over \(n) × \(d) in \(fmt(buildSeconds, 1)) s")
    let defaults = hnsw.defaultSearchParameters
    // Queries: every item vector (item-to-item), and user profile vectors when present (user-to-item).
    var querySets: [(String, [Float])] = [("items (all \(n))", vectors)]
    if FileManager.default.fileExists(atPath: options.profilesPath) {
        let profiles = try NPYMatrix(contentsOf: URL(fileURLWithPath: options.profilesPath))
        let users = min(5000, profiles.rows - 1)
        querySets.append(("user profiles (first \(users))", Array(profiles.values[d..<((users + 1) * d)])))
    }
    print("Beauty MiniLM (\(n) × \(d), inner product on L2-normalised vectors), HNSW32 at default parameters (efSearch \(defaults.efSearch ?? 0)):")
    print(pad("queries", 34) + pad("recall@10", 12) + "single-query q/s")
    var beautyJSON: [String: Any] = ["rows": n, "dimension": d, "efSearch": defaults.efSearch ?? 0, "build_seconds": buildSeconds]
    for (label, queries) in querySets {
        let count = queries.count / d
        let truth = try exact.search(batch: queries, k: 10)
        start = seconds()
        let (elapsed, found) = try swiftBufferLoop(hnsw, queries, n: count, k: 10, efSearch: defaults.efSearch ?? 16)
        _ = start
        let foundRows = (0..<count).map { Array(found[($0 * 10)..<(($0 + 1) * 10)]) }
        let r = recall(truth: truth, found: foundRows, k: 10)
        print(pad(label, 34) + pad(fmt(r, 4), 12) + String(Int(Double(count) / elapsed)))
        beautyJSON[label.hasPrefix("items") ? "recall_at_10_items" : "recall_at_10_profiles"] = r
        beautyJSON[label.hasPrefix("items") ? "qps_items" : "qps_profiles"] = Double(count) / elapsed
    }
    report["beauty"] = beautyJSON
    let overheadQueries = querySets.last!.1
    let count = min(options.overheadQueries, overheadQueries.count / d)
    overheadResults.append(try overheadBenchmark(name: "beauty", index: hnsw, queries: overheadQueries, n: count, efSearch: 16))
} else {
    print("SKIPPED Beauty benchmark: \(beautyURL.path) not found (research data lives in ../shared, outside the package)")
    report["beauty"] = "skipped: file not found"
}

// MARK: - 2. Clustered 200k × 128: recall / QPS curve

if !options.skipClustered {
    var generator = ClusteredData(ClusteredData.Parameters())
    let d = generator.parameters.dimension
    progress("Clustered: generating \(options.rows) × \(d) + \(options.queries) queries")
    let vectors = generator.sample(options.rows)
    let queries = generator.sample(options.queries)
    let overheadQueries = generator.sample(options.overheadQueries)  // more queries: longer, steadier rounds
    let ids = (1...options.rows).map(UInt32.init)
    var start = seconds()
    let exact = try VectorIndex(factory: "Flat", dimension: d, metric: .l2)
    try exact.add(ids: ids, vectors: vectors)
    let truth = try exact.search(batch: queries, k: 10)
    progress("Clustered: exact ground truth in \(fmt(seconds() - start, 1)) s; building HNSW32 …")
    start = seconds()
    let hnsw = try VectorIndex(factory: "HNSW32", dimension: d, metric: .l2)
    // Add in chunks to show progress on a long build.
    let chunk = 20_000
    for from in stride(from: 0, to: options.rows, by: chunk) {
        let to = min(from + chunk, options.rows)
        try hnsw.add(ids: Array(ids[from..<to]), vectors: Array(vectors[(from * d)..<(to * d)]))
        progress("  added \(to)/\(options.rows) (\(fmt(seconds() - start, 1)) s)")
    }
    let buildSeconds = seconds() - start
    print("\nClustered \(options.rows) × \(d) (\(generator.parameters)), HNSW32 (L2), \(options.queries) held-out queries, built in \(fmt(buildSeconds, 1)) s:")
    print(pad("efSearch", 10) + pad("recall@10", 12) + pad("q/s (1 query/call)", 20) + "µs/query")
    var curve: [[String: Any]] = []
    for ef in [16, 32, 64, 128, 256] {
        var best = 0.0
        var found: [UInt32] = []
        for _ in 0..<5 {  // best of 5 passes: the machine is shared
            let (elapsed, f) = try swiftBufferLoop(hnsw, queries, n: options.queries, k: 10, efSearch: ef)
            best = max(best, Double(options.queries) / elapsed)
            found = f
        }
        let rows = (0..<options.queries).map { Array(found[($0 * 10)..<(($0 + 1) * 10)]) }
        let r = recall(truth: truth, found: rows, k: 10)
        print(pad(String(ef), 10) + pad(fmt(r, 4), 12) + pad(String(Int(best)), 20) + fmt(1e6 / best, 1))
        curve.append(["efSearch": ef, "recall_at_10": r, "qps": best])
    }
    report["clustered"] = ["rows": options.rows, "dimension": d, "generator": generator.parameters.description,
                           "build_seconds": buildSeconds, "queries": options.queries, "curve": curve]
    overheadResults.append(try overheadBenchmark(name: "clustered", index: hnsw, queries: overheadQueries,
                                                 n: options.overheadQueries, efSearch: 64))
}

report["overhead"] = overheadResults
let json = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
print("JSON " + String(decoding: json, as: UTF8.self))
