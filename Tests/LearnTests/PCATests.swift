import XCTest
@testable import Learn

/// Reference values from numpy (`tools/pca_reference.py`).
final class PCATests: XCTestCase {
    /// Opt into the process-wide OpenBLAS set-up the library never does itself (see `LearnEngine`).
    override class func setUp() { super.setUp(); LearnEngine.configureProcess() }
    let x: [[Float]] = [[2.5, 2.4, 0.5, 1.0], [0.5, 0.7, 1.5, -1.0], [2.2, 2.9, 0.1, 0.3], [1.9, 2.2, 0.8, 0.0],
                        [3.1, 3.0, -0.4, 2.0], [2.3, 2.7, 0.3, 0.5], [2.0, 1.6, 1.1, -0.2], [1.0, 1.1, 1.9, -0.7]]

    func testMatchesNumpyReference() throws {
        let pca = try PCA.fit(rows: x.flatMap { $0 }, count: x.count, dimension: 4, components: 2)
        let tolerance: Float = 1e-4
        for (a, b) in zip(pca.mean, [1.9375, 2.075, 0.725, 0.2375] as [Float]) { XCTAssertEqual(a, b, accuracy: tolerance) }
        for (a, b) in zip(pca.variances, [2.705908, 0.130816] as [Float]) { XCTAssertEqual(a, b, accuracy: tolerance) }
        let expected: [Float] = [0.491922, 0.497342, -0.443299, 0.56049, 0.165038, -0.639477, 0.322857, 0.677934]
        for (a, b) in zip(pca.components, expected) { XCTAssertEqual(a, b, accuracy: tolerance) }
        XCTAssertEqual(pca.explainedVarianceRatio, 0.974939, accuracy: 1e-4)
        let t = try pca.transform(x[0])
        XCTAssertEqual(t[0], 0.965459, accuracy: tolerance)
        XCTAssertEqual(t[1], 0.329286, accuracy: tolerance)
    }

    func testRejectsBadShapes() {
        XCTAssertThrowsError(try PCA.fit(rows: [1, 2, 3], count: 1, dimension: 3, components: 1))
        XCTAssertThrowsError(try PCA.fit(rows: x.flatMap { $0 }, count: x.count, dimension: 4, components: 5))
    }
}
