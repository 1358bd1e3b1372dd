import Foundation
import Index

/// Deterministic data for the index tests (SplitMix64 + Box–Muller), so failures reproduce exactly.
struct TestRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func nextUInt64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(nextUInt64() >> 11) / Double(1 << 53) }

    mutating func gaussian() -> Float {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    mutating func vectors(_ n: Int, _ d: Int) -> [Float] { (0..<(n * d)).map { _ in gaussian() } }
}

/// Exact top-k by brute force, in the metric's order. Ids are `ids[row]`.
func bruteForce(query: [Float], vectors: [Float], ids: [UInt32], dimension d: Int, metric: Metric, k: Int,
                permitted: (UInt32) -> Bool = { _ in true }) -> [Neighbor] {
    func normalised(_ v: ArraySlice<Float>) -> [Float] {
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? v.map { $0 / norm } : Array(v)
    }
    let q = metric == .cosine ? normalised(query[...]) : query
    var scored: [Neighbor] = []
    for (row, id) in ids.enumerated() where permitted(id) {
        var v = Array(vectors[(row * d)..<((row + 1) * d)])
        if metric == .cosine { v = normalised(v[...]) }
        var s: Float = 0
        for j in 0..<d { s += metric == .l2 ? (q[j] - v[j]) * (q[j] - v[j]) : q[j] * v[j] }
        scored.append(Neighbor(id: id, score: s))
    }
    scored.sort { metric.higherIsBetter ? $0.score > $1.score : $0.score < $1.score }
    return Array(scored.prefix(k))
}

func row(_ vectors: [Float], _ r: Int, _ d: Int) -> [Float] { Array(vectors[(r * d)..<((r + 1) * d)]) }

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value shared with worker threads behind an `NSLock`. Not `Mutex`: ThreadSanitizer cannot see inside the
/// uninstrumented Synchronization library, and reports the accesses `Mutex` protects as races.
// Unchecked: `value` is read and written only under `lock`.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
}
