import CKernels
import XCTest
@testable import Learn

/// The C training kernels must give the same bits at every instruction-set level and the same bits as the
/// Swift code they replaced (kept here as the reference), so a model trains identically on any CPU and
/// every earlier measured result still holds. Each level this CPU lacks is skipped with a message.
final class CPUKernelsTests: XCTestCase {
    private func requireLevel(_ level: Int32) throws {
        try XCTSkipIf(CPUKernels.best < level,
                      "this CPU (or OS) lacks \(CPUKernels.name(level)); best level here is \(CPUKernels.name(CPUKernels.best))")
    }

    // MARK: - Sampled softmax row

    /// The Swift kernel the C one replaced (SIMD8, SSE2 baseline), verbatim.
    private static func referenceSoftmaxRow(_ row: UnsafeMutablePointer<Float>, count n: Int, logQ: UnsafePointer<Float>,
                                            positive: Float, hit: Int, scale: Float) -> (Float, Float) {
        let vectorEnd = n & ~7
        var i = 0
        while i < vectorEnd { store8(load8(row + i) - load8(logQ + i), row + i); i += 8 }
        while i < n { row[i] -= logQ[i]; i += 1 }
        if hit >= 0 { row[hit] = -.infinity }
        var mx8 = SIMD8<Float>(repeating: positive)
        i = 0
        while i < vectorEnd { let v = load8(row + i); mx8.replace(with: v, where: v .> mx8); i += 8 }
        var mx = mx8.max()
        while i < n { mx = max(mx, row[i]); i += 1 }
        let m8 = SIMD8<Float>(repeating: mx)
        var s8 = SIMD8<Float>(repeating: 0)
        i = 0
        while i < vectorEnd { let v = fastExp(load8(row + i) - m8); store8(v, row + i); s8 += v; i += 8 }
        var sum = s8.sum()
        while i < n { let v = expf(row[i] - mx); row[i] = v; sum += v; i += 1 }
        if hit >= 0 { sum -= row[hit]; row[hit] = 0 }
        let ePositive = expf(positive - mx)
        sum += ePositive
        let inv = 1 / sum
        let k8 = SIMD8<Float>(repeating: inv * scale)
        i = 0
        while i < vectorEnd { store8(load8(row + i) * k8, row + i); i += 8 }
        while i < n { row[i] *= inv * scale; i += 1 }
        return (logf(sum) + mx - positive, ePositive * inv)
    }

    private func checkSoftmaxRows(level: Int32) {
        var rng = Xoshiro256(seed: 11)
        var checked = 0
        for n in [1, 5, 7, 8, 9, 15, 16, 17, 24, 31, 33, 100, 1000, 2047, 2048] {
            for hit in [-1, 0, n / 2, n - 1] {
                for spread: Float in [0.5, 8, 60] {
                    let logits = (0..<n).map { _ in (rng.nextUniform() - 0.5) * 2 * spread }
                    let logQ = (0..<n).map { _ in -rng.nextUniform() * 12 }
                    let positive = (rng.nextUniform() - 0.5) * spread
                    var expected = logits, actual = logits
                    let want = expected.withUnsafeMutableBufferPointer {
                        Self.referenceSoftmaxRow($0.baseAddress!, count: n, logQ: logQ, positive: positive, hit: hit, scale: 0.25)
                    }
                    var loss: Float = .nan, p0: Float = .nan
                    actual.withUnsafeMutableBufferPointer {
                        recdb_sampled_softmax_row(level, $0.baseAddress!, n, logQ, positive, hit, 0.25, &loss, &p0)
                    }
                    XCTAssertEqual(loss.bitPattern, want.0.bitPattern, "loss, n \(n) hit \(hit) spread \(spread): \(loss) vs \(want.0)")
                    XCTAssertEqual(p0.bitPattern, want.1.bitPattern, "p0, n \(n) hit \(hit): \(p0) vs \(want.1)")
                    XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "row, n \(n) hit \(hit) spread \(spread)")
                    XCTAssertTrue(loss.isFinite && loss > -1e-5, "loss \(loss)")  // −log p of the positive
                    if hit >= 0 { XCTAssertEqual(actual[hit], 0) }
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 15 * 4 * 3)
    }

    func testSoftmaxRowPortableMatchesTheSwiftKernelBitForBit() { checkSoftmaxRows(level: Int32(RECDB_KERNELS_PORTABLE)) }
    func testSoftmaxRowAVX2MatchesTheSwiftKernelBitForBit() throws {
        try requireLevel(Int32(RECDB_KERNELS_AVX2)); checkSoftmaxRows(level: Int32(RECDB_KERNELS_AVX2))
    }
    func testSoftmaxRowAVX512MatchesTheSwiftKernelBitForBit() throws {
        try requireLevel(Int32(RECDB_KERNELS_AVX512)); checkSoftmaxRows(level: Int32(RECDB_KERNELS_AVX512))
    }

    /// A row whose softmax is known in closed form: equal logits, no correction, no hit.
    func testSoftmaxRowValuesAtEveryLevel() {
        for level in Int32(RECDB_KERNELS_PORTABLE)...CPUKernels.best {
            var row = [Float](repeating: 1, count: 19)
            let logQ = [Float](repeating: 0, count: 19)
            var loss: Float = 0, p0: Float = 0
            recdb_sampled_softmax_row(level, &row, 19, logQ, 1, -1, 1, &loss, &p0)
            XCTAssertEqual(loss, logf(20), accuracy: 1e-5, CPUKernels.name(level))
            XCTAssertEqual(p0, 0.05, accuracy: 1e-6)
            for v in row { XCTAssertEqual(v, 0.05, accuracy: 1e-6) }
        }
    }

    // MARK: - Dropout masks

    /// The Swift fill the C one replaced, verbatim (one slice of words).
    private static func referenceDropout(_ mask: UnsafeMutablePointer<Float>, count: Int, words: Range<Int>, p: Float, key: UInt64) {
        let threshold = UInt64((p * 65536).rounded())
        let scale = 1 / (1 - p)
        for w in words {
            let h = splitMix64(key &+ UInt64(w) &* 0xD1B5_4A32_D192_ED03)
            let base = w * 4
            let n = min(4, count - base)
            for j in 0..<n {
                let u = (h >> UInt64(16 * j)) & 0xFFFF
                mask[base + j] = u >= threshold ? scale : 0
            }
        }
    }

    private func checkDropout(level: Int32) {
        for count in [1, 3, 4, 5, 31, 32, 33, 63, 1000, 4099] {
            for p: Float in [0, 0.1, 0.5, 0.99999] {
                let words = (count + 3) / 4
                // Whole mask, and the mask cut in two slices at an odd word (as Parallel cuts it).
                for cut in [words, words / 2 + (words > 2 ? 1 : 0)] {
                    var expected = [Float](repeating: .nan, count: count), actual = expected
                    expected.withUnsafeMutableBufferPointer {
                        Self.referenceDropout($0.baseAddress!, count: count, words: 0..<words, p: p, key: 0xABCDEF + UInt64(count))
                    }
                    let threshold = UInt64((p * 65536).rounded()), scale = 1 / (1 - p)
                    actual.withUnsafeMutableBufferPointer {
                        recdb_dropout_fill(level, $0.baseAddress!, count, 0, cut, threshold, scale, 0xABCDEF + UInt64(count))
                        recdb_dropout_fill(level, $0.baseAddress!, count, cut, words, threshold, scale, 0xABCDEF + UInt64(count))
                    }
                    XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "count \(count) p \(p) cut \(cut)")
                }
            }
        }
        // The kept share follows p (a mask that ignored its draws would fail here).
        var mask = [Float](repeating: 0, count: 100_000)
        recdb_dropout_fill(level, &mask, 100_000, 0, 25_000, UInt64((Float(0.3) * 65536).rounded()), 1 / 0.7, 42)
        let kept = mask.filter { $0 != 0 }.count
        XCTAssertEqual(Double(kept) / 100_000, 0.7, accuracy: 0.01)
        XCTAssertTrue(mask.allSatisfy { $0 == 0 || $0 == Float(1) / 0.7 })
    }

    func testDropoutPortableMatchesTheSwiftFillBitForBit() { checkDropout(level: Int32(RECDB_KERNELS_PORTABLE)) }
    func testDropoutAVX512MatchesTheSwiftFillBitForBit() throws {
        try requireLevel(Int32(RECDB_KERNELS_AVX512)); checkDropout(level: Int32(RECDB_KERNELS_AVX512))
    }

    // MARK: - AdamW

    /// The Swift update the C one replaced, verbatim.
    private static func referenceAdamW(_ w: inout [Float], _ g: [Float], _ m: inout [Float], _ v: inout [Float], range r: Range<Int>,
                                       lr: Float, wd: Float, b1: Float, b2: Float, eps: Float, step: Int) {
        let c1 = 1 - powf(b1, Float(step)), c2 = 1 - powf(b2, Float(step))
        let c2Root = c2.squareRoot()
        let decay = 1 - lr * wd
        let stepSize = lr / c1
        for i in r {
            let gi = g[i]
            w[i] *= decay
            let mi = b1 * m[i] + (1 - b1) * gi
            let vi = b2 * v[i] + (1 - b2) * gi * gi
            m[i] = mi; v[i] = vi
            w[i] -= stepSize * mi / (vi.squareRoot() / c2Root + eps)
        }
    }

    private func checkAdamW(level: Int32) {
        var rng = Xoshiro256(seed: 5)
        let n = 1000, width = 40
        let (lr, wd, b1, b2, eps): (Float, Float, Float, Float, Float) = (3e-3, 0.01, 0.9, 0.98, 1e-8)
        let w0 = (0..<n).map { _ in rng.nextNormal() }, m0 = (0..<n).map { _ in rng.nextNormal() * 0.01 }
        let v0 = (0..<n).map { _ in rng.nextUniform() * 1e-3 }
        let g = (0..<n).map { _ in rng.nextNormal() * 0.1 }
        for step in [1, 7] {
            var w = w0, m = m0, v = v0
            Self.referenceAdamW(&w, g, &m, &v, range: 3..<997, lr: lr, wd: wd, b1: b1, b2: b2, eps: eps, step: step)
            var cw = w0, cm = m0, cv = v0
            let c1 = 1 - powf(b1, Float(step)), c2Root = (1 - powf(b2, Float(step))).squareRoot()
            recdb_adamw_apply(level, &cw, g, &cm, &cv, 3, 997, 1 - lr * wd, lr / c1, b1, b2, c2Root, eps)
            XCTAssertEqual(cw.map(\.bitPattern), w.map(\.bitPattern), "w, step \(step)")
            XCTAssertEqual(cm.map(\.bitPattern), m.map(\.bitPattern), "m")
            XCTAssertEqual(cv.map(\.bitPattern), v.map(\.bitPattern), "v")
            XCTAssertEqual(cw[0], w0[0]); XCTAssertNotEqual(cw[3], w0[3])

            // Rows 2, 11 and 20 of a [25, 40] table: updated as the same elements are, gradients of those rows zeroed.
            var rw = w0, rm = m0, rv = v0, rg = g
            var ew = w0, em = m0, ev = v0
            let rows: [Int32] = [11, 2, 20]
            for r in rows {
                Self.referenceAdamW(&ew, g, &em, &ev, range: Int(r) * width..<(Int(r) + 1) * width, lr: lr, wd: wd,
                                    b1: b1, b2: b2, eps: eps, step: step)
            }
            recdb_adamw_rows(level, &rw, &rg, &rm, &rv, width, rows, rows.count, 1 - lr * wd, lr / c1, b1, b2, c2Root, eps)
            XCTAssertEqual(rw.map(\.bitPattern), ew.map(\.bitPattern), "rows w, step \(step)")
            XCTAssertEqual(rm.map(\.bitPattern), em.map(\.bitPattern))
            XCTAssertEqual(rv.map(\.bitPattern), ev.map(\.bitPattern))
            for i in 0..<n {
                let inRow = rows.contains(Int32(i / width))
                XCTAssertEqual(rg[i], inRow ? 0 : g[i], "gradient \(i)")
            }
        }
    }

    func testAdamWPortableMatchesTheSwiftUpdateBitForBit() { checkAdamW(level: Int32(RECDB_KERNELS_PORTABLE)) }
    func testAdamWAVX2MatchesTheSwiftUpdateBitForBit() throws {
        try requireLevel(Int32(RECDB_KERNELS_AVX2)); checkAdamW(level: Int32(RECDB_KERNELS_AVX2))
    }
    func testAdamWAVX512MatchesTheSwiftUpdateBitForBit() throws {
        try requireLevel(Int32(RECDB_KERNELS_AVX512)); checkAdamW(level: Int32(RECDB_KERNELS_AVX512))
    }

    // MARK: - GELU backward

    /// The Swift GELU gradient the C one replaced, verbatim (one slice).
    private static func referenceGELUBackward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, range r: Range<Int>,
                                              into dx: UnsafeMutablePointer<Float>) {
        var i = r.lowerBound
        while i + 8 <= r.upperBound {
            let v = load8(x + i)
            let cdf = 0.5 * (1 + fastErf(v * 0.707_106_77))
            let pdf = 0.398_942_28 * fastExp(-0.5 * v * v)
            store8(load8(dy + i) * (cdf + v * pdf), dx + i)
            i += 8
        }
        while i < r.upperBound {
            let v = x[i]
            let cdf = 0.5 * (1 + erff(v * 0.707_106_77))
            let pdf = 0.398_942_28 * expf(-0.5 * v * v)
            dx[i] = dy[i] * (cdf + v * pdf)
            i += 1
        }
    }

    private func checkGELUBackward(level: Int32) {
        var rng = Xoshiro256(seed: 3)
        let n = 300
        // Wide inputs (both clamps of fastExp), zeros of both signs, and ordinary values.
        var x = (0..<n).map { _ in rng.nextNormal() * 3 }
        x[0] = 0; x[1] = -0.0; x[2] = 20; x[3] = -20; x[4] = 1e-30
        let dy = (0..<n).map { _ in rng.nextNormal() }
        for range in [0..<n, 5..<298, 7..<8, 3..<20, 0..<0] {
            var expected = [Float](repeating: .nan, count: n), actual = expected
            expected.withUnsafeMutableBufferPointer { Self.referenceGELUBackward(dy, x: x, range: range, into: $0.baseAddress!) }
            actual.withUnsafeMutableBufferPointer { recdb_gelu_backward(level, dy, x, range.lowerBound, range.upperBound, $0.baseAddress!) }
            XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "range \(range), \(CPUKernels.name(level))")
        }
        // In place (dx = dy), and a value: GELU'(0) = 0.5, GELU'(1) = Φ(1) + φ(1) ≈ 1.0833155.
        var inPlace: [Float] = [2, 2, 2, 2, 2, 2, 2, 2, 2]
        let points: [Float] = [0, 1, 0, 1, 0, 1, 0, 1, 1]
        inPlace.withUnsafeMutableBufferPointer { recdb_gelu_backward(level, $0.baseAddress!, points, 0, 9, $0.baseAddress!) }
        for (v, p) in zip(inPlace, points) { XCTAssertEqual(v, p == 0 ? 1 : 2 * 1.0833155, accuracy: 1e-5) }
    }

    func testGELUBackwardPortableMatchesTheSwiftKernelBitForBit() { checkGELUBackward(level: Int32(RECDB_KERNELS_PORTABLE)) }
    func testGELUBackwardAVX512MatchesTheSwiftKernelBitForBit() throws {
        try requireLevel(Int32(RECDB_KERNELS_AVX512)); checkGELUBackward(level: Int32(RECDB_KERNELS_AVX512))
    }
}
