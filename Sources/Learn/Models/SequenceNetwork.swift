import Foundation

/// A sequential recommender's network: the item representation shared by every architecture, the
/// architecture's own body (`encoder`: transformer blocks for SASRec/BERT4Rec, a GRU for GRU4Rec), and the
/// optional profile map T of distillation. Output scores are tied to the item table:
///
///     x = E[item]                 item table E (`(numItems+1) × d`, row 0 = 0): `id` a trainable table;
///                                 `text` = Linear(text) with row 0 forced to 0; `text+id` = both summed
///     h = encoder(x)              per packed row, `[rows, d]` (see the architecture's file)
///     score(item) = h · E[item]
///
/// Parameter names follow the PyTorch reference (`item_emb`, `adapter.weight`, then the encoder's,
/// then `profile_proj.*`).
///
/// Thread safety: `forward(…, training: false)` only reads parameters and writes its own workspace, so
/// several threads may run inference at once with separate workspaces. Training mutates everything.
final class SequenceNetwork {
    let configuration: ModelConfiguration
    /// The architecture (`configuration.architecture.model`), kept to avoid the switch per call.
    let architecture: any SequenceArchitecture.Type
    private(set) var numItems: Int
    let width: Int, maxLength: Int, heads: Int
    private(set) var text: TextTable?

    private(set) var itemEmbedding: Parameter?
    private(set) var adapterWeight: Parameter?
    private(set) var adapterBias: Parameter?
    /// Everything between the item vectors and the scored hidden states.
    let encoder: any SequenceEncoder
    private(set) var profileWeight: Parameter?
    private(set) var profileBias: Parameter?

    /// Text modes: the current item table and its gradient (id mode uses `itemEmbedding` directly).
    private let tableBuffer = Buffer(1)
    private let tableGradBuffer = Buffer(1)

    /// All trainable parameters in a fixed order.
    private(set) var parameters: [Parameter] = []

    /// The [MASK] input id (BERT4Rec): `numItems + 1`.
    var maskItem: Int32 { Int32(numItems + 1) }

    /// Creates a freshly initialised network (Xavier-normal weights as the reference; biases
    /// U(±1/√fan_in) as `nn.Linear`; padding rows 0; the encoder's own initialisation in between).
    init(configuration c: ModelConfiguration, numItems: Int, text: TextTable?, profileDimension: Int? = nil) throws {
        try c.validate()
        if c.items.usesText {
            guard let text else { throw LearnError.missingTextTable }
            guard text.numItems >= numItems else {
                throw LearnError.shapeMismatch("text table has \(text.numItems) items, the data \(numItems)")
            }
        }
        configuration = c
        architecture = c.architecture.model
        self.numItems = numItems
        width = c.hiddenSize; maxLength = c.maxLength; heads = c.resolvedHeads
        self.text = c.items.usesText ? text : nil
        let d = width
        if c.items.usesID { itemEmbedding = Parameter("item_emb", shape: [numItems + 1, d]) }
        if c.items.usesText, let text {
            adapterWeight = Parameter("adapter.weight", shape: [d, text.dimension])
            adapterBias = Parameter("adapter.bias", shape: [d])
        }
        encoder = architecture.makeEncoder(configuration: c)
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
        ps += encoder.parameters
        if let w = profileWeight, let b = profileBias { ps += [w, b] }
        parameters = ps
    }

    private func initialise(seed: UInt64) {
        var rng = Xoshiro256(seed: seed)
        if let e = itemEmbedding { Initialiser.xavierNormal(e, &rng); e.value.p.update(repeating: 0, count: width) }
        if let w = adapterWeight, let b = adapterBias { Initialiser.xavierNormal(w, &rng); Initialiser.uniformBias(b, fanIn: w.shape[1], &rng) }
        encoder.initialise(&rng)
        if let w = profileWeight, let b = profileBias { Initialiser.xavierNormal(w, &rng); Initialiser.uniformBias(b, fanIn: w.shape[1], &rng) }
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
        encoder.thaw()  // a training step follows: serving copies would go stale
        for p in parameters where !(keepingItemEmbedding && p === itemEmbedding) { p.grad.zero(p.count) }
        if configuration.items.usesText { tableGradBuffer.zero((numItems + 1) * width) }
    }

    // MARK: - Catalogue growth (warm start)

    /// Grows the catalogue to `newCount` items. New id rows are drawn like the initial table (Xavier
    /// normal with the original fan), text modes read their new rows from `text`.
    func growCatalogue(to newCount: Int, text newText: TextTable?, seed: UInt64) throws {
        encoder.thaw()
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
        /// Final hidden states `[rows, d]` (or `[count, d]` after `forwardLastRows`) and dLoss/dHidden.
        let hidden = Buffer(1), gradHidden = Buffer(1)
        /// The encoder's activations and scratch (`SequenceEncoder.makeState`).
        let state: AnyObject

        init(state: AnyObject) { self.state = state }

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
    }

    func makeWorkspace() -> Workspace { Workspace(state: encoder.makeState()) }

    /// Runs the network over `ws`'s packed batch; final hidden states land in `ws.hidden` `[rows, d]`.
    /// With `training`, dropout masks are drawn from `rng` and every activation needed by `backward` is kept.
    func forward(_ ws: Workspace, training: Bool, rng: inout Xoshiro256) {
        encoder.forward(ws, network: self, training: training, lastRowsOnly: false, rng: &rng)
    }

    /// Inference returning one hidden state per sequence: `ws.hidden` row k = final hidden state of the
    /// LAST row of sequence k (`[count, d]`; rows of empty sequences are meaningless). Encoders compute
    /// only what that row needs where they can, which is what serving and evaluation need.
    func forwardLastRows(_ ws: Workspace) {
        var rng = Xoshiro256(seed: 0)  // unused without dropout
        encoder.forward(ws, network: self, training: false, lastRowsOnly: true, rng: &rng)
    }

    /// Back-propagates `ws.gradHidden` (`[rows, d]`, dLoss/dHidden) through the last training forward
    /// pass, accumulating every parameter gradient and `itemTableGrad`.
    /// - Parameter blockOutputGrad: optional hook called with (l, dLoss/d(output of layer l)) before layer
    ///   l is back-propagated, to add extra loss terms on intermediate states (profile distillation).
    func backward(_ ws: Workspace, blockOutputGrad: ((Int, UnsafeMutablePointer<Float>) -> Void)? = nil) {
        encoder.backward(ws, network: self, layerOutputGrad: blockOutputGrad)
    }

    /// Whether `freezeForServing` copies are in place (dropped by the next training step).
    var isFrozenForServing: Bool { encoder.isFrozenForServing }

    /// Prepares the network for serving (the encoder's transposed weight copies, last-row shortcuts).
    /// Only for networks that no longer train: the next `zeroGradients()` drops the copies. Results equal
    /// the training-path forward up to float rounding.
    func freezeForServing() { encoder.freezeForServing() }

    // MARK: - Parameters as tensors

    /// Every trainable parameter by name (copies).
    func exportParameters() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for p in parameters { out[p.name] = p.tensor }
        return out
    }

    /// Loads parameters by name; every parameter must be present with its exact shape.
    func importParameters(_ tensors: [String: Tensor]) throws {
        encoder.thaw()
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
        encoder.thaw()
        for (p, v) in zip(parameters, s) { v.withUnsafeBufferPointer { p.value.p.update(from: $0.baseAddress!, count: p.count) } }
        refreshItemTable()
    }
}
