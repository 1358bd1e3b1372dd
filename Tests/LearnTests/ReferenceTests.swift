import XCTest
@testable import Learn

/// The Swift network against the PyTorch reference (../shared/reference/seqrec_ref.py): same
/// deterministic weights on both sides, values produced by tools/learn_reference_values.py.
final class ReferenceTests: XCTestCase {
    /// Output of `$HOME/refvenv/bin/python tools/learn_reference_values.py`.
    static let reference = #"""
{"sasrec_id": {"user": [[0.21813127, 0.31926671, 0.38117856, 0.28428209, 0.45229539, -0.35337308, 0.22299728, -0.9607504], [0.20373064, 0.32835874, 0.38243392, 0.24341017, 0.43869719, -0.40543243, 0.38287809, -0.8530128]], "loss": 2.0632956, "grad_qkv0": [6.7518733e-05, 6.6172841e-05, 6.0629034e-05, 5.2824496e-05, 4.2679487e-05, 2.8702485e-05], "grad_pos": [0.00036584679, -0.00030748895, -0.0010600742, -0.00063867681, -0.0015293313, 0.00074436632, -0.0002297379, 0.0026550971], "grad_item3": [-0.0093642157, -0.033900104, -0.040889956, -0.0191216, -0.030499376, 0.035773613, -0.030867068, 0.042314075]}, "sasrec_text": {"user": [[0.54705894, -0.035806485, -0.19774482, 0.16590266, -0.20264098, -0.90472597, -0.25415087, -0.38667175], [0.29367027, 0.48689026, 0.43367288, -0.52237755, -0.12981874, -0.49414295, -0.28470051, -0.39340809]], "loss": 2.4278829, "grad_qkv0": [3.5103181e-05, -4.4676624e-05, -4.2141532e-05, -2.3916198e-05, -2.7341544e-05, -2.7573185e-06], "grad_pos": [-0.00010044331, 0.0028318546, 0.0083820755, -0.011108725, -0.0015293533, -0.0019414724, 0.0059702666, -0.002504203], "grad_adapter": [0.042499106, 0.036171902, 0.029407466, 0.022287555, 0.014898242, -0.090079904]}, "sasrec_text+id": {"user": [[0.21754128, -0.58668315, -0.5512923, -0.36297894, -0.36626971, 0.10834397, -0.558676, -0.19566831], [-0.47966695, -0.23522989, -0.23363924, -0.5044201, -0.40681478, -0.23053004, -0.72393984, 0.4211199]], "loss": 2.1553166, "grad_qkv0": [-3.8878217e-05, -2.6831509e-05, -2.6312693e-05, -4.154686e-05, -2.5050584e-05, -3.7411664e-05], "grad_pos": [-0.0038155299, -0.0016440488, 0.0019435864, -2.1932181e-05, 0.00053765113, 0.0018320465, -0.0019823029, 0.0031505339], "grad_adapter": [0.078982562, 0.069850489, 0.05987408, 0.049173918, 0.037879359, -0.029763808]}, "bert4rec_id": {"user": [[0.24022016, 0.16851354, 0.37955159, 0.40743691, 0.16137408, -0.3335858, -0.43829036, -0.70335978], [0.23919386, 0.16930443, 0.37952131, 0.40702662, 0.16227508, -0.33429131, -0.43813527, -0.70400107]]}, "adamw": [0.4763492, -0.99484855, 1.9881109, -0.013757916]}
"""#

    struct Case: Decodable {
        var user: [[Float]]
        var loss: Double?
        var grad_qkv0: [Float]?
        var grad_pos: [Float]?
        var grad_item3: [Float]?
        var grad_adapter: [Float]?
    }

    static let n = 9, d = 8, maxLength = 6, textDim = 5
    static let histories: [[Int32]] = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 2]]
    static let train: [[Int32]] = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 1, 9, 2, 9, 3, 9, 4, 9]]

    override func setUp() { LearnEngine.configureProcess() }
    /// Work split in 2 parts for every test (a task-local binding, as `Trainer.train` does).
    override func invokeTest() { Parallel.$parts.withValue(2) { super.invokeTest() } }

    func textTable() throws -> TextTable {
        var v = [Float](repeating: 0, count: (Self.n + 1) * Self.textDim)
        for r in 0...Self.n { for j in 0..<Self.textDim { v[r * Self.textDim + j] = Float(0.5 * cos(0.11 * Double(r * Self.textDim + j))) } }
        return try TextTable(numItems: Self.n, dimension: Self.textDim, values: v)
    }

    /// PyTorch parameter name of a Learn parameter.
    func torchName(_ name: String) -> String { ["item_emb", "pos_emb"].contains(name) ? name + ".weight" : name }

    func makeNetwork(_ arch: ModelConfiguration.Architecture, _ items: ModelConfiguration.ItemRepresentation) throws -> SequenceNetwork {
        var c = ModelConfiguration(architecture: arch, items: items)
        c.hiddenSize = Self.d; c.blocks = 2; c.heads = 2; c.maxLength = Self.maxLength; c.dropout = 0
        let net = try SequenceNetwork(configuration: c, numItems: Self.n, text: items.usesText ? textTable() : nil)
        let sorted = net.parameters.sorted { torchName($0.name) < torchName($1.name) }
        for (k, p) in sorted.enumerated() {
            for i in 0..<p.count { p.value.p[i] = Float(0.4 * sin(0.37 * Double(i) + 1.3 * Double(k))) }
        }
        net.refreshItemTable()
        return net
    }

    /// |a − b| ≤ rel · max(|b|, floor) element-wise.
    func assertClose(_ a: [Float], _ b: [Float], rel: Float, floor: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x, y, accuracy: rel * max(abs(y), floor), "\(what): \(a) vs \(b)", file: file, line: line)
        }
    }

    func run(_ key: String, _ arch: ModelConfiguration.Architecture, _ items: ModelConfiguration.ItemRepresentation) throws {
        let object = try JSONSerialization.jsonObject(with: Data(Self.reference.utf8)) as! [String: Any]
        let ref = try JSONDecoder().decode(Case.self, from: JSONSerialization.data(withJSONObject: object[key]!))
        let net = try makeNetwork(arch, items)
        let model = SequentialRecommender(network: net)
        for (h, expected) in zip(Self.histories, ref.user) {
            assertClose(model.userRepresentation(h), expected, rel: 1e-4, floor: 0.1, "\(key) user representation")
        }
        guard let loss = ref.loss else { return }
        // Training loss and gradients of one batch (dropout off): the dataset's leave-one-out train parts are `train`.
        let data = try SequenceDataset(sequences: Self.train.map { $0 + [1, 2] }, numItems: Self.n)
        let split = DatasetSplit.leaveOneOut(data)
        XCTAssertEqual(split.train, Self.train)
        let session = TrainingSession(network: net, objective: SASRec(train: split.train, configuration: net.configuration),
                                      configuration: net.configuration, profiles: nil)
        var rng = Xoshiro256(seed: 0)
        let ce = session.computeGradients([0, 1, 2][...], distill: false, rng: &rng).crossEntropy
        XCTAssertEqual(ce, loss, accuracy: 1e-5)
        func grad(_ name: String) -> [Float] {
            let p = net.parameters.first { $0.name == name }!
            return Array(UnsafeBufferPointer(start: p.grad.p, count: p.count))
        }
        assertClose(Array(grad("blocks.0.attn.qkv.weight")[0..<6]), ref.grad_qkv0!, rel: 3e-3, floor: 1e-5, "\(key) dW_qkv")
        assertClose(Array(grad("pos_emb")[(Self.maxLength * Self.d)...]), ref.grad_pos!, rel: 3e-3, floor: 1e-5, "\(key) dpos")
        if let g = ref.grad_item3 { assertClose(Array(grad("item_emb")[(3 * Self.d)..<(4 * Self.d)]), g, rel: 3e-3, floor: 1e-5, "\(key) dE[3]") }
        if let g = ref.grad_adapter { assertClose(Array(grad("adapter.weight")[0..<6]), g, rel: 3e-3, floor: 1e-5, "\(key) dAdapter") }
    }

    func testSASRecID() throws { try run("sasrec_id", .sasrec, .id) }
    func testSASRecText() throws { try run("sasrec_text", .sasrec, .text) }
    func testSASRecTextAndID() throws { try run("sasrec_text+id", .sasrec, .textAndID) }
    func testBERT4RecID() throws { try run("bert4rec_id", .bert4rec, .id) }

    func testAdamWMatchesTorch() throws {
        let all = try JSONSerialization.jsonObject(with: Data(Self.reference.utf8)) as! [String: Any]
        let expected = (all["adamw"] as! [Double]).map { Float($0) }
        let p = Parameter("p", shape: [4])
        for (i, v) in [Float(0.5), -1, 2, 0].enumerated() { p.value.p[i] = v }
        var opt = AdamW(learningRate: 1e-2, beta1: 0.9, beta2: 0.98, epsilon: 1e-8, weightDecay: 0.1)
        for g in [[Float(0.1), -0.2, 0.3, 0], [1, 0.5, -0.5, 2], [-0.3, 0, 0.1, 0.2]] {
            for i in 0..<4 { p.grad.p[i] = g[i] }
            opt.update([p])
        }
        assertClose(Array(UnsafeBufferPointer(start: p.value.p, count: 4)), expected, rel: 1e-5, floor: 1e-2, "AdamW")
    }
}
