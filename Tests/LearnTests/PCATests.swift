import XCTest
@testable import Learn

final class PCATests: XCTestCase {
    /// Data with known principal axes: variance 9 along e₂, 4 along e₀, 0.01 elsewhere (plus a mean).
    func testRecoversKnownAxesAndVariances() throws {
        let n = 4000, d = 6
        var rng = Xoshiro256(seed: 3)
        var x = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            for j in 0..<d { x[i * d + j] = 0.1 * rng.nextNormal() + Float(j) }
            x[i * d + 2] += 3 * rng.nextNormal()
            x[i * d + 0] += 2 * rng.nextNormal()
        }
        let pca = try PCABasis.fit(vectors: x, count: n, dimension: d, components: 2)
        XCTAssertEqual(pca.variances[0], 9, accuracy: 0.5)
        XCTAssertEqual(pca.variances[1], 4, accuracy: 0.3)
        XCTAssertEqual(abs(pca.components.values[0 * d + 2]), 1, accuracy: 0.01)
        XCTAssertEqual(abs(pca.components.values[1 * d + 0]), 1, accuracy: 0.01)
        for j in 0..<d { XCTAssertEqual(pca.mean[j], Float(j), accuracy: 0.15) }
        // orthonormal rows
        var dot: Float = 0
        for j in 0..<d { dot += pca.components.values[j] * pca.components.values[d + j] }
        XCTAssertEqual(dot, 0, accuracy: 1e-5)
        // transform = projection of the centred vector
        let v: [Float] = [1, 1, 5, 3, 4, 5]
        let t = pca.transform(v)
        var expected: Float = 0
        for j in 0..<d { expected += pca.components.values[j] * (v[j] - pca.mean[j]) }
        XCTAssertEqual(t[0], expected, accuracy: 1e-5)
        XCTAssertThrowsError(try PCABasis.fit(vectors: x, count: n, dimension: d, components: 7))
        let back = try JSONDecoder().decode(PCABasis.self, from: JSONEncoder().encode(pca))
        XCTAssertEqual(back, pca)
    }
}
