import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
import RecDB
@testable import RecDBServer

/// `RecommendationFastPath` (GET /v1/users/{id}/recommendations answered on the event loop) against the
/// router's handler, and the order of responses on one connection when the two paths mix.
extension ServerTests {
    /// The same requests to a server with the fast path and one without: the same status, headers and
    /// body bytes, for answers, every kind of refusal and paths the fast path leaves to the router.
    /// Both fast paths: from the socket's bytes (`RecommendationWirePath`, on by default) and from HTTP parts
    /// (`RecommendationFastPath` alone).
    func testTheRecommendationFastPathAnswersAsTheRouter() throws {
        let readKey = "read-key-0123456789"
        let keys = try APIKeys(fileContents: "\(readKey)\n")
        for (withKeys, wire) in [(false, true), (true, true), (false, false), (true, false)] {
            let fast = try start { $0.recommendationWirePath = wire; if withKeys { $0.apiKeys = keys } }
            let routed = try start { $0.recommendationFastPath = false; if withKeys { $0.apiKeys = keys } }
            let paths = [
                "/v1/users/u3/recommendations", "/v1/users/u3/recommendations?k=5", "/v1/users/u7/recommendations?k=3&exclude_seen=false",
                "/v1/users/u5/recommendations?attribute=color=red&k=3&version=1&model=seq", "/v1/users/u5/recommendations?k=%32",
                "/v1/users/u5/recommendations?k=2&k=5", "/v1/users/u3/recommendations?k=0", "/v1/users/u3/recommendations?k=ten",
                "/v1/users/u3/recommendations?exclude_seen=maybe", "/v1/users/u3/recommendations?version=-1",
                "/v1/users/u3/recommendations?attribute=color", "/v1/users/u3/recommendations?model=nope",
                "/v1/users/nobody/recommendations", "/v1/users/%C3%28/recommendations", "/v1/users/u%31/recommendations",
                "/v1/users/u3/recommendations/", "/v1/users//recommendations", "/v1/users/u3/recommendations?k=4#fragment",
            ]
            for path in paths {
                for key in withKeys ? [nil, readKey, "wrong-key-0123456789"] : [nil] {
                    let a = try call(fast, "GET", path, key: key), b = try call(routed, "GET", path, key: key)
                    let what = "\(path) key \(key ?? "none")"
                    XCTAssertEqual(a.status, b.status, what)
                    XCTAssertEqual(a.body, b.body, what)
                    for header in ["content-type", "content-length", "server", "www-authenticate"] {
                        XCTAssertEqual(a.headers[header], b.headers[header], "\(what): \(header)")
                    }
                    XCTAssertNotNil(a.headers["date"], what)
                    XCTAssertEqual(a.headers["server"], "RecDB", what)
                }
            }
            // The fast path answered every request for the route but the two it leaves to the router
            // (a trailing slash, an empty id, which the router reads as /v1/users/{id}) and the others none.
            XCTAssertEqual(fast.server.fastPathAnswers.load(ordering: .relaxed), (paths.count - 2) * (withKeys ? 3 : 1))
            // URLSession sends the fragment (a target RFC 9112 does not allow): the wire path leaves it to the other.
            XCTAssertEqual(fast.server.wirePathAnswers.load(ordering: .relaxed), wire ? (paths.count - 3) * (withKeys ? 3 : 1) : 0)
            XCTAssertEqual(routed.server.fastPathAnswers.load(ordering: .relaxed), 0)
            // Both count the route's requests in the same series, by status.
            let metricKey = withKeys ? readKey : nil
            let fastMetrics = try call(fast, "GET", "/metrics", key: metricKey).text.split(separator: "\n").filter { $0.contains("recdb_http_requests_total") && $0.contains("recommendations") }
            let routedMetrics = try call(routed, "GET", "/metrics", key: metricKey).text.split(separator: "\n").filter { $0.contains("recdb_http_requests_total") && $0.contains("recommendations") }
            XCTAssertEqual(fastMetrics, routedMetrics)
            XCTAssertTrue(fastMetrics.contains(#"recdb_http_requests_total{method="GET",route="/v1/users/{id}/recommendations",status="200"} 9"#), "\(fastMetrics)")
        }
    }

    /// Pipelined requests on one connection are answered in order when fast and routed requests mix: a
    /// fast one first (with a body, which is ignored), then a write and a recommendation queued behind it
    /// that must see the write, then, once the write is answered, a fast recommendation that must see it
    /// too; `Connection: close` is answered, then the connection ends.
    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let running = try start()
        let before = try database.recommend(user: "u1", k: 4).items.map(\.item)
        let event = #"{"events":[{"user":"u1","item":"i9","timestamp":99}]}"#
        let connection = try RawConnection(port: running.port)
        try connection.send("GET /v1/users/u2/recommendations?k=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            + "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(event.utf8.count)\r\n\r\n\(event)"
            + "GET /v1/users/u1/recommendations?k=4 HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = try connection.read(4)
        XCTAssertEqual(first.map(\.status), [200, 200, 200, 200])
        let after = try database.recommend(user: "u1", k: 4).items.map(\.item)
        XCTAssertNotEqual(before, after, "the write must change u1's recommendations for this test to tell the order")
        XCTAssertEqual(first[0].json["user"] as? String, "u2")
        XCTAssertEqual(first[0].items, try database.recommend(user: "u2", k: 2).items.map(\.item))
        XCTAssertEqual(first[1].json["written"] as? Int, 1)
        XCTAssertEqual(first[2].items, after, "the recommendation queued behind the write was made after it")
        XCTAssertEqual(first[3].json["status"] as? String, "ok")

        // The same connection, everything answered: fast requests, one the router answers, a refusal, then close.
        try connection.send(String(repeating: "GET /v1/users/u1/recommendations?k=4 HTTP/1.1\r\nHost: x\r\n\r\n", count: 10)
            + "GET /v1/stats HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /v1/users/nobody/recommendations HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /v1/users/u3/recommendations?k=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let second = try connection.read(13)
        XCTAssertEqual(second.map(\.status), Array(repeating: 200, count: 11) + [404, 200])
        XCTAssertEqual(second.prefix(10).map(\.items), Array(repeating: after, count: 10))
        XCTAssertEqual(second[10].json["users"] as? Int, 200)
        XCTAssertEqual(second[11].json["detail"] as? String, "unknown user 'nobody'")
        XCTAssertEqual(second[12].items, try database.recommend(user: "u3", k: 3).items.map(\.item))
        XCTAssertTrue(try connection.endsWithinASecond(), "the server kept the connection open after Connection: close")
    }

    /// Many connections' requests in flight at once, so an event loop answers several connections in one
    /// round (`FastPathRound`): each connection gets its own answers, in order, flushed; a connection that
    /// closes before its answer is written costs the others nothing.
    func testOneRoundAnswersManyConnections() throws {
        let running = try start()
        let users = (1...24).map { "u\($0)" }
        let abandoned = try (0..<4).map { _ in try RawConnection(port: running.port) }
        let connections = try users.map { _ in try RawConnection(port: running.port) }
        for connection in abandoned { try connection.send("GET /v1/users/u1/recommendations?k=3 HTTP/1.1\r\nHost: x\r\n\r\n") }
        abandoned.forEach { $0.closeNow() }
        for (connection, user) in zip(connections, users) {
            // Two pipelined requests each, the second for another user, and every fourth one for no user.
            let second = users.firstIndex(of: user)! % 4 == 0 ? "nobody" : "u\(users.firstIndex(of: user)! % 7 + 30)"
            try connection.send("GET /v1/users/\(user)/recommendations?k=3 HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /v1/users/\(second)/recommendations?k=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        }
        for (index, (connection, user)) in zip(connections, users).enumerated() {
            let replies = try connection.read(2)
            XCTAssertEqual(replies[0].status, 200, user)
            XCTAssertEqual(replies[0].items, try database.recommend(user: user, k: 3).items.map(\.item), user)
            if index % 4 == 0 {
                XCTAssertEqual(replies[1].status, 404, user)
                XCTAssertEqual(replies[1].json["detail"] as? String, "unknown user 'nobody'")
            } else {
                XCTAssertEqual(replies[1].status, 200, user)
                XCTAssertEqual(replies[1].items, try database.recommend(user: "u\(index % 7 + 30)", k: 2).items.map(\.item), user)
            }
        }
        // All 48 were answered by the fast path (the abandoned connections' requests may or may not have been).
        XCTAssertGreaterThanOrEqual(running.server.fastPathAnswers.load(ordering: .relaxed), users.count * 2)
        // A lone request after those rounds waits for no stragglers beyond the timer (it would time out if
        // the round never ran); and the server still answers fresh connections after the abandoned ones.
        XCTAssertEqual(try call(running, "GET", "/v1/users/u2/recommendations?k=3").status, 200)
        let lone = try RawConnection(port: running.port)
        try lone.send("GET /v1/users/u5/recommendations?k=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try lone.read(1).first?.items, try database.recommend(user: "u5", k: 2).items.map(\.item))
    }

    struct RawReply {
        var status: Int
        /// The status line and fields as sent, without the Date field's value.
        var head: String = ""
        var headers: [String: String]
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var items: [String]? { (json["items"] as? [[String: Any]])?.compactMap { $0["item"] as? String } }
    }

    struct ConnectionError: Error, CustomStringConvertible { var description: String }

    /// One TCP connection to the server: bytes written as given (so requests can be pipelined), HTTP
    /// responses read back (Content-Length bodies).
    final class RawConnection {
        let fd: Int32
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 65_536)

        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ConnectionError(description: "socket: errno \(errno)") }
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { close(fd); throw ConnectionError(description: "connect: errno \(errno)") }
        }

        deinit { if !closed { close(fd) } }
        private var closed = false

        /// Closes the connection at once (before any answer is read).
        func closeNow() {
            if !closed { closed = true; close(fd) }
        }

        func send(_ text: String) throws {
            let bytes = Array(text.utf8)
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            guard sent == bytes.count else { throw ConnectionError(description: "send: \(sent) of \(bytes.count) bytes") }
        }

        private func receive() throws {
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw ConnectionError(description: "the connection ended or timed out (recv \(n), errno \(errno))") }
            buffer.append(contentsOf: chunk[0..<n])
        }

        func read(_ count: Int) throws -> [RawReply] {
            var replies: [RawReply] = []
            while replies.count < count {
                guard let end = buffer.range(of: Data("\r\n\r\n".utf8)) else { try receive(); continue }
                let head = String(decoding: buffer[buffer.startIndex..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
                var headers: [String: String] = [:]
                for line in head.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                let length = Int(headers["content-length"] ?? "") ?? 0
                while buffer.endIndex - end.upperBound < length { try receive() }
                let status = Int(head[0].split(separator: " ").dropFirst().first ?? "") ?? 0
                let shownHead = head.map { $0.lowercased().hasPrefix("date:") ? "Date: (now)" : $0 }.joined(separator: "\r\n")
                replies.append(RawReply(status: status, head: shownHead, headers: headers, body: Data(buffer[end.upperBound..<(end.upperBound + length)])))
                buffer = Data(buffer[(end.upperBound + length)...])
            }
            return replies
        }

        /// Sends `text` in pieces of `size` bytes, pausing `pause` seconds between them (with Nagle's algorithm
        /// off, so each piece leaves as its own segment).
        func send(_ text: String, inPiecesOf size: Int, pause: Double) throws {
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            let bytes = Array(text.utf8)
            for start in stride(from: 0, to: bytes.count, by: size) {
                try send(String(decoding: bytes[start..<min(start + size, bytes.count)], as: UTF8.self))
                Thread.sleep(forTimeInterval: pause)
            }
        }

        /// Ends this side's output (the server reads the end of its input), keeping the connection open to read.
        func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

        /// Every byte until the server closes the connection (or `seconds` pass: nil).
        func readToEnd(seconds: Int) -> Data? {
            var timeout = timeval(tv_sec: seconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            while true {
                let n = recv(fd, &chunk, chunk.count, 0)
                if n == 0 { return buffer }
                if n < 0 { return errno == ECONNRESET ? buffer : nil }
                buffer.append(contentsOf: chunk[0..<n])
            }
        }

        /// Nothing more arrives and the server closes its side within a second.
        func endsWithinASecond() throws -> Bool {
            var short = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &short, socklen_t(MemoryLayout<timeval>.size))
            return buffer.isEmpty && recv(fd, &chunk, chunk.count, 0) == 0
        }
    }
}
