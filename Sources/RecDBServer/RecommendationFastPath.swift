import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import RecDB

/// Hummingbird's HTTP/1.1 channel (`.http1`, the same pipeline and configuration) with
/// `RecommendationFastPath` added to every connection's pipeline.
struct RecDBHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HTTP1Channel.Value
    let http1: HTTP1Channel
    let server: RecDBServer

    var responder: HTTPChannelHandler.Responder { http1.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let server = self.server
        return http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // After the connection-state handler, so idle timeouts and graceful shutdown count the requests
            // it answers; before the handler that hands requests to Hummingbird's tasks.
            let operations = channel.pipeline.syncOperations
            let state = try operations.handler(type: HTTPConnectionStateHandler.self)
            let round = server.fastPathRound(for: channel.eventLoop)
            try operations.addHandler(RecommendationFastPath(server: server, round: round), position: .after(state))
            if server.configuration.recommendationWirePath {
                // Before NIO's HTTP decoder: it sees the socket's bytes. Hummingbird's channel was configured
                // without an idle timeout: the wire path keeps it while it answers (see RecommendationWirePath).
                try operations.addHandler(RecommendationWirePath(server: server, round: round, after: state, logger: logger), position: .first)
            }
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

/// `GET /v1/users/{id}/recommendations`, the serving route, answered on the event loop that read the
/// request, by the same code the router's handler runs (`RecDBServer.recommendations`), with the same
/// authorisation, bounds, problem answers, metrics and headers (Date, Server, Content-Type, Content-Length).
///
/// Why: through Hummingbird a request is handed to a Swift task through an async sequence, routed, given a
/// context and a logger, and its response goes back through an async writer to the loop. Counted with
/// callgrind, the user-space instructions a request spends outside `db.recommend` went from 350k that way
/// to 177k this way (the HTTP parser and encoder, NIO's pipeline, our query parsing and JSON).
///
/// Every other request (other routes and methods, paths the router would read differently, `Connection:
/// close`) goes on to Hummingbird untouched. Responses keep the requests' order: while a request passed on
/// is unanswered (its response's end not yet written), later requests on the connection are passed on too;
/// while a request taken here is unanswered (its round has not yet run), what would be passed on (and the
/// end of the client's input, or a graceful shutdown) waits here until it is; after a request asking to
/// close the connection nothing more is answered here.
///
/// The recommendation runs on the event loop, as Hummingbird's handler does under `rdbctl serve` (Swift
/// concurrency on the event loops): CPU work of ~0.1 ms that never waits for a lock held by a writer (a
/// reader takes an LMDB snapshot), except loading a model version on its first use.
final class RecommendationFastPath: ChannelDuplexHandler, RemovableChannelHandler, FastPathMember {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let server: RecDBServer
    /// The fast requests this connection's event loop has read in its current pass over ready connections.
    private let round: FastPathRound
    /// Requests passed on to Hummingbird whose response has not been written to its end.
    private var passedOn = 0
    /// The request being read is answered here once its end arrives (its body, if any, is ignored, as the route ignores it).
    private var taken: FastRequest?
    /// A request passed on asked to close the connection, or the connection failed: pass everything on.
    private var closing = false
    /// Requests taken here whose round has not yet answered them.
    private var queued = 0
    /// What arrived for Hummingbird while `queued` > 0, in order: passed on once the round has answered.
    private var held: [Held] = []
    private enum Held { case read(NIOAny), event(Any) }
    /// A read the channel asked for while parts are held: made once they are passed on (what is held stays small).
    private var readHeld = false
    private var date = HTTPDate()
    /// False once the handler is removed (the connection closed): a queued answer is dropped.
    private(set) var isActive = true

    init(server: RecDBServer, round: FastPathRound) {
        self.server = server
        self.round = round
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // While a request taken here waits for its round, what would go to Hummingbird waits too: Hummingbird
        // could answer it before the round answers the requests taken before it.
        if !held.isEmpty { return held.append(.read(data)) }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if passedOn == 0, !closing, let target = Self.target(head) {
                taken = FastRequest(id: target.id, uri: target.uri, authorization: head.headerFields[.authorization])
                return
            }
            if queued > 0 { return held.append(.read(data)) }
            if head.headerFields[.connection] == "close" { closing = true }
            passedOn += 1
            context.fireChannelRead(data)
        case .body:
            guard taken == nil else { return }
            if queued > 0 { return held.append(.read(data)) }
            context.fireChannelRead(data)
        case .end:
            guard let request = taken else {
                if queued > 0 { return held.append(.read(data)) }
                return context.fireChannelRead(data)
            }
            taken = nil
            queued += 1
            round.add(self, context, request)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The end of the client's input or a graceful shutdown would let Hummingbird close the connection
        // (or its output) before the round writes the answers taken here.
        if queued > 0 { held.append(.event(event)) } else { context.fireUserInboundEventTriggered(event) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isActive = false
    }

    func read(context: ChannelHandlerContext) {
        if held.isEmpty { context.read() } else { readHeld = true }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), passedOn > 0 { passedOn -= 1 }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A parse error: Hummingbird answers 400 and closes; nothing more is answered here.
        closing = true
        context.fireErrorCaught(error)
    }

    /// The raw id segment and URI of a request the router would give to the recommendations handler, when it
    /// is one this handler answers: GET, an origin-form path `/v1/users/ID/recommendations` with a non-empty
    /// segment ID, no `Connection: close`. Anything else (HEAD, empty or extra segments, absolute form) is
    /// left to the router, which answers it as it always has.
    static func target(_ head: HTTPRequest) -> (id: String, uri: URI)? {
        guard head.method == .get, let path = head.path, path.utf8.first == UInt8(ascii: "/"),
              head.headerFields[.connection] != "close" else { return nil }
        let uri = URI(path)
        let prefix = "/v1/users/".utf8, suffix = "/recommendations".utf8
        let bytes = uri.path.utf8
        guard bytes.count > prefix.count + suffix.count, bytes.starts(with: prefix), bytes.reversed().starts(with: suffix.reversed()) else { return nil }
        let segment = bytes.dropFirst(prefix.count).dropLast(suffix.count)
        guard !segment.contains(UInt8(ascii: "/")) else { return nil }
        return (String(decoding: segment, as: UTF8.self), uri)
    }

    /// Writes an answer without flushing it: its round flushes every connection it answered.
    func write(_ answer: FastAnswer, _ context: ChannelHandlerContext) {
        var (status, fields, body) = answer
        // The headers in the order Hummingbird writes them: the handler's, Content-Length, Date, Server.
        fields[.contentLength] = String(body.count)
        fields[.date] = date.now()
        fields[.server] = RecDBServer.serverName
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(buffer)), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func answered(_ context: ChannelHandlerContext) {
        queued = 0
        guard !held.isEmpty else { return }
        let waiting = held
        held = []
        for item in waiting {
            switch item {
            case .read(let data): channelRead(context: context, data: data)
            case .event(let event): userInboundEventTriggered(context: context, event: event)
            }
        }
        context.fireChannelReadComplete()
        if readHeld && held.isEmpty {
            readHeld = false
            context.read()
        }
    }
}

/// A fast path's answer: status, the handler's headers (Content-Type, and WWW-Authenticate on a 401) and body.
typealias FastAnswer = (status: HTTPResponse.Status, fields: HTTPFields, body: [UInt8])

extension RecDBServer {
    /// The answers to recommendations requests a fast path took together, in order: each counted in the
    /// route's metrics and in `fastPathAnswers`. The same code as the router's handler (authorisation,
    /// bounds and problem answers), but the requests that pass those are answered by one
    /// `Database.recommend(_:)` call: one snapshot and one forward pass for all of them.
    /// The fields of every answer: built once, not for each.
    static let jsonFields: HTTPFields = [.contentType: "application/json"]

    /// `fragments`: the calling event loop's cache of encoded items (its round's).
    func recommendationAnswers(_ requests: [FastRequest], fragments: ItemFragments? = nil) -> [FastAnswer] {
        let start = DispatchTime.now().uptimeNanoseconds
        var answers = [FastAnswer?](repeating: nil, count: requests.count)
        var batch: [RecommendationRequest] = []
        var batchIndices: [Int] = []
        for (index, request) in requests.enumerated() {
            do {
                try authorise(authorization: request.authorization, .read)
                batch.append(try recommendationRequest(user: try decodedID(request.id, "id"), query: Query(request.uri)))
                batchIndices.append(index)
            } catch {
                answers[index] = problemParts(for: error, path: request.uri.path)
            }
        }
        for (index, result) in zip(batchIndices, database.recommend(batch)) {
            do {
                answers[index] = (.ok, Self.jsonFields, try ResponseJSON.encode(try result.get(), fragments: fragments))
            } catch {
                answers[index] = problemParts(for: error, path: requests[index].uri.path)
            }
        }
        // Each request waited for the whole batch: its latency is the batch's.
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        for answer in answers { recommendationsSeries.record(status: answer!.status.code, seconds: seconds) }
        fastPathAnswers.add(requests.count, ordering: .relaxed)
        return answers.map { $0! }
    }
}

/// A recommendations request a fast path answers: the raw id segment, the URI and the Authorization value.
struct FastRequest {
    var id: String
    var uri: URI
    var authorization: String?
}

/// A connection's handler that takes part in its event loop's `FastPathRound`.
protocol FastPathMember: AnyObject {
    /// False once the connection is gone: its queued requests are dropped.
    var isActive: Bool { get }
    /// Writes `answer` (to one of its requests, in the order they were added), without flushing.
    func write(_ answer: FastAnswer, _ context: ChannelHandlerContext)
    /// Called once the round has flushed the connection (once per round, after all its answers).
    func answered(_ context: ChannelHandlerContext)
}

/// The fast requests one event loop has read in one pass over its ready connections, answered together in
/// one task after the pass (NIO runs tasks after its I/O): the recommendations computed together by one
/// `Database.recommend(_:)` call (`RecDBServer.recommendationAnswers`: one snapshot, one forward pass, one scan
/// of the catalogue for every eight users), each written to its connection, then every connection answered is
/// flushed.
///
/// Why together: a batch of 32 costs a third less CPU a request than 32 single recommendations (README,
/// "Where it stands"), and the requests of a round wait for the round's flush anyway.
///
/// Why: answered between a socket read and a write, a recommendation cost 20 % more CPU (the model and item
/// table fall out of cache). Flushed one by one, each response woke the load's reader, which preempted the
/// loop mid-round to take one response; flushed together, the round's responses leave in one burst.
///
/// A round starts once as many requests have arrived as the last round answered, or after a tenth of the last
/// round's length (at most 1 ms): see `add`. Under a steady load the rounds then stay whole and the latency
/// spread narrows (README, "Rounds answered together"); a lone request after a round of one is answered at once.
///
/// Order holds: whatever a connection sends after a fast request is answered after this round (a later fast
/// request by a later round, a request passed on only through tasks and writes queued later); a request the
/// pipelining handler releases while this round writes lands in the next round.
final class FastPathRound {
    private struct Entry {
        let member: any FastPathMember
        let context: ChannelHandlerContext
        let request: FastRequest
    }

    private let loop: any EventLoop
    /// The server owns its rounds: it outlives them.
    private unowned let server: RecDBServer
    private var pending: [Entry] = []
    private var answering: [Entry] = []
    /// The connections a round has flushed (kept between rounds for its capacity).
    private var flushed = Set<ObjectIdentifier>()
    /// A run is queued as a task (after the current pass over ready connections).
    private var runQueued = false
    /// Or a run waits for stragglers.
    private var stragglerTimer: Scheduled<Void>?
    /// The size and length of the last round.
    private var lastSize = 0
    private var lastNanoseconds: UInt64 = 0
    /// The loop's encoded result items.
    private let fragments = ItemFragments()

    init(loop: any EventLoop, server: RecDBServer) {
        self.loop = loop
        self.server = server
    }

    func add(_ member: any FastPathMember, _ context: ChannelHandlerContext, _ request: FastRequest) {
        pending.append(Entry(member: member, context: context, request: request))
        if pending.count >= lastSize {
            // As many requests as the last round answered: run after this pass over ready connections.
            stragglerTimer?.cancel()
            stragglerTimer = nil
            if !runQueued {
                runQueued = true
                loop.assumeIsolatedUnsafeUnchecked().execute { [self] in run() }
            }
        } else if !runQueued && stragglerTimer == nil {
            // Fewer so far: wait for the rest, at most a tenth of the last round's length. Under a steady load
            // the connections answered together send their next requests within a short while of each other;
            // a round started on the first few would leave the rest to wait for it and then for their own
            // round (twice the latency); waiting a little keeps the rounds whole.
            let wait = TimeAmount.nanoseconds(Int64(min(lastNanoseconds / 10, 1_000_000)))
            stragglerTimer = loop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: wait) { [self] in run() }
        }
    }

    private func run() {
        stragglerTimer?.cancel()
        stragglerTimer = nil
        runQueued = false
        guard !pending.isEmpty else { return }  // a timer that fired as it was cancelled
        let start = DispatchTime.now().uptimeNanoseconds
        swap(&pending, &answering)
        answering.removeAll { !$0.member.isActive }  // gone connections: their requests are not answered
        let answers = server.recommendationAnswers(answering.map(\.request), fragments: fragments)
        for (entry, answer) in zip(answering, answers) { entry.member.write(answer, entry.context) }
        // Each connection once (its entries may be many), in the order of their first request.
        flushed.removeAll(keepingCapacity: true)
        for entry in answering where entry.member.isActive && flushed.insert(ObjectIdentifier(entry.member)).inserted {
            entry.context.flush()
            entry.member.answered(entry.context)
        }
        lastSize = answering.count
        lastNanoseconds = DispatchTime.now().uptimeNanoseconds - start
        answering.removeAll(keepingCapacity: true)
    }
}

/// RFC 9110's IMF-fixdate (`Sat, 05 Dec 2026 07:30:00 GMT`), as Hummingbird's Date header, formatted once a second.
struct HTTPDate {
    private var second = -1
    private var text = ""

    mutating func now() -> String {
        let t = time(nil)
        if t != second {
            second = t
            text = Self.format(t)
        }
        return text
    }

    static func format(_ t: time_t) -> String {
        var t = t, tm = tm()
        gmtime_r(&t, &tm)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) \(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }
}
