import XCTest
@testable import Learn

/// GRU4Rec: against PyTorch's `nn.GRU` (the reference model of ../shared/reference/seqrec_ref.py), through
/// time on packed batches, the serving and evaluation paths against the training forward, learning,
/// persistence, distillation and configuration defaults.
final class GRU4RecTests: XCTestCase {
    /// Output of `$HOME/refvenv/bin/python tools/gru4rec_reference_values.py` (PyTorch 2.15 CPU).
    static let reference = #"""
{"id_2layers": {"names": ["dense.bias", "dense.weight", "gru.weight_hh_l0", "gru.weight_hh_l1", "gru.weight_ih_l0", "gru.weight_ih_l1", "item_emb.weight"], "user": [[-0.0065184319, 0.16738629, 0.24873839, 0.36090246, 0.41615766, 0.3603586, 0.33002251, 0.21998985], [0.0023202198, 0.15413353, 0.25592372, 0.3654674, 0.40345281, 0.37115511, 0.32967323, 0.20961565]], "loss": 2.4413333, "grads": {"dense.bias": {"start": 2, "values": [0.16584939, 0.20877254, 0.22343932, 0.20786461, 0.16415641, 0.098230414]}, "dense.weight": {"start": 16, "values": [0.012410386, -0.011477133, -0.010125233, 0.015350413, -0.0098703122, -0.0044933581]}, "gru.weight_hh_l0": {"start": 36, "values": [8.4055982e-06, 1.0665907e-05, -2.8740888e-06, 3.0941999e-05, -1.2067374e-05, 4.0370935e-05]}, "gru.weight_hh_l1": {"start": 36, "values": [-8.9478526e-06, 5.4783231e-07, 7.9599567e-06, -1.03016e-05, 4.3258419e-06, 4.7650183e-06]}, "gru.weight_ih_l0": {"start": 48, "values": [1.7541826e-05, 2.1407704e-05, 2.2376156e-05, 2.03161e-05, 1.5506355e-05, 8.5978972e-06]}, "gru.weight_ih_l1": {"start": 36, "values": [9.6559752e-06, -3.3803211e-05, 1.1302954e-05, -1.7337548e-05, 1.8040178e-05, -1.3814561e-05]}, "item_emb.weight": {"start": 24, "values": [-0.00044089532, -0.014778783, -0.025860792, -0.036091775, -0.039490495, -0.037249871]}}}, "text+id": {"names": ["adapter.bias", "adapter.weight", "dense.bias", "dense.weight", "gru.weight_hh_l0", "gru.weight_ih_l0", "item_emb.weight"], "user": [[0.12613513, -0.34062338, 0.22125036, 0.032137603, -0.75588727, -0.40065116, 0.043270826, -0.57816041], [0.078363925, -0.2623533, 0.22690716, -0.049176097, -0.71779186, -0.33983529, -0.027547479, -0.60087132]], "loss": 2.1158283, "grads": {"adapter.bias": {"start": 2, "values": [-0.014900573, -0.0081894156, -0.00036985427, 0.0074997908, 0.014354382, 0.019266129]}, "adapter.weight": {"start": 13, "values": [0.013280274, 0.015064267, 0.0074569746, 0.007991571, 0.008429572, 0.0087656733]}, "dense.bias": {"start": 2, "values": [-0.041677587, -0.13830176, -0.058686279, 0.051491026, -0.015289009, -0.0089244545]}, "dense.weight": {"start": 32, "values": [0.034506794, -0.014873883, 0.012443754, -0.0089337081, 0.0093862778, -0.017952805]}, "gru.weight_hh_l0": {"start": 144, "values": [6.3897271e-05, -0.00016798955, -0.0010866174, 0.0022283422, -0.0016679208, -0.00030912252]}, "gru.weight_ih_l0": {"start": 96, "values": [0.0029419917, -0.0050271931, -0.0044957334, 0.0060814777, 0.0028137101, -0.0030947491]}, "item_emb.weight": {"start": 24, "values": [0.0040491167, 0.0082202405, -0.032136571, -0.002105861, 0.03609243, -0.00087355729]}}}, "text": {"names": ["adapter.bias", "adapter.weight", "dense.bias", "dense.weight", "gru.weight_hh_l0", "gru.weight_ih_l0"], "user": [[0.12271931, 0.05439043, 0.0021154508, -0.18672459, -0.3984209, -0.42864192, -0.32958913, -0.3005566], [0.15948109, 0.060723659, -0.033497851, -0.19951604, -0.36512727, -0.40981287, -0.35946828, -0.32480401]], "loss": 2.2019413, "grads": {"adapter.bias": {"start": 2, "values": [0.0062609771, 0.0042317482, 0.0016297735, -0.0011927951, -0.0038538985, -0.0059934175]}, "adapter.weight": {"start": 13, "values": [0.00641465, 0.0061413739, 0.013640003, 0.013714073, 0.013622371, 0.013366003]}, "dense.bias": {"start": 2, "values": [0.050130118, -0.089321554, -0.00089782616, 0.089816421, -0.048607238, -0.063025057]}, "dense.weight": {"start": 10, "values": [0.0019178628, 0.002195565, -0.010626459, 0.0097137121, -0.0016021839, -0.0065245326]}, "gru.weight_hh_l0": {"start": 16, "values": [-8.4082771e-05, 6.2648585e-05, -6.0983737e-05, 2.833733e-05, 0.00016129682, -0.0001160458]}, "gru.weight_ih_l0": {"start": 32, "values": [0.0020983675, -0.0012312721, 0.00012052344, 0.0040368517, 0.0014695131, -0.00060504046]}}}}
"""#

    struct Gradient: Decodable { var start: Int; var values: [Float] }
    struct Case: Decodable {
        var names: [String]
        var user: [[Float]]
        var loss: Double
        var grads: [String: Gradient]
    }

    static let n = 9, d = 8, maxLength = 6, textDim = 5
    static let histories: [[Int32]] = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 2]]
    static let train: [[Int32]] = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 1, 9, 2, 9, 3, 9, 4, 9]]

    override func setUp() { LearnEngine.configureProcess() }
    override func invokeTest() { Parallel.$parts.withValue(2) { super.invokeTest() } }

    func textTable() throws -> TextTable {
        var v = [Float](repeating: 0, count: (Self.n + 1) * Self.textDim)
        for r in 1...Self.n { for j in 0..<Self.textDim { v[r * Self.textDim + j] = Float(0.5 * cos(0.11 * Double(r * Self.textDim + j))) } }
        return try TextTable(numItems: Self.n, dimension: Self.textDim, values: v)
    }

    func torchName(_ name: String) -> String { name == "item_emb" ? name + ".weight" : name }

    func run(_ key: String, _ items: ModelConfiguration.ItemRepresentation, layers: Int, state: Int) throws {
        let object = try JSONSerialization.jsonObject(with: Data(Self.reference.utf8)) as! [String: Any]
        let ref = try JSONDecoder().decode(Case.self, from: JSONSerialization.data(withJSONObject: object[key]!))
        var c = ModelConfiguration(architecture: .gru4rec, items: items)
        c.hiddenSize = Self.d; c.blocks = layers; c.gruHiddenSize = state; c.maxLength = Self.maxLength; c.dropout = 0
        let net = try SequenceNetwork(configuration: c, numItems: Self.n, text: items.usesText ? textTable() : nil)
        let sorted = net.parameters.sorted { torchName($0.name) < torchName($1.name) }
        XCTAssertEqual(sorted.map { torchName($0.name) }, ref.names, "the same parameters as PyTorch's module")
        for (k, p) in sorted.enumerated() {
            for i in 0..<p.count { p.value.p[i] = Float(0.4 * sin(0.37 * Double(i) + 1.3 * Double(k))) }
        }
        net.refreshItemTable()
        let model = SequentialRecommender(network: net)
        for (h, expected) in zip(Self.histories, ref.user) {
            assertClose(model.userRepresentation(h), expected, rel: 1e-4, floor: 0.05, "\(key) user representation")
        }
        // Several histories at once (the time-major batch path) give the same vectors.
        let batch = model.userRepresentations(Self.histories)
        for (k, expected) in ref.user.enumerated() {
            assertClose(Array(batch.values[(k * Self.d)..<((k + 1) * Self.d)]), expected, rel: 1e-4, floor: 0.05, "\(key) batched")
        }
        let data = try SequenceDataset(sequences: Self.train.map { $0 + [1, 2] }, numItems: Self.n)
        let split = DatasetSplit.leaveOneOut(data)
        let session = TrainingSession(network: net, objective: GRU4Rec.makeObjective(train: split.train, configuration: c, numItems: Self.n),
                                      configuration: c, profiles: nil)
        var rng = Xoshiro256(seed: 0)
        let ce = session.computeGradients([0, 1, 2][...], distill: false, rng: &rng).crossEntropy
        XCTAssertEqual(ce, ref.loss, accuracy: 1e-5, "\(key) loss")
        for p in net.parameters {
            let g = try XCTUnwrap(ref.grads[torchName(p.name)], p.name)
            let mine = Array(UnsafeBufferPointer(start: p.grad.p, count: p.count)[g.start..<(g.start + 6)])
            assertClose(mine, g.values, rel: 3e-3, floor: 1e-4, "\(key) d\(p.name)")
        }
    }

    func assertClose(_ a: [Float], _ b: [Float], rel: Float, floor: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x, y, accuracy: rel * max(abs(y), floor), "\(what): \(a) vs \(b)", file: file, line: line)
        }
    }

    func testIDTwoLayersMatchesPyTorch() throws { try run("id_2layers", .id, layers: 2, state: 6) }
    func testTextAndIDMatchesPyTorch() throws { try run("text+id", .textAndID, layers: 1, state: 12) }
    func testTextMatchesPyTorch() throws { try run("text", .text, layers: 1, state: 4) }

    /// The serving path (one history, matrix-vector steps, transposed input weights) and the evaluation
    /// path (last rows of a time-major batch) against the full training-path forward's last rows.
    func testServingAndLastRowsEqualTheFullForward() throws {
        var c = smallConfiguration(.gru4rec, items: .textAndID)
        c.blocks = 2; c.gruHiddenSize = 20
        let data = try syntheticDataset(users: 50)
        let text = try syntheticTextTable(items: data.numItems)
        let net = try SequenceNetwork(configuration: c, numItems: data.numItems, text: text)
        let histories: [[Int32]] = [[1, 2, 3], [5], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [], [4, 4, 4, 4]]
        let ws = net.makeWorkspace()
        ws.reset()
        for h in histories { net.appendEvaluationWindow(h, to: ws) }
        var rng = Xoshiro256(seed: 0)
        net.forward(ws, training: false, rng: &rng)
        let full = Array(UnsafeBufferPointer(start: ws.hidden.p, count: ws.layout.rows * c.hiddenSize))
        let model = SequentialRecommender(network: net)
        let batched = model.userRepresentations(histories)
        for frozen in [false, true] {
            if frozen { model.freezeForServing() }
            for (k, h) in histories.enumerated() {
                let one = model.userRepresentation(h)
                let expected: [Float]
                if h.isEmpty { expected = [Float](repeating: 0, count: c.hiddenSize) }
                else {
                    let last = ws.layout.rowStart[k + 1] - 1
                    expected = Array(full[(last * c.hiddenSize)..<((last + 1) * c.hiddenSize)])
                    assertClose(Array(batched.values[(k * c.hiddenSize)..<((k + 1) * c.hiddenSize)]), expected, rel: 1e-5, floor: 1e-2, "batched \(k)")
                }
                assertClose(one, expected, rel: 1e-5, floor: 1e-2, "one history \(k), frozen \(frozen)")
            }
        }
        XCTAssertTrue(net.isFrozenForServing)
        // A history longer than maxLength is cut to its last maxLength items.
        let long: [Int32] = Array(1...30)
        XCTAssertEqual(model.userRepresentation(long), model.userRepresentation(Array(long.suffix(c.maxLength))))
    }

    func testLearnsTheSyntheticPatternAndReproducesItsMetrics() throws {
        let data = try syntheticDataset()
        let text = try syntheticTextTable(items: data.numItems)
        for items in [ModelConfiguration.ItemRepresentation.id, .textAndID] {
            var c = smallConfiguration(.gru4rec, items: items)
            c.blocks = 1; c.maxEpochs = 30; c.patience = 30; c.learningRate = 5e-3
            let r = try Trainer.train(dataset: data, textTable: text, configuration: c)
            // chance level for Recall@10 is 10/40; 90 % of the next items follow the cycle
            XCTAssertGreaterThan(r.report.test.recall10, 0.7, "\(items.rawValue): \(r.report.test)")
            XCTAssertGreaterThan(r.report.test.ndcg10, 0.5, "\(items.rawValue)")
            XCTAssertLessThan(r.report.curve.last![1], r.report.curve.first![1], "training loss must fall")
            let params = r.model.exportParameters()
            XCTAssertEqual(params["gru.weight_ih_l0"]?.shape, [3 * 32, 16])
            XCTAssertEqual(params["gru.weight_hh_l0"]?.shape, [3 * 32, 32])
            XCTAssertEqual(params["dense.weight"]?.shape, [16, 32])
            XCTAssertNil(params["pos_emb"]); XCTAssertNil(params["ln_f.weight"])
            let restored = try SequentialRecommender(configuration: c, numItems: data.numItems, parameters: params, textTable: text)
            let (valid, test) = try restored.evaluate(dataset: data)
            XCTAssertEqual(test, r.report.test, "the evaluator reproduces the training-time test metrics exactly")
            XCTAssertEqual(valid, r.report.valid)
            let again = try Trainer.train(dataset: data, textTable: text, configuration: c)
            XCTAssertEqual(again.model.exportParameters(), params, "deterministic for a seed and thread count")
        }
    }

    func testWarmStartColdStartAndDistillation() throws {
        let data = try syntheticDataset(users: 150)
        let text = try syntheticTextTable(items: data.numItems + 3)
        var c = smallConfiguration(.gru4rec, items: .textAndID)
        c.maxEpochs = 2
        let r = try Trainer.train(dataset: data, textTable: text, configuration: c)
        // Cold start: a new item's vector from its text alone is adapter(text).
        let row = Array(text.values[((data.numItems + 1) * text.dimension)..<((data.numItems + 2) * text.dimension)])
        let cold = try r.model.itemVector(fromTextEmbedding: row)
        let grown = try r.model.expandingCatalogue(to: data.numItems + 3, textTable: text)
        let vectors = grown.itemVectors()
        let known = r.model.itemVectors()
        XCTAssertEqual(Array(vectors.values[0..<((data.numItems + 1) * 16)]), known.values, "trained rows are kept")
        let bigger = try SequenceDataset(sequences: data.sequences + [[Int32(data.numItems + 1), 1, 2, Int32(data.numItems + 2)]],
                                         numItems: data.numItems + 3)
        let resumed = try Trainer.train(dataset: bigger, textTable: text, configuration: c, initialModel: grown)
        XCTAssertEqual(resumed.model.numItems, data.numItems + 3)
        XCTAssertEqual(cold.count, 16)
        // Distillation pools the projected GRU outputs; a profile user is served T(profile) (no final LayerNorm).
        let split = DatasetSplit.leaveOneOut(data)
        let profiles = try ProfileTable(dimension: 6, profiles: split.train.enumerated().map { u, t in
            u % 4 == 0 || t.isEmpty ? nil : randomFloats(6, seed: UInt64(u))
        })
        var dc = DistillationConfiguration(); dc.distillEpochs = 1
        var kd: [Double?] = []
        var distilled = smallConfiguration(.gru4rec); distilled.maxEpochs = 2; distilled.distillation = dc
        let run = try Trainer.train(dataset: data, profiles: profiles, configuration: distilled, progress: { kd.append($0.distillationLoss) })
        XCTAssertNotNil(kd[0]); XCTAssertNil(kd[1])
        let p = randomFloats(6, seed: 3)
        let params = run.model.exportParameters()
        let w = params["profile_proj.weight"]!, b = params["profile_proj.bias"]!
        let expected: [Float] = (0..<16).map { j in (0..<6).reduce(b.values[j]) { $0 + w.values[j * 6 + $1] * p[$1] } }
        assertClose(try run.model.userRepresentation(profile: p), expected, rel: 1e-5, floor: 1e-2, "T(profile)")
        dc.reconstructionLayer = 2; distilled.blocks = 3; distilled.distillation = dc
        XCTAssertThrowsError(try distilled.validate(), "GRU4Rec distils only its last layer")
    }

    func testConfigurationDefaultsAndJSON() throws {
        let c = ModelConfiguration(architecture: .gru4rec)
        XCTAssertEqual(c.blocks, 1); XCTAssertEqual(c.dropout, 0.3); XCTAssertEqual(c.resolvedGRUHiddenSize, 128)
        let decoded = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"architecture": "gru4rec", "gruHiddenSize": 40}"#.utf8))
        XCTAssertEqual(decoded.blocks, 1, "missing keys take the architecture's defaults")
        XCTAssertEqual(decoded.dropout, 0.3); XCTAssertEqual(decoded.resolvedGRUHiddenSize, 40)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(decoded)), decoded)
        let sasrec = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"architecture": "sasrec"}"#.utf8))
        // A configuration without `windows` reads as `last` (versions stored before `auto` existed trained so).
        var sasrecDefaults = ModelConfiguration(); sasrecDefaults.windows = .last
        XCTAssertEqual(sasrec, sasrecDefaults, "SASRec's defaults are unchanged")
        var bad = c; bad.gruHiddenSize = 0
        XCTAssertThrowsError(try bad.validate())
        // The default state size 2d is bounded for GRU4Rec only: a transformer of width 16384 stays valid.
        var wide = c; wide.hiddenSize = 16_384
        XCTAssertThrowsError(try wide.validate())
        var transformer = ModelConfiguration(); transformer.hiddenSize = 16_384
        XCTAssertNoThrow(try transformer.validate())
    }
}
