import ArgumentParser
import Foundation
import RecDB

/// Options shared by every command that works on a database.
struct DatabaseArgument: ParsableArguments {
    @Argument(help: "The database directory.")
    var database: String

    func open(readOnly: Bool = false, writeMap: Bool = false) throws -> Database {
        var options = databaseOptions(readOnly: readOnly, create: false)
        options.writeMap = writeMap
        return try reportingErrors { try Database(path: database, options: options) }
    }
}

/// How rdbctl opens databases. `RDBCTL_INITIAL_MAP_SIZE` (bytes) sets the first memory-map size, so the
/// stress tests can make processes grow the map under each other (it grows by itself as needed).
func databaseOptions(readOnly: Bool, create: Bool) -> Database.Options {
    var options = Database.Options(readOnly: readOnly, create: create)
    if let text = ProcessInfo.processInfo.environment["RDBCTL_INITIAL_MAP_SIZE"], let bytes = Int(text), bytes > 0 {
        options.initialMapSize = bytes
    }
    return options
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON and no progress.")
    var json = false
}

/// Turns library errors into one readable line on stderr and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as RecDBError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = try encoder.encode(value)
    print(String(decoding: data, as: UTF8.self))
}

/// A one-line progress display on stderr, drawn only when stderr is a terminal.
final class ProgressLine {
    private let label: String
    private let enabled: Bool
    private var lastDraw = Date.distantPast
    private let start = Date()

    init(_ label: String, quiet: Bool) {
        self.label = label
        enabled = !quiet && isatty(2) != 0
    }

    func update(done: Int, total: Int, unit: String = "") {
        guard enabled, Date().timeIntervalSince(lastDraw) > 0.1 else { return }
        lastDraw = Date()
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let elapsed = Date().timeIntervalSince(start)
        let eta = fraction > 0.01 ? elapsed / fraction - elapsed : 0
        let text = String(format: "\r%@ %@ %5.1f%% %@ %.0fs left ", label, bar, fraction * 100, unit, eta)
        FileHandle.standardError.write(Data(text.utf8))
    }

    func message(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(label) \(text)".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
    }
}
