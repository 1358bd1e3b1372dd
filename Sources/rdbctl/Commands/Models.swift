import ArgumentParser
import Foundation
import RecDB

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List models and versions; activate, roll back or drop versions.",
        subcommands: [ModelsList.self, ModelsActivate.self, ModelsRollback.self, ModelsDrop.self],
        defaultSubcommand: ModelsList.self)
}

struct ModelsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List models and versions with metrics.")
    @OptionGroup var db: DatabaseArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open(readOnly: true)
        let models = try reportingErrors { try database.models() }
        if output.json { try printJSON(models); return }
        if models.isEmpty { print("no models") }
        for m in models {
            print("\(m.name) (active: \(m.activeVersion.map(String.init) ?? "none"))")
            for v in m.versions {
                let c = v.configuration
                // GRU4Rec's state size is part of what the version is.
                let arch = c.architecture == .gru4rec ? "gru4rec(H=\(c.resolvedGRUHiddenSize), L=\(c.blocks))" : c.architecture.rawValue
                print(String(format: "  %@ v%d  %@ %@ d=%d  %d epochs  test ndcg@10 %.4f recall@10 %.4f  events ≤ %llu%@",
                             v.version == m.activeVersion ? "*" : " ", v.version, arch, c.items.rawValue, v.hiddenSize,
                             v.report.epochsRun, v.report.test.ndcg10, v.report.test.recall10, v.eventVersion,
                             v.resumedFrom.map { " (resumed from v\($0))" } ?? ""))
            }
        }
    }
}

struct ModelsActivate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "activate", abstract: "Make a version the active one.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "Model name.") var model: String
    @Argument(help: "Version.") var version: UInt32

    func run() throws {
        let database = try db.open()
        try reportingErrors { try database.activate(model: model, version: version) }
        print("\(model): version \(version) is active")
    }
}

struct ModelsRollback: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollback", abstract: "Re-activate the previously active version.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "Model name.") var model: String

    func run() throws {
        let database = try db.open()
        let v = try reportingErrors { try database.rollback(model: model) }
        print("\(model): rolled back to version \(v)")
    }
}

struct ModelsDrop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drop", abstract: "Drop a version (or, without one, the whole model).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "Model name.") var model: String
    @Argument(help: "Version (default: all).") var version: UInt32?

    func run() throws {
        let database = try db.open()
        try reportingErrors { try database.dropModel(model, version: version) }
        print(version.map { "dropped \(model) version \($0)" } ?? "dropped model \(model)")
    }
}
