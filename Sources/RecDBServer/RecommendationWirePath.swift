import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// `GET /v1/users/{id}/recommendations` read from and answered to the socket's bytes, in front of NIO's HTTP
/// decoder, for requests `WireRequestParser` takes (most clients' plain GETs). The answer is the same
/// (`RecDBServer.recommendationAnswers`) and written as the same bytes Hummingbird writes for it; it is
/// answered in the event loop's `FastPathRound` with `RecommendationFastPath`'s answers.
///
/// Why: `RecommendationFastPath` still pays for NIO's HTTP/1.1 decoder and encoder, the HTTP types
/// conversion and the pipeline's handlers on every request; with the rounds' flush, that was most of the
/// ~35 µs a request cost the server beside `db.recommend` (README, "Where a request's time goes").
///
/// A connection starts here, answering. The first bytes the parser declines (another route or method, a
/// body, `Connection: close`, anything unusual), and every byte after them, go to NIO's decoder as they
/// arrived: the connection then runs as it does without this handler (and `RecommendationFastPath` still
/// answers its recommendation requests). Bytes are passed on only once every answer queued here is
/// written, so responses keep the requests' order. The same holds for the end of the client's input and a
/// graceful shutdown: they reach Hummingbird after this handler's answers are flushed.
///
/// While answering, this handler keeps the connection's idle timeout (Hummingbird's handler never sees
/// these requests); once it passes bytes on, it adds Hummingbird's own idle handling. A connection queues at
/// most `maxQueued` requests per round; beyond that, or while the channel is not writable (output backed up), it stops
/// reading until the round has written its answers.
final class RecommendationWirePath: ChannelDuplexHandler, RemovableChannelHandler, FastPathMember {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// Requests of one connection answered in one round; the rest wait in `buffered` for the next.
    static let maxQueued = 64

    private let server: RecDBServer
    private let round: FastPathRound
    /// Hummingbird's connection-state handler: the idle handling is added after it when bytes are passed on.
    private let stateHandler: HTTPConnectionStateHandler
    private let logger: Logger
    /// Answering here, or passing every byte on (from the first declined byte) ...
    private var passingOn = false
    /// ... which it does directly once the answers queued before that are flushed and what was held is passed on.
    private var released = false
    /// Bytes not yet parsed (answering) or not yet passed on (waiting for queued answers to be written).
    private var buffered: ByteBuffer?
    /// How many of `buffered`'s bytes the parser has searched for a head's end.
    private var scanned = 0
    /// Requests in the round whose answers are not yet flushed.
    private var queued = 0
    /// Inbound events that arrived while answers were queued: passed on after them.
    private var heldEvents: [Any] = []
    /// A read the channel asked for, held back while the connection has `maxQueued` answers queued or
    /// cannot take more output.
    private var readHeld = false
    /// The idle timeout's check, and the last time bytes were read or an answer written.
    private var idleCheck: Scheduled<Void>?
    private var lastActive = NIODeadline.now()
    private var date = HTTPDate()
    private(set) var isActive = true

    init(server: RecDBServer, round: FastPathRound, after stateHandler: HTTPConnectionStateHandler, logger: Logger) {
        self.server = server
        self.round = round
        self.stateHandler = stateHandler
        self.logger = logger
    }

    // MARK: - Inbound

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { scheduleIdleCheck(context, at: .now() + idleTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleIdleCheck(context, at: .now() + idleTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isActive = false
        idleCheck?.cancel()
        idleCheck = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if released { return context.fireChannelRead(data) }
        var bytes = unwrapInboundIn(data)
        lastActive = .now()
        if buffered == nil { buffered = bytes } else { buffered!.writeBuffer(&bytes) }
        if !passingOn { takeRequests(context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Only bytes passed on concern the handlers behind this one.
        if released { context.fireChannelReadComplete() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed, is ChannelShouldQuiesceEvent:
            // The client sent its last bytes, or the server is stopping: what is buffered (an unfinished
            // request) goes to NIO's decoder, and the event to Hummingbird, after the answers queued here.
            if released { return context.fireUserInboundEventTriggered(event) }
            heldEvents.append(event)
            passOn(context)
        default:
            if released || heldEvents.isEmpty { context.fireUserInboundEventTriggered(event) } else { heldEvents.append(event) }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReading(context)
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Outbound

    func read(context: ChannelHandlerContext) {
        if !released && (passingOn || queued >= Self.maxQueued || !context.channel.isWritable) {
            readHeld = true
        } else {
            context.read()
        }
    }

    // MARK: - Answering

    /// Parses every whole request in `buffered`, queueing each in the round, up to `maxQueued`.
    private func takeRequests(_ context: ChannelHandlerContext) {
        while var bytes = buffered, bytes.readableBytes > 0, queued < Self.maxQueued {
            let parsed = bytes.withUnsafeReadableBytes { WireRequestParser.parse($0, scanned: scanned) }
            switch parsed {
            case .request(let request, let length):
                bytes.moveReaderIndex(forwardBy: length)
                buffered = bytes
                scanned = 0
                queued += 1
                round.add(self, context, FastRequest(id: request.id, uri: URI(request.target), authorization: request.authorization))
            case .incomplete(let searched):
                scanned = searched
                return
            case .decline:
                passOn(context)
                return
            }
        }
        if buffered?.readableBytes == 0 {
            buffered = nil
        } else if let readerIndex = buffered?.readerIndex, readerIndex > 4096 {
            buffered!.discardReadBytes()  // a pipelining client always leaves a request unfinished
        }
    }

    func write(_ answer: FastAnswer, _ context: ChannelHandlerContext) {
        let (status, fields, body) = answer
        server.wirePathAnswers.add(1, ordering: .relaxed)
        let length = String(body.count), now = date.now()
        // The bytes NIO's encoder writes for Hummingbird's response: status line, the handler's fields,
        // Content-Length, Date, Server.
        var out = context.channel.allocator.buffer(capacity: body.count + 160)
        out.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        for field in fields {
            out.writeString(field.name.rawName)
            out.writeString(": ")
            out.writeString(field.value)
            out.writeString("\r\n")
        }
        out.writeString("Content-Length: ")
        out.writeString(length)
        out.writeString("\r\nDate: ")
        out.writeString(now)
        out.writeString("\r\nServer: ")
        out.writeString(RecDBServer.serverName)
        out.writeString("\r\n\r\n")
        out.writeBytes(body)
        context.write(wrapOutboundOut(.byteBuffer(out)), promise: nil)
        lastActive = .now()
    }

    func answered(_ context: ChannelHandlerContext) {
        queued = 0
        if passingOn {
            passOn(context)
        } else {
            takeRequests(context)  // requests left over beyond `maxQueued`
        }
        resumeReading(context)
    }

    private func resumeReading(_ context: ChannelHandlerContext) {
        guard readHeld, released || (!passingOn && queued < Self.maxQueued && context.channel.isWritable) else { return }
        readHeld = false
        context.read()
    }

    // MARK: - Passing on

    /// From now on every byte goes to NIO's decoder: at once if no answer is queued, else once they are flushed.
    private func passOn(_ context: ChannelHandlerContext) {
        if !passingOn {
            passingOn = true
            idleCheck?.cancel()
            idleCheck = nil
            // Hummingbird's idle handling, from now on (the connection's own handler was made without it).
            do {
                let idle = HTTPConnectionStateHandler(idleTimeout: .seconds(Int64(server.configuration.idleTimeoutSeconds)), logger: logger)
                try context.pipeline.syncOperations.addHandler(idle, position: .after(stateHandler))
            } catch {
                // The pipeline is being torn down (the connection closed): nothing more will be read.
                logger.debug("recommendation wire path: could not add the idle handler: \(error)")
            }
        }
        guard queued == 0 else { return }
        released = true
        if let bytes = buffered {
            buffered = nil
            if bytes.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(bytes))
                context.fireChannelReadComplete()
            }
        }
        let events = heldEvents
        heldEvents = []
        for event in events { context.fireUserInboundEventTriggered(event) }
    }

    // MARK: - Idle timeout (while answering)

    private var idleTimeout: TimeAmount { .seconds(Int64(server.configuration.idleTimeoutSeconds)) }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard !passingOn else { return }
        idleCheck?.cancel()
        idleCheck = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) { [self] in
            idleCheck = nil
            guard isActive, !passingOn else { return }
            if queued > 0 {
                scheduleIdleCheck(context, at: .now() + idleTimeout)  // answers on their way count as activity
            } else if NIODeadline.now() >= lastActive + idleTimeout {
                context.close(promise: nil)
            } else {
                scheduleIdleCheck(context, at: lastActive + idleTimeout)
            }
        }
    }
}
