// learn-bench — trains SASRec / BERT4Rec on a sequence file with Learn and prints ONE JSON line
// (test recall@10, ndcg@10, epochs, seconds per epoch, GFLOP/s …) on stdout; progress on stderr.
//
//   swift run -c release learn-bench --data ../shared/data/amazon-beauty/Beauty.txt --arch sasrec --items id
//        [--emb ../shared/emb/beauty_minilm.npy] [--loss auto|ce|sampled] [--negatives N] [--lr 0.001] [--seed 0] [--max-epochs N] [--patience N] [--threads N]
//        [--profiles ../shared/emb/beauty_profiles_titlemean.npy] [--distill-epochs N] [--alpha A] [--quiet]
//   swift run -c release learn-bench --peak          # cblas_sgemm GFLOP/s on this machine (1 and 2 threads)
//   swift run -c release learn-bench --serve --data … # single-sequence user-representation latency
import COpenBLAS
import Foundation
import Learn

func fail(_ m: String) -> Never { FileHandle.standardError.write(Data("learn-bench: \(m)\n".utf8)); exit(2) }
func log(_ m: String) { FileHandle.standardError.write(Data((m + "\n").utf8)) }

var args = Array(CommandLine.arguments.dropFirst())
var options: [String: String] = [:]
var flags: Set<String> = []
while let a = args.first {
    args.removeFirst()
    guard a.hasPrefix("--") else { fail("unexpected argument \(a)") }
    let key = String(a.dropFirst(2))
    if ["quiet", "peak", "serve", "mask-seen"].contains(key) { flags.insert(key); continue }
    guard let v = args.first else { fail("\(a) needs a value") }
    args.removeFirst()
    options[key] = v
}

func jsonLine(_ object: [String: Any]) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

func now() -> Double { Date().timeIntervalSinceReferenceDate }

// This executable owns its process: opt into the OpenBLAS set-up the library itself never does (kernels for this
// CPU, one OpenBLAS thread; --peak then sets the thread count it measures).
LearnEngine.configureProcess()

if flags.contains("peak") {
    var out: [String: Any] = ["openblas_core": LearnEngine.blasCoreName]
    for threads in [1, 2] {
        openblas_set_num_threads(Int32(threads))
        for (name, m, n, k, tb) in [("1024^3", 1024, 1024, 1024, false), ("logits_6400x64x12101", 6400, 12101, 64, true)] {
            let a = [Float](repeating: 0.1, count: m * k), b = [Float](repeating: 0.2, count: k * n)
            var c = [Float](repeating: 0, count: m * n)
            var reps = 0
            let t0 = now()
            repeat {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                            a, Int32(k), b, Int32(tb ? k : n), 0, &c, Int32(n))
                reps += 1
            } while now() - t0 < 2
            out["\(name)_threads\(threads)_gflops"] = (2.0 * Double(m * n * k * reps) / (now() - t0) / 1e9 * 10).rounded() / 10
        }
    }
    print(jsonLine(out))
    exit(0)
}

guard let dataPath = options["data"] else { fail("--data FILE is required") }
var configuration = ModelConfiguration()
if let a = options["arch"] { guard let v = ModelConfiguration.Architecture(rawValue: a) else { fail("--arch sasrec|bert4rec") }; configuration.architecture = v }
if let i = options["items"] { guard let v = ModelConfiguration.ItemRepresentation(rawValue: i) else { fail("--items id|text|text+id") }; configuration.items = v }
if let s = options["seed"], let v = UInt64(s) { configuration.seed = v }
if let s = options["max-epochs"], let v = Int(s) { configuration.maxEpochs = v }
if let s = options["patience"], let v = Int(s) { configuration.patience = v }
if let s = options["threads"], let v = Int(s) { configuration.threads = v }
if let s = options["hidden"], let v = Int(s) { configuration.hiddenSize = v }
if let s = options["batch"], let v = Int(s) { configuration.batchSize = v }
if let s = options["chunk"], let v = Int(s) { configuration.lossChunkRows = v }
if let l = options["loss"] { guard let v = ModelConfiguration.Loss(rawValue: l) else { fail("--loss auto|ce|sampled") }; configuration.loss = v }
if let s = options["negatives"], let v = Int(s) { configuration.negatives = v }
if let s = options["lr"], let v = Float(s) { configuration.learningRate = v }
if flags.contains("mask-seen") { configuration.maskSeen = true }
let quiet = flags.contains("quiet")

let t0 = now()
let dataset: SequenceDataset
do { dataset = try SequenceDataset.load(contentsOf: dataPath) } catch { fail("\(error)") }
var text: TextTable? = nil
if let emb = options["emb"] {
    do { text = try TextTable.loadNPY(path: emb, numItems: dataset.numItems) } catch { fail("\(error)") }
}
var profiles: ProfileTable? = nil
if let p = options["profiles"] {
    do {
        // Row u of the file = user u (1-based user ids in the data file → row = ordinal + 1).
        let (shape, values) = try NPY.readFloatMatrix(path: p)
        let dim = shape[1]
        var rows: [[Float]?] = []
        for u in 0..<dataset.sequences.count {
            let r = u + 1
            rows.append(r < shape[0] ? Array(values[(r * dim)..<((r + 1) * dim)]) : nil)
        }
        profiles = try ProfileTable(dimension: dim, profiles: rows)
        var d = DistillationConfiguration()
        if let s = options["alpha"], let v = Float(s) { d.alpha = v }
        if let s = options["distill-epochs"], let v = Int(s) { d.distillEpochs = v }
        configuration.distillation = d
    } catch { fail("\(error)") }
}

if flags.contains("serve") {
    // Single-sequence latency of userRepresentation on an untrained model of the configured shape.
    do {
        let result = try Trainer.train(dataset: dataset, textTable: text, configuration: { var c = configuration; c.maxEpochs = 0; return c }())
        let model = result.model
        let histories = dataset.sequences.filter { $0.count >= 50 }.prefix(200).map { Array($0.suffix(50)) }
        let pool = histories.isEmpty ? [Array(dataset.sequences[0])] : histories
        var out = [Float](repeating: 0, count: model.hiddenSize)
        var times: [Double] = []
        for i in 0..<5000 {
            let h = pool[i % pool.count]
            let s = now()
            out.withUnsafeMutableBufferPointer { model.userRepresentation(h, into: $0) }
            times.append(now() - s)
        }
        times.sort()
        print(jsonLine(["arch": configuration.architecture.rawValue, "history_length": pool[0].count,
                        "user_representation_p50_ms": times[times.count / 2] * 1000,
                        "user_representation_p99_ms": times[times.count * 99 / 100] * 1000]))
    } catch { fail("\(error)") }
    exit(0)
}

do {
    let flops = try TrainingCost.flopsPerEpoch(dataset: dataset, configuration: configuration, textDimension: text?.dimension)
    let result = try Trainer.train(dataset: dataset, textTable: text, profiles: profiles, configuration: configuration,
                                   progress: { p in
        if !quiet {
            log(String(format: "epoch %d loss %.4f%@ valid ndcg@10 %.5f recall@10 %.5f train %.2fs eval %.2fs (best %d)",
                       p.epoch, p.loss, p.distillationLoss.map { String(format: " kd %.4f", $0) } ?? "",
                       p.valid.ndcg10, p.valid.recall10, p.trainSeconds, p.evaluationSeconds, p.bestEpoch))
        }
    })
    let r = result.report
    let testJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(r.test))
    let validJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(r.valid))
    print(jsonLine([
        "arch": configuration.architecture.rawValue, "items": configuration.items.rawValue,
        "distill": configuration.distillation != nil, "seed": configuration.seed,
        "recall@10": r.test.recall10, "ndcg@10": r.test.ndcg10, "test": testJSON, "valid": validJSON,
        "epochs": r.epochsRun, "best_epoch": r.bestEpoch, "stop_reason": r.stopReason,
        "seconds_per_epoch": r.secondsPerEpoch, "eval_seconds_per_epoch": r.evaluationSecondsPerEpoch,
        "train_gflop_per_epoch": flops / 1e9, "train_gflops": flops / 1e9 / max(r.secondsPerEpoch, 1e-9),
        "n_items": r.numItems, "train_examples": r.trainExamples, "parameters": r.parameterCount,
        "total_seconds": now() - t0, "curve": r.curve,
    ]))
} catch { fail("\(error)") }
