import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
import RecDB
@testable import RecDBServer
import TestSupport

/// `RecommendationWirePath` (the recommendations route read from the socket's bytes) over real connections:
/// the same bytes as the router, requests in pieces, many pipelined, the client's end of input, malformed
/// heads handed to NIO unchanged, and the idle timeout on both sides of the hand-over.
extension ServerTests {
    /// The whole response, status line and fields in order (the Date value aside) and body, is the one the
    /// router writes, for answers and refusals, with and without keys (a key with trailing spaces too).
    func testTheWirePathWritesTheRoutersBytes() throws {
        let readKey = "read-key-0123456789"
        let keys = try APIKeys(fileContents: "\(readKey)\n")
        let wire = try start { $0.apiKeys = keys }
        let routed = try start { $0.recommendationFastPath = false; $0.apiKeys = keys }
        let targets = ["/v1/users/u3/recommendations?k=3", "/v1/users/u5/recommendations?attribute=color=red&k=2&model=seq",
                       "/v1/users/nobody/recommendations", "/v1/users/u3/recommendations?k=0", "/v1/users/%C3%28/recommendations",
                       "/v1/users/u%31/recommendations?exclude_seen=false&k=1"]
        let authorizations = [nil, "Bearer \(readKey)", "Bearer \(readKey) \t", "Bearer wrong-key-0123456789", "Basic abc"]
        var requests = 0
        for target in targets {
            for authorization in authorizations {
                let request = "GET \(target) HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n" + (authorization.map { "Authorization: \($0)\r\n" } ?? "") + "\r\n"
                let a = try RawConnection(port: wire.port), b = try RawConnection(port: routed.port)
                try a.send(request)
                try b.send(request)
                let fromWire = try a.read(1)[0], fromRouter = try b.read(1)[0]
                let what = "\(target) with \(authorization ?? "no key")"
                XCTAssertEqual(fromWire.head, fromRouter.head, what)
                XCTAssertEqual(fromWire.body, fromRouter.body, what)
                XCTAssertTrue(fromWire.head.contains("Date: (now)"), what)
                requests += 1
            }
        }
        XCTAssertEqual(wire.server.wirePathAnswers.load(ordering: .relaxed), requests)
        XCTAssertEqual(routed.server.fastPathAnswers.load(ordering: .relaxed), 0)
    }

    /// More requests pipelined in one write than a round takes from one connection (`maxQueued`), with a
    /// request for another route among them: every one answered, in order; then a head sent in small pieces,
    /// a few milliseconds apart, is answered as a whole.
    func testPipelinedAndPiecemealRequestsOnTheWirePath() throws {
        let running = try start()
        let connection = try RawConnection(port: running.port)
        let count = RecommendationWirePath.maxQueued * 2 + 22
        let users = (0..<count).map { "u\($0 % 200)" }
        func request(_ user: String) -> String { "GET /v1/users/\(user)/recommendations?k=2 HTTP/1.1\r\nHost: x\r\n\r\n" }
        try connection.send(users.prefix(100).map(request).joined() + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + users.dropFirst(100).map(request).joined())
        let replies = try connection.read(count + 1)
        XCTAssertEqual(replies[100].json["status"] as? String, "ok")
        let answers = Array(replies.prefix(100) + replies.dropFirst(101))
        XCTAssertEqual(answers.map { $0.json["user"] as? String }, users)
        for (user, reply) in zip(users, answers).prefix(12) {
            XCTAssertEqual(reply.items, try database.recommend(user: user, k: 2).items.map(\.item), user)
        }
        // The first 100 came before the request for another route: the wire path answered them. The rest
        // came after it, on a connection handed to NIO's decoder (the router or the fast path on HTTP parts).
        XCTAssertEqual(running.server.wirePathAnswers.load(ordering: .relaxed), 100)

        // Order with a round that waits for stragglers: after rounds of `maxQueued` on both event loops, a
        // round of three waits (up to a millisecond) for more, and the request for another route behind
        // them must not be answered first.
        // The same holds for the fast path on HTTP parts alone.
        let partsOnly = try start { $0.recommendationWirePath = false }
        for server in [running, partsOnly] {
            let primers = try (0..<2).map { _ in try RawConnection(port: server.port) }
            for primer in primers { try primer.send(String(repeating: request("u9"), count: RecommendationWirePath.maxQueued)) }
            for primer in primers { XCTAssertEqual(try primer.read(RecommendationWirePath.maxQueued).count, RecommendationWirePath.maxQueued) }
            let mixed = try (0..<2).map { _ in try RawConnection(port: server.port) }
            for connection in mixed { try connection.send(request("u1") + request("u2") + request("u3") + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + request("u4")) }
            for connection in mixed {
                XCTAssertEqual(try connection.read(5).map { ($0.json["user"] as? String) ?? ($0.json["status"] as? String) ?? "?" }, ["u1", "u2", "u3", "ok", "u4"],
                               server === running ? "wire path" : "HTTP parts")
            }
        }
        let answeredBefore = running.server.wirePathAnswers.load(ordering: .relaxed)

        let pieces = try RawConnection(port: running.port)
        try pieces.send(request("u17") + request("u18"), inPiecesOf: 7, pause: 0.002)
        XCTAssertEqual(try pieces.read(2).map { $0.json["user"] as? String }, ["u17", "u18"])
        XCTAssertEqual(running.server.wirePathAnswers.load(ordering: .relaxed), answeredBefore + 2)
    }

    /// A client that sends its requests and then ends its output still gets every answer (from either fast
    /// path), then the server closes; an unfinished head before the end is left to NIO, which answers it as without the wire path.
    func testTheClientsEndOfInputComesAfterTheAnswers() throws {
        let running = try start()
        let routed = try start { $0.recommendationFastPath = false }
        let partsOnly = try start { $0.recommendationWirePath = false }
        let request = "GET /v1/users/u4/recommendations?k=2 HTTP/1.1\r\nHost: x\r\n\r\n"
        for server in [running, partsOnly] {
            // After large rounds on both event loops, so a round of three waits for stragglers meanwhile.
            let primers = try (0..<2).map { _ in try RawConnection(port: server.port) }
            for primer in primers { try primer.send(String(repeating: request, count: 40)) }
            for primer in primers { XCTAssertEqual(try primer.read(40).count, 40) }
            for _ in 0..<2 {
                let whole = try RawConnection(port: server.port)
                try whole.send(String(repeating: request, count: 3))
                whole.shutdownWrite()
                let bytes = try XCTUnwrap(whole.readToEnd(seconds: 10), "the server did not close after answering")
                XCTAssertEqual(bytes.count(of: "HTTP/1.1 200 OK"), 3, String(decoding: bytes, as: UTF8.self))
            }
        }
        XCTAssertEqual(partsOnly.server.fastPathAnswers.load(ordering: .relaxed), 86)

        var statuses: [[Substring]] = []
        for port in [running.port, routed.port] {
            let unfinished = try RawConnection(port: port)
            try unfinished.send("GET /v1/users/u4/recommendations?k=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/users/u4/recomm")
            unfinished.shutdownWrite()
            let text = String(decoding: try XCTUnwrap(unfinished.readToEnd(seconds: 10)), as: UTF8.self)
            statuses.append(Array(text.components(separatedBy: "HTTP/1.1 ").map { $0.prefix(3) }.dropFirst()))
        }
        XCTAssertEqual(statuses[0], statuses[1])
        XCTAssertEqual(statuses[0].first, "200")
    }

    /// Heads the wire path declines reach NIO's decoder byte for byte: the replies (statuses, bodies, and
    /// whether the connection ends) are those of a server without the fast paths.
    func testMalformedHeadsAreAnsweredAsWithoutTheWirePath() throws {
        let wire = try start()
        let routed = try start { $0.recommendationFastPath = false }
        let line = "GET /v1/users/u1/recommendations?k=2 HTTP/1.1"
        let inputs = [
            "\(line)\nHost: x\n\n",
            "\(line)\r\nHost: x\r\nX: a\u{0}b\r\n\r\n",
            "\(line)\r\nHost : x\r\n\r\n",
            "\(line)\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "\(line)\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "\(line)\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "\(line)\r\nHost: x\r\nX-Long: \(String(repeating: "a", count: 9000))\r\n\r\n",
            "GET /v1/users/u1/recommendations HTTP/1.0\r\nHost: x\r\n\r\n",
            "\(line)\r\nHost: x\r\nConnection: close\r\n\r\n\(line)\r\nHost: x\r\n\r\n",
            "\(line)\r\n\r\n",
            "GET /v1/users/u1/recommendations?k=2 HTTP/9.9\r\nHost: x\r\n\r\n",
            "\(line)\r\nHost: x\r\n\r\nBROKEN\r\n\r\n",
        ]
        for input in inputs {
            let a = try RawConnection(port: wire.port), b = try RawConnection(port: routed.port)
            try a.send(input)
            try b.send(input)
            a.shutdownWrite()
            b.shutdownWrite()
            let fromWire = try XCTUnwrap(a.readToEnd(seconds: 10)), fromRouter = try XCTUnwrap(b.readToEnd(seconds: 10))
            func shown(_ data: Data) -> String {
                String(decoding: data, as: UTF8.self).components(separatedBy: "\r\n").filter { !$0.lowercased().hasPrefix("date:") }.joined(separator: "\n")
            }
            XCTAssertEqual(shown(fromWire), shown(fromRouter), input.prefix(80).debugDescription)
        }
    }

    /// With a one-second idle timeout: a connection the wire path answered and then left idle is closed, one
    /// that keeps asking is not, one handed to NIO (after another route) and left idle is closed by
    /// Hummingbird's handler, and one that never sends a byte is closed.
    func testIdleConnectionsAreClosedOnBothPaths() throws {
        let running = try start { $0.idleTimeoutSeconds = 1 }
        let recommendation = "GET /v1/users/u2/recommendations?k=2 HTTP/1.1\r\nHost: x\r\n\r\n"
        let answeredThenIdle = try RawConnection(port: running.port)
        try answeredThenIdle.send(recommendation)
        XCTAssertEqual(try answeredThenIdle.read(1)[0].status, 200)
        let handedOnThenIdle = try RawConnection(port: running.port)
        try handedOnThenIdle.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try handedOnThenIdle.read(1)[0].status, 200)
        let silent = try RawConnection(port: running.port)
        let busy = try RawConnection(port: running.port)
        let start = Date()
        var asked = 0
        while Date().timeIntervalSince(start) < 2.6 {
            try busy.send(recommendation)
            XCTAssertEqual(try busy.read(1)[0].status, 200)
            asked += 1
            Thread.sleep(forTimeInterval: 0.3)
        }
        XCTAssertGreaterThanOrEqual(asked, 6)
        for (what, connection) in [("answered, then idle", answeredThenIdle), ("handed on, then idle", handedOnThenIdle), ("silent", silent)] {
            XCTAssertNotNil(connection.readToEnd(seconds: 5), "\(what): not closed")
        }
        try busy.send(recommendation)
        XCTAssertEqual(try busy.read(1)[0].status, 200, "the busy connection was closed")
    }
}

extension Data {
    func count(of text: String) -> Int { String(decoding: self, as: UTF8.self).components(separatedBy: text).count - 1 }
}

extension ServerTests {
    /// A client that pipelines far more requests than the socket buffers hold and does not read its answers:
    /// the server stops reading (its output is full) instead of answering into memory; once the client reads,
    /// every request is answered, in full.
    func testAClientThatDoesNotReadIsNotBufferedFor() throws {
        let running = try start()
        let connection = try RawConnection(port: running.port)
        let request = "GET /v1/users/u1/recommendations?k=10 HTTP/1.1\r\nHost: x\r\n\r\n"
        try connection.send(request)
        let one = try connection.read(1)[0]
        let replyBytes = one.head.utf8.count - "Date: (now)".utf8.count + "Date: Sat, 05 Dec 2026 21:00:00 GMT".utf8.count + 4 + one.body.count
        let count = 20_000
        let sending = SendingConnection(connection: connection)
        Thread.detachNewThread { try? sending.connection.send(String(repeating: request, count: count)) }
        // Wait until the answers stop growing: the server has stopped reading the connection.
        var answered = running.server.wirePathAnswers.load(ordering: .relaxed), previous = -1
        while answered != previous {
            previous = answered
            Thread.sleep(forTimeInterval: 0.5)
            answered = running.server.wirePathAnswers.load(ordering: .relaxed)
        }
        XCTAssertLessThan(answered, count, "every request was answered while the client read nothing: no backpressure")
        // Now read: every answer arrives (the same bytes each time, so their total length tells).
        var received = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while received < count * replyBytes {
            let n = recv(connection.fd, &chunk, chunk.count, 0)
            guard n > 0 else { return XCTFail("the connection ended after \(received) of \(count * replyBytes) bytes") }
            received += n
        }
        XCTAssertEqual(received, count * replyBytes)
        XCTAssertEqual(running.server.wirePathAnswers.load(ordering: .relaxed), count + 1)
    }
}

/// Hands a connection to the thread that writes to it while the test's thread reads (a socket allows one of each).
// Unchecked: the sending thread only calls `send`, which touches nothing but the file descriptor.
struct SendingConnection: @unchecked Sendable {
    let connection: ServerTests.RawConnection
}

extension ServerTests {
    /// `rdbctl serve` stopped (SIGTERM, its graceful shutdown) while a connection's 300 pipelined requests are
    /// being answered on the wire path: whatever arrives is whole answers, in order (never one cut short), all
    /// of them once the server has read them, then the connection ends and the process exits 0.
    func testAGracefulStopMidRoundCutsNoAnswer() throws {
        guard let rdbctl = BuiltProducts.locate("rdbctl") else {
            throw XCTSkip("rdbctl is not built (`make test` builds every product)")
        }
        for delay in [0.0, 0.003, 0.02] {
            let (process, port) = try startServeProcess(rdbctl)
            defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }

            let connection = try RawConnection(port: port)
            let users = (0..<300).map { "u\($0 % 200)" }
            try connection.send(users.map { "GET /v1/users/\($0)/recommendations?k=3 HTTP/1.1\r\nHost: x\r\n\r\n" }.joined())
            Thread.sleep(forTimeInterval: delay)
            process.terminate()
            let bytes = try XCTUnwrap(connection.readToEnd(seconds: 20), "delay \(delay): the connection did not end after SIGTERM")
            process.waitUntilExit()
            XCTAssertEqual(process.terminationReason, .exit, "delay \(delay)")
            XCTAssertEqual(process.terminationStatus, 0, "delay \(delay)")
            let answered = try wholeAnswers(bytes, "delay \(delay)")
            XCTAssertEqual(answered, Array(users.prefix(answered.count)), "delay \(delay)")
            // 20 ms is long enough for the server to have read every request: a graceful stop answers what it read.
            if delay >= 0.02 { XCTAssertEqual(answered.count, users.count, "delay \(delay)") }
        }
    }

    /// The users of the whole 200 answers in `bytes` (responses split by their Content-Length), in order; a
    /// failure for anything else: a head that is not a 200, an answer cut short, bytes after the last answer.
    func wholeAnswers(_ bytes: Data, _ what: String) throws -> [String] {
        var rest = Substring(String(decoding: bytes, as: UTF8.self)), answered: [String] = []
        while let end = rest.range(of: "\r\n\r\n") {
            let head = rest[..<end.lowerBound]
            guard head.hasPrefix("HTTP/1.1 200 OK"),
                  let field = head.split(separator: "\r\n").first(where: { $0.hasPrefix("Content-Length: ") }),
                  let length = Int(field.dropFirst("Content-Length: ".count)) else {
                XCTFail("\(what): a head that is not a whole 200: \(head.prefix(200))")
                return answered
            }
            let body = rest[end.upperBound...].utf8.prefix(length)
            XCTAssertEqual(body.count, length, "\(what): answer \(answered.count + 1) was cut short")
            let json = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
            answered.append(json?["user"] as? String ?? "?")
            rest = Substring(rest.utf8.dropFirst(head.utf8.count + 4 + length))
        }
        XCTAssertTrue(rest.isEmpty, "\(what): \(rest.utf8.count) bytes after the last whole answer")
        return answered
    }

    /// An in-process server stopped by cancelling the task that runs it, while three connections' pipelined
    /// requests are being answered, on both fast paths and through the router alone: it stops as a signal stops
    /// `rdbctl serve` (whole answers, in order, then each connection ends) and `run()` returns without an
    /// error. Cancelled mid-request, the server's tasks used to be able to leave NIO's async writer unfinished,
    /// which trapped (ended the process) once the writer was released; now cancelling asks for a graceful stop.
    func testCancellingTheServerTaskStopsItGracefully() throws {
        for fast in [true, false] {
            for delay in [0.0, 0.002, 0.01, 0.03] {
                let what = "fast path \(fast), delay \(delay)"
                let running = try start { $0.recommendationFastPath = fast }
                let connections = try (0..<3).map { _ in try RawConnection(port: running.port) }
                let users = (0..<60).map { "u\($0 % 200)" }
                for connection in connections {
                    try connection.send(users.map { "GET /v1/users/\($0)/recommendations?k=3 HTTP/1.1\r\nHost: x\r\n\r\n" }.joined())
                }
                Thread.sleep(forTimeInterval: delay)
                let outcome = Box<Result<Void, Error>?>(nil)
                let finished = DispatchSemaphore(value: 0)
                let task = running.task
                task.cancel()
                Task { outcome.set(await task.result); finished.signal() }
                for connection in connections {
                    let bytes = try XCTUnwrap(connection.readToEnd(seconds: 20), "\(what): the connection did not end")
                    let answered = try wholeAnswers(bytes, what)
                    XCTAssertEqual(answered, Array(users.prefix(answered.count)), what)
                }
                XCTAssertEqual(finished.wait(timeout: .now() + 20), .success, "\(what): run() did not return")
                if case .failure(let error) = outcome.get() { XCTFail("\(what): run() threw \(error)") }
            }
        }
    }
}
