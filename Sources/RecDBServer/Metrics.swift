import Foundation

/// Request counts and latency histograms per route, in Prometheus' text exposition format (`/metrics`).
/// Labels are route patterns (`/v1/users/{id}/recommendations`), never raw paths, so a client cannot
/// grow the label set.
///
/// Each route's series is an object made when the route is registered and kept by its handler, so a
/// request records into it under that series' own lock without building a key or copying a table:
/// recording is on every request's path, and requests to different routes do not wait for each other.
final class RequestMetrics: @unchecked Sendable {  // `series` behind `lock`; each series guards itself
    /// Upper bounds in seconds: sub-millisecond serving through slow training starts.
    static let bucketBounds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// One route and method's counts.
    final class Series: @unchecked Sendable {  // all mutable state behind `lock`
        let method: String
        let route: String
        private let lock = NSLock()
        private var counts: [Int: Int] = [:]  // status code → requests
        /// Requests whose time fell in bucket i (not cumulative; the exposition sums them).
        private var inBucket = [Int](repeating: 0, count: RequestMetrics.bucketBounds.count)
        private var sum = 0.0
        private var count = 0

        init(method: String, route: String) {
            self.method = method
            self.route = route
        }

        func record(status: Int, seconds: Double) {
            // Binary search is not worth it for 16 bounds; most requests stop at the first few.
            var i = 0
            while i < RequestMetrics.bucketBounds.count && seconds > RequestMetrics.bucketBounds[i] { i += 1 }
            lock.lock(); defer { lock.unlock() }
            counts[status, default: 0] += 1
            if i < inBucket.count { inBucket[i] += 1 }
            sum += seconds
            count += 1
        }

        fileprivate func snapshot() -> (counts: [Int: Int], inBucket: [Int], sum: Double, count: Int) {
            lock.lock(); defer { lock.unlock() }
            return (counts, inBucket, sum, count)
        }
    }

    private let lock = NSLock()
    private var series: [String: Series] = [:]  // "METHOD route"

    /// The series of `method route`, made on first use (at route registration for served routes).
    func series(method: String, route: String) -> Series {
        lock.lock(); defer { lock.unlock() }
        let key = "\(method) \(route)"
        if let s = series[key] { return s }
        let s = Series(method: method, route: route)
        series[key] = s
        return s
    }

    func record(method: String, route: String, status: Int, seconds: Double) {
        series(method: method, route: route).record(status: status, seconds: seconds)
    }

    func exposition() -> String {
        lock.lock(); let all = series.sorted { $0.key < $1.key }.map(\.value); lock.unlock()
        // Routes that have not answered yet are left out, as Prometheus clients do for unseen label sets.
        let seen = all.map { ($0, $0.snapshot()) }.filter { $0.1.count > 0 }
        var out = "# HELP recdb_http_requests_total HTTP requests by route, method and status.\n# TYPE recdb_http_requests_total counter\n"
        for (s, snap) in seen {
            for (status, n) in snap.counts.sorted(by: { $0.key < $1.key }) {
                out += "recdb_http_requests_total{method=\"\(s.method)\",route=\"\(s.route)\",status=\"\(status)\"} \(n)\n"
            }
        }
        out += "# HELP recdb_http_request_duration_seconds Time to answer, by route and method.\n# TYPE recdb_http_request_duration_seconds histogram\n"
        for (s, snap) in seen {
            let labels = "method=\"\(s.method)\",route=\"\(s.route)\""
            var cumulative = 0
            for (i, bound) in Self.bucketBounds.enumerated() {
                cumulative += snap.inBucket[i]
                out += "recdb_http_request_duration_seconds_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
            }
            out += "recdb_http_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(snap.count)\n"
            out += "recdb_http_request_duration_seconds_sum{\(labels)} \(snap.sum)\n"
            out += "recdb_http_request_duration_seconds_count{\(labels)} \(snap.count)\n"
        }
        return out
    }
}
