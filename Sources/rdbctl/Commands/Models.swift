import ArgumentParser
import Foundation
import RecDB

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List models and versions; activate, roll back or drop versions.",
        subcommands: [ModelsList.self, ModelsShow.self, ModelsActivate.self, ModelsRollback.self, ModelsDrop.self],
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

struct ModelsShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "One version in full: configuration, data, metrics and its training curve.")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "Model name.") var model: String
    @Argument(help: "Version (default: the active one).") var version: UInt32?
    @Option(help: "Also write the training curve as an SVG to this file.") var plot: String?
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open(readOnly: true)
        let info = try reportingErrors { try database.read { try $0.modelVersion(model, version: version) } }
        let active = try reportingErrors { try database.models() }.first { $0.name == model }?.activeVersion
        if let plot { try writeCurvePlot(info.report.curve, title: "\(info.model) v\(info.version)", to: plot) }
        if output.json { try printJSON(info); return }
        let c = info.configuration, r = info.report
        print("\(info.model) v\(info.version)\(info.version == active ? " (active)" : "")\(info.resumedFrom.map { ", resumed from v\($0)" } ?? "")")
        print("  \(c.architecture.rawValue), items \(c.items.rawValue)\(info.textSpace.map { " from space \($0)" } ?? ""), hidden \(info.hiddenSize), \(c.blocks) blocks, maxlen \(c.maxLength), seed \(c.seed)")
        print("  trained on events ≤ \(info.eventVersion): \(info.users) users, \(info.numItems) items; index \(info.indexFactory)")
        print(String(format: "  %d epochs, best %d (%@), %.2f s/epoch + %.2f s validation", r.epochsRun, r.bestEpoch, r.stopReason,
                     r.secondsPerEpoch, r.evaluationSecondsPerEpoch))
        print(String(format: "  valid  ndcg@10 %.4f  recall@10 %.4f", r.valid.ndcg10, r.valid.recall10))
        print(String(format: "  test   ndcg@10 %.4f  recall@10 %.4f  ndcg@20 %.4f  recall@20 %.4f", r.test.ndcg10, r.test.recall10, r.test.ndcg20, r.test.recall20))
        guard !r.curve.isEmpty else { print("  no training curve stored"); return }
        print("  curve:  epoch    steps  train loss  valid ndcg@10  valid recall@10")
        for row in r.curve where row.count >= 4 {
            let steps = row.count >= 5 ? String(format: "%7.0f", row[4]) : "      -"  // reports stored before steps were kept
            print(String(format: "         %5.0f  ", row[0]) + steps + String(format: "  %10.4f  %13.4f  %15.4f", row[1], row[2], row[3]))
        }
    }
}

/// Writes a training curve as SVG (`train --plot`, `models show --plot`).
func writeCurvePlot(_ curve: [[Double]], title: String, to path: String) throws {
    guard let svg = TrainingCurvePlot.svg(curve: curve, title: title) else {
        throw ValidationError("--plot: this version has no training curve stored")
    }
    do { try Data(svg.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
        throw ValidationError("--plot \(path): \(error.localizedDescription)")
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
