import ArgumentParser
import Foundation
import RecDB

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check structural invariants (id maps, event references, vector sizes); exit 1 when any fails.")
    @OptionGroup var db: DatabaseArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open(readOnly: true)
        let report = try reportingErrors { try database.verify() }
        if output.json {
            try printJSON(report)
        } else {
            let counts = report.checked.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            print(report.isClean ? "ok: \(counts)" : "FAILED (\(report.problems.count) problems): checked \(counts)")
            for p in report.problems { print("  - \(p)") }
        }
        if !report.isClean { throw ExitCode.failure }
    }
}
