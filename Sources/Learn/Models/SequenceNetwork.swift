import Foundation

/// The network shared by SASRec and BERT4Rec: item representation, learned positions, a stack of
/// pre-LayerNorm transformer blocks and a final LayerNorm, with hand-written forward and backward
/// passes over packed (padding-free) batches. The two models differ only in the attention mask
/// (`causal`) and in their objective, which live in `SASRec.swift` and `BERT4Rec.swift`.
///
///     x  = E[item]·√d + P[pos]        pos = L−n+1 … L for the n real items of a window of length L
///     x  = dropout(x)
///     per block:  x += MHA(LN₁(x));  x += FFN(LN₂(x))     FFN = Linear → dropout → act → Linear → dropout
///     h  = LN_f(x);   score(item) = h · E[item]           (output tied to the item table)
///
/// Item table E (`(numItems+1) × d`, row 0 = 0): `id` a trainable table; `text` = Linear(text) with
/// row 0 forced to 0; `text+id` = both summed. BERT4Rec's [MASK] is an extra trainable row, never scored.
/// Parameter names follow the PyTorch reference (`item_emb`, `adapter.weight`, `blocks.0.attn.qkv.weight`, …).
///
/// Thread safety: `forward(…, training: false)` only reads parameters and writes its own workspace, so
/// several threads may run inference at once with separate workspaces. Training mutates everything.
final class SequenceNetwork {
    let configuration: ModelConfiguration
    private(set) var numItems: Int
    let width: Int, maxLength: Int, heads: Int, feedForwardWidth: Int
    let activation: Kernels.Activation
    let causal: Bool
    private(set) var text: TextTable?

    private(set) var itemEmbedding: Parameter?
    private(set) var adapterWeight: Parameter?
    private(set) var adapterBias: Parameter?
    private(set) var maskEmbedding: Parameter?
    let positionEmbedding: Parameter
    let blocks: [Block]
    let finalNormGamma: Parameter, finalNormBeta: Parameter
    private(set) var profileWeight: Parameter?
    private(set) var profileBias: Parameter?

    /// Serving copies of the block weights, transposed (see SequenceNetwork+Serving.swift); nil while training.
    var servingWeights: [ServingBlockWeights]?

    /// Text modes: the current item table and its gradient (id mode uses `itemEmbedding` directly).
    private let tableBuffer = Buffer(1)
    private let tableGradBuffer = Buffer(1)

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

    /// All trainable parameters in a fixed order.
    private(set) var parameters: [Parameter] = []

    /// The [MASK] input id (BERT4Rec): `numItems + 1`.
    var maskItem: Int32 { Int32(numItems + 1) }

    /// Creates a freshly initialised network (Xavier-normal weights as the reference; biases
    /// U(±1/√fan_in) as `nn.Linear`; LayerNorm γ 1, β 0; [MASK] N(0, 0.02); padding rows 0).
    init(configuration c: ModelConfiguration, numItems: Int, text: TextTable?, profileDimension: Int? = nil) throws {
        try c.validate()
        if c.items.usesText {
            guard let text else { throw LearnError.missingTextTable }
            guard text.numItems >= numItems else {
                throw LearnError.shapeMismatch("text table has \(text.numItems) items, the data \(numItems)")
            }
        }
        configuration = c
        self.numItems = numItems
        width = c.hiddenSize; maxLength = c.maxLength; heads = c.resolvedHeads
        feedForwardWidth = c.hiddenSize * c.resolvedFeedForwardMultiplier
        activation = c.resolvedActivation
        causal = c.architecture == .sasrec
        self.text = c.items.usesText ? text : nil
        let d = width
        if c.items.usesID { itemEmbedding = Parameter("item_emb", shape: [numItems + 1, d]) }
        if c.items.usesText, let text {
            adapterWeight = Parameter("adapter.weight", shape: [d, text.dimension])
            adapterBias = Parameter("adapter.bias", shape: [d])
        }
        if c.architecture == .bert4rec { maskEmbedding = Parameter("mask_emb", shape: [1, d]) }
        positionEmbedding = Parameter("pos_emb", shape: [c.maxLength + 1, d])
        blocks = (0..<c.blocks).map { Block($0, d: d, f: c.hiddenSize * c.resolvedFeedForwardMultiplier) }
        finalNormGamma = Parameter("ln_f.weight", shape: [d]); finalNormBeta = Parameter("ln_f.bias", shape: [d])
        if let profileDimension {
            profileWeight = Parameter("profile_proj.weight", shape: [d, profileDimension])
            profileBias = Parameter("profile_proj.bias", shape: [d])
        }
        collectParameters()
        initialise(seed: c.seed)
        refreshItemTable()
    }

    private func collectParameters() {
        var ps: [Parameter] = []
        if let p = itemEmbedding { ps.append(p) }
        if let w = adapterWeight, let b = adapterBias { ps += [w, b] }
        if let m = maskEmbedding { ps.append(m) }
        ps.append(positionEmbedding)
        for b in blocks { ps += b.parameters }
        ps += [finalNormGamma, finalNormBeta]
        if let w = profileWeight, let b = profileBias { ps += [w, b] }
        parameters = ps
    }

    private func initialise(seed: UInt64) {
        var rng = Xoshiro256(seed: seed)
        func xavier(_ p: Parameter) {
            let std = (2.0 / Float(p.shape[0] + p.shape[1])).squareRoot()
            for i in 0..<p.count { p.value.p[i] = rng.nextNormal() * std }
        }
        func uniformBias(_ p: Parameter, fanIn: Int) {
            let bound = 1 / Float(fanIn).squareRoot()
            for i in 0..<p.count { p.value.p[i] = (rng.nextUniform() * 2 - 1) * bound }
        }
        func ones(_ p: Parameter) { p.value.p.update(repeating: 1, count: p.count) }
        if let e = itemEmbedding { xavier(e); e.value.p.update(repeating: 0, count: width) }
        if let w = adapterWeight, let b = adapterBias { xavier(w); uniformBias(b, fanIn: w.shape[1]) }
        if let m = maskEmbedding { for i in 0..<m.count { m.value.p[i] = rng.nextNormal() * 0.02 } }
        xavier(positionEmbedding); positionEmbedding.value.p.update(repeating: 0, count: width)
        for b in blocks {
            ones(b.norm1Gamma); ones(b.norm2Gamma)
            xavier(b.qkvWeight); uniformBias(b.qkvBias, fanIn: width)
            xavier(b.outWeight); uniformBias(b.outBias, fanIn: width)
            xavier(b.ff1Weight); uniformBias(b.ff1Bias, fanIn: width)
            xavier(b.ff2Weight); uniformBias(b.ff2Bias, fanIn: feedForwardWidth)
        }
        ones(finalNormGamma)
        if let w = profileWeight, let b = profileBias { xavier(w); uniformBias(b, fanIn: w.shape[1]) }
    }

    // MARK: - Item table

    /// `(numItems + 1) × d` item table for the current weights (row 0 = 0).
    var itemTable: UnsafeMutablePointer<Float> {
        configuration.items == .id ? itemEmbedding!.value.p : tableBuffer.p
    }
    /// Gradient of the loss with respect to `itemTable`.
    var itemTableGrad: UnsafeMutablePointer<Float> {
        configuration.items == .id ? itemEmbedding!.grad.p : tableGradBuffer.p
    }

    /// Recomputes the item table from the adapter (text modes; a no-op for `id`). Call after every
    /// parameter update and before reading `itemTable`.
    func refreshItemTable() {
        guard configuration.items.usesText, let text, let w = adapterWeight, let b = adapterBias else { return }
        let d = width, n = numItems
        tableBuffer.reserve((n + 1) * d)
        tableGradBuffer.reserve((n + 1) * d)
        text.values.withUnsafeBufferPointer { t in
            Kernels.linearForward(t.baseAddress! + text.dimension, rows: n, inFeatures: text.dimension, outFeatures: d,
                                  weight: w.value.p, bias: b.value.p, into: tableBuffer.p + d)
        }
        tableBuffer.p.update(repeating: 0, count: d)
        if let e = itemEmbedding { Kernels.add(e.value.p, count: (n + 1) * d, into: tableBuffer.p) }
    }

    /// Back-propagates `itemTableGrad` into the adapter (and, for text+id, the id table).
    func backpropagateItemTable() {
        guard configuration.items.usesText, let text, let w = adapterWeight, let b = adapterBias else { return }
        let d = width, n = numItems
        text.values.withUnsafeBufferPointer { t in
            Kernels.linearBackward(tableGradBuffer.p + d, x: t.baseAddress! + text.dimension, rows: n,
                                   inFeatures: text.dimension, outFeatures: d, weight: w.value.p,
                                   weightGrad: w.grad.p, biasGrad: b.grad.p, dx: nil)
        }
        if let e = itemEmbedding {
            Kernels.add(tableGradBuffer.p + d, count: n * d, into: e.grad.p + d)
        }
    }

    /// Model-space vector of an item from its text embedding alone: `adapter(text)` (cold start).
    func adapt(text vector: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        guard let w = adapterWeight, let b = adapterBias else { return }
        out.update(from: b.value.p, count: width)
        BLAS.gemv(m: width, n: w.shape[1], a: w.value.p, lda: w.shape[1], x: vector, beta: 1, y: out)
    }

    /// - Parameter keepingItemEmbedding: leave the id table's gradient alone (a sampled loss writes
    ///   only a few of its rows, and the optimiser zeroes exactly those after its row-sparse update).
    func zeroGradients(keepingItemEmbedding: Bool = false) {
        servingWeights = nil  // a training step follows: the serving copies would go stale
        for p in parameters where !(keepingItemEmbedding && p === itemEmbedding) { p.grad.zero(p.count) }
        if configuration.items.usesText { tableGradBuffer.zero((numItems + 1) * width) }
    }

    // MARK: - Catalogue growth (warm start)

    /// Grows the catalogue to `newCount` items. New id rows are drawn like the initial table (Xavier
    /// normal with the original fan), text modes read their new rows from `text`.
    func growCatalogue(to newCount: Int, text newText: TextTable?, seed: UInt64) throws {
        servingWeights = nil
        // Unreachable from input: resume grows to the snapshot's catalogue, and item ids are never reused.
        precondition(newCount >= numItems)
        if configuration.items.usesText {
            guard let newText else { throw LearnError.missingTextTable }
            guard newText.numItems >= newCount, newText.dimension == text!.dimension else {
                throw LearnError.shapeMismatch("text table has \(newText.numItems) items × \(newText.dimension), need \(newCount) × \(text!.dimension)")
            }
            text = newText
        }
        if let e = itemEmbedding {
            var rng = Xoshiro256(seed: seed ^ 0x5EED_0F_1735)
            let std = (2.0 / Float(e.shape[0] + e.shape[1])).squareRoot()
            e.growRows(to: newCount + 1) { _, row in for j in 0..<width { row[j] = rng.nextNormal() * std } }
        }
        numItems = newCount
        collectParameters()
        refreshItemTable()
    }

    // MARK: - Forward / backward

    /// Everything one forward pass produces and its backward pass needs, for one packed batch.
    /// Buffers grow to the largest batch seen and are reused; no allocation in steady state.
    final class Workspace {
        var layout = PackedLayout()
        /// Input item id per packed row (may be the [MASK] id) and its position index 1...maxLength.
        var items: [Int32] = []
        var positions: [Int32] = []

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
        let hidden = Buffer(1), meanF = Buffer(1), rstdF = Buffer(1)
        // backward scratch
        let gradHidden = Buffer(1), gradX = Buffer(1), gradTmp = Buffer(1), gradQKV = Buffer(1), gradF = Buffer(1)
        let normScratch = Buffer(1)

        init(blocks: Int) {
            xs = (0...blocks).map { _ in Buffer(1) }
            states = (0..<blocks).map { _ in BlockState() }
        }

        /// Starts a new batch (clears the row lists, keeps capacity).
        func reset() { layout.reset(); items.removeAll(keepingCapacity: true); positions.removeAll(keepingCapacity: true) }

        /// Appends one window (its real items only, at most maxLength, oldest first).
        func append<C: Collection>(window: C, maxLength: Int, heads: Int) where C.Element == Int32 {
            let n = window.count
            // Unreachable from input: the objectives and `appendEvaluationWindow` cut windows to maxLength.
            precondition(n <= maxLength)
            layout.append(length: n, heads: heads)
            items.append(contentsOf: window)
            for i in 0..<n { positions.append(Int32(maxLength - n + 1 + i)) }
        }

        func reserve(rows: Int, attention: Int, d: Int, f: Int, training: Bool) {
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
            hidden.reserve(rows * d); meanF.reserve(rows); rstdF.reserve(rows)
            if training {
                gradHidden.reserve(rows * d); gradX.reserve(rows * d); gradTmp.reserve(rows * d)
                gradQKV.reserve(rows * 3 * d); gradF.reserve(rows * f)
            }
        }
    }

    func makeWorkspace() -> Workspace { Workspace(blocks: blocks.count) }

    /// Runs the network over `ws`'s packed batch; final hidden states land in `ws.hidden` `[rows, d]`.
    /// With `training`, dropout masks are drawn from `rng` (one key per dropout site) and every
    /// activation needed by `backward` is kept.
    func forward(_ ws: Workspace, training: Bool, rng: inout Xoshiro256) {
        forward(ws, training: training, lastRowsOnly: false, rng: &rng)
    }

    /// Inference returning one hidden state per sequence: `ws.hidden` row k = final hidden state of the
    /// LAST row of sequence k (`[count, d]`; rows of empty sequences are meaningless). The last block
    /// only computes keys and values for all rows and everything else for the last row, which is what
    /// serving and evaluation need.
    func forwardLastRows(_ ws: Workspace) {
        var rng = Xoshiro256(seed: 0)  // unused without dropout
        forward(ws, training: false, lastRowsOnly: true, rng: &rng)
    }

    private func forward(_ ws: Workspace, training: Bool, lastRowsOnly: Bool, rng: inout Xoshiro256) {
        let d = width, f = feedForwardWidth, rows = ws.layout.rows
        let p = configuration.dropout
        let dropout = training && p > 0
        // A programmer error: computing the last rows only is an inference shortcut.
        precondition(!(training && lastRowsOnly))
        ws.reserve(rows: max(rows, ws.layout.count), attention: max(ws.layout.attentionSize, rows),
                   d: d, f: f, training: training)
        // Embedding: E[item]·√d + P[pos]
        let table = itemTable, pos = positionEmbedding.value.p
        let maskRow = maskEmbedding?.value.p
        let scale = Float(d).squareRoot()
        let x0 = ws.xs[0].p
        let maskID = maskItem
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
            DropoutMask.fill(ws.embeddingMask.p, count: rows * d, p: p, key: rng.next())
            Kernels.multiply(x0, ws.embeddingMask.p, count: rows * d, into: x0)
        }
        let eps = configuration.layerNormEpsilon
        let serving = lastRowsOnly ? servingWeights : nil
        for (l, b) in blocks.enumerated() {
            if lastRowsOnly && l == blocks.count - 1 { lastBlockForLastRows(ws); return }
            let s = ws.states[l], xin = ws.xs[l].p, xout = ws.xs[l + 1].p
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
        Kernels.layerNormForward(ws.xs[blocks.count].p, rows: rows, width: d, gamma: finalNormGamma.value.p,
                                 beta: finalNormBeta.value.p, eps: eps, into: ws.hidden.p, mean: ws.meanF.p, rstd: ws.rstdF.p)
    }

    /// The last block and the final LayerNorm, for the last row of every sequence only (inference).
    private func lastBlockForLastRows(_ ws: Workspace) {
        let d = width, f = feedForwardWidth, rows = ws.layout.rows, count = ws.layout.count
        let l = blocks.count - 1, b = blocks[l], s = ws.states[l], xin = ws.xs[l].p
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
        let xout = ws.xs[l + 1].p
        xout.update(from: s.x1.p, count: count * d)
        Kernels.add(s.f2.p, count: count * d, into: xout)
        normalise(xout, rows: count, gamma: finalNormGamma, beta: finalNormBeta, serving: serving != nil, into: ws.hidden.p,
                  mean: ws.meanF.p, rstd: ws.rstdF.p)
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
    /// - Parameter blockOutputGrad: optional hook called with (l, dLoss/d(output of block l)) before block
    ///   l is back-propagated, to add extra loss terms on intermediate states (profile distillation).
    func backward(_ ws: Workspace, blockOutputGrad: ((Int, UnsafeMutablePointer<Float>) -> Void)? = nil) {
        let d = width, f = feedForwardWidth, rows = ws.layout.rows
        let dropout = configuration.dropout > 0
        let gx = ws.gradX.p, tmp = ws.gradTmp.p
        Kernels.layerNormBackward(ws.gradHidden.p, x: ws.xs[blocks.count].p, rows: rows, width: d,
                                  gamma: finalNormGamma.value.p, mean: ws.meanF.p, rstd: ws.rstdF.p,
                                  gammaGrad: finalNormGamma.grad.p, betaGrad: finalNormBeta.grad.p, dx: gx,
                                  accumulate: false, scratch: ws.normScratch)
        for l in stride(from: blocks.count - 1, through: 0, by: -1) {
            blockOutputGrad?(l, gx)
            let b = blocks[l], s = ws.states[l], xin = ws.xs[l].p
            // x_out = x1 + FFN(LN₂(x1))
            let df2: UnsafePointer<Float>
            if dropout { Kernels.multiply(gx, s.mask2.p, count: rows * d, into: tmp); df2 = UnsafePointer(tmp) }
            else { df2 = UnsafePointer(gx) }
            Kernels.linearBackward(df2, x: s.g.p, rows: rows, inFeatures: f, outFeatures: d, weight: b.ff2Weight.value.p,
                                   weightGrad: b.ff2Weight.grad.p, biasGrad: b.ff2Bias.grad.p, dx: ws.gradF.p)
            let u = dropout ? s.u.p : s.f1.p
            Kernels.activationBackward(activation, ws.gradF.p, x: u, count: rows * f, into: ws.gradF.p)
            if dropout { Kernels.multiply(ws.gradF.p, s.mask1.p, count: rows * f, into: ws.gradF.p) }
            Kernels.linearBackward(ws.gradF.p, x: s.c.p, rows: rows, inFeatures: d, outFeatures: f,
                                   weight: b.ff1Weight.value.p, weightGrad: b.ff1Weight.grad.p,
                                   biasGrad: b.ff1Bias.grad.p, dx: tmp)
            Kernels.layerNormBackward(tmp, x: s.x1.p, rows: rows, width: d, gamma: b.norm2Gamma.value.p,
                                      mean: s.mean2.p, rstd: s.rstd2.p, gammaGrad: b.norm2Gamma.grad.p,
                                      betaGrad: b.norm2Beta.grad.p, dx: gx, accumulate: true, scratch: ws.normScratch)
            // x1 = x_in + Linear(MHA(LN₁(x_in)))
            Kernels.linearBackward(gx, x: s.y.p, rows: rows, inFeatures: d, outFeatures: d, weight: b.outWeight.value.p,
                                   weightGrad: b.outWeight.grad.p, biasGrad: b.outBias.grad.p, dx: tmp)
            Attention.backward(dy: tmp, qkv: s.qkv.p, layout: ws.layout, width: d, heads: heads,
                               dropMask: dropout ? s.attentionMask.p : nil, probs: s.probs.p, dropped: s.dropped.p,
                               dqkv: ws.gradQKV.p)
            Kernels.linearBackward(ws.gradQKV.p, x: s.a.p, rows: rows, inFeatures: d, outFeatures: 3 * d,
                                   weight: b.qkvWeight.value.p, weightGrad: b.qkvWeight.grad.p,
                                   biasGrad: b.qkvBias.grad.p, dx: tmp)
            Kernels.layerNormBackward(tmp, x: xin, rows: rows, width: d, gamma: b.norm1Gamma.value.p,
                                      mean: s.mean1.p, rstd: s.rstd1.p, gammaGrad: b.norm1Gamma.grad.p,
                                      betaGrad: b.norm1Beta.grad.p, dx: gx, accumulate: true, scratch: ws.normScratch)
        }
        // Embedding: scatter into the item table, [MASK] row and positions (serial: rows collide).
        if dropout { Kernels.multiply(gx, ws.embeddingMask.p, count: rows * d, into: gx) }
        let scale = Float(d).squareRoot()
        let tableGrad = itemTableGrad, posGrad = positionEmbedding.grad.p
        let maskGrad = maskEmbedding?.grad.p
        let maskID = maskItem
        for i in 0..<rows {
            let item = ws.items[i]
            let dst = (item == maskID && maskGrad != nil) ? maskGrad! : tableGrad + Int(item) * d
            let pg = posGrad + Int(ws.positions[i]) * d, gr = gx + i * d
            for j in 0..<d { dst[j] += gr[j] * scale; pg[j] += gr[j] }
        }
    }

    // MARK: - Parameters as tensors

    /// Every trainable parameter by name (copies).
    func exportParameters() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for p in parameters { out[p.name] = p.tensor }
        return out
    }

    /// Loads parameters by name; every parameter must be present with its exact shape.
    func importParameters(_ tensors: [String: Tensor]) throws {
        servingWeights = nil
        for p in parameters {
            guard let t = tensors[p.name] else { throw LearnError.missingParameter(p.name) }
            guard t.shape == p.shape else { throw LearnError.shapeMismatch("\(p.name): \(t.shape) ≠ \(p.shape)") }
            p.load(t)
        }
        refreshItemTable()
    }

    /// Raw copies of all parameter values (for keeping the best epoch).
    func snapshot() -> [[Float]] { parameters.map { Array(UnsafeBufferPointer(start: $0.value.p, count: $0.count)) } }

    func restore(_ s: [[Float]]) {
        servingWeights = nil
        for (p, v) in zip(parameters, s) { v.withUnsafeBufferPointer { p.value.p.update(from: $0.baseAddress!, count: p.count) } }
        refreshItemTable()
    }
}
