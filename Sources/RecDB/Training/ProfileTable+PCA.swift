import Foundation
import Learn

extension ProfileTable {
    /// Fits a PCA on the rows of users that have a profile.
    func fitPCA(components: Int) throws -> PCA {
        var rows: [Float] = []
        var count = 0
        for (i, present) in present.enumerated() where present {
            rows.append(contentsOf: values[(i * dimension)..<((i + 1) * dimension)])
            count += 1
        }
        return try PCA.fit(rows: rows, count: count, dimension: dimension, components: components)
    }

    /// The same table with every present row projected by `pca`.
    func reduced(by pca: PCA) throws -> ProfileTable {
        var rows: [[Float]?] = []
        rows.reserveCapacity(present.count)
        for (i, present) in present.enumerated() {
            rows.append(present ? try pca.transform(Array(values[(i * dimension)..<((i + 1) * dimension)])) : nil)
        }
        return try ProfileTable(dimension: pca.outputDimension, profiles: rows)
    }
}
