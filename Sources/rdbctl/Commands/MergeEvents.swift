import ArgumentParser
import Foundation
import RecDB

struct MergeEvents: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-events",
        abstract: "Move the event blocks that imports into existing users wrote to user_events_delta into user_events (one transaction; reads are unchanged, the next such import appends again).")
    @OptionGroup var db: DatabaseArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open()
        let summary = try reportingErrors { try database.mergeEventDelta() }
        if output.json {
            try printJSON(summary)
        } else {
            print(String(format: "merged %d blocks into user_events in %.2f s", summary.blocks, summary.seconds))
        }
    }
}
