import Foundation

/// Every error RecDB throws. Cases carry the underlying library's message and the context in which
/// it happened, so a caller can both match on the kind and show a useful sentence.
public enum RecDBError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// LMDB reported `code` (an `MDB_*` or errno value) with `message` while doing `context`.
    case storage(code: Int32, message: String, context: String)
    /// The path is not a RecDB database (or a table is missing).
    case notADatabase(path: String, reason: String)
    /// A write was attempted through a database opened read-only.
    case readOnly(path: String)
    /// The database was written by a newer (or incompatible) format.
    case formatVersion(found: Int, supported: Int)
    /// A stored record does not decode (damaged file or a bug).
    case corrupt(String)
    case unknownItem(String)
    case unknownUser(String)
    case unknownSpace(String)
    case unknownModel(String)
    case unknownIndex(String)
    /// A vector's length does not match its space.
    case dimensionMismatch(space: String, expected: Int, got: Int)
    /// A caller passed something unusable; the text says what.
    case invalidArgument(String)
    /// An import stopped; nothing of it was written.
    case importFailed(ImportError)
    /// Training or evaluation could not run; the text says why.
    case training(String)
    /// A serialized index failed its checksum or could not be loaded.
    case index(String)
    /// A transaction was begun where it cannot run: inside another transaction of the same database
    /// on the same thread (a second write would wait for the first forever). The text says which.
    case nestedTransaction(String)
    /// One write transaction needed more room than the memory map had. It was rolled back (nothing of it
    /// is stored) and the map has grown to `mapSize` bytes, so running it again succeeds.
    case mapFull(path: String, mapSize: Int)
    /// This exact interactions file was imported before (the import ledger holds its fingerprint).
    case alreadyImported(file: String, fingerprint: String)
    /// A stored value failed its checksum (or the file is damaged around it): `table` and `key` name
    /// it, `detail` says what failed. The value is never used.
    case damaged(table: String, key: String, detail: String)

    public var description: String {
        switch self {
        case let .storage(code, message, context): return "storage error \(code) while \(context): \(message)"
        case let .notADatabase(path, reason): return "\(path) is not a RecDB database: \(reason)"
        case let .readOnly(path): return "\(path) is open read-only"
        case let .formatVersion(found, supported):
            let readable = Database.readableFormatVersions
            return "database format version \(found) is not supported (this build writes version \(supported) and reads versions \(readable.lowerBound)–\(readable.upperBound))"
        case let .corrupt(what): return "corrupt record: \(what)"
        case let .unknownItem(id): return "unknown item '\(id)'"
        case let .unknownUser(id): return "unknown user '\(id)'"
        case let .unknownSpace(name): return "unknown embedding space '\(name)'"
        case let .unknownModel(name): return "unknown model '\(name)'"
        case let .unknownIndex(what): return "no index for \(what)"
        case let .dimensionMismatch(space, expected, got): return "space '\(space)' has dimension \(expected), got a vector of \(got)"
        case let .invalidArgument(text): return text
        case let .importFailed(error): return error.description
        case let .training(text): return "training: \(text)"
        case let .index(text): return "index: \(text)"
        case let .nestedTransaction(text): return text
        case let .mapFull(path, mapSize):
            return "the write transaction outgrew the memory map of \(path) and was rolled back; the map is now \(mapSize) bytes, run it again"
        case let .alreadyImported(file, fingerprint):
            return "\(file): this exact file was already imported (fingerprint \(fingerprint)); pass --allow-duplicate to import it again"
        case let .damaged(table, key, detail): return "damaged data in table \(table), key \(key): \(detail) (run `rdbctl verify`; restore from a backup)"
        }
    }

    public var errorDescription: String? { description }
}

/// Where and why an import stopped. `line` is a 1-based line (text formats) or row (`.npy`).
public struct ImportError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var problem: String

    public init(file: String, line: Int?, problem: String) {
        self.file = file
        self.line = line
        self.problem = problem
    }

    public var description: String {
        if let line { return "\(file):\(line): \(problem)" }
        return "\(file): \(problem)"
    }
}
