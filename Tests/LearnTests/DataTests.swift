import XCTest
@testable import Learn

final class DataTests: XCTestCase {
    func testLeaveOneOut() throws {
        let d = try SequenceDataset(sequences: [[1, 2, 3, 4], [5, 6], [7, 8, 9]], numItems: 10)
        let s = DatasetSplit.leaveOneOut(d)
        XCTAssertEqual(s.train, [[1, 2], [], [7]])
        XCTAssertEqual(s.valid, [EvaluationCase(history: [1, 2], target: 3), EvaluationCase(history: [7], target: 8)])
        XCTAssertEqual(s.test, [EvaluationCase(history: [1, 2, 3], target: 4), EvaluationCase(history: [7, 8], target: 9)])
    }

    func testTemporalSplit() throws {
        // 10 events at times 1...10 → tV = quantile 0.6 = 7, tT = quantile 0.8 = 9
        let d = try SequenceDataset(sequences: [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], numItems: 10,
                                    timestamps: [[1, 3, 5, 7, 9], [2, 4, 6, 8, 10]])
        let s = try DatasetSplit.temporal(d, validQuantile: 0.6, testQuantile: 0.8)
        XCTAssertEqual(s.train, [[1, 2, 3], [6, 7, 8]])
        XCTAssertEqual(s.valid, [EvaluationCase(history: [1, 2, 3], target: 4), EvaluationCase(history: [6, 7, 8], target: 9)])
        XCTAssertEqual(s.test, [EvaluationCase(history: [1, 2, 3, 4], target: 5), EvaluationCase(history: [6, 7, 8, 9], target: 10)])
        XCTAssertThrowsError(try DatasetSplit.temporal(try SequenceDataset(sequences: [[1]]), validQuantile: 0.5, testQuantile: 0.9))
    }

    func testDatasetValidationAndLoading() throws {
        XCTAssertThrowsError(try SequenceDataset(sequences: [[1, 0]]))
        XCTAssertThrowsError(try SequenceDataset(sequences: [[1, 12]], numItems: 10))
        XCTAssertThrowsError(try SequenceDataset(sequences: [[1, 2]], timestamps: [[1]]))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("learn-seq-\(getpid()).txt")
        try "1 3 1 2\n2 4 5\n\n3 7\n".write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let d = try SequenceDataset.load(contentsOf: url.path)
        XCTAssertEqual(d.sequences, [[3, 1, 2], [4, 5], [7]])
        XCTAssertEqual(d.numItems, 7)
    }

    func testNPYFloat16AndFloat32() throws {
        for (descr, width) in [("<f4", 4), ("<f2", 2)] {
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (3, 2), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
            bytes += Array(header.utf8)
            for v in [Float(0), 0, 1.5, -2, 0.25, 3] {
                if width == 4 { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
                else { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { bytes += $0 } }
            }
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("learn-\(getpid())-\(width).npy")
            try Data(bytes).write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            let t = try TextTable.loadNPY(path: url.path)
            XCTAssertEqual(t.numItems, 2); XCTAssertEqual(t.dimension, 2)
            XCTAssertEqual(t.values, [0, 0, 1.5, -2, 0.25, 3])
            XCTAssertThrowsError(try TextTable.loadNPY(path: url.path, numItems: 5))
        }
    }

    func testMetricsFromRanks() {
        let m = RankingMetrics(ranks: [0, 4, 9, 30])
        XCTAssertEqual(m.recall5, 0.5)
        XCTAssertEqual(m.recall10, 0.75)
        XCTAssertEqual(m.recall20, 0.75)
        XCTAssertEqual(m.ndcg10, (1 + 1 / log2(6.0) + 1 / log2(11.0)) / 4, accuracy: 1e-12)
        XCTAssertEqual(m.mrr, (1 + 0.2 + 0.1 + 1 / 31.0) / 4, accuracy: 1e-12)
        XCTAssertEqual(m.users, 4)
        let json = String(decoding: try! JSONEncoder().encode(m), as: UTF8.self)
        XCTAssertTrue(json.contains("\"ndcg@10\""))
    }
}
