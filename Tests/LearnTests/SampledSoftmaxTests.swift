import XCTest
@testable import Learn

/// The sampled softmax loss (`ModelConfiguration.loss = .sampled`): gradients against finite
/// differences, hand-computed inclusion probabilities, the limit where it equals the full softmax,
/// the row-sparse AdamW step, and training through `Trainer`.
final class SampledSoftmaxTests: XCTestCase {
    override func setUp() { LearnEngine.configureProcess() }
    override func invokeTest() { Parallel.$parts.withValue(2) { super.invokeTest() } }

    /// The loss of the last draw of `loss`, evaluated directly in Double from its candidate set and log π.
    private func direct(_ loss: SampledSoftmaxCrossEntropy, h: [Float], e: [Float], targets: [Int32], d: Int) -> Double {
        var total = 0.0
        let c = loss.candidates
        for r in 0..<targets.count {
            func score(_ j: Int32) -> Double {
                var s = 0.0
                for k in 0..<d { s += Double(h[r * d + k]) * Double(e[(Int(j) - 1) * d + k]) }
                return s
            }
            let positive = score(targets[r]) - Double(loss.positiveLogQ[r])
            var logits = [positive]
            for (k, j) in c.enumerated() where j != targets[r] { logits.append(score(j) - Double(loss.candidateLogQ[k])) }
            let m = logits.max()!
            total += m + log(logits.reduce(0) { $0 + exp($1 - m) }) - positive
        }
        return total / Double(targets.count)
    }

    func testGradientsAgainstFiniteDifferences() {
        // Both corrections: the batch's own counts (default) and global target shares (the logQ terms
        // are constants of the draw, so the gradient must match finite differences either way).
        // And with the positive left uncorrected (log π_t = 0 for the positive only).
        let shares = (0...30).map { $0 == 0 ? 0 : Double(31 - $0) / 465 }
        for (frequency, correctsPositive) in [(nil, true), (shares, true), (nil, false), (shares, false)] as [([Double]?, Bool)] {
            let rows = 9, d = 5, items = 30
            var h = randomFloats(rows * d, seed: 21, scale: 2), e = randomFloats(items * d, seed: 22, scale: 2)
            // Repeated targets (in-batch draws hit them) and a small catalogue (uniform draws hit positives).
            let targets: [Int32] = [1, 7, 7, 30, 12, 3, 7, 22, 1]
            let loss = SampledSoftmaxCrossEntropy(negatives: 14, chunkRows: 2, targetFrequency: frequency,
                                                  correctsPositive: correctsPositive)  // several chunks per part
            var dh = [Float](repeating: 0, count: rows * d), de = [Float](repeating: 0, count: items * d)
            var rng = Xoshiro256(seed: 3)
            let sum = loss.run(hidden: h, rows: rows, width: d, catalogue: e, items: items, targets: targets,
                               gradScale: 1 / Float(rows), hiddenGrad: &dh, catalogueGrad: &de, rng: &rng)
            let hits = (0..<rows).filter { r in loss.candidates.contains(targets[r]) }.count
            XCTAssertGreaterThan(hits, 0, "the test must exercise accidental hits")
            XCTAssertLessThan(loss.candidates.count, items, "and a true sample, not the whole catalogue")
            XCTAssertEqual(Set(loss.candidates).count, loss.candidates.count, "candidates are distinct")
            // π < 1 for every item here (N = 14 draws over 30 items), so a corrected positive has log π < 0.
            XCTAssertEqual(loss.positiveLogQ.map { $0 < 0 }, [Bool](repeating: correctsPositive, count: rows))
            if !correctsPositive { XCTAssertEqual(loss.positiveLogQ, [Float](repeating: 0, count: rows)) }
            XCTAssertEqual(sum / Double(rows), direct(loss, h: h, e: e, targets: targets, d: d), accuracy: 1e-4)
            let f = { self.direct(loss, h: h, e: e, targets: targets, d: d) }
            checkGradient("sampled.hidden", values: &h, indices: Array(0..<h.count), analytic: dh, eps: 1e-2, loss: f)
            checkGradient("sampled.catalogue", values: &e, indices: Array(0..<e.count), analytic: de, eps: 1e-2, loss: f)
            // Rows never drawn and never a positive get no gradient (the scatter is sparse).
            let touched = Set(loss.candidates).union(targets)
            for j in 1...items where !touched.contains(Int32(j)) {
                XCTAssertEqual(Array(de[(j - 1) * d ..< j * d]), [Float](repeating: 0, count: d), "item \(j)")
            }
        }
    }

    func testGroupsDrawTheirOwnCandidatesAsSeparateRunsWould() {
        // 10 rows in 3 groups (rows 0..<3, 3..<6, 6..<10): the grouped run must equal three one-group runs
        // on those row slices with the same generator (bit for bit: same draws, same sums in the same order),
        // and the touched rows must be the union of the three draws, then positives and inputs, each once.
        let rows = 10, d = 4, items = 40
        let h = randomFloats(rows * d, seed: 51, scale: 2), e = randomFloats(items * d, seed: 52, scale: 2)
        let targets: [Int32] = [3, 3, 17, 40, 8, 3, 22, 17, 1, 9]
        let inputs: [Int32] = [0, 5, 3, 39, 0]  // 0 = padding, skipped
        let grouped = SampledSoftmaxCrossEntropy(negatives: 6, chunkRows: 2, groups: 3)
        var dh = [Float](repeating: 0, count: rows * d), de = [Float](repeating: 0, count: items * d)
        var rng = Xoshiro256(seed: 7)
        let sum = grouped.run(hidden: h, rows: rows, width: d, catalogue: e, items: items, targets: targets,
                              gradScale: 1 / Float(rows), hiddenGrad: &dh, catalogueGrad: &de, rng: &rng)
        let touched = grouped.touchedRows(inputs: inputs, targets: targets, items: items)

        let single = SampledSoftmaxCrossEntropy(negatives: 6, chunkRows: 2)
        var dhRef = [Float](repeating: 0, count: rows * d), deRef = [Float](repeating: 0, count: items * d)
        var rngRef = Xoshiro256(seed: 7)
        var sumRef = 0.0
        var draws: [[Int32]] = []
        for (lo, hi) in [(0, 3), (3, 6), (6, 10)] {
            sumRef += h.withUnsafeBufferPointer { hp in targets.withUnsafeBufferPointer { tp in
                dhRef.withUnsafeMutableBufferPointer { dp in
                    single.run(hidden: hp.baseAddress! + lo * d, rows: hi - lo, width: d, catalogue: e, items: items,
                               targets: tp.baseAddress! + lo, gradScale: 1 / Float(rows), hiddenGrad: dp.baseAddress! + lo * d,
                               catalogueGrad: &deRef, rng: &rngRef)
                }
            } }
            draws.append(single.candidates)
        }
        XCTAssertEqual(sum, sumRef)
        XCTAssertEqual(dh, dhRef)
        XCTAssertEqual(de, deRef)
        XCTAssertEqual(grouped.candidates, draws[2], "the last draw is the last group's")
        var expected: [Int32] = []
        for j in draws.joined() + targets + inputs where j >= 1 && !expected.contains(j) { expected.append(j) }
        XCTAssertEqual(touched, expected)
        let union = Set(draws.joined())
        XCTAssertGreaterThan(union.count, draws.map(\.count).max()!, "the groups' draws must differ (more coverage)")
        XCTAssertNotEqual(draws[0], draws[1])
        // More groups than rows: one row per group, the same as one-row runs.
        let two = SampledSoftmaxCrossEntropy(negatives: 6, groups: 4)
        var r1 = Xoshiro256(seed: 8), r2 = Xoshiro256(seed: 8)
        var dh2 = [Float](repeating: 0, count: 2 * d), de2 = [Float](repeating: 0, count: items * d)
        let s2 = two.run(hidden: h, rows: 2, width: d, catalogue: e, items: items, targets: targets, gradScale: 0.5,
                         hiddenGrad: &dh2, catalogueGrad: &de2, rng: &r1)
        var dh1 = [Float](repeating: 0, count: 2 * d), de1 = [Float](repeating: 0, count: items * d)
        var s1 = 0.0
        for r in 0..<2 {
            s1 += h.withUnsafeBufferPointer { hp in targets.withUnsafeBufferPointer { tp in
                dh1.withUnsafeMutableBufferPointer { dp in
                    single.run(hidden: hp.baseAddress! + r * d, rows: 1, width: d, catalogue: e, items: items,
                               targets: tp.baseAddress! + r, gradScale: 0.5, hiddenGrad: dp.baseAddress! + r * d,
                               catalogueGrad: &de1, rng: &r2)
                }
            } }
        }
        XCTAssertEqual(s2, s1)
        XCTAssertEqual(dh2, dh1)
        XCTAssertEqual(de2, de1)
    }

    func testInclusionProbabilitiesAgainstHandValues() {
        // rows 4, items 8, N = 4 with half in-batch: f = 0.5, q_j = 0.5·c_j/4 + 0.5/8 (positives corrected
        // too here, so their log π is visible).
        let targets: [Int32] = [2, 2, 5, 8]
        let loss = SampledSoftmaxCrossEntropy(negatives: 4, correctsPositive: true)
        var rng = Xoshiro256(seed: 11)
        loss.draw(targets: targets, rows: 4, items: 8, rng: &rng)
        func pi(_ q: Double) -> Double { 1 - pow(1 - q, 4) }
        let expected: [Int32: Double] = [2: pi(0.25 + 0.0625), 5: pi(0.125 + 0.0625), 8: pi(0.125 + 0.0625)]
        for (r, t) in targets.enumerated() {
            XCTAssertEqual(Double(loss.positiveLogQ[r]), log(expected[t]!), accuracy: 1e-6, "positive \(t)")
        }
        for (k, j) in loss.candidates.enumerated() {
            let q = (expected[j] != nil) ? nil : pi(0.0625)
            XCTAssertEqual(Double(loss.candidateLogQ[k]), log(q ?? expected[j]!), accuracy: 1e-6, "candidate \(j)")
        }
        // 1 − (1 − 0.3125)^4 = 1 − 0.6875⁴ = 1 − 0.2234039306640625, item 2 worked by hand.
        XCTAssertEqual(pi(0.3125), 0.7765960693359375, accuracy: 1e-12)
        XCTAssertEqual(Double(loss.positiveLogQ[0]), log(0.7765960693359375), accuracy: 1e-6)
        // Same seed, same draw; another seed, another draw.
        let first = loss.candidates
        var same = Xoshiro256(seed: 11)
        loss.draw(targets: targets, rows: 4, items: 8, rng: &same)
        XCTAssertEqual(loss.candidates, first)
    }

    func testGlobalFrequencyCorrectionAgainstHandValues() {
        // Targets of the training part: every item but a sequence's first. Here 2 ×3, 5 ×1, 8 ×0 (first
        // only), 3 ×4: shares over 8 targets.
        let train: [[Int32]] = [[8, 2, 2, 3], [1, 3, 3, 5], [4, 2, 3], [6]]
        let p = SampledSoftmaxCrossEntropy.targetFrequency(train: train, items: 8)
        XCTAssertEqual(p, [0, 0, 3.0 / 8, 4.0 / 8, 0, 1.0 / 8, 0, 0, 0])
        // Same batch as above, but q_j = 0.5·p_j + 0.5/8 whatever the batch holds: item 8 (in the batch,
        // never a training target) gets the uniform part only, item 2 its global share.
        let targets: [Int32] = [2, 2, 5, 8]
        let loss = SampledSoftmaxCrossEntropy(negatives: 4, targetFrequency: p, correctsPositive: true)
        var rng = Xoshiro256(seed: 11)
        loss.draw(targets: targets, rows: 4, items: 8, rng: &rng)
        func pi(_ q: Double) -> Double { 1 - pow(1 - q, 4) }
        let expected: [Int32: Double] = [2: pi(0.1875 + 0.0625), 5: pi(0.0625 + 0.0625), 8: pi(0.0625)]
        for (r, t) in targets.enumerated() {
            XCTAssertEqual(Double(loss.positiveLogQ[r]), log(expected[t]!), accuracy: 1e-6, "positive \(t)")
        }
        for (k, j) in loss.candidates.enumerated() {
            XCTAssertEqual(Double(loss.candidateLogQ[k]), log(pi(0.5 * p[Int(j)] + 0.0625)), accuracy: 1e-6, "candidate \(j)")
        }
        // The draw itself is the batch-conditional one: the same candidates as without the frequencies.
        let plain = SampledSoftmaxCrossEntropy(negatives: 4, correctsPositive: true)
        var rng2 = Xoshiro256(seed: 11)
        plain.draw(targets: targets, rows: 4, items: 8, rng: &rng2)
        XCTAssertEqual(plain.candidates, loss.candidates)
        XCTAssertNotEqual(plain.positiveLogQ[3], loss.positiveLogQ[3], "item 8's own presence no longer counts")
    }

    func testUncorrectedPositiveKeepsTheDrawAndTheNegativesCorrection() {
        // Same batch and seed as the hand-valued test above: only the positives' log π changes (to 0).
        let targets: [Int32] = [2, 2, 5, 8]
        let corrected = SampledSoftmaxCrossEntropy(negatives: 4, correctsPositive: true)
        let plain = SampledSoftmaxCrossEntropy(negatives: 4)  // the default: the positive uncorrected
        var r1 = Xoshiro256(seed: 11), r2 = Xoshiro256(seed: 11)
        corrected.draw(targets: targets, rows: 4, items: 8, rng: &r1)
        plain.draw(targets: targets, rows: 4, items: 8, rng: &r2)
        XCTAssertEqual(plain.candidates, corrected.candidates)
        XCTAssertEqual(plain.candidateLogQ, corrected.candidateLogQ)
        XCTAssertEqual(plain.positiveLogQ, [0, 0, 0, 0])
        XCTAssertEqual(Double(corrected.positiveLogQ[0]), log(0.7765960693359375), accuracy: 1e-6)
        // Loss of row 0 by hand: h·E = 1 for the positive (item 2) and every candidate, so
        // L = log(e¹ + Σ_{k≠2} e^{1 − log π_k}) − 1 = log(1 + Σ_{k≠2} 1/π_k).
        let d = 1, items = 8
        let h: [Float] = [1], e = [Float](repeating: 1, count: items * d)
        var dh: [Float] = [0], de = [Float](repeating: 0, count: items * d), r3 = Xoshiro256(seed: 11)
        let sum = plain.run(hidden: h, rows: 1, width: d, catalogue: e, items: items, targets: [2], gradScale: 1,
                            hiddenGrad: &dh, catalogueGrad: &de, rng: &r3)
        let others = zip(plain.candidates, plain.candidateLogQ).filter { $0.0 != 2 }.map { 1 / exp(Double($0.1)) }
        XCTAssertFalse(others.isEmpty, "the draw must hold a negative")
        XCTAssertEqual(plain.positiveLogQ, [0])
        XCTAssertEqual(sum, log(1 + others.reduce(0, +)), accuracy: 1e-5)
    }

    func testEqualsTheFullSoftmaxWhenTheSampleCoversTheCatalogue() {
        // Uniform draws only, N ≫ items: every item is drawn (with probability 1 − 20·(19/20)^N ≈ 1)
        // and π = 1 in floating point, so log π = 0 and masking the hits leaves exactly the full softmax.
        let rows = 11, d = 6, items = 20
        let h = randomFloats(rows * d, seed: 31, scale: 2), e = randomFloats(items * d, seed: 32, scale: 2)
        let targets: [Int32] = (0..<rows).map { Int32(1 + ($0 * 7) % items) }
        let sampled = SampledSoftmaxCrossEntropy(negatives: 4000, inBatchFraction: 0)
        var dhS = [Float](repeating: 0, count: rows * d), deS = [Float](repeating: 0, count: items * d)
        var rng = Xoshiro256(seed: 5)
        let ls = sampled.run(hidden: h, rows: rows, width: d, catalogue: e, items: items, targets: targets,
                             gradScale: 1 / Float(rows), hiddenGrad: &dhS, catalogueGrad: &deS, rng: &rng)
        XCTAssertEqual(Set(sampled.candidates), Set((1...items).map { Int32($0) }))
        XCTAssertTrue(sampled.candidateLogQ.allSatisfy { $0 == 0 })
        let full = SoftmaxCrossEntropy(chunkRows: 4)
        var dhF = [Float](repeating: 0, count: rows * d), deF = [Float](repeating: 0, count: items * d)
        let lf = full.run(hidden: h, rows: rows, width: d, catalogue: e, items: items, targets: targets,
                          gradScale: 1 / Float(rows), hiddenGrad: &dhF, catalogueGrad: &deF)
        XCTAssertEqual(ls, lf, accuracy: 1e-4 * abs(lf))
        for i in 0..<dhS.count { XCTAssertEqual(dhS[i], dhF[i], accuracy: 1e-5) }
        for i in 0..<deS.count { XCTAssertEqual(deS[i], deF[i], accuracy: 1e-5) }
    }

    func testRowSparseAdamWUpdatesOnlyTheTouchedRowsAsDenseWould() {
        let rowsCount = 6, width = 3
        let dense = Parameter("t", shape: [rowsCount, width]), sparse = Parameter("t", shape: [rowsCount, width])
        let init0 = randomFloats(rowsCount * width, seed: 41)
        for p in [dense, sparse] { init0.withUnsafeBufferPointer { p.value.p.update(from: $0.baseAddress!, count: init0.count) } }
        let touched: [Int32] = [4, 1]
        let g = randomFloats(width, seed: 42)
        for p in [dense, sparse] {
            for r in touched { for j in 0..<width { p.grad.p[Int(r) * width + j] = g[j] * Float(r) } }
        }
        var a = AdamW(learningRate: 0.1, beta1: 0.9, beta2: 0.98, epsilon: 1e-8, weightDecay: 0.5)
        var b = a
        a.update([dense])
        b.update([sparse], rowSparse: sparse, rows: touched)
        for r in 0..<rowsCount {
            for j in 0..<width {
                let i = r * width + j
                if touched.contains(Int32(r)) {
                    XCTAssertEqual(sparse.value.p[i], dense.value.p[i], "touched row \(r)")
                    XCTAssertNotEqual(sparse.value.p[i], init0[i])
                    XCTAssertEqual(sparse.grad.p[i], 0, "a touched row's gradient is cleared for the next step")
                } else {
                    XCTAssertEqual(sparse.value.p[i], init0[i], "untouched row \(r) keeps its value (lazy)")
                    XCTAssertEqual(dense.value.p[i], init0[i] * (1 - 0.1 * 0.5), accuracy: 1e-7, "dense decays it")
                }
            }
        }
    }

    func testTheRowSparseTableStepsAtItsOwnLearningRate() {
        // One AdamW step with the item table in its own group: the table's touched rows move as a dense
        // step at the group's rate would (decay 1 − lr·wd, then the bias-corrected step), every other
        // parameter at the base rate, and the untouched rows not at all.
        let rowsCount = 5, width = 4
        let table = Parameter("t", shape: [rowsCount, width]), reference = Parameter("r", shape: [rowsCount, width])
        let other = Parameter("o", shape: [3]), otherReference = Parameter("o", shape: [3])
        let t0 = randomFloats(rowsCount * width, seed: 7), o0 = randomFloats(3, seed: 8)
        for p in [table, reference] { t0.withUnsafeBufferPointer { p.value.p.update(from: $0.baseAddress!, count: t0.count) } }
        for p in [other, otherReference] { o0.withUnsafeBufferPointer { p.value.p.update(from: $0.baseAddress!, count: 3) } }
        let touched: [Int32] = [3, 0]
        let g = randomFloats(width, seed: 9), go = randomFloats(3, seed: 10)
        for p in [table, reference] { for r in touched { for j in 0..<width { p.grad.p[Int(r) * width + j] = g[j] + Float(r) } } }
        for p in [other, otherReference] { for j in 0..<3 { p.grad.p[j] = go[j] } }
        var grouped = AdamW(learningRate: 0.01, beta1: 0.9, beta2: 0.98, epsilon: 1e-8, weightDecay: 0.5,
                            rowSparseLearningRate: 0.04)
        var atTableRate = AdamW(learningRate: 0.04, beta1: 0.9, beta2: 0.98, epsilon: 1e-8, weightDecay: 0.5)
        var atBaseRate = AdamW(learningRate: 0.01, beta1: 0.9, beta2: 0.98, epsilon: 1e-8, weightDecay: 0.5)
        grouped.update([other, table], rowSparse: table, rows: touched)
        atTableRate.update([reference])
        atBaseRate.update([otherReference])
        for r in 0..<rowsCount {
            for j in 0..<width {
                let i = r * width + j
                if touched.contains(Int32(r)) {
                    XCTAssertEqual(table.value.p[i], reference.value.p[i], "row \(r) at the table's rate")
                    // The first Adam step is lr·g/(|g| + ε) after the decay: 0.04 per coordinate, not 0.01.
                    XCTAssertEqual(abs(t0[i] * (1 - 0.04 * 0.5) - table.value.p[i]), 0.04, accuracy: 1e-5)
                } else {
                    XCTAssertEqual(table.value.p[i], t0[i], "untouched row \(r)")
                }
            }
        }
        for j in 0..<3 { XCTAssertEqual(other.value.p[j], otherReference.value.p[j], "a dense parameter at the base rate") }
    }

    func testTheItemTableLearningRateGrowsWithTheCatalogueOnlyWhereTheTableIsSparse() throws {
        let threshold = ModelConfiguration.sampledLossCatalogueThreshold
        XCTAssertEqual(ModelConfiguration.itemTableLearningRateFactor(numItems: 1000), 1)
        XCTAssertEqual(ModelConfiguration.itemTableLearningRateFactor(numItems: threshold), 1)
        XCTAssertEqual(ModelConfiguration.itemTableLearningRateFactor(numItems: threshold + 1), 5)
        XCTAssertEqual(ModelConfiguration.itemTableLearningRateFactor(numItems: 1_000_000), 5)
        var c = ModelConfiguration()
        c.learningRate = 2e-3
        XCTAssertEqual(c.resolvedItemTableLearningRate(numItems: 200_000), 1e-2, accuracy: 1e-9, "auto → sampled, id: scaled")
        XCTAssertEqual(c.resolvedItemTableLearningRate(numItems: 20_000), 2e-3, "auto → ce: the table is dense")
        c.loss = .ce
        XCTAssertEqual(c.resolvedItemTableLearningRate(numItems: 200_000), 2e-3)
        c.loss = .sampled; c.items = .textAndID
        XCTAssertEqual(c.resolvedItemTableLearningRate(numItems: 200_000), 2e-3, "text+id: dense update")
        c.items = .id; c.itemTableLearningRate = 7e-3
        XCTAssertEqual(c.resolvedItemTableLearningRate(numItems: 200_000), 7e-3, "an explicit rate is kept")
        c.itemTableLearningRate = 0
        XCTAssertThrowsError(try c.validate())
        // Training records the resolved rate (small catalogue: factor 1), a different rate trains differently,
        // and a stored configuration without the key decodes to automatic.
        let data = try syntheticDataset()
        var s = smallConfiguration(.sasrec)
        s.maxEpochs = 2; s.loss = .sampled; s.negatives = 16
        let automatic = try Trainer.train(dataset: data, configuration: s)
        XCTAssertEqual(automatic.model.configuration.itemTableLearningRate, s.learningRate)
        s.itemTableLearningRate = 4 * s.learningRate
        let faster = try Trainer.train(dataset: data, configuration: s)
        XCTAssertEqual(faster.model.configuration.itemTableLearningRate, 4 * s.learningRate)
        XCTAssertNotEqual(automatic.model.exportParameters()["item_emb"], faster.model.exportParameters()["item_emb"])
        let roundTrip = try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(faster.model.configuration))
        XCTAssertEqual(roundTrip.itemTableLearningRate, 4 * s.learningRate)
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"seed":3}"#.utf8))
        XCTAssertNil(old.itemTableLearningRate)
        // Where the table is dense (here auto → full CE on 40 items) an explicit rate is not used, so the
        // version does not record it.
        var ce = smallConfiguration(.sasrec)
        ce.maxEpochs = 1; ce.itemTableLearningRate = 9e-3
        XCTAssertNil(try Trainer.train(dataset: data, configuration: ce).model.configuration.itemTableLearningRate)
        ce.itemTableLearningRate = .infinity
        XCTAssertThrowsError(try ce.validate())
        ce.itemTableLearningRate = nil; ce.learningRate = .infinity
        XCTAssertThrowsError(try ce.validate())
    }

    func testTrainingWithTheSampledLossLearnsAndIsDeterministic() throws {
        let data = try syntheticDataset()
        var c = smallConfiguration(.sasrec)
        c.maxEpochs = 30; c.patience = 30; c.learningRate = 5e-3; c.dropout = 0.1
        c.loss = .sampled; c.negatives = 16
        let a = try Trainer.train(dataset: data, configuration: c)
        // chance level for Recall@10 is 10/40; 90 % of the next items follow the cycle
        XCTAssertGreaterThan(a.report.test.recall10, 0.7, "\(a.report.test)")
        XCTAssertEqual(a.report.configuration.loss, .sampled)
        XCTAssertEqual(a.model.configuration.loss, .sampled)
        c.maxEpochs = 2
        let x = try Trainer.train(dataset: data, configuration: c), y = try Trainer.train(dataset: data, configuration: c)
        XCTAssertEqual(x.model.exportParameters(), y.model.exportParameters())
        c.seed = 9
        let z = try Trainer.train(dataset: data, configuration: c)
        XCTAssertNotEqual(x.model.exportParameters()["item_emb"], z.model.exportParameters()["item_emb"])
        // BERT4Rec and text+id items train through the same loss (dense item-table update).
        var b = smallConfiguration(.bert4rec, items: .textAndID)
        b.loss = .sampled; b.negatives = 16; b.maxEpochs = 2
        let text = try syntheticTextTable(items: data.numItems)
        let rb = try Trainer.train(dataset: data, textTable: text, configuration: b)
        XCTAssertTrue(rb.report.curve.allSatisfy { $0[1].isFinite })
    }

    func testItemBlockedEvaluationEqualsTheUnblockedRanking() throws {
        // Large catalogues are ranked in item blocks; forced here with blocks of 37 items (a partial last
        // block, a target's own block anywhere) over 300 users (several 64-user chunks and both workers).
        let data = try syntheticDataset(users: 300, items: 200)
        var c = smallConfiguration(.sasrec); c.maxEpochs = 1
        let model = try Trainer.train(dataset: data, configuration: c).model
        let split = DatasetSplit.leaveOneOut(data)
        for maskSeen in [false, true] {
            let plain = RankingEvaluator(network: model.network, batchSize: 128, maskSeen: maskSeen)
            var blocked = plain
            blocked.itemBlock = 37
            let a = plain.ranks(split.test, coverageDepth: 20), b = blocked.ranks(split.test, coverageDepth: 20)
            XCTAssertEqual(a.ranks, b.ranks, "maskSeen \(maskSeen)")
            XCTAssertEqual(a.bestPosition, b.bestPosition, "coverage, maskSeen \(maskSeen)")
            XCTAssertEqual(blocked.blockedRanks(split.test, coverageDepth: 0).ranks, a.ranks)
            XCTAssertGreaterThan(Set(a.ranks).count, 5, "ranks must vary for the comparison to mean something")
        }
    }

    func testAutoResolvesByCatalogueSizeAndIsRecorded() throws {
        var c = ModelConfiguration()
        XCTAssertEqual(c.loss, .auto)
        let t = ModelConfiguration.sampledLossCatalogueThreshold
        XCTAssertEqual(c.resolvedLoss(numItems: t), .ce)
        XCTAssertEqual(c.resolvedLoss(numItems: t + 1), .sampled)
        c.loss = .ce
        XCTAssertEqual(c.resolvedLoss(numItems: 10 * t), .ce)
        let data = try syntheticDataset(users: 100)
        var s = smallConfiguration(); s.maxEpochs = 1
        XCTAssertEqual(try Trainer.train(dataset: data, configuration: s).model.configuration.loss, .ce)
        // A stored configuration without the keys decodes to the defaults.
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: Data(#"{"seed":3}"#.utf8))
        XCTAssertEqual(old.loss, .auto); XCTAssertEqual(old.negatives, 2048)
        s.negatives = 0
        XCTAssertThrowsError(try s.validate())
    }
}
