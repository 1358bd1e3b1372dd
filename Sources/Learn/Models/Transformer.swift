import Foundation

/// The transformer body shared by SASRec and BERT4Rec: learned positions, a stack of pre-LayerNorm
/// transformer blocks and a final LayerNorm, with hand-written forward and backward passes over packed
/// (padding-free) batches. The two models differ only in the attention mask (`causal`) and in their
/// objective, which live in `SASRec.swift` and `BERT4Rec.swift`.
///
///     x  = E[item]·√d + P[pos]        pos = L−n+1 … L for the n real items of a window of length L
///     x  = dropout(x)
///     per block:  x += MHA(LN₁(x));  x += FFN(LN₂(x))     FFN = Linear → dropout → act → Linear → dropout
///     h  = LN_f(x)                                           `[rows, d]`
///
/// BERT4Rec's [MASK] (input id `numItems + 1`) is an extra trainable row `mask_emb`, never scored.
/// Parameter names follow the PyTorch reference (`mask_emb`, `pos_emb`, `blocks.0.attn.qkv.weight`, …, `ln_f.*`).
final class TransformerEncoder: SequenceEncoder {
    let configuration: ModelConfiguration
    let width: Int, maxLength: Int, heads: Int, feedForwardWidth: Int
    let activation: Kernels.Activation
    let causal: Bool
    let maskEmbedding: Parameter?
    let positionEmbedding: Parameter
    let blocks: [Block]
    let finalNormGamma: Parameter, finalNormBeta: Parameter
    /// Serving copies of the block weights, transposed (see SequenceNetwork+Serving.swift); nil while training.
    var servingWeights: [ServingBlockWeights]?

    final class Block {
        let norm1Gamma, norm1Beta, qkvWeight, qkvBias, outWeight, outBias: Parameter
        let norm2Gamma, norm2Beta, ff1Weight, ff1Bias, ff2Weight, ff2Bias: Parameter
        init(_ i: Int, d: Int, f: Int) {
            let p = "blocks.\(i)."
            norm1Gamma = Parameter(p + "ln1.weight", shape: [d]); norm1Beta = Parameter(p + "ln1.bias", shape: [d])
            qkvWeight = Parameter(p + "attn.qkv.weight", shape: [3 * d, d]); qkvBias = Parameter(p + "attn.qkv.bias", shape: [3 * d])
            outWeight = Parameter(p + "attn.out.weight", shape: [d, d]); outBias = Parameter(p + "attn.out.bias", shape: [d])
            norm2Gamma = Parameter(p + "ln2.weight", shape: [d]); norm2Beta = Parameter(p + "ln2.bias", shape: [d])
            ff1Weight = Parameter(p + "ffn.l1.weight", shape: [f, d]); ff1Bias = Parameter(p + "ffn.l1.bias", shape: [f])
            ff2Weight = Parameter(p + "ffn.l2.weight", shape: [d, f]); ff2Bias = Parameter(p + "ffn.l2.bias", shape: [d])
        }
        var parameters: [Parameter] {
            [norm1Gamma, norm1Beta, qkvWeight, qkvBias, outWeight, outBias,
             norm2Gamma, norm2Beta, ff1Weight, ff1Bias, ff2Weight, ff2Bias]
        }
    }

    /// - Parameters:
    ///   - causal: position i attends to j ≤ i only (SASRec); otherwise bidirectionally (BERT4Rec).
    ///   - maskToken: a trainable [MASK] row (BERT4Rec).
    init(configuration c: ModelConfiguration, causal: Bool, maskToken: Bool) {
        configuration = c
        width = c.hiddenSize; maxLength = c.maxLength; heads = c.resolvedHeads
        feedForwardWidth = c.hiddenSize * c.resolvedFeedForwardMultiplier
        activation = c.resolvedActivation
        self.causal = causal
        let d = width
        maskEmbedding = maskToken ? Parameter("mask_emb", shape: [1, d]) : nil
        positionEmbedding = Parameter("pos_emb", shape: [c.maxLength + 1, d])
        blocks = (0..<c.blocks).map { Block($0, d: d, f: c.hiddenSize * c.resolvedFeedForwardMultiplier) }
        finalNormGamma = Parameter("ln_f.weight", shape: [d]); finalNormBeta = Parameter("ln_f.bias", shape: [d])
    }

    var parameters: [Parameter] {
        var ps: [Parameter] = []
        if let m = maskEmbedding { ps.append(m) }
        ps.append(positionEmbedding)
        for b in blocks { ps += b.parameters }
        ps += [finalNormGamma, finalNormBeta]
        return ps
    }

    /// LayerNorm γ 1, β 0; [MASK] N(0, 0.02); position row 0 = 0; the rest as `Initialiser`.
    func initialise(_ rng: inout Xoshiro256) {
        func ones(_ p: Parameter) { p.value.p.update(repeating: 1, count: p.count) }
        if let m = maskEmbedding { for i in 0..<m.count { m.value.p[i] = rng.nextNormal() * 0.02 } }
        Initialiser.xavierNormal(positionEmbedding, &rng); positionEmbedding.value.p.update(repeating: 0, count: width)
        for b in blocks {
            ones(b.norm1Gamma); ones(b.norm2Gamma)
            Initialiser.xavierNormal(b.qkvWeight, &rng); Initialiser.uniformBias(b.qkvBias, fanIn: width, &rng)
            Initialiser.xavierNormal(b.outWeight, &rng); Initialiser.uniformBias(b.outBias, fanIn: width, &rng)
            Initialiser.xavierNormal(b.ff1Weight, &rng); Initialiser.uniformBias(b.ff1Bias, fanIn: width, &rng)
            Initialiser.xavierNormal(b.ff2Weight, &rng); Initialiser.uniformBias(b.ff2Bias, fanIn: feedForwardWidth, &rng)
        }
        ones(finalNormGamma)
    }

    var layers: Int { blocks.count }
    /// Output of block `layer` (1-based; 0 = the embedding output), before the final LayerNorm.
    func layerOutput(_ layer: Int, in ws: SequenceNetwork.Workspace) -> UnsafePointer<Float> { UnsafePointer(state(ws).xs[layer].p) }
    var outputNorm: (gamma: Parameter, beta: Parameter)? { (finalNormGamma, finalNormBeta) }

    var isFrozenForServing: Bool { servingWeights != nil }
    func freezeForServing() { servingWeights = blocks.map(ServingBlockWeights.init) }
    func thaw() { servingWeights = nil }

    func makeState() -> AnyObject { State(blocks: blocks.count) }
    @inline(__always) private func state(_ ws: SequenceNetwork.Workspace) -> State { unsafeDowncast(ws.state, to: State.self) }

    /// Activations and scratch of one workspace (`SequenceNetwork.Workspace.state`).
    final class State {
        let embeddingMask = Buffer(1)
        /// xs[0] = embedding output, xs[l+1] = output of block l.
        var xs: [Buffer] = []
        final class BlockState {
            let a = Buffer(1), mean1 = Buffer(1), rstd1 = Buffer(1), qkv = Buffer(1)
            let probs = Buffer(1), dropped = Buffer(1), attentionMask = Buffer(1), y = Buffer(1), x1 = Buffer(1)
            let c = Buffer(1), mean2 = Buffer(1), rstd2 = Buffer(1), f1 = Buffer(1), mask1 = Buffer(1)
            let u = Buffer(1), g = Buffer(1), f2 = Buffer(1), mask2 = Buffer(1)
        }
        var states: [BlockState] = []
        let meanF = Buffer(1), rstdF = Buffer(1)
        // backward scratch
        let gradX = Buffer(1), gradTmp = Buffer(1), gradQKV = Buffer(1), gradF = Buffer(1)
        let normScratch = Buffer(1)

        init(blocks: Int) {
            xs = (0...blocks).map { _ in Buffer(1) }
            states = (0..<blocks).map { _ in BlockState() }
        }

        func reserve(_ ws: SequenceNetwork.Workspace, rows: Int, attention: Int, d: Int, f: Int, training: Bool) {
            embeddingMask.reserve(rows * d)
            for x in xs { x.reserve(rows * d) }
            for s in states {
                s.a.reserve(rows * d); s.mean1.reserve(rows); s.rstd1.reserve(rows); s.qkv.reserve(rows * 3 * d)
                s.probs.reserve(attention); s.dropped.reserve(attention); s.y.reserve(rows * d); s.x1.reserve(rows * d)
                s.c.reserve(rows * d); s.mean2.reserve(rows); s.rstd2.reserve(rows); s.f1.reserve(rows * f)
                s.g.reserve(rows * f); s.f2.reserve(rows * d)
                if training {
                    s.attentionMask.reserve(attention); s.mask1.reserve(rows * f); s.u.reserve(rows * f)
                    s.mask2.reserve(rows * d)
                }
            }
            ws.hidden.reserve(rows * d); meanF.reserve(rows); rstdF.reserve(rows)
            if training {
                ws.gradHidden.reserve(rows * d); gradX.reserve(rows * d); gradTmp.reserve(rows * d)
                gradQKV.reserve(rows * 3 * d); gradF.reserve(rows * f)
            }
        }
    }

    // MARK: - Forward / backward

    func forward(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork, training: Bool, lastRowsOnly: Bool,
                 rng: inout Xoshiro256) {
        let st = state(ws)
        let d = width, f = feedForwardWidth, rows = ws.layout.rows
        let p = configuration.dropout
        let dropout = training && p > 0
        // A programmer error: computing the last rows only is an inference shortcut.
        precondition(!(training && lastRowsOnly))
        st.reserve(ws, rows: max(rows, ws.layout.count), attention: max(ws.layout.attentionSize, rows),
                   d: d, f: f, training: training)
        // Embedding: E[item]·√d + P[pos]
        let table = network.itemTable, pos = positionEmbedding.value.p
        let maskRow = maskEmbedding?.value.p
        let scale = Float(d).squareRoot()
        let x0 = st.xs[0].p
        let maskID = network.maskItem
        ws.items.withUnsafeBufferPointer { items in
        ws.positions.withUnsafeBufferPointer { positions in
            Parallel.forEachSlice(rows, minimumPerPart: 256) { _, r in
                for i in r {
                    let item = items[i]
                    let src = (item == maskID && maskRow != nil) ? maskRow! : table + Int(item) * d
                    let pr = pos + Int(positions[i]) * d, xr = x0 + i * d
                    for j in 0..<d { xr[j] = src[j] * scale + pr[j] }
                }
            }
        }
        }
        if dropout {
            DropoutMask.fill(st.embeddingMask.p, count: rows * d, p: p, key: rng.next())
            Kernels.multiply(x0, st.embeddingMask.p, count: rows * d, into: x0)
        }
        let eps = configuration.layerNormEpsilon
        let serving = lastRowsOnly ? servingWeights : nil
        for (l, b) in blocks.enumerated() {
            if lastRowsOnly && l == blocks.count - 1 { lastBlockForLastRows(ws, st); return }
            let s = st.states[l], xin = st.xs[l].p, xout = st.xs[l + 1].p
            let w = serving?[l]
            normalise(xin, rows: rows, gamma: b.norm1Gamma, beta: b.norm1Beta, serving: w != nil, into: s.a.p, mean: s.mean1.p, rstd: s.rstd1.p)
            linear(.qkv, of: b, serving: w, s.a.p, rows: rows, into: s.qkv.p)
            if dropout { DropoutMask.fill(s.attentionMask.p, count: ws.layout.attentionSize, p: p, key: rng.next()) }
            Attention.forward(qkv: s.qkv.p, layout: ws.layout, width: d, heads: heads, causal: causal,
                              dropMask: dropout ? s.attentionMask.p : nil, probs: s.probs.p, dropped: s.dropped.p,
                              into: s.y.p)
            linear(.out, of: b, serving: w, s.y.p, rows: rows, into: s.x1.p)
            Kernels.add(xin, count: rows * d, into: s.x1.p)
            normalise(s.x1.p, rows: rows, gamma: b.norm2Gamma, beta: b.norm2Beta, serving: w != nil, into: s.c.p, mean: s.mean2.p, rstd: s.rstd2.p)
            linear(.feedForward1, of: b, serving: w, s.c.p, rows: rows, into: s.f1.p)
            let u: UnsafeMutablePointer<Float>
            if dropout {
                DropoutMask.fill(s.mask1.p, count: rows * f, p: p, key: rng.next())
                Kernels.multiply(s.f1.p, s.mask1.p, count: rows * f, into: s.u.p)
                u = s.u.p
            } else {
                u = s.f1.p
            }
            activate(u, count: rows * f, serving: w != nil, into: s.g.p)
            linear(.feedForward2, of: b, serving: w, s.g.p, rows: rows, into: s.f2.p)
            xout.update(from: s.x1.p, count: rows * d)
            if dropout {
                DropoutMask.fill(s.mask2.p, count: rows * d, p: p, key: rng.next())
                Kernels.addProduct(s.f2.p, s.mask2.p, count: rows * d, into: xout)
            } else {
                Kernels.add(s.f2.p, count: rows * d, into: xout)
            }
        }
        Kernels.layerNormForward(st.xs[blocks.count].p, rows: rows, width: d, gamma: finalNormGamma.value.p,
                                 beta: finalNormBeta.value.p, eps: eps, into: ws.hidden.p, mean: st.meanF.p, rstd: st.rstdF.p)
    }

    /// The last block and the final LayerNorm, for the last row of every sequence only (inference).
    private func lastBlockForLastRows(_ ws: SequenceNetwork.Workspace, _ st: State) {
        let d = width, f = feedForwardWidth, rows = ws.layout.rows, count = ws.layout.count
        let l = blocks.count - 1, b = blocks[l], s = st.states[l], xin = st.xs[l].p
        let serving = servingWeights?[l]
        // Keys and values need every row.
        normalise(xin, rows: rows, gamma: b.norm1Gamma, beta: b.norm1Beta, serving: serving != nil, into: s.a.p, mean: s.mean1.p, rstd: s.rstd1.p)
        if let serving {
            // Keys and values for every row, the query for the last rows only (all attention reads).
            Kernels.linearForward(s.a.p, rows: rows, inFeatures: d, outFeatures: 2 * d, transposedWeight: serving.qkv.p + d,
                                  weightStride: 3 * d, bias: b.qkvBias.value.p + d, into: s.qkv.p + d, outputStride: 3 * d)
            for k in 0..<count where ws.layout.rowStart[k + 1] > ws.layout.rowStart[k] {
                let last = ws.layout.rowStart[k + 1] - 1
                Kernels.linearForward(s.a.p + last * d, rows: 1, inFeatures: d, outFeatures: d, transposedWeight: serving.qkv.p,
                                      weightStride: 3 * d, bias: b.qkvBias.value.p, into: s.qkv.p + last * 3 * d, outputStride: 3 * d)
            }
        } else {
            linear(.qkv, of: b, serving: nil, s.a.p, rows: rows, into: s.qkv.p)
        }
        // From here on, row k = the last row of sequence k: x_last gathered into `c`, attention into `y`.
        let xLast = s.c.p
        Attention.forwardLastQuery(qkv: s.qkv.p, layout: ws.layout, width: d, heads: heads, scratch: s.probs.p, into: s.y.p)
        for k in 0..<count {
            let r0 = ws.layout.rowStart[k], r1 = ws.layout.rowStart[k + 1]
            if r1 > r0 { (xLast + k * d).update(from: xin + (r1 - 1) * d, count: d) }
            else { (xLast + k * d).update(repeating: 0, count: d) }
        }
        linear(.out, of: b, serving: serving, s.y.p, rows: count, into: s.x1.p)
        Kernels.add(xLast, count: count * d, into: s.x1.p)
        normalise(s.x1.p, rows: count, gamma: b.norm2Gamma, beta: b.norm2Beta, serving: serving != nil, into: s.c.p, mean: s.mean2.p, rstd: s.rstd2.p)
        linear(.feedForward1, of: b, serving: serving, s.c.p, rows: count, into: s.f1.p)
        activate(s.f1.p, count: count * f, serving: serving != nil, into: s.g.p)
        linear(.feedForward2, of: b, serving: serving, s.g.p, rows: count, into: s.f2.p)
        let xout = st.xs[l + 1].p
        xout.update(from: s.x1.p, count: count * d)
        Kernels.add(s.f2.p, count: count * d, into: xout)
        normalise(xout, rows: count, gamma: finalNormGamma, beta: finalNormBeta, serving: serving != nil, into: ws.hidden.p,
                  mean: st.meanF.p, rstd: st.rstdF.p)
    }

    /// The four linear layers of a block.
    private enum BlockLinear { case qkv, out, feedForward1, feedForward2 }

    /// y = x·Wᵀ + b for one of `block`'s layers, from the serving copy (transposed) when there is one.
    private func linear(_ layer: BlockLinear, of block: Block, serving: ServingBlockWeights?, _ x: UnsafePointer<Float>,
                        rows: Int, into y: UnsafeMutablePointer<Float>) {
        let (weight, bias, transposed): (Parameter, Parameter, Buffer?)
        switch layer {
        case .qkv: (weight, bias, transposed) = (block.qkvWeight, block.qkvBias, serving?.qkv)
        case .out: (weight, bias, transposed) = (block.outWeight, block.outBias, serving?.out)
        case .feedForward1: (weight, bias, transposed) = (block.ff1Weight, block.ff1Bias, serving?.ff1)
        case .feedForward2: (weight, bias, transposed) = (block.ff2Weight, block.ff2Bias, serving?.ff2)
        }
        let outFeatures = weight.shape[0], inFeatures = weight.shape[1]
        if let transposed {
            Kernels.linearForward(x, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, transposedWeight: transposed.p,
                                  bias: bias.value.p, into: y)
        } else {
            Kernels.linearForward(x, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, weight: weight.value.p,
                                  bias: bias.value.p, into: y)
        }
    }

    /// LayerNorm over rows of width `width`; serving skips the saved statistics and sums over eight lanes.
    private func normalise(_ x: UnsafePointer<Float>, rows: Int, gamma: Parameter, beta: Parameter, serving: Bool,
                           into y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
        let eps = configuration.layerNormEpsilon
        if serving {
            Kernels.layerNormForwardServing(x, rows: rows, width: width, gamma: gamma.value.p, beta: beta.value.p, eps: eps, into: y)
        } else {
            Kernels.layerNormForward(x, rows: rows, width: width, gamma: gamma.value.p, beta: beta.value.p, eps: eps,
                                     into: y, mean: mean, rstd: rstd)
        }
    }

    private func activate(_ x: UnsafePointer<Float>, count: Int, serving: Bool, into y: UnsafeMutablePointer<Float>) {
        if serving { Kernels.activationForwardServing(activation, x, count: count, into: y) }
        else { Kernels.activationForward(activation, x, count: count, into: y) }
    }

    /// Back-propagates `ws.gradHidden` (`[rows, d]`, dLoss/dHidden) through the last training forward
    /// pass, accumulating every parameter gradient and `itemTableGrad`.
    func backward(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork,
                  layerOutputGrad blockOutputGrad: ((Int, UnsafeMutablePointer<Float>) -> Void)?) {
        let st = state(ws)
        let d = width, f = feedForwardWidth, rows = ws.layout.rows
        let dropout = configuration.dropout > 0
        let gx = st.gradX.p, tmp = st.gradTmp.p
        Kernels.layerNormBackward(ws.gradHidden.p, x: st.xs[blocks.count].p, rows: rows, width: d,
                                  gamma: finalNormGamma.value.p, mean: st.meanF.p, rstd: st.rstdF.p,
                                  gammaGrad: finalNormGamma.grad.p, betaGrad: finalNormBeta.grad.p, dx: gx,
                                  accumulate: false, scratch: st.normScratch)
        for l in stride(from: blocks.count - 1, through: 0, by: -1) {
            blockOutputGrad?(l, gx)
            let b = blocks[l], s = st.states[l], xin = st.xs[l].p
            // x_out = x1 + FFN(LN₂(x1))
            let df2: UnsafePointer<Float>
            if dropout { Kernels.multiply(gx, s.mask2.p, count: rows * d, into: tmp); df2 = UnsafePointer(tmp) }
            else { df2 = UnsafePointer(gx) }
            Kernels.linearBackward(df2, x: s.g.p, rows: rows, inFeatures: f, outFeatures: d, weight: b.ff2Weight.value.p,
                                   weightGrad: b.ff2Weight.grad.p, biasGrad: b.ff2Bias.grad.p, dx: st.gradF.p)
            let u = dropout ? s.u.p : s.f1.p
            Kernels.activationBackward(activation, st.gradF.p, x: u, count: rows * f,
                                       dropoutMask: dropout ? UnsafePointer(s.mask1.p) : nil, into: st.gradF.p)
            Kernels.linearBackward(st.gradF.p, x: s.c.p, rows: rows, inFeatures: d, outFeatures: f,
                                   weight: b.ff1Weight.value.p, weightGrad: b.ff1Weight.grad.p,
                                   biasGrad: b.ff1Bias.grad.p, dx: tmp)
            Kernels.layerNormBackward(tmp, x: s.x1.p, rows: rows, width: d, gamma: b.norm2Gamma.value.p,
                                      mean: s.mean2.p, rstd: s.rstd2.p, gammaGrad: b.norm2Gamma.grad.p,
                                      betaGrad: b.norm2Beta.grad.p, dx: gx, accumulate: true, scratch: st.normScratch)
            // x1 = x_in + Linear(MHA(LN₁(x_in)))
            Kernels.linearBackward(gx, x: s.y.p, rows: rows, inFeatures: d, outFeatures: d, weight: b.outWeight.value.p,
                                   weightGrad: b.outWeight.grad.p, biasGrad: b.outBias.grad.p, dx: tmp)
            Attention.backward(dy: tmp, qkv: s.qkv.p, layout: ws.layout, width: d, heads: heads,
                               dropMask: dropout ? s.attentionMask.p : nil, probs: s.probs.p, dropped: s.dropped.p,
                               dqkv: st.gradQKV.p)
            Kernels.linearBackward(st.gradQKV.p, x: s.a.p, rows: rows, inFeatures: d, outFeatures: 3 * d,
                                   weight: b.qkvWeight.value.p, weightGrad: b.qkvWeight.grad.p,
                                   biasGrad: b.qkvBias.grad.p, dx: tmp)
            Kernels.layerNormBackward(tmp, x: xin, rows: rows, width: d, gamma: b.norm1Gamma.value.p,
                                      mean: s.mean1.p, rstd: s.rstd1.p, gammaGrad: b.norm1Gamma.grad.p,
                                      betaGrad: b.norm1Beta.grad.p, dx: gx, accumulate: true, scratch: st.normScratch)
        }
        // Embedding: scatter into the item table, [MASK] row and positions (serial: rows collide).
        if dropout { Kernels.multiply(gx, st.embeddingMask.p, count: rows * d, into: gx) }
        let scale = Float(d).squareRoot()
        let tableGrad = network.itemTableGrad, posGrad = positionEmbedding.grad.p
        let maskGrad = maskEmbedding?.grad.p
        let maskID = network.maskItem
        // Rows collide on items and positions, so each destination row (an item's, [MASK]'s, a position's)
        // belongs to one thread, which adds its terms in row order: the serial sums, bit for bit, in parallel.
        ws.items.withUnsafeBufferPointer { items in
        ws.positions.withUnsafeBufferPointer { positions in
            Parallel.byOwner(work: rows, minimumPerOwner: 1024) { owns in
                for i in 0..<rows {
                    let item = items[i], position = Int(positions[i]), gr = gx + i * d
                    let isMask = item == maskID && maskGrad != nil
                    if owns(isMask ? 0 : Int(item)) {
                        let dst = isMask ? maskGrad! : tableGrad + Int(item) * d
                        for j in 0..<d { dst[j] += gr[j] * scale }
                    }
                    if owns(position) {
                        let pg = posGrad + position * d
                        for j in 0..<d { pg[j] += gr[j] }
                    }
                }
            }
        }
        }
    }

    // MARK: - Cost

    /// Matrix FLOPs of a training epoch: output layer over `scored` positions, the blocks over `rows`,
    /// attention over `attention` (Σ n²) query-key pairs; forward and both backward products.
    static func flopsPerEpoch(rows: Double, scored: Double, attention: Double, configuration c: ModelConfiguration,
                              numItems: Int) -> Double {
        let d = Double(c.hiddenSize), f = d * Double(c.resolvedFeedForwardMultiplier), n = Double(numItems)
        let blocks = Double(c.blocks)
        var flops = 6 * scored * n * d
        flops += blocks * rows * 3 * (8 * d * d + 4 * d * f)
        flops += blocks * attention * 12 * d
        return flops
    }
}
