import ArgumentParser
import Foundation
import RecDB

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "Build, list or drop the vector index of an embedding space.",
        subcommands: [IndexBuild.self, IndexList.self, IndexDrop.self])
}

struct IndexBuild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build", abstract: "Build a space's index and store it (one transaction).")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Embedding space.") var space: String
    @Option(name: .customLong("type"), help: "Faiss factory string: Flat, HNSW32, IVF256,Flat, IVF1024,PQ16, OPQ16,IVF256,PQ16 … (default: Flat below 50k vectors, HNSW32 above).") var factory: String?
    @Option(help: "ip, l2 or cosine (default: the space's metric).") var metric: VectorMetric?
    @Option(help: "HNSW search breadth stored as the default.") var efSearch: Int?
    @Option(help: "IVF lists probed, stored as the default.") var nprobe: Int?
    @OptionGroup var output: OutputOptions

    /// Stored defaults size every later search's heaps: bounded here, not at the first query.
    func validate() throws {
        if let efSearch, !(1...1_000_000).contains(efSearch) { throw ValidationError("--ef-search must be in 1...1000000") }
        if let nprobe, !(1...1_000_000).contains(nprobe) { throw ValidationError("--nprobe must be in 1...1000000") }
    }

    func run() throws {
        let database = try db.open()
        let progress = ProgressLine("indexing", quiet: output.json)
        progress.message("building the index of '\(space)'…")
        let params = (efSearch != nil || nprobe != nil) ? SearchParameters(efSearch: efSearch, nprobe: nprobe) : nil

        let info = try reportingErrors { try database.buildIndex(space: space, factory: factory, metric: metric, searchParameters: params) }
        progress.finish()
        if output.json { try printJSON(info); return }
        print("built \(info.factory) (\(info.metric.rawValue)) over \(info.vectors) vectors of '\(info.space)': \(formatBytes(info.bytes)), checksum \(info.checksum)")
    }
}

struct IndexList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List stored indexes.")
    @OptionGroup var db: DatabaseArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open(readOnly: true)
        let infos = try reportingErrors { try database.read { try $0.indexes() } }
        if output.json { try printJSON(infos); return }
        if infos.isEmpty { print("no indexes") }
        for i in infos {
            print("\(i.space): \(i.factory), \(i.metric.rawValue), dim \(i.dimension), \(i.vectors) vectors, \(formatBytes(i.bytes)), space version \(i.spaceVersion)")
        }
    }
}

struct IndexDrop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drop", abstract: "Drop a space's stored index.")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Embedding space.") var space: String

    func run() throws {
        let database = try db.open()
        let dropped = try reportingErrors { try database.write { try $0.dropIndex(space: space) } }
        print(dropped ? "dropped the index of '\(space)'" : "'\(space)' had no index")
    }
}

