import Foundation
import Hummingbird
import RecDB

/// An RFC 9457 problem: every failed request answers `application/problem+json` with the status, a
/// short title and the same message the CLI prints (`detail`).
struct Problem: Error {
    var status: HTTPResponse.Status
    var detail: String
    /// Per-row errors of a refused batch (`POST /v1/events`).
    var rowErrors: [RowError] = []

    struct RowError: Encodable {
        var row: Int
        var error: String
    }

    init(_ status: HTTPResponse.Status, _ detail: String, rowErrors: [RowError] = []) {
        self.status = status
        self.detail = detail
        self.rowErrors = rowErrors
    }

    static func badRequest(_ detail: String) -> Problem { Problem(.badRequest, detail) }

    /// The status and message for a library error. `databasePath` is removed from messages: a response
    /// never tells a client where the database lives on the server.
    init(_ error: RecDBError, databasePath: String) {
        let message = Problem.scrub(error.description, path: databasePath)
        switch error {
        case .unknownItem, .unknownUser, .unknownSpace, .unknownModel, .unknownIndex:
            self.init(.notFound, message)
        case .invalidArgument, .dimensionMismatch, .importFailed:
            self.init(.badRequest, message)
        case .training:
            self.init(.unprocessableContent, message)
        case .readOnly:
            self.init(.forbidden, message)
        case .alreadyImported:
            self.init(.conflict, message)
        case .mapFull:
            self.init(.init(code: 507, reasonPhrase: "Insufficient Storage"), message)
        case .nestedTransaction:
            self.init(.conflict, message)
        case .storage, .notADatabase, .formatVersion, .corrupt, .damaged, .index:
            self.init(.internalServerError, message)
        }
    }

    static func scrub(_ text: String, path: String) -> String {
        guard !path.isEmpty else { return text }
        var out = text.replacingOccurrences(of: path, with: "<database>")
        let resolved = URL(fileURLWithPath: path).standardizedFileURL.path
        if resolved != path { out = out.replacingOccurrences(of: resolved, with: "<database>") }
        return out
    }

    /// The body: `type` stays `about:blank` (the status says what kind of problem it is, RFC 9457 §4.2.1).
    func body(instance: String) -> [UInt8] {
        struct Body: Encodable {
            var type = "about:blank"
            var title: String
            var status: Int
            var detail: String
            var instance: String
            var errors: [RowError]?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = Body(title: status.reasonPhrase, status: status.code, detail: detail, instance: instance,
                        errors: rowErrors.isEmpty ? nil : rowErrors)
        return Array((try? encoder.encode(body)) ?? Data(#"{"status":500,"title":"Internal Server Error"}"#.utf8))
    }
}
