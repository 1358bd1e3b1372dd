import Foundation

/// How `rdbctl serve` listens and what it allows. Every size a request can name is bounded here.
public struct ServerConfiguration: Sendable {
    /// Loopback by default: exposing a database is a decision, never an accident.
    public var host = "127.0.0.1"
    /// 0 asks the system for a free port (the bound port is reported by `onListening`).
    public var port = 8080
    /// Refuse every write (events, items, activation, training) with 403.
    public var readOnly = false
    /// nil: no authentication. Otherwise every request but `/` (the dashboard's page, which holds no
    /// data) and `/healthz` needs `Authorization: Bearer KEY`; writes need a key that allows them.
    public var apiKeys: APIKeys?
    /// Largest request body accepted (413 beyond).
    public var maxBodyBytes = 8 << 20
    /// Largest upload to `POST /v1/import/{kind}` (413 beyond); it is streamed to a file, not held in memory.
    public var maxImportBytes = 4 << 30
    /// Where uploads are kept while they are imported (nil: the system's temporary directory).
    public var importDirectory: String?
    /// Largest `k` of a recommendation or search (400 beyond).
    public var maxK = 1000
    /// Most events in one `POST /v1/events`, users in one batch recommendation, items per similarity call.
    public var maxBatch = 10_000
    /// Seconds a connection may stay idle before it is closed.
    public var idleTimeoutSeconds = 60
    /// `GET /v1/users/{id}/recommendations` answered on the event loop (`RecommendationFastPath`); off only
    /// to compare the two paths (tests).
    var recommendationFastPath = true
    /// With the fast path, the same route read from the socket's bytes (`RecommendationWirePath`) for the
    /// requests it takes; off only to compare (tests).
    var recommendationWirePath = true

    public init() {}
}

/// API keys read from a file: one key per line, optionally followed by `read` or `write` (default
/// `read`); blank lines and lines starting with `#` are ignored.
public struct APIKeys: Sendable {
    public enum Access: String, Sendable { case read, write }
    struct Key: Sendable {
        var bytes: [UInt8]
        var access: Access
    }
    let keys: [Key]

    /// Keys shorter than this are refused: a guessable key is no protection.
    public static let minimumKeyLength = 16

    public init(fileContents: String) throws {
        var keys: [Key] = []
        for (number, rawLine) in fileContents.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count <= 2 else { throw ServerError.configuration("API key file line \(number + 1): expected KEY [read|write]") }
            let access: Access
            if fields.count == 2 {
                guard let a = Access(rawValue: String(fields[1])) else {
                    throw ServerError.configuration("API key file line \(number + 1): access must be read or write, got '\(fields[1])'")
                }
                access = a
            } else {
                access = .read
            }
            let key = Array(fields[0].utf8)
            guard key.count >= Self.minimumKeyLength else {
                throw ServerError.configuration("API key file line \(number + 1): a key needs at least \(Self.minimumKeyLength) characters")
            }
            keys.append(Key(bytes: key, access: access))
        }
        guard !keys.isEmpty else { throw ServerError.configuration("the API key file holds no key") }
        self.keys = keys
    }

    public init(path: String) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size <= 1 << 20, let data = FileManager.default.contents(atPath: path), data.count <= 1 << 20 else {
            throw ServerError.configuration("cannot read the API key file \(path) (at most 1 MiB)")
        }
        try self.init(fileContents: String(decoding: data, as: UTF8.self))
    }

    /// The access a presented key grants, nil when it matches none. Every stored key is compared in
    /// full, whatever matched before, so the time taken does not tell how much of a key was right.
    func access(for presented: [UInt8]) -> Access? {
        var granted: Access?
        for key in keys {
            var difference = UInt8(key.bytes.count == presented.count ? 0 : 1)
            for i in 0..<key.bytes.count {
                difference |= key.bytes[i] ^ (i < presented.count ? presented[i] : 0)
            }
            if difference == 0 && granted != .write { granted = key.access }
        }
        return granted
    }
}

public enum ServerError: Error, CustomStringConvertible {
    case configuration(String)
    public var description: String {
        switch self {
        case let .configuration(text): return text
        }
    }
}
