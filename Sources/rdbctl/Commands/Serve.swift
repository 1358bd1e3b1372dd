import ArgumentParser
import Foundation
import RecDB
import RecDBServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the database over HTTP: a JSON API (schemas/openapi.json) and a dashboard at /.")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Address to bind (loopback by default; 0.0.0.0 exposes the database to the network).")
    var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one, printed at start).") var port = 8080
    @Flag(help: "Refuse every write: events, items, activation, rollback, training (default off).") var readOnly = false
    @Option(help: "File of API keys, one per line: KEY [read|write] (default: no authentication). Keys have at least 16 characters.")
    var apiKeyFile: String?
    @Option(help: "Largest request body in bytes.") var maxBody = 8 << 20
    @Option(help: "Largest upload to POST /v1/import/{kind} in bytes (streamed to a temporary file).") var maxImportBody = 4 << 30
    @Option(help: "Directory for uploads while they are imported (default: the system's temporary directory).")
    var importTempDir: String?
    @Option(help: "Largest k of a recommendation or search.") var maxK = 1000
    @Option(help: "Idle connections are closed after this many seconds.") var idleTimeout = 60

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard (1...(1 << 30)).contains(maxBody) else { throw ValidationError("--max-body must be between 1 and 1073741824") }
        guard (1...(1 << 40)).contains(maxImportBody) else { throw ValidationError("--max-import-body must be between 1 and 1099511627776") }
        guard (1...100_000).contains(maxK) else { throw ValidationError("--max-k must be between 1 and 100000") }
        guard (1...86_400).contains(idleTimeout) else { throw ValidationError("--idle-timeout must be between 1 and 86400") }
    }

    func run() throws {
        // Before any task exists: this process only serves, so handlers may run on the event loops.
        _ = RecDBServer.runConcurrencyOnEventLoops()
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.readOnly = readOnly
        configuration.maxBodyBytes = maxBody
        configuration.maxK = maxK
        configuration.maxImportBytes = maxImportBody
        configuration.importDirectory = importTempDir
        configuration.idleTimeoutSeconds = idleTimeout
        if let apiKeyFile {
            do { configuration.apiKeys = try APIKeys(path: apiKeyFile) } catch { throw ValidationError("--api-key-file: \(error)") }
        }
        let database = try db.open(readOnly: readOnly)
        let server = RecDBServer(database: database, path: db.database, configuration: configuration)
        let host = self.host, path = db.database
        let auth = configuration.apiKeys == nil ? "no API key needed" : "API key required"
        let mode = readOnly ? "read-only" : "read-write"
        let outcome = Locked<Error?>(nil)
        let done = DispatchSemaphore(value: 0)
        // The command is synchronous; the server runs on Swift concurrency until SIGINT/SIGTERM.
        Task {
            do {
                try await server.run(stopOnSignals: true) { port in
                    // Written unbuffered: a script waiting for this line must see it at once.
                    FileHandle.standardOutput.write(Data("RecDB serving \(path) at http://\(host):\(port)/ (\(mode), \(auth)); Ctrl-C stops\n".utf8))
                }
            } catch { outcome.set(error) }
            done.signal()
        }
        done.wait()
        if let error = outcome.get() {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// A value handed from the server task back to the command's thread.
final class Locked<Value>: @unchecked Sendable {  // every access holds `lock`
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ newValue: Value) { lock.lock(); value = newValue; lock.unlock() }
}
