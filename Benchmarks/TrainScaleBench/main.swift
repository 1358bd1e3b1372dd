// Large-catalogue training: sampled softmax against full softmax on generated data with planted
// structure (issue #14). Release build; run through scripts/bench-scale.sh (`make bench-scale`).
//
//   train-scale-bench quality [--items 50000] [--users 2000] [--length 100] [--epochs 8] [--seeds 0,1,2] [--negatives 2048]
//       per seed, full CE then sampled on the same data (interleaved), test NDCG@10 and the ratio
//   train-scale-bench epoch [--items 50000,200000,1000000] [--users 5000] [--length 200] [--negatives 2048] [--ce]
//       one epoch of the sampled loss per catalogue size (train s/epoch, validation s, peak RSS);
//       --ce also times full CE at the first size, between two sampled runs (median of those)
//
// Data (deterministic for --data-seed): items in clusters of 100 with Zipf(1.1) popularity inside a
// cluster; a user walks a Markov chain over clusters (85 % to one of the cluster's 3 successors,
// 15 % a jump to a Zipf-popular cluster), taking one item per step. Lengths are uniform in
// [length/2, 3·length/2). Training uses every window (`windows: all`), so an epoch trains every event.
import Foundation
import Learn

func fail(_ m: String) -> Never { FileHandle.standardError.write(Data("train-scale-bench: \(m)\n".utf8)); exit(2) }

var args = Array(CommandLine.arguments.dropFirst())
guard let mode = args.first, ["quality", "epoch"].contains(mode) else { fail("usage: train-scale-bench quality|epoch [options]") }
args.removeFirst()
nonisolated(unsafe) var options: [String: String] = [:]  // written once while parsing, before any other use
var flags: Set<String> = []
var i = 0
while i < args.count {
    let a = args[i]
    guard a.hasPrefix("--") else { fail("unexpected argument \(a)") }
    let key = String(a.dropFirst(2))
    if i + 1 < args.count, !args[i + 1].hasPrefix("--") { options[key] = args[i + 1]; i += 2 } else { flags.insert(key); i += 1 }
}
func intList(_ key: String, _ d: [Int]) -> [Int] {
    guard let s = options[key] else { return d }
    return s.split(separator: ",").map { guard let v = Int($0), v >= 0 else { fail("--\(key): \(s)") }; return v }
}
func int(_ key: String, _ d: Int) -> Int { intList(key, [d])[0] }

LearnEngine.configureProcess()

/// Peak resident set of this process so far, in MiB.
func peakRSS() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

/// One JSON object per line, written at once (unbuffered: long runs are followed as they go).
func emit(_ o: [String: Any]) {
    var d = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
    d.append(0x0A)
    FileHandle.standardOutput.write(d)
}

/// The generated data set (see the header).
func generate(users: Int, items: Int, length: Int, seed: UInt64) throws -> SequenceDataset {
    var rng = Xoshiro256(seed: seed)
    let clusterSize = min(100, items)
    let clusters = max(1, items / clusterSize)
    func clusterRange(_ c: Int) -> Range<Int> {  // 0-based item indices; the last cluster takes the rest
        c == clusters - 1 ? (c * clusterSize)..<items : (c * clusterSize)..<((c + 1) * clusterSize)
    }
    func cdf(_ n: Int, _ s: Double) -> [Double] {
        var acc = 0.0
        var out = [Double](repeating: 0, count: n)
        for k in 0..<n { acc += 1 / pow(Double(k + 1), s); out[k] = acc }
        return out.map { $0 / acc }
    }
    func draw(_ table: [Double], _ u: Double) -> Int {
        var lo = 0, hi = table.count - 1
        while lo < hi { let mid = (lo + hi) / 2; if table[mid] < u { lo = mid + 1 } else { hi = mid } }
        return lo
    }
    func uniform() -> Double { Double(rng.next() >> 11) / 9_007_199_254_740_992.0 }
    let inCluster = cdf(clusterSize + items % clusterSize, 1.1)
    let clusterCDF = cdf(clusters, 1.0)
    var clusterOrder = Array(0..<clusters)
    clusterOrder.shuffle(using: &rng)
    let successors = (0..<clusters * 3).map { _ in Int(rng.next() % UInt64(clusters)) }
    var sequences: [[Int32]] = []
    sequences.reserveCapacity(users)
    for _ in 0..<users {
        let n = max(3, length / 2 + Int(rng.next() % UInt64(max(1, length))))
        var s = [Int32]()
        s.reserveCapacity(n)
        var c = clusterOrder[draw(clusterCDF, uniform())]
        for _ in 0..<n {
            let r = clusterRange(c)
            var k = draw(inCluster, uniform())
            while k >= r.count { k = draw(inCluster, uniform()) }
            s.append(Int32(r.lowerBound + k + 1))
            c = uniform() < 0.85 ? successors[c * 3 + Int(rng.next() % 3)] : clusterOrder[draw(clusterCDF, uniform())]
        }
        sequences.append(s)
    }
    return try SequenceDataset(sequences: sequences, numItems: items)
}

func configuration(loss: ModelConfiguration.Loss, seed: UInt64, epochs: Int) -> ModelConfiguration {
    var c = ModelConfiguration(architecture: .sasrec, items: .id)
    c.windows = .all
    c.loss = loss
    c.negatives = int("negatives", 2048)
    c.seed = seed
    c.maxEpochs = epochs
    c.patience = int("patience", 3)
    c.threads = int("threads", 0)
    return c
}

let dataSeed = UInt64(int("data-seed", 1))
if mode == "quality" {
    let items = int("items", 50_000), users = int("users", 2_000), length = int("length", 100)
    let data = try generate(users: users, items: items, length: length, seed: dataSeed)
    let events = data.sequences.reduce(0) { $0 + $1.count }
    var ratios: [Double] = []
    for seed in intList("seeds", [0]) {
        var row: [String: Any] = ["seed": seed, "items": items, "events": events]
        for loss in [ModelConfiguration.Loss.ce, .sampled] {
            let c = configuration(loss: loss, seed: UInt64(seed), epochs: int("epochs", 8))
            let r = try Trainer.train(dataset: data, configuration: c, progress: { p in
                FileHandle.standardError.write(Data(String(format: "%@ seed %d epoch %d loss %.4f valid ndcg@10 %.5f train %.1fs eval %.1fs\n",
                    loss.rawValue, seed, p.epoch, p.loss, p.valid.ndcg10, p.trainSeconds, p.evaluationSeconds).utf8))
            })
            row[loss.rawValue] = ["test_ndcg@10": r.report.test.ndcg10, "test_recall@10": r.report.test.recall10,
                                  "valid_ndcg@10": r.report.valid.ndcg10, "epochs": r.report.epochsRun,
                                  "best_epoch": r.report.bestEpoch, "seconds_per_epoch": r.report.secondsPerEpoch]
            if loss == .sampled, let ce = row["ce"] as? [String: Any], let n = ce["test_ndcg@10"] as? Double, n > 0 {
                ratios.append(r.report.test.ndcg10 / n)
                row["ratio"] = r.report.test.ndcg10 / n
            }
        }
        emit(row)
    }
    let mean = ratios.reduce(0, +) / Double(max(ratios.count, 1))
    emit(["mean_ratio": mean, "seeds": ratios.count])
} else {
    let sizes = intList("items", [50_000, 200_000, 1_000_000])
    let users = int("users", 5_000), length = int("length", 200)
    func epoch(_ data: SequenceDataset, _ loss: ModelConfiguration.Loss) throws -> [String: Any] {
        let t0 = Date()
        let r = try Trainer.train(dataset: data, configuration: configuration(loss: loss, seed: 0, epochs: 1))
        return ["loss": loss.rawValue, "items": data.numItems, "events": data.sequences.reduce(0) { $0 + $1.count },
                "train_windows": r.report.trainExamples, "train_seconds_per_epoch": r.report.secondsPerEpoch,
                "validation_seconds": r.report.evaluationSecondsPerEpoch, "wall_seconds": Date().timeIntervalSince(t0),
                "peak_rss_mib": peakRSS()]
    }
    for (k, items) in sizes.enumerated() {
        let data = try generate(users: users, items: items, length: length, seed: dataSeed)
        if k == 0 && flags.contains("ce") {
            // Interleaved on the loaded machine: sampled, CE, sampled.
            let a = try epoch(data, .sampled); emit(a)
            let ce = try epoch(data, .ce); emit(ce)
            let b = try epoch(data, .sampled); emit(b)
            let s = [a, b].map { $0["train_seconds_per_epoch"] as! Double }.sorted()
            let sampledMedian = (s[0] + s[1]) / 2
            emit(["items": items, "ce_over_sampled": (ce["train_seconds_per_epoch"] as! Double) / sampledMedian])
        } else {
            emit(try epoch(data, .sampled))
        }
    }
}
