import Foundation

/// Request counts and latency histograms per route, in Prometheus' text exposition format (`/metrics`).
/// Labels are route patterns (`/v1/users/{id}/recommendations`), never raw paths, so a client cannot
/// grow the label set.
final class RequestMetrics: @unchecked Sendable {  // all state behind `lock`
    /// Upper bounds in seconds: sub-millisecond serving through slow training starts.
    static let bucketBounds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private struct Series {
        var counts: [String: Int] = [:]  // status code → requests
        var buckets = [Int](repeating: 0, count: RequestMetrics.bucketBounds.count)
        var sum = 0.0
        var count = 0
    }
    private let lock = NSLock()
    private var series: [String: Series] = [:]  // "METHOD route"

    func record(method: String, route: String, status: Int, seconds: Double) {
        lock.lock(); defer { lock.unlock() }
        var s = series["\(method) \(route)", default: Series()]
        s.counts[String(status), default: 0] += 1
        for (i, bound) in Self.bucketBounds.enumerated() where seconds <= bound { s.buckets[i] += 1 }
        s.sum += seconds
        s.count += 1
        series["\(method) \(route)"] = s
    }

    func exposition() -> String {
        lock.lock(); let snapshot = series; lock.unlock()
        var out = "# HELP recdb_http_requests_total HTTP requests by route, method and status.\n# TYPE recdb_http_requests_total counter\n"
        let keys = snapshot.keys.sorted()
        for key in keys {
            let (method, route) = Self.split(key)
            for (status, n) in snapshot[key]!.counts.sorted(by: { $0.key < $1.key }) {
                out += "recdb_http_requests_total{method=\"\(method)\",route=\"\(route)\",status=\"\(status)\"} \(n)\n"
            }
        }
        out += "# HELP recdb_http_request_duration_seconds Time to answer, by route and method.\n# TYPE recdb_http_request_duration_seconds histogram\n"
        for key in keys {
            let (method, route) = Self.split(key)
            let s = snapshot[key]!
            let labels = "method=\"\(method)\",route=\"\(route)\""
            for (i, bound) in Self.bucketBounds.enumerated() {
                out += "recdb_http_request_duration_seconds_bucket{\(labels),le=\"\(bound)\"} \(s.buckets[i])\n"
            }
            out += "recdb_http_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(s.count)\n"
            out += "recdb_http_request_duration_seconds_sum{\(labels)} \(s.sum)\n"
            out += "recdb_http_request_duration_seconds_count{\(labels)} \(s.count)\n"
        }
        return out
    }

    private static func split(_ key: String) -> (String, String) {
        let space = key.firstIndex(of: " ")!
        return (String(key[..<space]), String(key[key.index(after: space)...]))
    }
}
