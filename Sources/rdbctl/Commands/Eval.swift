import ArgumentParser
import Foundation
import RecDB

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a stored model version on the data it was trained on.")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Model name.") var model: String
    @Option(help: "Version (default: the active one).") var version: UInt32?
    @Option(help: "loo or temporal (default: the training split).") var split: String?
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let split { guard ["loo", "temporal"].contains(split) else { throw ValidationError("--split takes loo or temporal") } }
    }

    func run() throws {
        let database = try db.open(readOnly: true)
        let outcome = try reportingErrors {
            try database.evaluate(model: model, version: version, split: split.map { $0 == "loo" ? .leaveOneOut : .temporal })
        }
        if output.json { try printJSON(outcome); return }
        print("\(outcome.model) version \(outcome.version), split \(outcome.split)")
        print(String(format: "  valid  recall@10 %.4f  ndcg@10 %.4f   (recorded %.4f / %.4f)", outcome.valid.recall10, outcome.valid.ndcg10, outcome.recordedValid.recall10, outcome.recordedValid.ndcg10))
        print(String(format: "  test   recall@10 %.4f  ndcg@10 %.4f   (recorded %.4f / %.4f)", outcome.test.recall10, outcome.test.ndcg10, outcome.recordedTest.recall10, outcome.recordedTest.ndcg10))
    }
}
