import Foundation
import Hummingbird
import HummingbirdCore
import RecDB

/// The routes, as `schemas/openapi.json` documents them (a test checks the two agree).
extension RecDBServer {
    func addRoutes(to router: Router<Context>) {
        endpoint(router, .get, "/", .open) { [self] _, _ in bytes(Array(Dashboard.html.utf8), type: "text/html; charset=utf-8") }
        endpoint(router, .get, "/healthz", .open) { [self] _, _ in
            try json(["status": "ok"])
        }
        endpoint(router, .get, "/openapi.json", .open) { [self] _, _ in
            bytes(Array((JSONSchema.bundledText("openapi.json") ?? "{}").utf8), type: "application/json")
        }
        endpoint(router, .get, "/metrics", .read) { [self] _, _ in
            bytes(Array(metrics.exposition().utf8), type: "text/plain; version=0.0.4; charset=utf-8")
        }
        endpoint(router, .get, "/v1/stats", .read) { [self] _, _ in try json(try database.stats()) }

        // MARK: Models and training
        endpoint(router, .get, "/v1/models", .read) { [self] _, _ in try json(ModelList(models: try database.models())) }
        endpoint(router, .get, "/v1/models/:name/versions/:version/curve.svg", .read) { [self] _, context in
            let name = try pathParameter(context, "name")
            guard let version = UInt32(try pathParameter(context, "version")) else { throw Problem.badRequest("the version must be a number") }
            let info = try database.read { try $0.modelVersion(name, version: version) }
            guard let svg = TrainingCurvePlot.svg(curve: info.report.curve, title: "\(name) v\(version)") else {
                throw Problem(.notFound, "\(name) version \(version) has no training curve stored")
            }
            return bytes(Array(svg.utf8), type: "image/svg+xml")
        }
        endpoint(router, .post, "/v1/models/:name/activate", .write) { [self] request, context in
            let name = try pathParameter(context, "name")
            let body = try await jsonBody(request)
            guard let v = try body.int("version"), let version = UInt32(exactly: v) else { throw Problem.badRequest("'version' is required (a version number)") }
            try await onWriter { [database] in try database.activate(model: name, version: version) }
            return try json(ActiveVersion(model: name, activeVersion: version))
        }
        endpoint(router, .post, "/v1/models/:name/rollback", .write) { [self] _, context in
            let name = try pathParameter(context, "name")
            let version = try await onWriter { [database] in try database.rollback(model: name) }
            return try json(ActiveVersion(model: name, activeVersion: version))
        }
        endpoint(router, .post, "/v1/train", .write) { [self] request, _ in
            let trainingRequest = try trainingRequest(from: try await jsonBody(request))
            guard let id = jobs.start(trainingRequest, database: database, databasePath: databasePath) else {
                throw Problem(.conflict, "a training job is already running (GET /v1/jobs)")
            }
            return try json(JobCreated(job: id, href: "/v1/jobs/\(id)"), status: .accepted)
        }
        endpoint(router, .get, "/v1/jobs", .read) { [self] _, _ in try json(JobList(jobs: jobs.all())) }
        endpoint(router, .get, "/v1/jobs/:id", .read) { [self] _, context in
            guard let id = Int(try pathParameter(context, "id")), let job = jobs.status(id) else {
                throw Problem(.notFound, "unknown job '\(context.parameters.get("id") ?? "")'")
            }
            return try json(job)
        }
        endpoint(router, .post, "/v1/jobs/:id/cancel", .write) { [self] _, context in
            guard let id = Int(try pathParameter(context, "id")), jobs.status(id) != nil else {
                throw Problem(.notFound, "unknown job '\(context.parameters.get("id") ?? "")'")
            }
            guard jobs.cancel(id) else { throw Problem(.conflict, "job \(id) is not running") }
            return try json(jobs.status(id)!, status: .accepted)
        }

        endpoint(router, .post, "/v1/import/:kind", .write) { [self] request, context in
            try await startImport(request, kind: try pathParameter(context, "kind"))
        }

        // MARK: Users and recommendations
        endpoint(router, .get, "/v1/users/:id", .read) { [self] request, context in
            let id = try pathParameter(context, "id")
            let limit = try Query(request).int("history", default: 50, range: 0...10_000)
            return try json(object: try database.read { tx -> [String: Any] in
                guard let user = try tx.user(externalID: id) else { throw RecDBError.unknownUser(id) }
                var history: [[String: Any]] = []
                for event in try tx.events(user: user.id, last: limit) {
                    let item = try tx.item(id: event.item)
                    var row: [String: Any] = ["item": item?.externalID ?? String(event.item), "timestamp": event.timestamp,
                                              "type": event.type, "sequence": event.sequence]
                    if let title = item?.title { row["title"] = title }
                    if let value = event.value { row["value"] = Double(value) }
                    history.append(row)
                }
                var out: [String: Any] = ["id": user.externalID, "created_at": user.createdAt, "history": history,
                                          "events": try tx.events(user: user.id).count]
                if let attributes = try decodedAttributes(user.attributesJSON) { out["attributes"] = attributes }
                return out
            })
        }
        // RecommendationFastPath answers this route before the router sees it (same function, same answers).
        endpoint(router, .get, Self.recommendationsPattern, .read) { [self] request, context in
            bytes(try recommendations(user: try pathParameter(context, "id"), query: Query(request)), type: "application/json")
        }
        endpoint(router, .post, "/v1/recommendations", .read) { [self] request, _ in
            let body = try await jsonBody(request)
            let k = try boundedK(try body.int("k"))
            var options = RecommendOptions()
            options.model = try body.string("model")
            options.version = try body.int("version").map { v in
                guard let u = UInt32(exactly: v) else { throw Problem.badRequest("'version' must be a version number") }
                return u
            }
            options.excludeSeen = try body.bool("exclude_seen") ?? true
            options.filter.attributes = try body.attributes("attributes")
            options.filter.excludeItems = try body.strings("exclude", limit: configuration.maxBatch) ?? []
            let users = try body.strings("users", limit: configuration.maxBatch)
            let sequence = try body.strings("sequence", limit: configuration.maxBatch)
            switch (users, sequence) {
            case let (users?, nil):
                return bytes(try ResponseJSON.encode(results: try database.recommend(users: users, k: k, options: options)), type: "application/json")
            case let (nil, sequence?):
                return bytes(try ResponseJSON.encode(results: [try database.recommend(sequence: sequence, k: k, options: options)]), type: "application/json")
            default:
                throw Problem.badRequest("give either 'users' (an array of user ids) or 'sequence' (an array of item ids, oldest first)")
            }
        }

        // MARK: Items and search
        endpoint(router, .get, "/v1/items/:id", .read) { [self] _, context in
            let id = try pathParameter(context, "id")
            return try json(object: try database.read { tx -> [String: Any] in
                guard let item = try tx.item(externalID: id) else { throw RecDBError.unknownItem(id) }
                return try itemObject(item, tx)
            })
        }
        endpoint(router, .put, "/v1/items/:id", .write) { [self] request, context in
            let id = try pathParameter(context, "id")
            let body = try await jsonBody(request)
            var attributesJSON: String?
            if let attributes = try body.object("attributes") {
                attributesJSON = String(decoding: try JSONSerialization.data(withJSONObject: attributes.values, options: [.sortedKeys]), as: UTF8.self)
            }
            let input = ItemInput(externalID: id, title: try body.string("title"), text: try body.string("text"),
                                  attributesJSON: attributesJSON, isAvailable: try body.bool("available") ?? true)
            let internalID = try await onWriter { [database] in try database.write { tx in try tx.upsertItem(input) } }
            return try json(object: try database.read { tx in try itemObject(try tx.item(id: internalID)!, tx) })
        }
        endpoint(router, .get, "/v1/items/:id/similar", .read) { [self] request, context in
            let id = try pathParameter(context, "id")
            let query = Query(request)
            let k = try boundedK(try query.int("k"))
            let space = try similaritySpace(query)
            return bytes(try ResponseJSON.encode(items: try database.similarItems(to: id, k: k, space: space, filter: try query.attributeFilter())), type: "application/json")
        }
        endpoint(router, .post, "/v1/search", .read) { [self] request, _ in
            let body = try await jsonBody(request)
            let k = try boundedK(try body.int("k"))
            guard let space = try body.string("space") else { throw Problem.badRequest("'space' is required") }
            guard let raw = body.values["vector"] as? [Any], !raw.isEmpty, raw.count <= 65_536 else {
                throw Problem.badRequest("'vector' must be a non-empty array of at most 65536 numbers")
            }
            let vector = try raw.map { v -> Float in
                guard let n = v as? NSNumber, !JSONObject.isBoolean(n), n.doubleValue.isFinite else { throw Problem.badRequest("'vector' must hold finite numbers") }
                return n.floatValue
            }
            var filter = SearchFilter()
            filter.attributes = try body.attributes("attributes")
            return bytes(try ResponseJSON.encode(items: try database.nearest(to: vector, k: k, space: space, filter: filter)), type: "application/json")
        }

        // MARK: Events
        endpoint(router, .post, "/v1/events", .write) { [self] request, _ in
            let body = try await jsonBody(request)
            guard let rows = try body.objects("events", limit: configuration.maxBatch), !rows.isEmpty else {
                throw Problem.badRequest("'events' is required: an array of {user, item, timestamp?, type?, value?}")
            }
            let events = try parseEvents(rows)
            let written = try await onWriter { [database] in try Self.writeEvents(events, database) }
            return try json(written)
        }
    }

    // MARK: - Pieces of the handlers

    /// `POST /v1/import/{kind}`: the body is a file of interactions, items or users (its format from
    /// `?format=` or the Content-Type), streamed to a temporary file of at most `maxImportBytes` and
    /// imported by a background job, all or nothing, as `rdbctl import` does.
    func startImport(_ request: Request, kind: String) async throws -> Response {
        let interactions = kind == "interactions"
        guard interactions || kind == "items" || kind == "users" else {
            throw Problem(.notFound, "unknown import '\(kind)': POST /v1/import/interactions, /v1/import/items or /v1/import/users")
        }
        let query = Query(request)
        let named = query.string("format")
        let contentType = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let fromType: String? = switch contentType {
        case "text/csv": "csv"
        case "text/tab-separated-values": "tsv"
        case "application/x-ndjson", "application/jsonl", "application/x-jsonlines": "jsonl"
        default: nil
        }
        guard let format = named ?? fromType else {
            throw Problem.badRequest("name the body's format: ?format=csv|tsv|jsonl|recbole\(interactions ? "|sequences" : "") or Content-Type text/csv, text/tab-separated-values, application/x-ndjson")
        }
        let valid = interactions ? InteractionFormat(rawValue: format) != nil : RecordFormat(rawValue: format) != nil
        guard valid else { throw Problem.badRequest("format '\(format)' is not one of \((interactions ? InteractionFormat.allCases.map(\.rawValue) : RecordFormat.allCases.map(\.rawValue)).joined(separator: ", ")) for \(kind)") }
        func column(_ name: String) -> String? { query.string(name) }

        // The upload goes to a directory of its own (mode 0700), removed when the job ends.
        var template = Array(((configuration.importDirectory ?? NSTemporaryDirectory()) + "/recdb-upload-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw Problem(.internalServerError, "cannot make a directory for the upload (errno \(errno))")
        }
        let directory = String(cString: made)
        let cleanup: @Sendable () -> Void = { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/body." + format
        do {
            guard FileManager.default.createFile(atPath: file, contents: nil), let handle = FileHandle(forWritingAtPath: file) else {
                throw Problem(.internalServerError, "cannot write the upload to the server's temporary directory")
            }
            defer { try? handle.close() }
            var received = 0
            for try await buffer in request.body {
                received += buffer.readableBytes
                guard received <= configuration.maxImportBytes else {
                    throw Problem(.contentTooLarge, "the upload is larger than \(configuration.maxImportBytes) bytes (rdbctl serve --max-import-body)")
                }
                try buffer.withUnsafeReadableBytes { try handle.write(contentsOf: $0) }
            }
            guard received > 0 else { throw Problem.badRequest("the body is empty: send the file's bytes") }
        } catch {
            cleanup()
            throw error
        }
        let database = self.database, databasePath = self.databasePath
        let scrub: @Sendable (String) -> String = { Problem.scrub($0.replacingOccurrences(of: file, with: "request body"), path: databasePath) }
        let userColumn = column("user_column"), itemColumn = column("item_column"), timeColumn = column("time_column")
        let idColumn = column("id_column"), titleColumn = column("title_column")
        let started = jobs.startImport(kind: kind, { progress in
            if interactions {
                var options = InteractionImportOptions(format: InteractionFormat(rawValue: format))
                options.userColumn = userColumn
                options.itemColumn = itemColumn
                options.timeColumn = timeColumn
                options.progress = progress
                return try database.importInteractions(from: file, options: options)
            }
            var options = RecordImportOptions(format: RecordFormat(rawValue: format))
            options.idColumn = idColumn
            options.titleColumn = titleColumn
            options.progress = progress
            return kind == "items" ? try database.importItems(from: file, options: options) : try database.importUsers(from: file, options: options)
        }, cleanup: cleanup, scrub: scrub)
        guard let id = started else {
            cleanup()
            throw Problem(.conflict, "an import is already running (GET /v1/jobs)")
        }
        return try json(JobCreated(job: id, href: "/v1/jobs/\(id)"), status: .accepted)
    }

    static let recommendationsPattern = "/v1/users/:id/recommendations"

    /// `GET /v1/users/{id}/recommendations`: the JSON body for the user and query (the router's handler
    /// and `RecommendationFastPath` both call this).
    func recommendations(user: String, query: Query) throws -> [UInt8] {
        let request = try recommendationRequest(user: user, query: query)
        return try ResponseJSON.encode(try database.recommend(user: request.user, k: request.k, options: request.options))
    }

    /// The query of `GET /v1/users/{id}/recommendations` as a request of `Database.recommend(_:)`.
    func recommendationRequest(user: String, query: Query) throws -> RecommendationRequest {
        let k = try boundedK(try query.int("k"))
        var options = RecommendOptions()
        options.model = query.string("model")
        options.version = try query.int("version").map { v in
            guard let u = UInt32(exactly: v) else { throw Problem.badRequest("version must be a version number") }
            return u
        }
        options.excludeSeen = try query.bool("exclude_seen") ?? true
        options.filter = try query.attributeFilter()
        return RecommendationRequest(user: user, k: k, options: options)
    }

    func pathParameter(_ context: Context, _ name: String) throws -> String {
        guard let raw = context.parameters.get(name) else { throw Problem.badRequest("missing path parameter \(name)") }
        return try decodedID(raw, name)
    }

    /// A path segment as an id: percent-decoded, 1 to 4096 bytes.
    func decodedID(_ raw: String, _ name: String) throws -> String {
        // Most ids hold no escape: Foundation's decoding (a bridged copy) is only needed when one does.
        let decoded = raw.utf8.contains(UInt8(ascii: "%")) ? raw.removingPercentEncoding : raw
        guard let decoded, !decoded.isEmpty, decoded.utf8.count <= 4096 else {
            throw Problem.badRequest("path parameter \(name) is not a valid id")
        }
        return decoded
    }

    /// `space=NAME`, or `model=NAME` for the item space of that model's active version.
    func similaritySpace(_ query: Query) throws -> String {
        let space = query.string("space")
        let model = query.string("model")
        switch (space, model) {
        case let (space?, nil): return space
        case let (nil, model?):
            let info = try database.read { try $0.modelVersion(model) }
            return Database.itemSpaceName(model: info.model, version: info.version)
        default: throw Problem.badRequest("give either space=NAME or model=NAME")
        }
    }

    func decodedAttributes(_ json: String?) throws -> Any? {
        guard let json, let data = json.data(using: .utf8) else { return nil }
        return try? JSONSerialization.jsonObject(with: data)
    }

    func itemObject(_ item: Item, _ tx: ReadTransaction) throws -> [String: Any] {
        var out: [String: Any] = ["id": item.externalID, "available": item.isAvailable, "deleted": item.isDeleted,
                                  "created_at": item.createdAt, "updated_at": item.updatedAt]
        if let title = item.title { out["title"] = title }
        if let text = item.text { out["text"] = text }
        if let attributes = try decodedAttributes(item.attributesJSON) { out["attributes"] = attributes }
        out["spaces"] = try tx.spaces().filter { $0.kind == .item }.filter { try tx.vector(space: $0.name, entity: item.id) != nil }.map(\.name)
        return out
    }

    struct EventInput: Sendable {
        var user: String
        var item: String
        var timestamp: Int64?
        var type: String?
        var value: Float?
    }

    /// Checks every row's shape before anything is written; all problems are reported together.
    func parseEvents(_ rows: [JSONObject]) throws -> [EventInput] {
        var events: [EventInput] = [], errors: [Problem.RowError] = []
        for (i, row) in rows.enumerated() {
            do {
                guard let user = try idField(row, "user"), let item = try idField(row, "item") else { throw Problem.badRequest("'user' and 'item' are required") }
                let timestamp = try row.int("timestamp").map { t -> Int64 in
                    guard let v = Int64(exactly: t) else { throw Problem.badRequest("'timestamp' is out of range") }
                    return v
                }
                let value = try row.double("value").map(Float.init)
                let type = try row.string("type")
                if let type, type.isEmpty || type.utf8.count > 64 { throw Problem.badRequest("'type' must have 1 to 64 bytes") }
                events.append(EventInput(user: user, item: item, timestamp: timestamp, type: type, value: value))
            } catch let p as Problem {
                errors.append(.init(row: i, error: p.detail))
            }
        }
        guard errors.isEmpty else {
            throw Problem(.unprocessableContent, "\(errors.count) of \(rows.count) events are invalid; none was written", rowErrors: errors)
        }
        return events
    }

    /// A user or item id: a string, or an integer written as a number.
    func idField(_ row: JSONObject, _ key: String) throws -> String? {
        guard row.has(key) else { return nil }
        let id: String
        if let s = row.values[key] as? String { id = s } else if let n = row.values[key] as? NSNumber, !JSONObject.isBoolean(n),
                                                                     let i = Int(exactly: n.doubleValue) { id = String(i) } else {
            throw Problem.badRequest("'\(key)' must be a string or an integer")
        }
        guard !id.isEmpty, id.utf8.count <= 4096 else { throw Problem.badRequest("'\(key)' must have 1 to 4096 bytes") }
        return id
    }

    /// One write transaction: every event or none. Unknown items are per-row errors (the transaction is
    /// rolled back, so a refused batch leaves the database unchanged); new users are created.
    static func writeEvents(_ events: [EventInput], _ database: Database) throws -> EventsWritten {
        let now = Int64(Date().timeIntervalSince1970)
        return try database.write { tx in
            var errors: [Problem.RowError] = []
            var itemIDs: [UInt32] = []
            itemIDs.reserveCapacity(events.count)
            for (i, e) in events.enumerated() {
                if let id = try tx.itemID(for: e.item) { itemIDs.append(id) } else {
                    errors.append(.init(row: i, error: RecDBError.unknownItem(e.item).description)); itemIDs.append(0)
                }
            }
            guard errors.isEmpty else {
                throw Problem(.unprocessableContent, "\(errors.count) of \(events.count) events are invalid; none was written", rowErrors: errors)
            }
            var created = 0, first: UInt64 = 0, last: UInt64 = 0
            for (i, e) in events.enumerated() {
                let existing = try tx.userID(for: e.user)
                let user = try existing ?? tx.upsertUser(externalID: e.user)
                if existing == nil { created += 1 }
                last = try tx.appendEvent(user: user, item: itemIDs[i], timestamp: e.timestamp ?? now, type: e.type, value: e.value)
                if i == 0 { first = last }
            }
            return EventsWritten(written: events.count, createdUsers: created, firstSequence: first, lastSequence: last)
        }
    }

    /// `POST /v1/train`: {"model", "configuration": {…as --config…}, "text_space", "profile_space", "resume", "index", "activate"}.
    func trainingRequest(from body: JSONObject) throws -> TrainingRequest {
        guard let model = try body.string("model") else { throw Problem.badRequest("'model' is required") }
        var configuration = ModelConfiguration()
        if let c = try body.object("configuration") {
            if let v = try JSONSchema.bundled("model-configuration.schema.json").violation(of: c.values) {
                throw Problem.badRequest("configuration: \(v)")
            }
            do {
                configuration = try JSONDecoder().decode(ModelConfiguration.self, from: try JSONSerialization.data(withJSONObject: c.values))
            } catch { throw Problem.badRequest("configuration: \(error)") }
        }
        var request = TrainingRequest(model: model, configuration: configuration)
        request.textSpace = try body.string("text_space")
        request.profileSpace = try body.string("profile_space")
        request.resume = try body.bool("resume") ?? false
        request.indexFactory = try body.string("index")
        request.activate = try body.bool("activate") ?? true
        return request
    }
}

// MARK: - Response bodies

struct ModelList: Encodable { var models: [ModelSummary] }
struct RecommendationList: Encodable { var results: [Recommendations] }
struct ItemList: Encodable { var items: [ScoredItem] }
struct JobList: Encodable { var jobs: [JobStatus] }
struct JobCreated: Encodable { var job: Int; var href: String }
struct ActiveVersion: Encodable {
    var model: String
    var activeVersion: UInt32
    enum CodingKeys: String, CodingKey { case model, activeVersion = "active_version" }
}
struct EventsWritten: Encodable, Sendable {
    var written: Int
    var createdUsers: Int
    var firstSequence: UInt64
    var lastSequence: UInt64
    enum CodingKeys: String, CodingKey {
        case written, createdUsers = "created_users", firstSequence = "first_sequence", lastSequence = "last_sequence"
    }
}

/// A request's query parameters, parsed once: Hummingbird's `uri.queryParameters` splits and decodes the
/// whole query again on every access, and a recommendation request asks for five of them.
/// Lookups compare keys (the first pair with the key wins, as in Hummingbird's dictionary); a query has a few pairs.
struct Query {
    /// (key, percent-decoded value), in the order given.
    let pairs: [(key: Substring, value: Substring)]

    init(_ request: Request) { self.init(request.uri) }
    init(_ uri: URI) { pairs = Array(uri.queryParameters) }

    subscript(_ name: String) -> Substring? { pairs.first { $0.key == name }?.value }

    func string(_ name: String) -> String? { self[name].map(String.init) }

    func int(_ name: String) throws -> Int? {
        guard let text = self[name] else { return nil }
        guard let value = Int(text) else { throw Problem.badRequest("\(name) must be an integer, got '\(text)'") }
        return value
    }

    func int(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        let v = try int(name) ?? value
        guard range.contains(v) else { throw Problem.badRequest("\(name) must be between \(range.lowerBound) and \(range.upperBound)") }
        return v
    }

    func bool(_ name: String) throws -> Bool? {
        guard let text = self[name] else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw Problem.badRequest("\(name) must be true or false, got '\(text)'")
        }
    }

    /// `attribute=KEY=VALUE`, repeatable, as `rdbctl recommend --attribute`.
    func attributeFilter() throws -> SearchFilter {
        var filter = SearchFilter()
        let attributes = pairs.filter { $0.key == "attribute" }.map(\.value)
        guard attributes.count <= 64 else { throw Problem.badRequest("at most 64 attribute filters") }
        for pair in attributes {
            guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                throw Problem.badRequest("attribute takes KEY=VALUE, got '\(pair)'")
            }
            filter.attributes[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
        }
        return filter
    }
}
