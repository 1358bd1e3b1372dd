import XCTest
@testable import Learn

/// Deterministic pseudo-random floats for tests.
func randomFloats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = Xoshiro256(seed: seed)
    return (0..<n).map { _ in (rng.nextUniform() * 2 - 1) * scale }
}

/// Central finite-difference check: perturbs `values[i]` for the given indices, evaluates `loss`,
/// and compares with `analytic[i]`. Asserts the relative error of the whole vector stays below `tol`.
func checkGradient(_ name: String, values: UnsafeMutablePointer<Float>, indices: [Int], analytic: [Float],
                   eps: Float = 1e-2, tol: Double = 2e-2, loss: () -> Double,
                   file: StaticString = #filePath, line: UInt = #line) {
    var numeric: [Double] = []
    for i in indices {
        let v = values[i]
        values[i] = v + eps; let up = loss()
        values[i] = v - eps; let down = loss()
        values[i] = v
        numeric.append((up - down) / Double(2 * eps))
    }
    var diff = 0.0, norm = 0.0
    for (k, i) in indices.enumerated() {
        diff += pow(Double(analytic[i]) - numeric[k], 2)
        norm += numeric[k] * numeric[k]
    }
    let rel = diff.squareRoot() / max(norm.squareRoot(), 1e-6)
    XCTAssertLessThan(rel, tol, "\(name): relative gradient error \(rel) (numeric norm \(norm.squareRoot()))", file: file, line: line)
    XCTAssertGreaterThan(norm, 1e-12, "\(name): gradient is identically zero — the check would be vacuous", file: file, line: line)
}

/// Evenly spread sample of indices in 0..<count.
func sampleIndices(_ count: Int, max: Int = 24) -> [Int] {
    if count <= max { return Array(0..<count) }
    return (0..<max).map { $0 * count / max }
}

/// A small synthetic dataset: users walk a cycle through the catalogue with occasional jumps, so that
/// the next item is predictable (a model that learns must beat chance by far).
func syntheticDataset(users: Int = 300, items: Int = 40, length: ClosedRange<Int> = 5...14, seed: UInt64 = 1,
                      timestamps: Bool = false) throws -> SequenceDataset {
    var rng = Xoshiro256(seed: seed)
    var seqs: [[Int32]] = [], ts: [[Int64]] = []
    var clock: Int64 = 0
    for _ in 0..<users {
        let n = length.lowerBound + Int(rng.next() % UInt64(length.count))
        var item = Int(rng.next() % UInt64(items))
        var s: [Int32] = [], t: [Int64] = []
        clock = Int64(rng.next() % 200)  // users overlap in time, so global cut-offs split many of them
        for _ in 0..<n {
            s.append(Int32(item + 1))
            clock += Int64(rng.next() % 5 + 1); t.append(clock)
            item = rng.nextUniform() < 0.9 ? (item + 1) % items : Int(rng.next() % UInt64(items))
        }
        seqs.append(s); ts.append(t)
    }
    return try SequenceDataset(sequences: seqs, numItems: items, timestamps: timestamps ? ts : nil)
}

func smallConfiguration(_ arch: ModelConfiguration.Architecture = .sasrec,
                        items: ModelConfiguration.ItemRepresentation = .id) -> ModelConfiguration {
    var c = ModelConfiguration(architecture: arch, items: items)
    c.hiddenSize = 16; c.blocks = 2; c.maxLength = 10; c.batchSize = 64; c.maxEpochs = 3; c.patience = 2
    c.threads = 2
    return c
}

func syntheticTextTable(items: Int, dimension: Int = 12, seed: UInt64 = 5) throws -> TextTable {
    try TextTable(numItems: items, dimension: dimension, values: randomFloats((items + 1) * dimension, seed: seed))
}

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
