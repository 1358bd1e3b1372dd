import Foundation
import RecDB

// scale-bench DB [--samples N] [--seed S] [--last 50] [--users-file FILE] [--recommend MODEL [--recommend-samples N] [--exact-db DB2]]
// Latency of reading a user's latest events at app scale, through the public API as serving does:
// one read transaction per request, `recentItems(user:last:)` (a short backwards cursor scan of the
// user's last block(s)). Users are drawn uniformly at random (seeded) from all users, or from the external ids
// listed one a line in --users-file (e.g. the users an import into existing users added events to). Prints p50/p99/mean in µs
// and JSON on the last line. With --recommend: then `recommend(user:k: 10)` through MODEL (history
// read, forward pass, search, seen items excluded, titles), one request at a time, p50/p99 in ms.
// With --exact-db DB2 (a copy of DB whose model item space has an exact `Flat` index: `rdbctl index build
// --type Flat`): the same users are served from both, alternating blocks of 100 requests, and the report adds
// DB2's p50/p99 and recall@10 of DB's lists against DB2's (exact, seen items excluded in both).
//
// scale-bench DB --export-space SPACE FILE.npy: writes the space's vectors (entity-id order) as a float32 .npy, the
// input of `IndexBench --build-compare N --vectors FILE.npy --metric ip` (HNSW builds on a model's real item vectors).
func exportSpace(_ db: Database, space: String, to path: String) throws {
    let (rows, d, values) = try db.read { tx -> (Int, Int, [Float]) in
        guard let info = try tx.spaces().first(where: { $0.name == space }) else { throw RecDBError.unknownSpace(space) }
        var values: [Float] = []
        values.reserveCapacity(info.count * info.dimension)
        var rows = 0
        try tx.forEachVector(space: space) { _, view in
            let start = values.count
            values.append(contentsOf: repeatElement(0, count: view.count))
            values.withUnsafeMutableBufferPointer { view.copy(into: UnsafeMutableBufferPointer(rebasing: $0[start...])) }
            rows += 1
            return true
        }
        return (rows, info.dimension, values)
    }
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(d)), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
    data.append(contentsOf: [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
    data.append(contentsOf: Array(header.utf8))
    values.withUnsafeBytes { data.append(contentsOf: $0) }
    try data.write(to: URL(fileURLWithPath: path))
    print("exported \(rows) × \(d) vectors of '\(space)' to \(path)")
}

func run() {
    Database.configureProcess()
    var args = Array(CommandLine.arguments.dropFirst())
    func option(_ name: String, _ fallback: Int) -> Int {
        guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
        args.removeSubrange(i...(i + 1))
        return v
    }
    let samples = option("--samples", 20_000)
    let seed = option("--seed", 1)
    let last = option("--last", 50)
    let recommendSamples = option("--recommend-samples", 2_000)
    var recommendModel: String?
    var exactPath: String?
    var usersFile: String?
    if let i = args.firstIndex(of: "--users-file"), i + 1 < args.count {
        usersFile = args[i + 1]
        args.removeSubrange(i...(i + 1))
    }
    if let i = args.firstIndex(of: "--exact-db"), i + 1 < args.count {
        exactPath = args[i + 1]
        args.removeSubrange(i...(i + 1))
    }
    if let i = args.firstIndex(of: "--recommend"), i + 1 < args.count {
        recommendModel = args[i + 1]
        args.removeSubrange(i...(i + 1))
    }
    var exportRequest: (String, String)?
    if let i = args.firstIndex(of: "--export-space"), i + 2 < args.count {
        exportRequest = (args[i + 1], args[i + 2])
        args.removeSubrange(i...(i + 2))
    }
    guard let path = args.first else {
        FileHandle.standardError.write(Data("usage: scale-bench DB [--samples N] [--seed S] [--last N]\n".utf8))
        exit(2)
    }
    do {
        let db = try Database(path: path, options: .init(readOnly: true, create: false))
        if let (space, file) = exportRequest { return try exportSpace(db, space: space, to: file) }
        let (users, events) = try db.read { (try $0.userCount(), try $0.eventCount()) }
        guard users > 0 else { throw RecDBError.invalidArgument("the database has no users") }
        var pool: [UInt32]?
        if let usersFile {
            let names = try String(contentsOfFile: usersFile, encoding: .utf8).split(whereSeparator: \.isNewline).map(String.init)
            pool = try db.read { tx in try names.map { name in
                guard let id = try tx.userID(for: name) else { throw RecDBError.unknownUser(name) }
                return id
            } }
            guard pool?.isEmpty == false else { throw RecDBError.invalidArgument("\(usersFile) lists no users") }
        }
        var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15
        func nextUser() -> UInt32 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            if let pool { return pool[Int(z % UInt64(pool.count))] }
            return UInt32(1 + z % UInt64(users))
        }
        // Warm-up: the same number of reads as measured would page the whole file in; a tenth of them.
        var checksum = 0
        for _ in 0..<samples / 10 { checksum &+= try db.read { try $0.recentItems(user: nextUser(), last: last) }.count }
        var micros: [Double] = []
        micros.reserveCapacity(samples)
        var read = 0
        for _ in 0..<samples {
            let u = nextUser()
            let start = DispatchTime.now().uptimeNanoseconds
            let items = try db.read { try $0.recentItems(user: u, last: last) }
            micros.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1_000)
            read += items.count
        }
        micros.sort()
        let p50 = micros[micros.count / 2], p99 = micros[min(micros.count - 1, micros.count * 99 / 100)]
        let mean = micros.reduce(0, +) / Double(micros.count)
        print(String(format: "latest-%d read over %d users / %d events: p50 %.2f µs, p99 %.2f µs, mean %.2f µs (%d samples, %.1f events per read)",
                     last, users, events, p50, p99, mean, samples, Double(read) / Double(samples)))
        print(String(format: "{\"bench\":\"latest-read\",\"last\":%d,\"users\":%d,\"events\":%d,\"samples\":%d,\"p50_us\":%.3f,\"p99_us\":%.3f,\"mean_us\":%.3f}",
                     last, users, events, samples, p50, p99, mean))
        guard let model = recommendModel else { return }
        let options = RecommendOptions(model: model)
        func externalUser() throws -> String { try db.read { try $0.user(id: nextUser())!.externalID } }
        let exactDB = try exactPath.map { try Database(path: $0, options: .init(readOnly: true, create: false)) }
        // Warm-up loads the model and its index (once per process) and pages some of the file in.
        for _ in 0..<max(1, recommendSamples / 10) {
            let user = try externalUser()
            checksum &+= try db.recommend(user: user, k: 10, options: options).items.count
            if let exactDB { checksum &+= try exactDB.recommend(user: user, k: 10, options: options).items.count }
        }
        let served = try (0..<recommendSamples).map { _ in try externalUser() }
        var millis: [Double] = [], exactMillis: [Double] = []
        var lists: [[UInt32]] = [], exactLists: [[UInt32]] = []
        func serve(_ database: Database, _ block: ArraySlice<String>, into times: inout [Double], _ out: inout [[UInt32]]) throws {
            for user in block {
                let start = DispatchTime.now().uptimeNanoseconds
                let result = try database.recommend(user: user, k: 10, options: options)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1_000_000)
                out.append(result.items.map(\.id))
                checksum &+= result.items.count
            }
        }
        for blockStart in stride(from: 0, to: served.count, by: 100) {
            let block = served[blockStart..<min(served.count, blockStart + 100)]
            try serve(db, block, into: &millis, &lists)
            if let exactDB { try serve(exactDB, block, into: &exactMillis, &exactLists) }
        }
        func percentiles(_ values: [Double]) -> (Double, Double) {
            let sorted = values.sorted()
            return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
        }
        let (r50, r99) = percentiles(millis)
        print("recommend k=10 through '\(model)' " + String(format: "over %d users / %d events: p50 %.3f ms, p99 %.3f ms (%d samples)",
                     users, events, r50, r99, recommendSamples))
        var exactJSON = ""
        if exactDB != nil {
            let (e50, e99) = percentiles(exactMillis)
            var hits = 0, total = 0
            for (found, exact) in zip(lists, exactLists) {
                let truth = Set(exact)
                hits += found.filter { truth.contains($0) }.count
                total += exact.count
            }
            let recall = total > 0 ? Double(hits) / Double(total) : 0
            print("  same users through the exact index of \(exactPath!): " + String(format: "p50 %.3f ms, p99 %.3f ms; recall@10 of the lists above against these: %.4f (alternating blocks of 100)",
                         e50, e99, recall))
            exactJSON = String(format: ",\"exact_p50_ms\":%.4f,\"exact_p99_ms\":%.4f,\"recall_at_10\":%.4f", e50, e99, recall)
        }
        print("{\"bench\":\"recommend\",\"model\":\"\(model)\"," + String(format: "\"users\":%d,\"events\":%d,\"samples\":%d,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"checksum\":%d",
                     users, events, recommendSamples, r50, r99, checksum) + exactJSON + "}")
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        exit(1)
    }
}

run()
