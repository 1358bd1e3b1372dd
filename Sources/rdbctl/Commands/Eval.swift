import ArgumentParser
import Foundation
import RecDB

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a stored model version on the data it was trained on.")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Model name.") var model: String
    @Option(help: "Version (default: the active one).") var version: UInt32?
    @Option(help: "loo or temporal (default: the training split).") var split: String?
    @Flag(help: "Exclude each user's history items from the ranking (default off, as in training unless it was trained with --exclude-seen).")
    var excludeSeen = false
    @Option(help: "Extra cutoffs K, comma-separated (e.g. 1,5,10,20,50): Hit@K, Recall@K, NDCG@K, MRR@K, Precision@K.")
    var k: String?
    @Option(help: "Users evaluated: N = the fixed seeded sample of N users, 0 = all (default: the users the version was validated and tested on at training time, so the recorded metrics reproduce).")
    var evalUsers: Int?
    @Flag(help: "Also report item coverage@K (the share of the catalogue in at least one user's top K) for every --k.")
    var coverage = false
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let split { guard ["loo", "temporal"].contains(split) else { throw ValidationError("--split takes loo or temporal") } }
        _ = try cutoffs()
        if coverage && k == nil { throw ValidationError("--coverage needs --k") }
        if let evalUsers, !(0...Int(Int32.max)).contains(evalUsers) { throw ValidationError("--eval-users must be in 0...2147483647 (0 = all users)") }
    }

    /// The --k list: distinct integers ≥ 1, at most 100 of them (the upper bound, the catalogue size,
    /// is checked against the model).
    func cutoffs() throws -> [Int] {
        guard let k else { return [] }
        var out: [Int] = []
        for part in k.split(separator: ",", omittingEmptySubsequences: false) {
            guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= 1 else {
                throw ValidationError("--k takes comma-separated integers ≥ 1, got '\(part)'")
            }
            if !out.contains(v) { out.append(v) }
        }
        guard out.count <= 100 else { throw ValidationError("--k takes at most 100 cutoffs") }
        return out
    }

    func run() throws {
        let database = try db.open(readOnly: true)
        let outcome = try reportingErrors {
            try database.evaluate(model: model, version: version, split: split.map { $0 == "loo" ? .leaveOneOut : .temporal },
                                  options: EvaluationOptions(excludeSeen: excludeSeen ? true : nil, cutoffs: try cutoffs(), coverage: coverage),
                                  evaluationUsers: evalUsers)
        }
        if output.json { try printJSON(outcome); return }
        print("\(outcome.model) version \(outcome.version), split \(outcome.split)")
        print(String(format: "  valid  recall@10 %.4f  ndcg@10 %.4f   (recorded %.4f / %.4f; %ld users)", outcome.valid.recall10, outcome.valid.ndcg10, outcome.recordedValid.recall10, outcome.recordedValid.ndcg10, outcome.valid.users))
        print(String(format: "  test   recall@10 %.4f  ndcg@10 %.4f   (recorded %.4f / %.4f; %ld users)", outcome.test.recall10, outcome.test.ndcg10, outcome.recordedTest.recall10, outcome.recordedTest.ndcg10, outcome.test.users))
        for (name, m) in [("valid", outcome.valid), ("test", outcome.test)] {
            for k in m.atK.keys.sorted() {
                let c = m.atK[k]!
                print(String(format: "  %@ @%d  hit %.4f  ndcg %.4f  mrr %.4f  precision %.4f%@", name, k, c.hit, c.ndcg, c.mrr, c.precision,
                             m.coverage[k].map { String(format: "  coverage %.4f", $0) } ?? ""))
            }
        }
    }
}
