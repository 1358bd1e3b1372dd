import ArgumentParser
import RecDB

/// `rdbctl`: the administration tool. Each command is a thin layer over the RecDB library.
@main
struct RDBCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rdbctl",
        abstract: "RecDB: an embedded recommendation database (import, train, recommend, search).",
        subcommands: [
            Init.self, Import.self, Stats.self, Show.self, Export.self, Backup.self, Verify.self,
            PutItem.self, AddEvent.self, Embed.self, Generate.self, MergeEvents.self,
            IndexCommand.self, Similar.self, Train.self, Models.self, Eval.self, Recommend.self, Serve.self,
        ]
    )

    /// rdbctl owns its process, so it opts into the process-wide OpenBLAS set-up that the library never does
    /// itself (kernels for this CPU, one OpenBLAS thread) before any command runs.
    static func main() {
        Database.configureProcess()
        main(nil)
    }
}
