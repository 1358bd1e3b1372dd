import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A deterministic generator of app-scale interaction data (`rdbctl generate`): the benchmarks and
/// the scale tests use it instead of a research data set, so any size can be made on any machine.
///
/// - Users have lognormal history lengths (at least `minHistory`), scaled so the total is exactly `rows`.
/// - Items have Zipf popularity inside their cluster; items are in `clusters` clusters (item rank r is in
///   cluster r mod clusters), and each user moves between clusters by a Markov chain (stay, go to one of
///   two successor clusters, or jump anywhere) and sometimes takes the next item of the same cluster —
///   planted sequential structure, so a model trained on the data has something to find.
/// - Timestamps increase per user (each user is active over part of the time span, with exponential
///   gaps); CSV rows are in global time order, users interleaved, as an app's event log is.
/// - Each user draws items and times from their own random streams seeded from `seed` and the user's
///   number, so the CSV and the sequence file hold the same histories and any size is reproducible.
public struct SyntheticInteractions: Sendable {
    public enum Output: String, Sendable, CaseIterable, Codable {
        /// `user,item,timestamp` with a header, rows in global time order.
        case csv
        /// `user item1 item2 …` per user, chronological (what `--format sequences` imports).
        case sequences
    }

    public var rows: Int
    public var users: Int
    public var items: Int
    public var clusters: Int
    public var seed: UInt64
    /// σ of the lognormal history length (its mean is rows / users).
    public var historySigma = 1.0
    public var zipfExponent = 1.0
    public var minHistory = 3
    /// Probability that the next item is the successor of the previous one in its cluster.
    public var successorProbability = 0.25
    public var startTime: Int64 = 1_600_000_000
    /// Users are named `u<userOffset + k>`: a second file with an offset shares some users with the first.
    public var userOffset = 0
    /// Seconds the whole log spans (two years).
    public var span: Int64 = 2 * 365 * 86_400

    /// Defaults that scale with the rows: 50 events per user on average, a catalogue of rows / 100
    /// items clamped to 50k…1M, clusters of about 500 items.
    public init(rows: Int, users: Int? = nil, items: Int? = nil, clusters: Int? = nil, seed: UInt64 = 42) {
        self.rows = rows
        self.users = users ?? max(1, rows / 50)
        self.items = items ?? min(1_000_000, max(50_000, rows / 100))
        self.clusters = clusters ?? max(1, (items ?? min(1_000_000, max(50_000, rows / 100))) / 500)
        self.seed = seed
    }

    public struct Summary: Sendable, Codable {
        public var rows: Int
        public var users: Int
        public var items: Int
        public var clusters: Int
        public var bytes: Int
        public var seconds: Double
    }

    func validate() throws {
        guard rows >= 1, rows <= 1 << 40 else { throw RecDBError.invalidArgument("rows must be in 1...\(1 << 40)") }
        guard minHistory >= 1, minHistory <= 1000 else { throw RecDBError.invalidArgument("the minimum history must be in 1...1000") }
        guard users >= 1, users <= Int(UInt32.max), users.multipliedReportingOverflow(by: minHistory).partialValue <= rows else {
            throw RecDBError.invalidArgument("users must be in 1...rows / \(minHistory) (every user has at least \(minHistory) events)")
        }
        guard userOffset >= 0, userOffset <= 1 << 40 else { throw RecDBError.invalidArgument("the user offset must be in 0...2^40") }
        guard items >= 1, items <= 1 << 31 else { throw RecDBError.invalidArgument("items must be in 1...\(1 << 31)") }
        guard clusters >= 1, clusters <= items else { throw RecDBError.invalidArgument("clusters must be in 1...items") }
        guard span >= 1, span < 1 << 26, startTime >= 0, startTime <= 253_402_300_799 - (1 << 32) else {
            throw RecDBError.invalidArgument("the time span must be in 1...2^26 seconds from a start in 0...year 9800")
        }
        guard historySigma.isFinite, historySigma >= 0, historySigma <= 4, zipfExponent.isFinite, zipfExponent >= 0, zipfExponent <= 4,
              successorProbability.isFinite, (0...1).contains(successorProbability) else {
            throw RecDBError.invalidArgument("sigma and the Zipf exponent must be in 0...4, the successor probability in 0...1")
        }
    }

    /// Writes the data set to `path` (replacing it) and returns what was written.
    @discardableResult
    public func write(to path: String, format: Output) throws -> Summary {
        try validate()
        let start = Date()
        let out = try BufferedOutput(path: path)
        var state = makeUsers()
        let itemTable = AliasTable(weights: (0..<(items + clusters - 1) / clusters).map { 1 / pow(Double($0 + 1), zipfExponent) })
        var draw = ItemDraw(items: UInt32(items), clusters: UInt32(clusters), successor: successorProbability, table: itemTable)
        switch format {
        case .csv:
            try out.write("user,item,timestamp\n")
            // A heap of (next time << 32 | user): the user whose next event is earliest comes first.
            var heap: [UInt64] = []
            heap.reserveCapacity(users)
            for u in 0..<users { heap.append(UInt64(state[u].nextTime) << 32 | UInt64(u)) }
            heap.sort()  // a sorted array is a valid min-heap
            while let top = heap.first {
                let u = Int(top & 0xFFFF_FFFF), time = Int64(top >> 32)
                let item = draw.next(&state[u])
                out.put("u", UInt64(userOffset + u), ",i", UInt64(item), ",", UInt64(startTime + time))
                state[u].remaining -= 1
                if state[u].remaining > 0 {
                    // Past the span is fine (it only sets the scale); UInt32 bounds it (a user would need
                    // ~60× the expected time to reach it).
                    let next = min(UInt64(UInt32.max), UInt64(time) + state[u].gap())
                    state[u].nextTime = UInt32(next)
                    heap[0] = next << 32 | UInt64(u)
                } else {
                    heap[0] = heap[heap.count - 1]
                    heap.removeLast()
                }
                siftDown(&heap)
                try out.flushIfFull()
            }
        case .sequences:
            for u in 0..<users {
                out.put("u", UInt64(userOffset + u))
                while state[u].remaining > 0 {
                    out.put(" i", UInt64(draw.next(&state[u])))
                    state[u].remaining -= 1
                    try out.flushIfFull()
                }
                out.newline()
                try out.flushIfFull()
            }
        }
        let bytes = try out.close()
        return Summary(rows: rows, users: users, items: items, clusters: clusters, bytes: bytes, seconds: Date().timeIntervalSince(start))
    }

    private func siftDown(_ heap: inout [UInt64]) {
        let n = heap.count
        guard n > 1 else { return }
        heap.withUnsafeMutableBufferPointer { h in
            var i = 0
            let v = h[0]
            while true {
                var c = 2 * i + 1
                if c >= n { break }
                if c + 1 < n && h[c + 1] < h[c] { c += 1 }
                if h[c] >= v { break }
                h[i] = h[c]
                i = c
            }
            h[i] = v
        }
    }

    /// Per-user state: history lengths from one lognormal draw per user, then each user's own streams.
    private func makeUsers() -> [UserState] {
        var rng = SplitMix64(seed: seed ^ 0x5EED_0F_0005E25)
        let mean = Double(rows) / Double(users)
        let mu = log(max(mean - Double(minHistory), 0.5)) - historySigma * historySigma / 2
        var weights = [Double](repeating: 0, count: users)
        var total = 0.0
        for u in 0..<users {
            let w = exp(mu + historySigma * rng.normal())
            weights[u] = w
            total += w
        }
        let extra = rows - users * minHistory
        var lengths = weights.map { Int((Double(extra) * $0 / total).rounded(.down)) + minHistory }
        var missing = rows - lengths.reduce(0, +)  // 0 ≤ missing < users after flooring
        var u = 0
        while missing > 0 { lengths[u % users] += 1; missing -= 1; u += 1 }
        var states: [UserState] = []
        states.reserveCapacity(users)
        for u in 0..<users {
            var s = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(u + 1))
            let activeFraction = 0.05 + 0.95 * s.unit()
            let active = max(1, Double(span) * activeFraction)
            let first = UInt32((Double(span) - active) * s.unit())
            states.append(UserState(itemRNG: SplitMix64(seed: s.next()), timeRNG: SplitMix64(seed: s.next()),
                                    meanGap: max(1, active / Double(lengths[u])), nextTime: first,
                                    remaining: lengths[u], cluster: UInt32.max, previous: UInt32.max))
        }
        return states
    }
}

private struct UserState {
    var itemRNG: SplitMix64
    var timeRNG: SplitMix64
    var meanGap: Double
    var nextTime: UInt32
    var remaining: Int
    var cluster: UInt32
    var previous: UInt32

    /// At least one second, exponential around the user's mean gap.
    mutating func gap() -> UInt64 {
        UInt64(1 + (-log(1 - timeRNG.unit()) * meanGap).rounded(.down))
    }
}

/// The planted structure: a Markov chain over clusters, Zipf popularity inside a cluster, successors.
private struct ItemDraw {
    let items: UInt32
    let clusters: UInt32
    let successor: Double
    let table: AliasTable

    mutating func next(_ s: inout UserState) -> UInt32 {
        let rank: UInt32
        if s.previous != UInt32.max, s.itemRNG.unit() < successor {
            // The next item of the previous one's cluster (rank + clusters), wrapping to the cluster's first.
            let n = UInt64(s.previous) + UInt64(clusters)
            rank = n < UInt64(items) ? UInt32(n) : s.previous % clusters
        } else {
            let r = s.itemRNG.unit()
            if s.cluster == UInt32.max || r >= 0.9 {
                s.cluster = UInt32(s.itemRNG.next() % UInt64(clusters))
            } else if r >= 0.6 {
                // Two successor clusters per cluster: a fixed, sparse transition structure.
                let c = UInt64(s.cluster)
                s.cluster = UInt32(r < 0.75 ? (c + 1) % UInt64(clusters) : (c &* 31 &+ 7) % UInt64(clusters))
            }
            var candidate: UInt64
            repeat {
                candidate = UInt64(s.cluster) + UInt64(clusters) * UInt64(table.sample(&s.itemRNG))
            } while candidate >= UInt64(items)
            rank = UInt32(candidate)
        }
        s.previous = rank
        return rank
    }
}

/// Walker's alias method: O(1) draws from a fixed discrete distribution.
private struct AliasTable: Sendable {
    let probability: [Double]
    let alias: [UInt32]

    init(weights: [Double]) {
        let n = weights.count
        let total = weights.reduce(0, +)
        var scaled = weights.map { $0 * Double(n) / total }
        var alias = [UInt32](repeating: 0, count: n)
        var probability = [Double](repeating: 1, count: n)
        var small: [Int] = [], large: [Int] = []
        for (i, p) in scaled.enumerated() { if p < 1 { small.append(i) } else { large.append(i) } }
        while let s = small.popLast(), let l = large.last {
            probability[s] = scaled[s]
            alias[s] = UInt32(l)
            scaled[l] -= 1 - scaled[s]
            if scaled[l] < 1 { large.removeLast(); small.append(l) }
        }
        self.probability = probability
        self.alias = alias
    }

    func sample(_ rng: inout SplitMix64) -> UInt32 {
        let r = rng.next()
        // High half picks the column (multiply-shift; Swift shifts bind tighter than &*), low half the coin.
        let i = Int(((r >> 32) &* UInt64(probability.count)) >> 32)
        let u = Double(r & 0xFFFF_FFFF) * 0x1p-32
        return u < probability[i] ? UInt32(i) : alias[i]
    }
}

/// SplitMix64: small, fast and good enough for synthetic data; deterministic across platforms.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let a = 1 - unit(), b = unit()
        return (-2 * log(a)).squareRoot() * cos(2 * .pi * b)
    }
}

/// A write buffer with hand-formatted integers (String interpolation per row would dominate the time).
private final class BufferedOutput {
    private let fd: Int32
    private let path: String
    private var buffer: UnsafeMutablePointer<UInt8>
    private let capacity = 1 << 22
    private var count = 0
    private var written = 0

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw RecDBError.invalidArgument("cannot create \(path): \(String(cString: strerror(errno)))") }
        buffer = .allocate(capacity: capacity)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
        buffer.deallocate()
    }

    func write(_ text: String) throws {
        for b in text.utf8 { buffer[count] = b; count += 1 }
        try flushIfFull()
    }

    @inline(__always) private func literal(_ s: StaticString) {
        s.withUTF8Buffer { b in for c in b { buffer[count] = c; count += 1 } }
    }

    @inline(__always) private func number(_ v: UInt64) {
        // Digits least significant first, then reversed in place.
        let begin = count
        var x = v
        repeat { buffer[count] = UInt8(truncatingIfNeeded: 48 + x % 10); x /= 10; count += 1 } while x > 0
        var i = begin, j = count - 1
        while i < j { let t = buffer[i]; buffer[i] = buffer[j]; buffer[j] = t; i += 1; j -= 1 }
    }

    func put(_ a: StaticString, _ x: UInt64) { literal(a); number(x) }
    func put(_ a: StaticString, _ x: UInt64, _ b: StaticString, _ y: UInt64, _ c: StaticString, _ z: UInt64) {
        literal(a); number(x); literal(b); number(y); literal(c); number(z)
        buffer[count] = 0x0A; count += 1
    }
    func newline() { buffer[count] = 0x0A; count += 1 }

    /// Keeps room for far more than the longest piece written between two calls (a CSV row, one item).
    func flushIfFull() throws {
        if count > capacity - (1 << 16) { try flush() }
    }

    private func flush() throws {
        var done = 0
        while done < count {
            let n = Glibc.write(fd, buffer + done, count - done)
            guard n > 0 else { throw RecDBError.invalidArgument("cannot write \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
        written += count
        count = 0
    }

    func close() throws -> Int {
        try flush()
        Glibc.close(fd)
        return written
    }
}
