// The BERT forward pass and the folder loader on tiny synthetic models, against a plain double-precision
// re-implementation of Hugging Face's BertModel written out below (independent of the packed/batched kernels).
// Covers what MiniLM does not: CLS and max pooling, no normalisation, F16/BF16 weights, a "bert." name prefix,
// the tanh GELU and ReLU, and the loader's errors. Also checks the vectorised erf/exp against libm.

import Foundation
import Synchronization
import XCTest
@testable import Learn

final class SentenceEncoderModelTests: XCTestCase {
    /// Opt into the process-wide OpenBLAS set-up the library never does itself (see `LearnEngine`).
    override class func setUp() { super.setUp(); LearnEngine.configureProcess() }
    struct Spec {
        var hidden = 16, layers = 2, heads = 4, intermediate = 32, maxPositions = 24
        var activation = "gelu"
        var pooling = ["pooling_mode_mean_tokens": true]
        var normalize = true
        var dtype = SafeTensorsDType.float32
        var prefix = ""
        var maxSequenceLength = 12
    }

    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "nail", "polish", "shampoo", "for",
                             "dry", "hair", "##s", "oil", ",", ".", "lip", "gloss", "soft", "matte"]

    var directory: URL!
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("encoder-model-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// Deterministic weights (xorshift), rounded to the storage dtype so the reference sees exactly what is stored.
    struct Weights {
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        mutating func add(_ name: String, _ shape: [Int], scale: Float, offset: Float = 0, dtype: SafeTensorsDType) {
            var values: [Float] = []
            for _ in 0 ..< shape.reduce(1, *) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                var v = offset + scale * (Float(state % 2_000_001) / 1_000_000 - 1)
                if dtype == .float16 { v = SafeTensorsFile.floatFromHalfBits(SafeTensorsFile.halfBits(from: v)) }
                if dtype == .bfloat16 { v = Float(bitPattern: v.bitPattern & 0xFFFF_0000) }
                values.append(v)
            }
            tensors[name] = (shape, values)
        }
    }

    func makeModel(_ spec: Spec, name: String = "model") throws -> (URL, Weights) {
        let folder = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
        let H = spec.hidden, I = spec.intermediate, V = Self.vocabulary.count
        var w = Weights()
        w.add("embeddings.word_embeddings.weight", [V, H], scale: 1, dtype: spec.dtype)
        w.add("embeddings.position_embeddings.weight", [spec.maxPositions, H], scale: 0.5, dtype: spec.dtype)
        w.add("embeddings.token_type_embeddings.weight", [2, H], scale: 0.2, dtype: spec.dtype)
        w.add("embeddings.LayerNorm.weight", [H], scale: 0.2, offset: 1, dtype: spec.dtype)
        w.add("embeddings.LayerNorm.bias", [H], scale: 0.1, dtype: spec.dtype)
        for l in 0 ..< spec.layers {
            let p = "encoder.layer.\(l)."
            for part in ["query", "key", "value"] {
                w.add(p + "attention.self.\(part).weight", [H, H], scale: 0.5, dtype: spec.dtype)
                w.add(p + "attention.self.\(part).bias", [H], scale: 0.1, dtype: spec.dtype)
            }
            w.add(p + "attention.output.dense.weight", [H, H], scale: 0.3, dtype: spec.dtype)
            w.add(p + "attention.output.dense.bias", [H], scale: 0.1, dtype: spec.dtype)
            w.add(p + "attention.output.LayerNorm.weight", [H], scale: 0.2, offset: 1, dtype: spec.dtype)
            w.add(p + "attention.output.LayerNorm.bias", [H], scale: 0.1, dtype: spec.dtype)
            w.add(p + "intermediate.dense.weight", [I, H], scale: 0.4, dtype: spec.dtype)
            w.add(p + "intermediate.dense.bias", [I], scale: 0.1, dtype: spec.dtype)
            w.add(p + "output.dense.weight", [H, I], scale: 0.3, dtype: spec.dtype)
            w.add(p + "output.dense.bias", [H], scale: 0.1, dtype: spec.dtype)
            w.add(p + "output.LayerNorm.weight", [H], scale: 0.2, offset: 1, dtype: spec.dtype)
            w.add(p + "output.LayerNorm.bias", [H], scale: 0.1, dtype: spec.dtype)
        }
        let tensors = w.tensors.keys.sorted().map { key in
            SafeTensorsWriter.Tensor(name: spec.prefix + key, shape: w.tensors[key]!.shape, values: w.tensors[key]!.values, dtype: spec.dtype)
        }
        try SafeTensorsWriter.image(tensors, metadata: ["format": "pt"]).write(to: folder.appendingPathComponent("model.safetensors"))
        func json(_ object: Any, _ file: String) throws {
            try JSONSerialization.data(withJSONObject: object).write(to: folder.appendingPathComponent(file))
        }
        try json(["hidden_size": H, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads, "intermediate_size": I,
                  "max_position_embeddings": spec.maxPositions, "type_vocab_size": 2, "vocab_size": V, "layer_norm_eps": 1e-12,
                  "hidden_act": spec.activation, "model_type": "bert", "position_embedding_type": "absolute"] as [String: Any], "config.json")
        try (Self.vocabulary.joined(separator: "\n") + "\n").write(to: folder.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        try json(["do_lower_case": true, "model_max_length": 512, "tokenizer_class": "BertTokenizer"] as [String: Any], "tokenizer_config.json")
        try json(["max_seq_length": spec.maxSequenceLength, "do_lower_case": false] as [String: Any], "sentence_bert_config.json")
        var modules: [[String: Any]] = [["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
                                        ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"]]
        if spec.normalize { modules.append(["idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"]) }
        try json(modules, "modules.json")
        var pooling: [String: Any] = ["word_embedding_dimension": H]
        for (k, v) in spec.pooling { pooling[k] = v }
        try json(pooling, "1_Pooling/config.json")
        return (folder, w)
    }

    /// Hugging Face BertModel + sentence-transformers Pooling/Normalize, in Double, one sentence at a time.
    func reference(_ ids: [Int], _ w: Weights, _ spec: Spec) -> [Float] {
        let H = spec.hidden, I = spec.intermediate, d = H / spec.heads, L = ids.count
        func t(_ name: String) -> [Double] { w.tensors[name]!.values.map(Double.init) }
        func layerNorm(_ x: [Double], _ g: [Double], _ b: [Double]) -> [Double] {
            let mean = x.reduce(0, +) / Double(x.count)
            let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
            return x.indices.map { (x[$0] - mean) / (variance + 1e-12).squareRoot() * g[$0] + b[$0] }
        }
        func linear(_ x: [Double], _ weight: [Double], _ bias: [Double]) -> [Double] {
            let n = bias.count, k = x.count
            return (0 ..< n).map { o in (0 ..< k).reduce(bias[o]) { $0 + weight[o * k + $1] * x[$1] } }
        }
        func act(_ v: Double) -> Double {
            switch spec.activation {
            case "gelu": return 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot()))
            case "relu": return max(0, v)
            default: return 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
            }
        }
        let word = t("embeddings.word_embeddings.weight"), pos = t("embeddings.position_embeddings.weight"), type = t("embeddings.token_type_embeddings.weight")
        var x: [[Double]] = (0 ..< L).map { p in
            layerNorm((0 ..< H).map { word[ids[p] * H + $0] + pos[p * H + $0] + type[$0] },
                      t("embeddings.LayerNorm.weight"), t("embeddings.LayerNorm.bias"))
        }
        for l in 0 ..< spec.layers {
            let p = "encoder.layer.\(l)."
            let q = x.map { linear($0, t(p + "attention.self.query.weight"), t(p + "attention.self.query.bias")) }
            let k = x.map { linear($0, t(p + "attention.self.key.weight"), t(p + "attention.self.key.bias")) }
            let v = x.map { linear($0, t(p + "attention.self.value.weight"), t(p + "attention.self.value.bias")) }
            var context = [[Double]](repeating: [Double](repeating: 0, count: H), count: L)
            for h in 0 ..< spec.heads {
                for i in 0 ..< L {
                    let scores = (0 ..< L).map { j in (0 ..< d).reduce(0.0) { $0 + q[i][h * d + $1] * k[j][h * d + $1] } / Double(d).squareRoot() }
                    let m = scores.max()!
                    let e = scores.map { Foundation.exp($0 - m) }
                    let s = e.reduce(0, +)
                    for c in 0 ..< d { context[i][h * d + c] = (0 ..< L).reduce(0.0) { $0 + e[$1] / s * v[$1][h * d + c] } }
                }
            }
            for i in 0 ..< L {
                let attended = linear(context[i], t(p + "attention.output.dense.weight"), t(p + "attention.output.dense.bias"))
                x[i] = layerNorm((0 ..< H).map { x[i][$0] + attended[$0] }, t(p + "attention.output.LayerNorm.weight"), t(p + "attention.output.LayerNorm.bias"))
                let inner = linear(x[i], t(p + "intermediate.dense.weight"), t(p + "intermediate.dense.bias")).map(act)
                XCTAssertEqual(inner.count, I)
                let out = linear(inner, t(p + "output.dense.weight"), t(p + "output.dense.bias"))
                x[i] = layerNorm((0 ..< H).map { x[i][$0] + out[$0] }, t(p + "output.LayerNorm.weight"), t(p + "output.LayerNorm.bias"))
            }
        }
        var pooled: [Double] = []
        if spec.pooling["pooling_mode_cls_token"] == true { pooled += x[0] }
        if spec.pooling["pooling_mode_max_tokens"] == true { pooled += (0 ..< H).map { j in x.map { $0[j] }.max()! } }
        if spec.pooling["pooling_mode_mean_tokens"] == true { pooled += (0 ..< H).map { j in x.reduce(0) { $0 + $1[j] } / Double(L) } }
        if spec.normalize {
            let norm = pooled.reduce(0) { $0 + $1 * $1 }.squareRoot()
            pooled = pooled.map { $0 / norm }
        }
        return pooled.map(Float.init)
    }

    static let texts = ["Red nail polish", "", "shampoo for dry hair, soft matte lip gloss. red oils",
                        "LIP GLOSS", "unknownword red", "hair oil hair oil hair oil hair oil hair oil hair oil hair oil"]

    func check(_ spec: Spec, file: StaticString = #filePath, line: UInt = #line) throws {
        let (folder, weights) = try makeModel(spec)
        let encoder = try SentenceEncoder(modelDirectory: folder, threadCount: 2)
        XCTAssertEqual(encoder.dimension, spec.hidden * spec.pooling.values.filter { $0 }.count, file: file, line: line)
        XCTAssertEqual(encoder.configuration.normalize, spec.normalize, file: file, line: line)
        for batchSize in [1, 2, 32] {  // several workers / one packed batch with parallel attention
            let vectors = try encoder.encode(Self.texts, batchSize: batchSize)
            for (text, vector) in zip(Self.texts, vectors) {
                let ids = encoder.tokenIDs(text)
                XCTAssertLessThanOrEqual(ids.count, spec.maxSequenceLength, file: file, line: line)
                let expected = reference(ids, weights, spec)
                XCTAssertEqual(vector.count, expected.count, file: file, line: line)
                let worst = zip(vector, expected).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, 2e-4, "batch \(batchSize), \(text.debugDescription): max |Δ| \(worst)", file: file, line: line)
            }
        }
    }

    /// A lone batch of ≥ 128 tokens splits its products and attention over the encoder's own lanes: the vectors still
    /// match the reference, and OpenBLAS's process-wide thread count is the same during the call as before it (the
    /// encoder used to raise it to its lane count for the call).
    func testOneLargeBatchUsesItsOwnLanesAndLeavesOpenBLASThreadsAlone() throws {
        let spec = Spec()
        let (folder, weights) = try makeModel(spec)
        let encoder = try SentenceEncoder(modelDirectory: folder, threadCount: 2)
        let texts = (0 ..< 30).map { Self.texts[$0 % Self.texts.count] + " red hair oil" }
        let tokens = texts.reduce(0) { $0 + encoder.tokenIDs($1).count }
        XCTAssertGreaterThanOrEqual(tokens, SentenceEncoder.minimumTokensForIntraBatchThreads, "must take the lanes path")
        let before = BLAS.threadCount
        let during = Locked<[Int]>([])
        let vectors = try encoder.encode(texts, batchSize: texts.count) { _, _ in
            let now = BLAS.threadCount
            during.withLock { $0.append(now) }
        }
        XCTAssertEqual(during.withLock { $0 }, [before], "one progress call, with OpenBLAS's thread count unchanged")
        XCTAssertEqual(BLAS.threadCount, before)
        for (text, vector) in zip(texts, vectors) {
            let expected = reference(encoder.tokenIDs(text), weights, spec)
            let worst = zip(vector, expected).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 2e-4, "\(text.debugDescription): max |Δ| \(worst)")
        }
    }

    func testMeanPoolingNormalizedF32GELU() throws {
        try check(Spec())
    }

    func testCLSPoolingUnnormalizedF16TanhGELUWithBertPrefix() throws {
        try check(Spec(activation: "gelu_new", pooling: ["pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false],
                       normalize: false, dtype: .float16, prefix: "bert."))
    }

    func testMaxAndMeanPoolingBF16ReLU() throws {
        try check(Spec(activation: "relu", pooling: ["pooling_mode_max_tokens": true, "pooling_mode_mean_tokens": true],
                       normalize: false, dtype: .bfloat16))
    }

    func testLoaderErrorsNameFileAndProblem() throws {
        let (folder, _) = try makeModel(Spec())
        let fm = FileManager.default
        // Missing vocabulary.
        try fm.moveItem(at: folder.appendingPathComponent("vocab.txt"), to: folder.appendingPathComponent("vocab.bak"))
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            XCTAssertEqual(error as? SentenceEncoderError, .missingFile(path: folder.appendingPathComponent("vocab.txt").path))
        }
        try fm.moveItem(at: folder.appendingPathComponent("vocab.bak"), to: folder.appendingPathComponent("vocab.txt"))
        // config.json that disagrees with the weights → shape mismatch naming the tensor.
        let configURL = folder.appendingPathComponent("config.json")
        let original = try Data(contentsOf: configURL)
        var config = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        config["intermediate_size"] = 48
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            guard case let .shapeMismatch(file, name, expected, actual)? = error as? SafeTensorsError else { return XCTFail("\(error)") }
            XCTAssertTrue(file.hasSuffix("model.safetensors"))
            XCTAssertEqual(name, "encoder.layer.0.intermediate.dense.weight")
            XCTAssertEqual(expected, [48, 16]); XCTAssertEqual(actual, [32, 16])
        }
        // More layers than stored → missing weight.
        config["intermediate_size"] = 32
        config["num_hidden_layers"] = 3
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            guard case let .missingTensor(_, name)? = error as? SafeTensorsError else { return XCTFail("\(error)") }
            XCTAssertTrue(name.hasPrefix("encoder.layer.2."), name)
        }
        // Not JSON.
        try Data("{ hidden_size".utf8).write(to: configURL)
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            guard case let .badConfiguration(file, _)? = error as? SentenceEncoderError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, configURL.path)
        }
        try original.write(to: configURL)
        // A module this encoder does not implement.
        let modulesURL = folder.appendingPathComponent("modules.json")
        let modules = try Data(contentsOf: modulesURL)
        var list = try JSONSerialization.jsonObject(with: modules) as! [[String: Any]]
        list.append(["idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"])
        try JSONSerialization.data(withJSONObject: list).write(to: modulesURL)
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            guard case let .unsupportedModel(file, reason)? = error as? SentenceEncoderError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, modulesURL.path)
            XCTAssertTrue(reason.contains("Dense"), reason)
        }
        try modules.write(to: modulesURL)
        // Truncated weights.
        let weightsURL = folder.appendingPathComponent("model.safetensors")
        let weights = try Data(contentsOf: weightsURL)
        try weights.prefix(weights.count - 100).write(to: weightsURL)
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            guard case .truncatedTensor? = error as? SafeTensorsError else { return XCTFail("\(error)") }
        }
        try weights.write(to: weightsURL)
        XCTAssertNoThrow(try SentenceEncoder(modelDirectory: folder))
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: directory.appendingPathComponent("nowhere"))) { error in
            guard case .missingFile? = error as? SentenceEncoderError else { return XCTFail("\(error)") }
        }
    }

    func testTokenizerAndSentenceConfigsWithWrongValueTypesAreRefused() throws {
        let (folder, _) = try makeModel(Spec())
        for (file, object, reason) in [
            ("tokenizer_config.json", ["do_lower_case": "false"] as [String: Any], "\"do_lower_case\" must be true or false"),
            ("tokenizer_config.json", ["do_lower_case": 1] as [String: Any], "\"do_lower_case\" must be true or false"),
            ("tokenizer_config.json", ["model_max_length": "512"] as [String: Any], "\"model_max_length\" must be a number"),
            ("tokenizer_config.json", ["unk_token": 7] as [String: Any], "\"unk_token\" must be a string or {\"content\": string}"),
            ("tokenizer_config.json", ["tokenizer_class": ["Bert"]] as [String: Any], "\"tokenizer_class\" must be a string"),
            ("sentence_bert_config.json", ["max_seq_length": "12"] as [String: Any], "\"max_seq_length\" must be an integer"),
            ("sentence_bert_config.json", ["do_lower_case": "no"] as [String: Any], "\"do_lower_case\" must be true or false"),
        ] {
            let url = folder.appendingPathComponent(file)
            let original = try Data(contentsOf: url)
            try JSONSerialization.data(withJSONObject: object).write(to: url)
            XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
                guard case let .badConfiguration(path, text)? = error as? SentenceEncoderError else { return XCTFail("\(error)") }
                XCTAssertEqual(path, url.path)
                XCTAssertTrue(text.hasPrefix(reason), text)
            }
            try original.write(to: url)
        }
        let modulesURL = folder.appendingPathComponent("modules.json")
        try JSONSerialization.data(withJSONObject: [["idx": 0, "type": 5]]).write(to: modulesURL)
        XCTAssertThrowsError(try SentenceEncoder(modelDirectory: folder)) { error in
            XCTAssertEqual(error as? SentenceEncoderError, .badConfiguration(file: modulesURL.path, reason: "module 0 needs a string \"type\" (and \"path\" a string when present)"))
        }
    }

    // MARK: - Kernels

    func testVectorisedErfAndExpAgainstLibm() {
        var worstErf: Double = 0, worstExp: Double = 0
        var x: Float = -7
        while x < 7 {
            let lanes = BERTKernels.Vector((0 ..< 8).map { x + Float($0) * 0.000_25 })
            let erf = BERTKernels.erf(lanes)
            for k in 0 ..< 8 { worstErf = max(worstErf, abs(Double(erf[k]) - Foundation.erf(Double(lanes[k])))) }
            x += 0.002
        }
        x = -87
        while x < 88 {
            let lanes = BERTKernels.Vector((0 ..< 8).map { x + Float($0) * 0.001 })
            let e = BERTKernels.exp(lanes)
            for k in 0 ..< 8 {
                let truth = Foundation.exp(Double(lanes[k]))
                worstExp = max(worstExp, abs(Double(e[k]) - truth) / truth)
            }
            x += 0.01
        }
        XCTAssertLessThan(worstErf, 5e-7, "erf max abs error")
        XCTAssertLessThan(worstExp, 5e-7, "exp max relative error")
    }

    func testSoftmaxAndLayerNormKernels() {
        var rows: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -1000,  // 12 per row: one vector and a tail
                             0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        rows.withUnsafeMutableBufferPointer { BERTKernels.softmaxRows($0.baseAddress!, rows: 2, count: 12, stride: 12) }
        let denominator = (1 ... 11).reduce(0.0) { $0 + Foundation.exp(Double($1) - 11) }
        for j in 0 ..< 11 { XCTAssertEqual(Double(rows[j]), Foundation.exp(Double(j + 1) - 11) / denominator, accuracy: 1e-6) }
        XCTAssertEqual(rows[11], 0, accuracy: 1e-30)
        for j in 12 ..< 24 { XCTAssertEqual(rows[j], 1.0 / 12, accuracy: 1e-7) }

        var x: [Float] = (0 ..< 20).map { Float($0) * 0.5 - 3 }
        let delta: [Float] = (0 ..< 20).map { Float($0 % 3) }
        let gamma: [Float] = (0 ..< 20).map { 1 + Float($0) * 0.1 }
        let beta: [Float] = (0 ..< 20).map { Float($0) * -0.05 }
        let bias: [Float] = (0 ..< 20).map { _ in 0.25 }
        let summed = (0 ..< 20).map { Double(x[$0] + delta[$0] + bias[$0]) }
        let mean = summed.reduce(0, +) / 20
        let std = (summed.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 20 + 1e-12).squareRoot()
        x.withUnsafeMutableBufferPointer { xp in
            BERTKernels.residualLayerNorm(xp.baseAddress!, adding: delta, bias: bias, gamma: gamma, beta: beta, rows: 1, width: 20, epsilon: 1e-12)
        }
        for j in 0 ..< 20 { XCTAssertEqual(Double(x[j]), (summed[j] - mean) / std * Double(gamma[j]) + Double(beta[j]), accuracy: 1e-5) }
    }

    func testOpenBLASCoreFamilyChoice() {
        XCTAssertEqual(OpenBLASCoreSelection.family(forCPUFlags: ["avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]), "SkylakeX")
        XCTAssertEqual(OpenBLASCoreSelection.family(forCPUFlags: ["avx", "avx2", "fma", "avx512f"]), "Haswell")
        XCTAssertEqual(OpenBLASCoreSelection.family(forCPUFlags: ["sse4_2", "avx"]), "SandyBridge")
        XCTAssertNil(OpenBLASCoreSelection.family(forCPUFlags: ["sse2", "sse3"]))
        let outcome = OpenBLASCoreSelection.ensureOptimizedKernels()
        XCTAssertFalse(OpenBLASCoreSelection.genericFamilies.contains(outcome.after.lowercased()) && outcome.note == "switched")
    }
}
