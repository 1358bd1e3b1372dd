import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import RecDB
import ServiceLifecycle
import Synchronization

/// `rdbctl serve`: JSON over HTTP and a dashboard, a thin layer over one `Database` in this process.
/// Every route goes through `endpoint`, which authorises, bounds, times and turns every error into a
/// problem+json answer, so no handler can answer without a status or leak a path.
public final class RecDBServer: Sendable {
    public typealias Context = BasicRequestContext

    let database: Database
    /// Removed from every message a client sees.
    let databasePath: String
    let configuration: ServerConfiguration
    let metrics = RequestMetrics()
    let jobs = TrainingJobs()
    /// Writes wait here, one at a time, for the database's writer lock (a training commit can hold it
    /// for a while): a blocked write must not hold one of the few threads that answer reads.
    let writer = DispatchQueue(label: "recdb.server.writer")
    /// "METHOD /pattern" of every route, as registered (checked against schemas/openapi.json).
    let routes = RouteList()
    /// The recommendations route's series, shared by its handler and `RecommendationFastPath`.
    let recommendationsSeries: RequestMetrics.Series
    /// The Server header of every response.
    static let serverName = "RecDB"
    /// Requests `RecommendationFastPath` answered (tests check it takes the requests it should).
    let fastPathAnswers = Atomic<Int>(0)
    /// Of those, the requests `RecommendationWirePath` read from the socket's bytes.
    let wirePathAnswers = Atomic<Int>(0)
    /// Each event loop's `FastPathRound`, made on its first connection.
    private let fastPathRounds = Mutex<[ObjectIdentifier: NIOLoopBound<FastPathRound>]>([:])

    /// Who may call a route.
    enum Access { case open, read, write }

    public init(database: Database, path: String, configuration: ServerConfiguration) {
        self.database = database
        self.databasePath = path
        self.configuration = configuration
        recommendationsSeries = metrics.series(method: "GET", route: RecDBServer.metricsLabel(RecDBServer.recommendationsPattern))
    }

    /// The application: routes, body limits and timeouts. `onListening` receives the bound port.
    public func application(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        var logger = Logger(label: "recdb.serve")
        logger.logLevel = .warning
        // With the wire path, connections start without Hummingbird's idle timeout: RecommendationWirePath
        // keeps it while it answers and adds Hummingbird's idle handling when it passes bytes on.
        let wirePath = configuration.recommendationFastPath && configuration.recommendationWirePath
        let http1 = HTTP1Channel.Configuration(idleTimeout: wirePath ? nil : .seconds(Int64(configuration.idleTimeoutSeconds)))
        let server: HTTPServerBuilder = configuration.recommendationFastPath
            ? HTTPServerBuilder { [self] responder in RecDBHTTP1Channel(http1: HTTP1Channel(responder: responder, configuration: http1), server: self) }
            : .http1(configuration: http1)
        return Application(
            router: makeRouter(),
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: Self.serverName),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    /// Runs until the task running it is cancelled, or, with `stopOnSignals`, until the process gets SIGINT or
    /// SIGTERM; either way it stops gracefully: requests in flight are answered, then connections close.
    ///
    /// `stopOnSignals` is for a process that exists to serve (`rdbctl serve`): it takes over the process's
    /// handling of those two signals. Without it (the default, for a host app) signal handling is left as it is.
    ///
    /// Why cancellation is turned into a graceful shutdown: cancelled mid-request, the server's tasks could leave
    /// NIO's async writer unfinished, which traps (ends the host process) when the writer is released. The
    /// service group runs in a task of its own, which the caller's cancellation does not reach.
    public func run(stopOnSignals: Bool = false, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let application = application(onListening: onListening)
        let group = ServiceGroup(configuration: .init(services: [application],
                                                      gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [],
                                                      logger: application.logger))
        let running = Task { try await group.run() }
        try await withTaskCancellationHandler {
            try await running.value
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
        jobs.waitForAll()
    }

    /// Makes Swift concurrency's global executor run on the server's event loops (NIO's singleton group,
    /// the one `application` serves on), so a request's handler runs on the thread that read the request
    /// instead of hopping to the cooperative pool and back; returns whether it took effect.
    ///
    /// Process-wide and irreversible: only for a process that exists to serve (`rdbctl serve`), called
    /// once from its main thread before any task starts; never from a library inside a host app. Blocking
    /// work stays off the event loops either way: writes wait on `writer`, training and imports run on
    /// their own threads.
    public static func runConcurrencyOnEventLoops() -> Bool {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }

    func makeRouter() -> Router<Context> {
        let router = Router(context: Context.self)
        router.add(middleware: UnknownRouteMiddleware(server: self))
        addRoutes(to: router)
        return router
    }

    // MARK: - The one path every request takes

    func endpoint(_ router: Router<Context>, _ method: HTTPRequest.Method, _ pattern: String, _ access: Access,
                  _ handler: @escaping @Sendable (Request, Context) async throws -> Response) {
        let label = Self.metricsLabel(pattern)
        routes.append("\(method.rawValue) \(label)")
        let series = metrics.series(method: method.rawValue, route: label)
        router.on(RouterPath(pattern), method: method) { [self] request, context in
            let start = DispatchTime.now().uptimeNanoseconds
            let response: Response
            do {
                try authorise(request, access)
                response = try await handler(request, context)
            } catch {
                response = problemResponse(for: error, path: request.uri.path)
            }
            series.record(status: response.status.code, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            return response
        }
    }

    /// The `FastPathRound` of `loop`; called on `loop`.
    func fastPathRound(for loop: any EventLoop) -> FastPathRound {
        fastPathRounds.withLock { rounds in
            let key = ObjectIdentifier(loop)
            if let round = rounds[key] { return round.value }
            let round = FastPathRound(loop: loop, server: self)
            rounds[key] = NIOLoopBound(round, eventLoop: loop)
            return round
        }
    }

    /// Metrics label: the pattern in OpenAPI's spelling (`{id}`), never the raw path.
    static func metricsLabel(_ pattern: String) -> String {
        pattern.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
    }

    func authorise(_ request: Request, _ access: Access) throws { try authorise(request.headers, access) }

    func authorise(_ headers: HTTPFields, _ access: Access) throws { try authorise(authorization: headers[.authorization], access) }

    /// `authorization`: the Authorization field's value (several fields joined by ", ", as HTTPFields reads them).
    func authorise(authorization: String?, _ access: Access) throws {
        if access == .write && configuration.readOnly {
            throw Problem(.forbidden, "the server is read-only (rdbctl serve --read-only): writes are refused")
        }
        guard access != .open, let keys = configuration.apiKeys else { return }
        guard let header = authorization, header.hasPrefix("Bearer ") else {
            throw Problem(.unauthorized, "this server needs an API key: send Authorization: Bearer KEY")
        }
        guard let granted = keys.access(for: Array(header.utf8.dropFirst("Bearer ".utf8.count))) else {
            throw Problem(.unauthorized, "the API key is not valid")
        }
        if access == .write && granted != .write { throw Problem(.forbidden, "this API key may read but not write") }
    }

    func problemResponse(for error: Error, path: String) -> Response {
        let (status, headers, body) = problemParts(for: error, path: path)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// A failure's status, headers (Content-Length not yet set) and problem+json body.
    func problemParts(for error: Error, path: String) -> (HTTPResponse.Status, HTTPFields, [UInt8]) {
        let problem: Problem
        switch error {
        case let p as Problem: problem = p
        case let e as RecDBError: problem = Problem(e, databasePath: databasePath)
        case let e as HTTPError: problem = Problem(e.status, e.body ?? e.status.reasonPhrase)
        default: problem = Problem(.internalServerError, Problem.scrub("\(error)", path: databasePath))
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        if problem.status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return (problem.status, headers, problem.body(instance: path))
    }

    // MARK: - Request and response helpers

    func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return bytes(Array(try encoder.encode(value)), type: "application/json", status: status)
    }

    /// For values with free-form parts (item attributes): a JSONSerialization object.
    func json(object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
        bytes(Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])), type: "application/json", status: status)
    }

    func bytes(_ body: [UInt8], type: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The request body as a JSON object, at most `maxBodyBytes`.
    func jsonBody(_ request: Request) async throws -> JSONObject {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw Problem(.contentTooLarge, "the request body has \(length) bytes; at most \(limit) are accepted")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: limit) } catch {
            throw Problem(.contentTooLarge, "the request body exceeds \(limit) bytes")
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) } catch {
            throw Problem.badRequest("the request body is not valid JSON")
        }
        guard let dictionary = object as? [String: Any] else { throw Problem.badRequest("the request body must be a JSON object") }
        return JSONObject(dictionary)
    }

    /// `k` from a query or a body: 1...maxK (default 10).
    func boundedK(_ value: Int?) throws -> Int {
        guard let k = value else { return 10 }
        guard k >= 1 && k <= configuration.maxK else { throw Problem.badRequest("k must be between 1 and \(configuration.maxK), got \(k)") }
        return k
    }

    /// Runs a write on the writer queue (see `writer`).
    func onWriter<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            writer.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// Unknown routes and methods answer problem+json like every other failure.
struct UnknownRouteMiddleware: RouterMiddleware {
    typealias Context = RecDBServer.Context
    let server: RecDBServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let status = (error as? HTTPError)?.status ?? .internalServerError
            let detail = status == .notFound ? "no route \(request.method.rawValue) \(request.uri.path)" : "\(error)"
            server.metrics.record(method: request.method.rawValue, route: "unmatched", status: status.code, seconds: 0)
            return server.problemResponse(for: Problem(status, detail), path: request.uri.path)
        }
    }
}

/// Typed access to a JSON request body, with messages that name the field.
struct JSONObject: @unchecked Sendable {  // holds JSONSerialization values, read-only after parsing
    let values: [String: Any]
    init(_ values: [String: Any]) { self.values = values }

    /// Compares the value's dynamic type: `is NSNull` on a string value bridges it to an NSString first,
    /// which was the costliest part of reading an events batch.
    func has(_ key: String) -> Bool {
        guard let value = values[key] else { return false }
        return ObjectIdentifier(type(of: value)) != Self.nullType
    }

    private static let nullType = ObjectIdentifier(NSNull.self)
    /// The class JSONSerialization gives `true` and `false` (a subclass of NSNumber), read off its own output.
    private static let booleanType: ObjectIdentifier = {
        let parsed = try? JSONSerialization.jsonObject(with: Data("[true]".utf8)) as? [Any]
        return ObjectIdentifier(type(of: parsed?.first ?? true))
    }()

    /// JSONSerialization returns numbers and booleans both as NSNumber, and `is Bool` holds for the
    /// numbers 0 and 1 too; a JSON boolean is of its own NSNumber subclass (`booleanType`).
    static func isBoolean(_ v: Any) -> Bool {
        let type = ObjectIdentifier(type(of: v))
        return type == booleanType || type == ObjectIdentifier(Bool.self)
    }

    func string(_ key: String) throws -> String? {
        guard has(key) else { return nil }
        guard let s = values[key] as? String else { throw Problem.badRequest("'\(key)' must be a string") }
        return s
    }

    func int(_ key: String) throws -> Int? {
        guard has(key) else { return nil }
        guard let n = values[key] as? NSNumber, !Self.isBoolean(n), let i = Int(exactly: n.doubleValue) else {
            throw Problem.badRequest("'\(key)' must be an integer")
        }
        return i
    }

    func double(_ key: String) throws -> Double? {
        guard has(key) else { return nil }
        guard let n = values[key] as? NSNumber, !Self.isBoolean(n), n.doubleValue.isFinite else {
            throw Problem.badRequest("'\(key)' must be a finite number")
        }
        return n.doubleValue
    }

    func bool(_ key: String) throws -> Bool? {
        guard has(key) else { return nil }
        guard let v = values[key], Self.isBoolean(v), let b = v as? Bool else { throw Problem.badRequest("'\(key)' must be true or false") }
        return b
    }

    func strings(_ key: String, limit: Int) throws -> [String]? {
        guard has(key) else { return nil }
        guard let a = values[key] as? [Any] else { throw Problem.badRequest("'\(key)' must be an array of strings") }
        guard a.count <= limit else { throw Problem.badRequest("'\(key)' has \(a.count) entries; at most \(limit) are accepted") }
        return try a.map { v in
            if let s = v as? String { return s }
            if let n = v as? NSNumber, !Self.isBoolean(n) { return n.stringValue }  // numeric ids, as the CSV importer takes them
            throw Problem.badRequest("'\(key)' must be an array of strings")
        }
    }

    func object(_ key: String) throws -> JSONObject? {
        guard has(key) else { return nil }
        guard let o = values[key] as? [String: Any] else { throw Problem.badRequest("'\(key)' must be an object") }
        return JSONObject(o)
    }

    func objects(_ key: String, limit: Int) throws -> [JSONObject]? {
        guard has(key) else { return nil }
        guard let a = values[key] as? [Any] else { throw Problem.badRequest("'\(key)' must be an array of objects") }
        guard a.count <= limit else { throw Problem.badRequest("'\(key)' has \(a.count) entries; at most \(limit) are accepted") }
        return try a.map { v in
            guard let o = v as? [String: Any] else { throw Problem.badRequest("'\(key)' must be an array of objects") }
            return JSONObject(o)
        }
    }

    /// Attribute filters: an object of strings (numbers and booleans are compared as their text).
    func attributes(_ key: String) throws -> [String: String] {
        guard let o = try object(key) else { return [:] }
        var out: [String: String] = [:]
        for (k, v) in o.values {
            if let s = v as? String { out[k] = s } else if let n = v as? NSNumber { out[k] = n.stringValue } else {
                throw Problem.badRequest("'\(key).\(k)' must be a string or a number")
            }
        }
        return out
    }
}

final class RouteList: @unchecked Sendable {  // every access holds `lock`
    private let lock = NSLock()
    private var entries: [String] = []
    func append(_ entry: String) { lock.lock(); entries.append(entry); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return entries }
}
