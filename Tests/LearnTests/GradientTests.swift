import XCTest
@testable import Learn

/// Every backward pass against central finite differences. Losses are L = Σ w ⊙ output with fixed
/// random weights w, so dL/doutput = w.
final class GradientTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }
    /// Work split in 2 parts for every test (a task-local binding, as `Trainer.train` does).
    override func invokeTest() { Parallel.$parts.withValue(2) { super.invokeTest() } }

    private func weightedSum(_ y: UnsafePointer<Float>, _ w: [Float]) -> Double {
        var s = 0.0; for i in 0..<w.count { s += Double(y[i]) * Double(w[i]) }; return s
    }

    func testLinear() {
        let rows = 5, inF = 4, outF = 3
        var x = randomFloats(rows * inF, seed: 1), wt = randomFloats(outF * inF, seed: 2), b = randomFloats(outF, seed: 3)
        let w = randomFloats(rows * outF, seed: 4)
        var y = [Float](repeating: 0, count: rows * outF)
        func loss() -> Double {
            Kernels.linearForward(x, rows: rows, inFeatures: inF, outFeatures: outF, weight: wt, bias: b, into: &y)
            return weightedSum(y, w)
        }
        var dW = [Float](repeating: 0, count: outF * inF), db = [Float](repeating: 0, count: outF)
        var dx = [Float](repeating: 0, count: rows * inF)
        _ = loss()
        Kernels.linearBackward(w, x: x, rows: rows, inFeatures: inF, outFeatures: outF, weight: wt, weightGrad: &dW,
                               biasGrad: &db, dx: &dx)
        checkGradient("linear.x", values: &x, indices: sampleIndices(x.count), analytic: dx, loss: loss)
        checkGradient("linear.W", values: &wt, indices: sampleIndices(wt.count), analytic: dW, loss: loss)
        checkGradient("linear.b", values: &b, indices: sampleIndices(b.count), analytic: db, loss: loss)
    }

    func testLayerNorm() {
        let rows = 6, width = 7
        var x = randomFloats(rows * width, seed: 5, scale: 2)
        var gamma = randomFloats(width, seed: 6).map { $0 + 1 }, beta = randomFloats(width, seed: 7)
        let w = randomFloats(rows * width, seed: 8)
        var y = [Float](repeating: 0, count: rows * width)
        var mean = [Float](repeating: 0, count: rows), rstd = mean
        func loss() -> Double {
            Kernels.layerNormForward(x, rows: rows, width: width, gamma: gamma, beta: beta, eps: 1e-8, into: &y,
                                     mean: &mean, rstd: &rstd)
            return weightedSum(y, w)
        }
        _ = loss()
        var dg = [Float](repeating: 0, count: width), db = dg
        var dx = [Float](repeating: 0, count: rows * width)
        Kernels.layerNormBackward(w, x: x, rows: rows, width: width, gamma: gamma, mean: mean, rstd: rstd,
                                  gammaGrad: &dg, betaGrad: &db, dx: &dx, accumulate: false, scratch: Buffer(1))
        checkGradient("layerNorm.x", values: &x, indices: sampleIndices(x.count), analytic: dx, eps: 1e-3, loss: loss)
        checkGradient("layerNorm.gamma", values: &gamma, indices: sampleIndices(width), analytic: dg, loss: loss)
        checkGradient("layerNorm.beta", values: &beta, indices: sampleIndices(width), analytic: db, loss: loss)
        // accumulate mode adds to what is there
        var acc = [Float](repeating: 1, count: rows * width)
        Kernels.layerNormBackward(w, x: x, rows: rows, width: width, gamma: gamma, mean: mean, rstd: rstd,
                                  gammaGrad: &dg, betaGrad: &db, dx: &acc, accumulate: true, scratch: Buffer(1))
        for i in 0..<acc.count { XCTAssertEqual(acc[i], dx[i] + 1, accuracy: 1e-5) }
    }

    func testActivations() {
        for act in [Kernels.Activation.relu, .gelu] {
            // keep ReLU inputs away from the kink
            var x = randomFloats(40, seed: 9, scale: 3).map { abs($0) < 0.05 ? $0 + 0.2 : $0 }
            let w = randomFloats(40, seed: 10)
            var y = [Float](repeating: 0, count: 40)
            func loss() -> Double { Kernels.activationForward(act, x, count: 40, into: &y); return weightedSum(y, w) }
            var dx = [Float](repeating: 0, count: 40)
            Kernels.activationBackward(act, w, x: x, count: 40, into: &dx)
            checkGradient("\(act)", values: &x, indices: Array(0..<40), analytic: dx, eps: 1e-3, loss: loss)
        }
        // GELU value: 0.5·x·(1 + erf(x/√2)) at x = 1 is 0.8413447
        var y: [Float] = [0]
        Kernels.activationForward(.gelu, [1], count: 1, into: &y)
        XCTAssertEqual(y[0], 0.841_344_7, accuracy: 1e-6)
    }

    func testAttentionCausalAndBidirectionalWithDropout() {
        for causal in [true, false] {
            let d = 8, heads = 2
            let layout = PackedLayout(lengths: [3, 5, 1], heads: heads)
            let rows = layout.rows
            var qkv = randomFloats(rows * 3 * d, seed: 11)
            let w = randomFloats(rows * d, seed: 12)
            let mask = Buffer(layout.attentionSize)
            DropoutMask.fill(mask.p, count: layout.attentionSize, p: 0.3, key: 99)
            let probs = Buffer(layout.attentionSize), dropped = Buffer(layout.attentionSize)
            var y = [Float](repeating: 0, count: rows * d)
            func loss() -> Double {
                Attention.forward(qkv: qkv, layout: layout, width: d, heads: heads, causal: causal, dropMask: mask.p,
                                  probs: probs.p, dropped: dropped.p, into: &y)
                return weightedSum(y, w)
            }
            _ = loss()
            var dqkv = [Float](repeating: 0, count: rows * 3 * d)
            Attention.backward(dy: w, qkv: qkv, layout: layout, width: d, heads: heads, dropMask: mask.p, probs: probs.p,
                               dropped: dropped.p, dqkv: &dqkv)
            checkGradient("attention causal=\(causal)", values: &qkv, indices: Array(0..<qkv.count), analytic: dqkv,
                          eps: 1e-3, loss: loss)
            if causal {
                // position 0 of a causal sequence sees only itself: its output is its own value (× mask)
                _ = loss()
                XCTAssertEqual(probs.p[0], 1, accuracy: 1e-6)
                XCTAssertEqual(probs.p[1], 0)
            }
        }
    }

    func testChunkedSoftmaxCrossEntropy() {
        let rows = 7, d = 5, items = 19
        var h = randomFloats(rows * d, seed: 13, scale: 2), e = randomFloats(items * d, seed: 14, scale: 2)
        let targets: [Int32] = [1, 19, 5, 5, 12, 3, 8]
        let ce = SoftmaxCrossEntropy(chunkRows: 2)  // several chunks per part
        var dh = [Float](repeating: 0, count: rows * d)
        var de = [Float](repeating: 0, count: items * d)
        let lossSum = ce.run(hidden: h, rows: rows, width: d, catalogue: e, items: items, targets: targets,
                             gradScale: 1 / Float(rows), hiddenGrad: &dh, catalogueGrad: &de)
        // direct evaluation in Double
        func direct() -> Double {
            var total = 0.0
            for r in 0..<rows {
                var logits = [Double](repeating: 0, count: items)
                for j in 0..<items { for k in 0..<d { logits[j] += Double(h[r * d + k]) * Double(e[j * d + k]) } }
                let m = logits.max()!
                let lse = m + log(logits.reduce(0) { $0 + exp($1 - m) })
                total += lse - logits[Int(targets[r]) - 1]
            }
            return total / Double(rows)
        }
        XCTAssertEqual(lossSum / Double(rows), direct(), accuracy: 1e-4)
        checkGradient("ce.hidden", values: &h, indices: Array(0..<h.count), analytic: dh, eps: 1e-2, loss: direct)
        checkGradient("ce.catalogue", values: &e, indices: Array(0..<e.count), analytic: de, eps: 1e-2, loss: direct)
    }

    func testFastExpAccuracy() {
        var worst: Float = 0
        for i in 0..<2000 {
            let x = -87 + Float(i) * 0.0875
            let v = fastExp(SIMD8(repeating: x))[3]
            worst = max(worst, abs(v - expf(x)) / expf(x))
        }
        XCTAssertLessThan(worst, 1e-6)
    }

    func testDropoutMaskRateAndDeterminism() {
        let n = 100_000
        let a = Buffer(n), b = Buffer(n)
        DropoutMask.fill(a.p, count: n, p: 0.2, key: 7)
        Parallel.$parts.withValue(1) { DropoutMask.fill(b.p, count: n, p: 0.2, key: 7) }
        var dropped = 0
        for i in 0..<n {
            XCTAssertEqual(a.p[i], b.p[i])
            if a.p[i] == 0 { dropped += 1 } else { XCTAssertEqual(a.p[i], 1.25) }
        }
        XCTAssertEqual(Double(dropped) / Double(n), 0.2, accuracy: 0.005)
    }

    /// The whole network (every op chained, with dropout and all item modes) against finite differences
    /// of the training loss with respect to sampled entries of every parameter.
    func testFullNetworkGradients() throws {
        let cases: [(ModelConfiguration.Architecture, ModelConfiguration.ItemRepresentation)] =
            [(.sasrec, .id), (.sasrec, .text), (.bert4rec, .textAndID)]
        for (arch, items) in cases {
            var c = smallConfiguration(arch, items: items)
            c.hiddenSize = 8; c.maxLength = 6; c.dropout = 0.1
            let data = try syntheticDataset(users: 6, items: 9, length: 4...9, seed: 3)
            let text = try syntheticTextTable(items: 9, dimension: 5)
            try checkNetwork(c, data: data, text: text, label: "\(arch)/\(items.rawValue)")
        }
    }

    /// GRU4Rec through time: every parameter (two layers; id, text and text+id items; dropout on; windows of
    /// different lengths, so sequences leave the time-major batch at different steps), and with distillation
    /// on the projected output.
    func testGRU4RecGradients() throws {
        for (items, layers) in [(ModelConfiguration.ItemRepresentation.id, 2), (.text, 1), (.textAndID, 2)] {
            var c = smallConfiguration(.gru4rec, items: items)
            c.hiddenSize = 8; c.gruHiddenSize = 12; c.blocks = layers; c.maxLength = 6; c.dropout = 0.1
            let data = try syntheticDataset(users: 6, items: 9, length: 3...9, seed: 3)
            let text = try syntheticTextTable(items: 9, dimension: 5)
            // A larger step than the transformer's: the GRU is smooth (no ReLU kink), and its recurrent weights'
            // gradients are small enough that float32 rounding dominates a 2e-3 difference.
            try checkNetwork(c, data: data, text: text, eps: 1e-2, label: "gru4rec/\(items.rawValue)/L\(layers)")
        }
        var c = smallConfiguration(.gru4rec)
        c.hiddenSize = 8; c.gruHiddenSize = 10; c.maxLength = 6; c.dropout = 0
        var dc = DistillationConfiguration(); dc.adaptiveScale = false; dc.pooling = .exponential
        c.distillation = dc
        let data = try syntheticDataset(users: 6, items: 9, length: 4...9, seed: 3)
        let profiles = try ProfileTable(dimension: 4, profiles: (0..<6).map { $0 == 2 ? nil : randomFloats(4, seed: UInt64(20 + $0)) })
        try checkNetwork(c, data: data, text: nil, profiles: profiles, distill: true, eps: 1e-2, label: "gru4rec distill")
    }

    func checkNetwork(_ c: ModelConfiguration, data: SequenceDataset, text: TextTable?, profiles: ProfileTable? = nil,
                      distill: Bool = false, eps: Float = 2e-3, label: String) throws {
        let split = try DatasetSplit.make(data, configuration: c)
        let net = try SequenceNetwork(configuration: c, numItems: data.numItems, text: text,
                                      profileDimension: profiles?.dimension)
        let objective = c.architecture.model.makeObjective(train: split.train, configuration: c, numItems: data.numItems)
        let session = TrainingSession(network: net, objective: objective, configuration: c, profiles: profiles)
        let batch = Array(0..<objective.exampleCount)[...]
        let alpha = distill ? Double(c.distillation!.alpha) : 0
        let lambda = profiles != nil ? Double(c.distillation?.profileRecommendationWeight ?? 0) : 0
        // The profile-path loss is a gradient for T only (E and LN_f are constants to it): T is checked
        // against the whole loss, every other parameter against the loss without it.
        func loss(withProfilePath: Bool) -> Double {
            net.refreshItemTable()
            var rng = Xoshiro256(seed: 42)  // same dropout masks and [MASK] choices every time
            let l = session.computeGradients(batch, distill: distill, rng: &rng)
            return (1 - alpha) * l.crossEntropy + alpha * l.distillation + (withProfilePath ? lambda * l.profileRecommendation : 0)
        }
        _ = loss(withProfilePath: true)
        let grads = net.parameters.map { Array(UnsafeBufferPointer(start: $0.grad.p, count: $0.count)) }
        for (p, g) in zip(net.parameters, grads) {
            let isT = p.name.hasPrefix("profile_proj.")
            checkGradient("\(label) \(p.name)", values: p.value.p, indices: sampleIndices(p.count, max: 10),
                          analytic: g, eps: eps, tol: 3e-2, loss: { loss(withProfilePath: isT) })
        }
    }

    func testDistillationGradients() throws {
        for (loss, pooling) in [(DistillationConfiguration.Loss.mse, DistillationConfiguration.Pooling.mean),
                                (.rmse, .exponential), (.cosine, .last)] {
            var c = smallConfiguration(.sasrec)
            c.hiddenSize = 8; c.maxLength = 6; c.dropout = 0
            c.activation = "gelu"  // smooth: no ReLU kink inside the finite-difference step
            var dc = DistillationConfiguration()
            dc.loss = loss; dc.pooling = pooling; dc.adaptiveScale = false; dc.reconstructionLayer = 1
            c.distillation = dc
            let data = try syntheticDataset(users: 6, items: 9, length: 4...9, seed: 3)
            // user 2 has no profile: it must not contribute
            let profiles = try ProfileTable(dimension: 4, profiles: (0..<6).map { $0 == 2 ? nil : randomFloats(4, seed: UInt64(20 + $0)) })
            try checkNetwork(c, data: data, text: nil, profiles: profiles, distill: true, label: "distill \(loss)/\(pooling)")
        }
    }

    /// The profile path's recommendation loss (T trained on the served scores LN_f(T(p))·Eᵀ) without
    /// distillation, for both target sets, SASRec and BERT4Rec (with text items, so E comes through the
    /// adapter): T's gradient against finite differences; every other gradient bit-identical to a run
    /// without the loss (it must never reach the sequence model); the loss against a direct computation.
    func testProfileRecommendationGradients() throws {
        for (arch, items, targets) in [(ModelConfiguration.Architecture.sasrec, ModelConfiguration.ItemRepresentation.id,
                                        DistillationConfiguration.ProfileTargets.all),
                                       (.sasrec, .id, .last), (.bert4rec, .textAndID, .all)] {
            var c = smallConfiguration(arch, items: items)
            c.hiddenSize = 8; c.maxLength = 6; c.dropout = 0
            c.activation = "gelu"
            var dc = DistillationConfiguration()
            dc.profileRecommendationWeight = 0.7; dc.profileTargets = targets
            c.distillation = dc
            let data = try syntheticDataset(users: 6, items: 9, length: 4...9, seed: 3)
            let text = try syntheticTextTable(items: 9, dimension: 5)
            let profiles = try ProfileTable(dimension: 4, profiles: (0..<6).map { $0 == 2 ? nil : randomFloats(4, seed: UInt64(20 + $0)) })
            let label = "profile path \(arch)/\(items.rawValue)/\(targets)"
            // distill: false — only the profile-path loss (weight 0.7) reaches T.
            try checkNetwork(c, data: data, text: text, profiles: profiles, distill: false, label: label)

            // Stop-gradient: with and without the loss, every parameter but T gets the same gradient.
            let split = try DatasetSplit.make(data, configuration: c)
            let net = try SequenceNetwork(configuration: c, numItems: 9, text: text, profileDimension: 4)
            let objective: SequenceObjective = arch == .sasrec
                ? SASRec(train: split.train, configuration: c)
                : BERT4Rec(train: split.train, configuration: c, numItems: 9)
            var off = c; off.distillation!.profileRecommendationWeight = 0
            let batch = Array(0..<objective.exampleCount)[...]
            func gradients(_ configuration: ModelConfiguration) -> ([String: [Float]], TrainingSession.Losses) {
                let session = TrainingSession(network: net, objective: objective, configuration: configuration, profiles: profiles)
                var rng = Xoshiro256(seed: 42)
                let l = session.computeGradients(batch, distill: false, rng: &rng)
                return (Dictionary(uniqueKeysWithValues: net.parameters.map { ($0.name, Array(UnsafeBufferPointer(start: $0.grad.p, count: $0.count))) }), l)
            }
            let (withLoss, losses) = gradients(c), (withoutLoss, _) = gradients(off)
            for (name, g) in withLoss where !name.hasPrefix("profile_proj.") { XCTAssertEqual(g, withoutLoss[name], "\(label): \(name)") }
            XCTAssertEqual(withoutLoss["profile_proj.weight"]!.map(abs).max(), 0, "\(label): without the loss T gets no gradient")

            // The loss, recomputed from the served user vectors and the item vectors in Double.
            let model = SequentialRecommender(network: net)
            let vectors = model.itemVectors().values
            var expected = 0.0, users = 0
            for e in 0..<objective.exampleCount {
                let u = objective.exampleUser(e)
                guard profiles.present[u] else { continue }
                let h = try model.userRepresentation(profile: Array(profiles.values[(u * 4)..<(u * 4 + 4)])).map(Double.init)
                let scores = (1...9).map { i in (0..<8).reduce(0.0) { $0 + h[$1] * Double(vectors[i * 8 + $1]) } }
                let top = scores.max()!
                let logSumExp = top + log(scores.map { exp($0 - top) }.reduce(0, +))
                let trainItems = objective.exampleItems(e)
                let targetItems = targets == .last ? [trainItems.last!] : trainItems
                expected += targetItems.map { logSumExp - scores[Int($0) - 1] }.reduce(0, +) / Double(targetItems.count)
                users += 1
            }
            XCTAssertEqual(users, objective.exampleCount - 1, "user 2 has no profile")
            XCTAssertEqual(losses.profileRecommendation, expected / Double(users), accuracy: 1e-5, label)
        }
    }

    func testGradientClipping() {
        let p = Parameter("w", shape: [4])
        for (i, g) in [3, 4, 0, 0].enumerated() { p.grad.p[i] = Float(g) }
        let norm = AdamW.clipGradients([p], maxNorm: 1)
        XCTAssertEqual(norm, 5, accuracy: 1e-6)
        XCTAssertEqual(p.grad.p[0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(p.grad.p[1], 0.8, accuracy: 1e-5)
        XCTAssertEqual(AdamW.gradientNorm([p]), 1, accuracy: 1e-5)
    }
}
