import XCTest
@testable import Learn

/// Bit-identity of training across refactors: each case trains a few epochs on synthetic data (dropout on,
/// 2 threads) and hashes every trained weight bit, the test metrics, one served user vector and the FLOP
/// estimate, so any change in arithmetic order, random draws, parameter order or objective fails here.
/// Bit patterns depend on OpenBLAS's kernels, so fingerprints are kept per kernel family and a family without
/// them skips with a message:
/// - Cooperlake: recorded on the code BEFORE the models moved behind `SequenceArchitecture` (issue 15,
///   commit f45ad58).
/// - SkylakeX: the code BEFORE Learn's kernels moved to C with AVX-512/AVX2 paths (issue 14, session 10:
///   main 438ff2d) gives the Cooperlake fingerprints on SkylakeX's kernels too (these small products take
///   the same summation order), so both families check them; the sampled-softmax case, which guards the C
///   kernels' row-sparse path, was recorded then on SkylakeX only.
final class ArchitectureSeamTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }

    /// FNV-1a over the bit patterns of floats.
    struct Fingerprint {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        mutating func add(_ x: Float) { add(UInt64(x.bitPattern)) }
        mutating func add(_ x: Double) { add(x.bitPattern) }
        mutating func add(_ x: UInt64) {
            var v = x
            for _ in 0..<8 { value = (value ^ (v & 0xff)) &* 0x100_0000_01b3; v >>= 8 }
        }
    }

    func fingerprint(_ configuration: ModelConfiguration, text: Bool = false, profiles: Bool = false) throws -> (weights: UInt64, metrics: UInt64, served: UInt64, flops: Double) {
        let data = try syntheticDataset(users: 160)
        let table = text ? try syntheticTextTable(items: data.numItems) : nil
        var profileTable: ProfileTable? = nil
        if profiles {
            let split = DatasetSplit.leaveOneOut(data)
            profileTable = try ProfileTable(dimension: 6, profiles: split.train.enumerated().map { u, t in
                u % 4 == 0 || t.isEmpty ? nil : randomFloats(6, seed: UInt64(u))
            })
        }
        let r = try Trainer.train(dataset: data, textTable: table, profiles: profileTable, configuration: configuration)
        var w = Fingerprint()
        for (name, t) in r.model.exportParameters().sorted(by: { $0.key < $1.key }) {
            for ch in name.utf8 { w.add(UInt64(ch)) }
            for v in t.values { w.add(v) }
        }
        var m = Fingerprint()
        for x in [r.report.test.ndcg10, r.report.test.recall10, r.report.valid.ndcg10] { m.add(x) }
        for row in r.report.curve { for x in row.dropFirst() { m.add(x) } }
        r.model.freezeForServing()
        var s = Fingerprint()
        for v in r.model.userRepresentation([3, 4, 5, 6, 9, 1]) { s.add(v) }
        let flops = try TrainingCost.flopsPerEpoch(dataset: data, configuration: configuration, textDimension: table?.dimension)
        return (w.value, m.value, s.value, flops)
    }

    typealias Expected = (UInt64, UInt64, UInt64, Double)

    /// Fingerprints recorded on Cooperlake and found identical on SkylakeX (see the type's comment).
    func onCooperlakeAndSkylakeX(_ e: Expected) -> [String: Expected] { ["Cooperlake": e, "SkylakeX": e] }

    func check(_ name: String, _ c: ModelConfiguration, text: Bool = false, profiles: Bool = false,
               _ byFamily: [String: Expected], file: StaticString = #filePath, line: UInt = #line) throws {
        // Bits depend on the BLAS kernels (their summation order): see the type's comment.
        guard let expected = byFamily[BLAS.coreName] else {
            throw XCTSkip("\(name): fingerprints were recorded with OpenBLAS's \(byFamily.keys.sorted().joined(separator: ", ")) kernels, this run uses \(BLAS.coreName)")
        }
        let f = try fingerprint(c, text: text, profiles: profiles)
        if f.weights != expected.0 { print("fingerprint \(name): (0x\(String(f.weights, radix: 16)), 0x\(String(f.metrics, radix: 16)), 0x\(String(f.served, radix: 16)), \(f.flops))") }
        XCTAssertEqual(f.weights, expected.0, "\(name): trained weights", file: file, line: line)
        XCTAssertEqual(f.metrics, expected.1, "\(name): metrics and curve", file: file, line: line)
        XCTAssertEqual(f.served, expected.2, "\(name): served user vector", file: file, line: line)
        XCTAssertEqual(f.flops, expected.3, "\(name): FLOP estimate", file: file, line: line)
    }

    func testSASRecIDIsBitIdentical() throws {
        try check("sasrec id", smallConfiguration(.sasrec), onCooperlakeAndSkylakeX((0x25c73a500dce98a0, 0x2e5eacaeba201cdc, 0x2833c5733275ae36, 26160384.0)))
    }

    func testSASRecTextAndIDAllWindowsIsBitIdentical() throws {
        var c = smallConfiguration(.sasrec, items: .textAndID)
        c.windows = .all; c.maxLength = 5
        try check("sasrec text+id all", c, text: true, onCooperlakeAndSkylakeX((0xb1b889efa00126ba, 0xd199e3d7dae12b15, 0xba7368a3d44ea366, 25481856.0)))
    }

    func testBERT4RecIDIsBitIdentical() throws {
        try check("bert4rec id", smallConfiguration(.bert4rec), onCooperlakeAndSkylakeX((0x257a660ca6a5de70, 0xab615ab7b634b6b8, 0x84b06860845cf62c, 47828524.86212937)))
    }

    func testBERT4RecTextIsBitIdentical() throws {
        try check("bert4rec text", smallConfiguration(.bert4rec, items: .text), text: true, onCooperlakeAndSkylakeX((0x0f9d8d1ac8a35c34, 0xfe912c11730bbb9a, 0xba6dfff44a9f071b, 47920684.86212937)))
    }

    func testSASRecDistilledIsBitIdentical() throws {
        var c = smallConfiguration(.sasrec)
        var d = DistillationConfiguration(); d.distillEpochs = 2; c.distillation = d
        try check("sasrec distilled", c, profiles: true, onCooperlakeAndSkylakeX((0xc4fcfea7789071b3, 0x7bf876c4664a36ed, 0xc8445ee0fcecf257, 26160384.0)))
    }

    /// The sampled loss through the C kernels (softmax rows, row-sparse AdamW, parallel gathers and scatters).
    func testSASRecSampledIsBitIdentical() throws {
        var c = smallConfiguration(.sasrec)
        c.loss = .sampled; c.negatives = 24
        try check("sasrec sampled", c, ["SkylakeX": (0x91504fdfafe133ff, 0x53a8ee8ba2307af7, 0x804313b08ad071c9, 26160384.0)])
    }
}
