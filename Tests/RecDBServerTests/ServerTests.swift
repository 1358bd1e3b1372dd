import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
import RecDB
@testable import RecDBServer
import Learn
import TestSupport

/// The HTTP API over real loopback connections: a server on a free port, every route, the failure
/// answers (auth, read-only, bad JSON, oversized bodies, unknown ids) and the database unchanged after
/// a refused write.
final class ServerTests: XCTestCase {
    static let itemCount = 40
    var directory: URL!
    var database: Database!

    override class func setUp() { super.setUp(); Database.configureProcess() }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("recdb-server-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var options = Database.Options()
        options.initialMapSize = 64 << 20
        database = try Database(path: directory.appendingPathComponent("db").path, options: options)
        // Items i1…i40 with titles; users follow "next item" chains, so a trained model is predictable.
        _ = try database.write { tx in
            for i in 1...Self.itemCount {
                _ = try tx.upsertItem(ItemInput(externalID: "i\(i)", title: "Title \(i)", attributesJSON: i % 2 == 0 ? #"{"color":"red"}"# : #"{"color":"blue"}"#))
            }
            for u in 0..<200 {
                let user = try tx.upsertUser(externalID: "u\(u)")
                var item = (u * 7) % Self.itemCount + 1
                for t in 0..<(6 + (u * 5) % 8) {
                    try tx.appendEvent(user: user, item: UInt32(item), timestamp: Int64(t))
                    item = item % Self.itemCount + 1
                }
            }
        }
        var c = ModelConfiguration()
        c.hiddenSize = 16; c.blocks = 1; c.maxLength = 10; c.batchSize = 64; c.maxEpochs = 4; c.learningRate = 5e-3; c.seed = 1
        _ = try database.train(TrainingRequest(model: "seq", configuration: c))
    }

    override func tearDownWithError() throws {
        database = nil
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: - A running server and a small HTTP client

    final class Running {
        let server: RecDBServer
        let task: Task<Void, Error>
        let port: Int
        init(server: RecDBServer, task: Task<Void, Error>, port: Int) { self.server = server; self.task = task; self.port = port }
        deinit { task.cancel() }
    }

    func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Running {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configure(&configuration)
        let server = RecDBServer(database: database, path: directory.path, configuration: configuration)
        let port = Box<Int>(0)
        let ready = DispatchSemaphore(value: 0)
        let task = Task { try await server.run { p in port.set(p); ready.signal() } }
        XCTAssertEqual(ready.wait(timeout: .now() + 30), .success, "the server did not start")
        XCTAssertGreaterThan(port.get(), 0)
        return Running(server: server, task: task, port: port.get())
    }

    /// `rdbctl serve` on this test's database as its own process, on a free port: the process (the caller
    /// stops it) and the port it printed.
    func startServeProcess(_ rdbctl: String) throws -> (Process, Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: rdbctl)
        process.arguments = ["serve", directory.appendingPathComponent("db").path, "--port", "0"]
        process.environment = ["OMP_WAIT_POLICY": "passive", "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line names the bound port: "RecDB serving PATH at http://127.0.0.1:PORT/ (…".
        var line = Data()
        while line.count < 4096 {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([10]) { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let port = text.components(separatedBy: "http://127.0.0.1:").dropFirst().first.flatMap({ Int($0.prefix { $0.isNumber }) }) else {
            process.terminate()
            process.waitUntilExit()
            throw ConnectionError(description: "rdbctl serve did not print its port: \(text)")
        }
        return (process, port)
    }

    struct Reply {
        var status: Int
        var type: String
        var body: Data
        var headers: [String: String]
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// Every reply body is kept, to check that none names the database's location.
    var bodies: [String] = []

    func call(_ running: Running, _ method: String, _ path: String, json: Any? = nil, raw: Data? = nil, key: String? = nil,
              contentType: String = "application/json", file: StaticString = #filePath, line: UInt = #line) throws -> Reply {
        try call(port: running.port, method, path, json: json, raw: raw, key: key, contentType: contentType, file: file, line: line)
    }

    func call(port: Int, _ method: String, _ path: String, json: Any? = nil, raw: Data? = nil, key: String? = nil,
              contentType: String = "application/json", file: StaticString = #filePath, line: UInt = #line) throws -> Reply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        if let json { request.httpBody = try JSONSerialization.data(withJSONObject: json) }
        if let raw { request.httpBody = raw }
        if request.httpBody != nil { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        let result = Box<(Data?, URLResponse?, Error?)>((nil, nil, nil))
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { d, r, e in result.set((d, r, e)); done.signal() }.resume()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "no answer to \(method) \(path)", file: file, line: line)
        let (data, response, error) = result.get()
        if let error { throw error }
        let http = try XCTUnwrap(response as? HTTPURLResponse)
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields { headers[String(describing: k).lowercased()] = String(describing: v) }
        let reply = Reply(status: http.statusCode, type: headers["content-type"] ?? "", body: data ?? Data(), headers: headers)
        bodies.append(reply.text)
        return reply
    }

    func assertProblem(_ reply: Reply, _ status: Int, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(reply.status, status, reply.text, file: file, line: line)
        XCTAssertEqual(reply.type, "application/problem+json", file: file, line: line)
        XCTAssertEqual(reply.json["status"] as? Int, status, file: file, line: line)
        XCTAssertTrue((reply.json["detail"] as? String ?? "").contains(text), "'\(reply.json["detail"] ?? "")' lacks '\(text)'", file: file, line: line)
    }

    func fingerprint() throws -> String {
        let stats = try database.stats()
        let models = try database.models().map { "\($0.name):\($0.activeVersion ?? 0):\($0.versions.count)" }
        let items = try database.read { tx -> [String] in
            var out: [String] = []
            try tx.forEachItem { out.append("\($0.externalID)|\($0.title ?? "")|\($0.isAvailable)|\($0.updatedAt)"); return true }
            return out
        }
        return "\(stats)|\(models)|\(items)"
    }

    // MARK: - Tests

    func testTheDocumentAndTheRoutesAgree() throws {
        let server = RecDBServer(database: database, path: directory.path, configuration: ServerConfiguration())
        _ = server.makeRouter()
        let served = Set(server.routes.all)
        let text = try XCTUnwrap(JSONSchema.bundledText("openapi.json"))
        let document = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(document["openapi"] as? String, "3.1.0")
        let paths = try XCTUnwrap(document["paths"] as? [String: [String: Any]])
        var documented: Set<String> = []
        for (path, operations) in paths {
            for method in operations.keys { documented.insert("\(method.uppercased()) \(path)") }
        }
        XCTAssertEqual(served, documented, "routes served but not documented: \(served.subtracting(documented)); documented but not served: \(documented.subtracting(served))")
        XCTAssertEqual(served.count, 22)
    }

    func testReadRoutesAnswerWhatTheLibraryAnswers() throws {
        let running = try start()
        let health = try call(running, "GET", "/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.json["status"] as? String, "ok")
        let page = try call(running, "GET", "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.type.hasPrefix("text/html"))
        XCTAssertTrue(page.text.contains("<title>RecDB</title>"))
        XCTAssertEqual((try call(running, "GET", "/openapi.json").json["openapi"] as? String), "3.1.0")

        let stats = try call(running, "GET", "/v1/stats").json
        XCTAssertEqual(stats["users"] as? Int, 200)
        XCTAssertEqual(stats["items"] as? Int, Self.itemCount)
        XCTAssertEqual(stats["interactions"] as? Int, try database.stats().interactions)

        let models = try XCTUnwrap(call(running, "GET", "/v1/models").json["models"] as? [[String: Any]])
        XCTAssertEqual(models.first?["name"] as? String, "seq")
        XCTAssertEqual(models.first?["activeVersion"] as? Int, 1)
        let curve = try call(running, "GET", "/v1/models/seq/versions/1/curve.svg")
        XCTAssertEqual(curve.status, 200)
        XCTAssertEqual(curve.type, "image/svg+xml")
        XCTAssertTrue(curve.text.hasPrefix("<svg"))
        assertProblem(try call(running, "GET", "/v1/models/seq/versions/9/curve.svg"), 404, contains: "seq version 9")

        // A user: history with titles, newest last, bounded by ?history.
        let user = try call(running, "GET", "/v1/users/u3?history=3").json
        let history = try XCTUnwrap(user["history"] as? [[String: Any]])
        let events = try database.read { tx in try tx.events(user: tx.userID(for: "u3")!) }
        XCTAssertEqual(user["events"] as? Int, events.count)
        XCTAssertEqual(history.map { $0["item"] as? String }, events.suffix(3).map { "i\($0.item)" })
        XCTAssertEqual(history.first?["title"] as? String, "Title \(events.suffix(3).first!.item)")
        assertProblem(try call(running, "GET", "/v1/users/nobody"), 404, contains: "unknown user 'nobody'")

        // Recommendations: the same items, scores and source as the library.
        let expected = try database.recommend(user: "u3", k: 5)
        let got = try call(running, "GET", "/v1/users/u3/recommendations?k=5").json
        XCTAssertEqual((got["items"] as? [[String: Any]])?.map { $0["item"] as? String }, expected.items.map(\.item))
        XCTAssertEqual(got["source"] as? String, expected.source.rawValue)
        XCTAssertEqual(got["model"] as? String, "seq")
        var red = RecommendOptions(); red.filter.attributes = ["color": "red"]
        let filtered = try call(running, "GET", "/v1/users/u3/recommendations?k=5&attribute=color=red").json
        XCTAssertEqual((filtered["items"] as? [[String: Any]])?.map { $0["item"] as? String },
                       try database.recommend(user: "u3", k: 5, options: red).items.map(\.item))
        var withSeen = RecommendOptions(); withSeen.excludeSeen = false
        XCTAssertEqual((try call(running, "GET", "/v1/users/u3/recommendations?k=5&exclude_seen=false").json["items"] as? [[String: Any]])?.map { $0["item"] as? String },
                       try database.recommend(user: "u3", k: 5, options: withSeen).items.map(\.item))
        let batch = try call(running, "POST", "/v1/recommendations", json: ["users": ["u1", "u2"], "k": 3]).json
        XCTAssertEqual((batch["results"] as? [[String: Any]])?.map { $0["user"] as? String }, ["u1", "u2"])
        XCTAssertEqual(((batch["results"] as? [[String: Any]])?[1]["items"] as? [[String: Any]])?.map { $0["item"] as? String },
                       try database.recommend(user: "u2", k: 3).items.map(\.item))
        let session = try call(running, "POST", "/v1/recommendations", json: ["sequence": ["i3", "i4", "i5"], "k": 2]).json
        XCTAssertEqual(((session["results"] as? [[String: Any]])?.first?["items"] as? [[String: Any]])?.map { $0["item"] as? String },
                       try database.recommend(sequence: ["i3", "i4", "i5"], k: 2).items.map(\.item))

        // Items, similar items (by space and by model) and vector search.
        let item = try call(running, "GET", "/v1/items/i4").json
        XCTAssertEqual(item["title"] as? String, "Title 4")
        XCTAssertEqual((item["attributes"] as? [String: Any])?["color"] as? String, "red")
        XCTAssertEqual(item["spaces"] as? [String], ["seq@1"])
        let similar = try call(running, "GET", "/v1/items/i4/similar?k=4&space=seq@1").json
        let expectedSimilar = try database.similarItems(to: "i4", k: 4, space: "seq@1").map(\.item)
        XCTAssertEqual((similar["items"] as? [[String: Any]])?.map { $0["item"] as? String }, expectedSimilar)
        XCTAssertEqual((try call(running, "GET", "/v1/items/i4/similar?k=4&model=seq").json["items"] as? [[String: Any]])?.map { $0["item"] as? String },
                       expectedSimilar)
        let vector = try XCTUnwrap(database.read { tx in try tx.vector(space: "seq@1", entity: tx.itemID(for: "i4")!) })
        let search = try call(running, "POST", "/v1/search", json: ["vector": vector.map(Double.init), "space": "seq@1", "k": 3]).json
        XCTAssertEqual((search["items"] as? [[String: Any]])?.map { $0["item"] as? String },
                       try database.nearest(to: vector, k: 3, space: "seq@1").map(\.item))
        assertProblem(try call(running, "GET", "/v1/items/nothing"), 404, contains: "unknown item 'nothing'")
        assertProblem(try call(running, "GET", "/v1/items/i4/similar?space=nope"), 404, contains: "nope")
        assertProblem(try call(running, "GET", "/v1/items/i4/similar"), 400, contains: "space=NAME or model=NAME")
        assertProblem(try call(running, "POST", "/v1/search", json: ["vector": [1, 2], "space": "seq@1"]), 400, contains: "dimension 16")

        // Bounds and malformed requests.
        assertProblem(try call(running, "GET", "/v1/users/u3/recommendations?k=0"), 400, contains: "k must be between 1 and 1000")
        assertProblem(try call(running, "GET", "/v1/users/u3/recommendations?k=1000000000000"), 400, contains: "k must be between 1 and 1000")
        assertProblem(try call(running, "GET", "/v1/users/u3/recommendations?k=ten"), 400, contains: "k must be an integer")
        assertProblem(try call(running, "GET", "/v1/users/u3/recommendations?exclude_seen=maybe"), 400, contains: "exclude_seen must be true or false")
        assertProblem(try call(running, "POST", "/v1/recommendations", raw: Data("{not json".utf8)), 400, contains: "not valid JSON")
        assertProblem(try call(running, "POST", "/v1/recommendations", json: [1, 2]), 400, contains: "must be a JSON object")
        assertProblem(try call(running, "POST", "/v1/recommendations", json: ["k": 3]), 400, contains: "either 'users'")
        assertProblem(try call(running, "POST", "/v1/recommendations", json: ["users": ["u1"], "k": true]), 400, contains: "'k' must be an integer")
        assertProblem(try call(running, "GET", "/v2/nothing"), 404, contains: "no route GET /v2/nothing")

        // Metrics count what was asked, by route pattern.
        let metrics = try call(running, "GET", "/metrics")
        XCTAssertTrue(metrics.type.hasPrefix("text/plain"))
        XCTAssertTrue(metrics.text.contains(#"recdb_http_requests_total{method="GET",route="/v1/users/{id}/recommendations",status="200"} 3"#), metrics.text)
        XCTAssertTrue(metrics.text.contains(#"recdb_http_requests_total{method="GET",route="/v1/users/{id}/recommendations",status="400"} 4"#), metrics.text)
        XCTAssertTrue(metrics.text.contains(#"recdb_http_request_duration_seconds_count{method="POST",route="/v1/search"} 2"#), metrics.text)
        XCTAssertTrue(metrics.text.contains(#"recdb_http_request_duration_seconds_bucket{method="GET",route="/healthz",le="+Inf"} 1"#), metrics.text)
        XCTAssertFalse(bodies.contains { $0.contains(directory.path) }, "a response named the database's location")
    }

    /// Ids travel percent-encoded and are decoded once; every query parameter of a recommendation, given
    /// together and in any order, is read from the one parse of the query (the first of a repeated one wins).
    func testEscapedIdsAndQueryParametersTogether() throws {
        let awkward = "a b/é%"
        _ = try database.write { tx in
            let user = try tx.upsertUser(externalID: awkward)
            for (t, item) in [3, 4, 5].enumerated() { try tx.appendEvent(user: user, item: UInt32(item), timestamp: Int64(t)) }
        }
        let running = try start()
        func items(_ json: [String: Any]) -> [String]? { (json["items"] as? [[String: Any]])?.compactMap { $0["item"] as? String } }

        let escaped = try call(running, "GET", "/v1/users/a%20b%2F%C3%A9%25/recommendations?k=4").json
        XCTAssertEqual(escaped["user"] as? String, awkward)
        XCTAssertEqual(items(escaped), try database.recommend(user: awkward, k: 4).items.map(\.item))
        XCTAssertEqual(try call(running, "GET", "/v1/users/a%20b%2F%C3%A9%25").json["id"] as? String, awkward)
        assertProblem(try call(running, "GET", "/v1/users/%C3%28/recommendations"), 400, contains: "path parameter id is not a valid id")

        var options = RecommendOptions(model: "seq", version: 1, excludeSeen: false)
        options.filter.attributes = ["color": "red"]
        let all = try call(running, "GET", "/v1/users/u5/recommendations?attribute=color=red&k=3&exclude_seen=false&version=1&model=seq").json
        XCTAssertEqual(items(all), try database.recommend(user: "u5", k: 3, options: options).items.map(\.item))
        XCTAssertEqual(items(all)?.count, 3)
        XCTAssertEqual(all["version"] as? Int, 1)
        XCTAssertEqual(items(try call(running, "GET", "/v1/users/u5/recommendations?k=2&k=5").json)?.count, 2)
        XCTAssertEqual(items(try call(running, "GET", "/v1/users/u5/recommendations?k=%32").json)?.count, 2, "values are percent-decoded")
        assertProblem(try call(running, "GET", "/v1/users/u5/recommendations?version=-1"), 400, contains: "version must be a version number")
        assertProblem(try call(running, "GET", "/v1/users/u5/recommendations?attribute=color"), 400, contains: "attribute takes KEY=VALUE, got 'color'")
        assertProblem(try call(running, "GET", "/v1/users/u5/recommendations?model=nope"), 404, contains: "nope")
        assertProblem(try call(running, "GET", "/v1/users/u5?history=10001"), 400, contains: "history must be between 0 and 10000")
        XCTAssertEqual((try call(running, "GET", "/v1/users/u5?history=2").json["history"] as? [Any])?.count, 2)
        XCTAssertEqual(items(try call(running, "GET", "/v1/items/i4/similar?model=seq&k=2&attribute=color=red").json),
                       try database.similarItems(to: "i4", k: 2, space: "seq@1", filter: SearchFilter(attributes: ["color": "red"])).map(\.item))
    }

    func testWritesAreAllOrNothing() throws {
        let running = try start { $0.maxBodyBytes = 4096 }
        let before = try database.stats().interactions
        let ok = try call(running, "POST", "/v1/events", json: ["events": [
            ["user": "u1", "item": "i5", "timestamp": 1000], ["user": "fresh", "item": "i6", "type": "purchase", "value": 2.5],
        ]])
        XCTAssertEqual(ok.status, 200, ok.text)
        XCTAssertEqual(ok.json["written"] as? Int, 2)
        XCTAssertEqual(ok.json["created_users"] as? Int, 1)
        XCTAssertEqual(try database.stats().interactions, before + 2)
        let fresh = try database.read { tx in try tx.events(user: tx.userID(for: "fresh")!) }
        XCTAssertEqual(fresh.map(\.type), ["purchase"])
        XCTAssertEqual(fresh.first?.value, 2.5)
        XCTAssertEqual(ok.json["last_sequence"] as? Int, Int(fresh.first!.sequence))

        // One bad row refuses the whole batch, names every bad row, and changes nothing.
        let unchanged = try fingerprint()
        let refused = try call(running, "POST", "/v1/events", json: ["events": [
            ["user": "u1", "item": "i5"], ["user": "u2", "item": "ghost"], ["user": "u3", "item": "i7"], ["user": "new", "item": "phantom"],
        ]])
        assertProblem(refused, 422, contains: "2 of 4 events are invalid; none was written")
        XCTAssertEqual((refused.json["errors"] as? [[String: Any]])?.map { $0["row"] as? Int }, [1, 3])
        XCTAssertEqual((refused.json["errors"] as? [[String: Any]])?.first?["error"] as? String, "unknown item 'ghost'")
        let shapes = try call(running, "POST", "/v1/events", json: ["events": [["user": "u1"], ["user": "u1", "item": "i1", "timestamp": "soon"]]])
        assertProblem(shapes, 422, contains: "2 of 2 events are invalid")
        XCTAssertEqual((shapes.json["errors"] as? [[String: Any]])?.map { $0["error"] as? String }, ["'user' and 'item' are required", "'timestamp' must be an integer"])
        assertProblem(try call(running, "POST", "/v1/events", json: ["events": []]), 400, contains: "'events' is required")
        let big = ["events": (0..<200).map { ["user": "u1", "item": "i1", "timestamp": $0] }]
        assertProblem(try call(running, "POST", "/v1/events", json: big), 413, contains: "at most 4096 are accepted")
        XCTAssertEqual(try fingerprint(), unchanged, "a refused write changed the database")

        // Items: created and updated through PUT, visible to GET.
        let put = try call(running, "PUT", "/v1/items/new-item", json: ["title": "Brand new", "attributes": ["color": "green"], "available": false])
        XCTAssertEqual(put.status, 200, put.text)
        XCTAssertEqual(put.json["title"] as? String, "Brand new")
        XCTAssertEqual(put.json["available"] as? Bool, false)
        XCTAssertEqual(try database.read { try $0.item(externalID: "new-item")?.title }, "Brand new")
        assertProblem(try call(running, "PUT", "/v1/items/x", json: ["title": 5]), 400, contains: "'title' must be a string")

        // Activation and rollback.
        var c = ModelConfiguration(); c.hiddenSize = 16; c.blocks = 1; c.maxLength = 10; c.maxEpochs = 1
        _ = try database.train(TrainingRequest(model: "seq", configuration: c))
        let activated = try call(running, "POST", "/v1/models/seq/activate", json: ["version": 1])
        XCTAssertEqual(activated.json["active_version"] as? Int, 1, activated.text)
        XCTAssertEqual(try database.models().first?.activeVersion, 1)
        let rolled = try call(running, "POST", "/v1/models/seq/rollback")
        XCTAssertEqual(rolled.json["active_version"] as? Int, 2, rolled.text)
        assertProblem(try call(running, "POST", "/v1/models/seq/activate", json: ["version": 7]), 404, contains: "seq version 7")
        assertProblem(try call(running, "POST", "/v1/models/none/rollback"), 404, contains: "unknown model 'none'")
        XCTAssertFalse(bodies.contains { $0.contains(directory.path) }, "a response named the database's location")
    }

    func testKeysAndReadOnly() throws {
        let readKey = "read-key-0123456789", writeKey = "write-key-0123456789"
        let keys = try APIKeys(fileContents: "# keys\n\(readKey)\n\(writeKey) write\n")
        let running = try start { $0.apiKeys = keys }
        let anonymous = try call(running, "GET", "/v1/stats")
        assertProblem(anonymous, 401, contains: "needs an API key")
        XCTAssertEqual(anonymous.headers["www-authenticate"], "Bearer")
        assertProblem(try call(running, "GET", "/v1/stats", key: "read-key-0123456780"), 401, contains: "not valid")
        assertProblem(try call(running, "GET", "/v1/stats", key: String(readKey.dropLast())), 401, contains: "not valid")
        assertProblem(try call(running, "GET", "/metrics"), 401, contains: "needs an API key")
        XCTAssertEqual(try call(running, "GET", "/v1/stats", key: readKey).status, 200)
        XCTAssertEqual(try call(running, "GET", "/healthz").status, 200, "liveness needs no key")
        XCTAssertEqual(try call(running, "GET", "/").status, 200, "the dashboard's page holds no data and needs no key")
        let unchanged = try fingerprint()
        assertProblem(try call(running, "POST", "/v1/events", json: ["events": [["user": "u1", "item": "i1"]]], key: readKey), 403, contains: "may read but not write")
        assertProblem(try call(running, "PUT", "/v1/items/i1", json: ["title": "changed"], key: readKey), 403, contains: "may read but not write")
        XCTAssertEqual(try fingerprint(), unchanged)
        XCTAssertEqual(try call(running, "POST", "/v1/recommendations", json: ["users": ["u1"]], key: readKey).status, 200, "a batch read is a read")
        XCTAssertEqual(try call(running, "PUT", "/v1/items/i1", json: ["title": "changed"], key: writeKey).status, 200)
        XCTAssertEqual(try database.read { try $0.item(externalID: "i1")?.title }, "changed")

        XCTAssertThrowsError(try APIKeys(fileContents: "short\n"))
        XCTAssertThrowsError(try APIKeys(fileContents: "long-enough-key-123 admin\n"))
        XCTAssertThrowsError(try APIKeys(fileContents: "# nothing\n\n"))

        let readOnly = try start { $0.readOnly = true }
        let frozen = try fingerprint()
        for (method, path, body) in [("POST", "/v1/events", ["events": [["user": "u1", "item": "i1"]]] as [String: Any]),
                                     ("PUT", "/v1/items/i2", ["title": "x"]), ("POST", "/v1/models/seq/activate", ["version": 1]),
                                     ("POST", "/v1/models/seq/rollback", [:]), ("POST", "/v1/train", ["model": "m"]),
                                     ("POST", "/v1/jobs/1/cancel", [:]), ("POST", "/v1/import/interactions?format=csv", [:])] {
            assertProblem(try call(readOnly, method, path, json: body), 403, contains: "read-only")
        }
        XCTAssertEqual(try call(readOnly, "GET", "/v1/users/u1/recommendations").status, 200)
        XCTAssertEqual(try fingerprint(), frozen, "a read-only server changed the database")
    }

    func testTrainingRunsAsABackgroundJob() throws {
        let running = try start()
        assertProblem(try call(running, "POST", "/v1/train", json: ["configuration": [:]]), 400, contains: "'model' is required")
        assertProblem(try call(running, "POST", "/v1/train", json: ["model": "m", "configuration": ["hiddenSize": "big"]]), 400, contains: "configuration")
        let started = try call(running, "POST", "/v1/train", json: ["model": "http", "configuration": ["hiddenSize": 16, "blocks": 1, "maxLength": 10, "maxEpochs": 3]])
        XCTAssertEqual(started.status, 202, started.text)
        let id = try XCTUnwrap(started.json["job"] as? Int)
        XCTAssertEqual(started.json["href"] as? String, "/v1/jobs/\(id)")
        let job = try finishedJob(running, id)
        XCTAssertEqual(job["state"] as? String, "succeeded", "\(job)")
        XCTAssertEqual((job["curve"] as? [[Double]])?.count, 3)
        XCTAssertEqual((job["progress"] as? [String: Any])?["epoch"] as? Int, 3)
        let result = try XCTUnwrap(job["result"] as? [String: Any])
        XCTAssertEqual(result["version"] as? Int, 1)
        XCTAssertEqual(try database.models().first { $0.name == "http" }?.activeVersion, 1)
        XCTAssertEqual((try call(running, "GET", "/v1/jobs").json["jobs"] as? [[String: Any]])?.count, 1)
        assertProblem(try call(running, "GET", "/v1/jobs/99"), 404, contains: "unknown job '99'")
        assertProblem(try call(running, "POST", "/v1/jobs/\(id)/cancel"), 409, contains: "is not running")

        // One training at a time; a running one can be stopped and keeps its best weights.
        let long = try call(running, "POST", "/v1/train", json: ["model": "long", "configuration": ["hiddenSize": 16, "blocks": 1, "maxLength": 10, "maxEpochs": 500, "patience": 500]])
        let longID = try XCTUnwrap(long.json["job"] as? Int)
        assertProblem(try call(running, "POST", "/v1/train", json: ["model": "other"]), 409, contains: "already running")
        while (try call(running, "GET", "/v1/jobs/\(longID)").json["progress"]) == nil { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertEqual(try call(running, "POST", "/v1/jobs/\(longID)/cancel").status, 202)
        running.server.jobs.waitForAll(timeout: 120)
        let stopped = try call(running, "GET", "/v1/jobs/\(longID)").json
        XCTAssertEqual(stopped["state"] as? String, "cancelled", "\(stopped)")
        XCTAssertEqual((stopped["result"] as? [String: Any])?["stop_reason"] as? String, "stopped")
    }
}

extension ServerTests {
    /// Waits for job `id` to leave the running state and returns its status.
    func finishedJob(_ running: Running, _ id: Int) throws -> [String: Any] {
        var job: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(120)
        repeat {
            job = try call(running, "GET", "/v1/jobs/\(id)").json
            if job["state"] as? String != "running" { break }
            Thread.sleep(forTimeInterval: 0.02)
        } while Date() < deadline
        return job
    }

    func testImportsOfUploadedFilesRunAsBackgroundJobs() throws {
        let uploads = directory.appendingPathComponent("uploads").path
        try FileManager.default.createDirectory(atPath: uploads, withIntermediateDirectories: true)
        let running = try start { $0.importDirectory = uploads }
        let before = try database.stats().interactions
        let csv = Data("user,item,timestamp\nnewcomer,i1,100\nnewcomer,i2,101\nu0,i3,500\n".utf8)
        let started = try call(running, "POST", "/v1/import/interactions?format=csv", raw: csv, contentType: "application/octet-stream")
        XCTAssertEqual(started.status, 202, started.text)
        let job = try finishedJob(running, try XCTUnwrap(started.json["job"] as? Int))
        XCTAssertEqual(job["state"] as? String, "succeeded", "\(job)")
        XCTAssertEqual(job["kind"] as? String, "import")
        XCTAssertEqual(job["imports"] as? String, "interactions")
        XCTAssertNil(job["model"])
        let summary = try XCTUnwrap(job["import_result"] as? [String: Any])
        XCTAssertEqual(summary["rows"] as? Int, 3)
        XCTAssertEqual(summary["events"] as? Int, 3)
        XCTAssertEqual(summary["file"] as? String, "request body")
        XCTAssertEqual(try database.stats().interactions, before + 3)
        XCTAssertEqual(try database.read { try $0.userID(for: "newcomer") != nil }, true)

        // The format from the Content-Type; items through the same route.
        let items = try call(running, "POST", "/v1/import/items", raw: Data("item,title\nfresh,A Fresh Item\n".utf8), contentType: "text/csv; charset=utf-8")
        XCTAssertEqual(items.status, 202, items.text)
        XCTAssertEqual(try finishedJob(running, try XCTUnwrap(items.json["job"] as? Int))["state"] as? String, "succeeded")
        XCTAssertEqual(try database.read { try $0.item(externalID: "fresh")?.title }, "A Fresh Item")

        // A bad row fails the job with its line, names no server path, and changes nothing.
        let unchanged = try fingerprint()
        let bad = try call(running, "POST", "/v1/import/interactions?format=csv", raw: Data("user,item,timestamp\nx,i1,1\ny,,2\n".utf8), contentType: "text/csv")
        let failed = try finishedJob(running, try XCTUnwrap(bad.json["job"] as? Int))
        XCTAssertEqual(failed["state"] as? String, "failed", "\(failed)")
        let error = try XCTUnwrap(failed["error"] as? String)
        XCTAssertTrue(error.contains("request body:3:"), error)
        XCTAssertFalse(error.contains("recdb-upload") || error.contains(directory.path), error)
        XCTAssertEqual(try fingerprint(), unchanged)
        // Uploads are removed once their job ends.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: uploads), [], "uploads left behind")

        assertProblem(try call(running, "POST", "/v1/import/interactions", raw: csv), 400, contains: "name the body's format")
        assertProblem(try call(running, "POST", "/v1/import/items?format=sequences", raw: csv, contentType: "text/plain"), 400, contains: "not one of csv, tsv, jsonl, recbole")
        assertProblem(try call(running, "POST", "/v1/import/vectors?format=csv", raw: csv), 404, contains: "unknown import 'vectors'")
        assertProblem(try call(running, "POST", "/v1/import/users?format=csv", raw: Data(), contentType: "text/csv"), 400, contains: "the body is empty")
        let small = try start { $0.maxImportBytes = 10; $0.importDirectory = uploads }
        assertProblem(try call(small, "POST", "/v1/import/interactions?format=csv", raw: csv, contentType: "text/csv"), 413, contains: "larger than 10 bytes")
        XCTAssertEqual(try fingerprint(), unchanged)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: uploads), [], "a refused upload left a file behind")
    }

    /// `PUT /v1/items/{id}` into a database whose space has an encoder: the item is embedded in the same
    /// transaction, so it is searchable at once.
    func testAnItemPutOverHTTPIsEmbeddedOnInsert() throws {
        let encoderPath = try TinyEncoder.write(in: directory)
        let embedded = try database.embed(EmbedRequest(space: "tiny", encoderDirectory: encoderPath))
        XCTAssertEqual(embedded.embedded, Self.itemCount)
        _ = try database.buildIndex(space: "tiny")
        let running = try start()
        let put = try call(running, "PUT", "/v1/items/brand-new", json: ["title": "red gloss"])
        XCTAssertEqual(put.status, 200, put.text)
        let stored = try XCTUnwrap(database.read { tx in try tx.vector(space: "tiny", entity: tx.itemID(for: "brand-new")!) })
        let expected = try SentenceEncoder(modelDirectory: URL(fileURLWithPath: encoderPath)).encode(["red gloss"])[0]
        XCTAssertEqual(stored.count, 8)
        for (x, y) in zip(stored, expected) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        // Searchable at once: the nearest item to its own vector is itself.
        let found = try call(running, "POST", "/v1/search", json: ["vector": stored.map(Double.init), "space": "tiny", "k": 1])
        XCTAssertEqual(found.status, 200, found.text)
        XCTAssertEqual(((found.json["items"] as? [[String: Any]])?.first)?["item"] as? String, "brand-new")
        // A title change re-embeds it.
        XCTAssertEqual(try call(running, "PUT", "/v1/items/brand-new", json: ["title": "hair oil"]).status, 200)
        let changed = try XCTUnwrap(database.read { tx in try tx.vector(space: "tiny", entity: tx.itemID(for: "brand-new")!) })
        let expectedChanged = try SentenceEncoder(modelDirectory: URL(fileURLWithPath: encoderPath)).encode(["hair oil"])[0]
        for (x, y) in zip(changed, expectedChanged) { XCTAssertEqual(x, y, accuracy: 1e-6) }
    }

    /// `rdbctl serve` as its own process, where request handlers run on NIO's event loops
    /// (`RecDBServer.runConcurrencyOnEventLoops`): concurrent reads answer as the library does, a write
    /// goes through the writer queue and is seen by this process, and SIGTERM stops it cleanly.
    func testRdbctlServeAsAProcessAnswersConcurrentReadsAndAWrite() throws {
        guard let rdbctl = BuiltProducts.locate("rdbctl") else {
            throw XCTSkip("rdbctl is not built (`make test` builds every product)")
        }
        let (process, port) = try startServeProcess(rdbctl)
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }

        XCTAssertEqual(try call(port: port, "GET", "/healthz").status, 200)
        let expected = try database.recommend(user: "u1", k: 5).items.map(\.item)
        let answers = Box<[[String]?]>(Array(repeating: nil, count: 32))
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            let reply = try? Self.getJSON(port: port, "/v1/users/u1/recommendations?k=5")
            let items = reply.flatMap { ($0["items"] as? [[String: Any]])?.compactMap { $0["item"] as? String } }
            answers.update { $0[i] = items }
        }
        XCTAssertEqual(answers.get().map { $0 ?? [] }, Array(repeating: expected, count: 32))

        let before = try database.read { tx in try tx.events(user: tx.userID(for: "u1")!).count }
        let write = try call(port: port, "POST", "/v1/events", json: ["events": [["user": "u1", "item": "i3"]]])
        XCTAssertEqual(write.status, 200, write.text)
        XCTAssertEqual(try database.read { tx in try tx.events(user: tx.userID(for: "u1")!).count }, before + 1)

        process.terminate()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
    }

    /// A GET from any thread (no XCTest bookkeeping, which is not thread-safe): the JSON object answered.
    static func getJSON(port: Int, _ path: String) throws -> [String: Any]? {
        let result = Box<Data?>(nil)
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: URL(string: "http://127.0.0.1:\(port)\(path)")!) { d, _, _ in result.set(d); done.signal() }.resume()
        guard done.wait(timeout: .now() + 60) == .success, let data = result.get() else { return nil }
        return try JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    /// The README's Python client (standard library only), run as it is against a live server.
    func testTheReadmePythonClientRuns() throws {
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("python3 is not installed")
        }
        let readme = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        let marker = try XCTUnwrap(readme.range(of: "<!-- python-client-example -->\n```python\n"), "the README lost its Python example")
        let code = String(readme[marker.upperBound...]).components(separatedBy: "\n```\n")[0]
        let script = directory.appendingPathComponent("client.py")
        try code.write(to: script, atomically: true, encoding: .utf8)
        _ = try database.write { tx in _ = try tx.upsertItem(ItemInput(externalID: "sku-9", title: "Red lipstick")) }
        let running = try start()

        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path]
        process.environment = ["RECDB_URL": "http://127.0.0.1:\(running.port)", "PATH": "/usr/bin:/bin"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, errors)
        // The event was written, and the printed list is the library's answer for alice.
        XCTAssertEqual(try database.read { tx in try tx.events(user: tx.userID(for: "alice")!).map(\.type) }, ["purchase"])
        let expected = try database.recommend(user: "alice", k: 5).items.map(\.item)
        XCTAssertEqual(output.split(separator: "\n").map { String($0.split(separator: " ")[0]) }, expected, output)
    }
}

/// A value written by one thread and read by another.
final class Box<Value>: @unchecked Sendable {  // every access holds `lock`
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ newValue: Value) { lock.lock(); value = newValue; lock.unlock() }
    func update(_ change: (inout Value) -> Void) { lock.lock(); change(&value); lock.unlock() }
}
