import Foundation

/// GRU4Rec — "Session-based Recommendations with Recurrent Neural Networks", B. Hidasi, A. Karatzoglou,
/// L. Baltrunas, D. Tikk, ICLR 2016 (arXiv:1511.06939), in RecBole's form (`recbole/model/sequential_recommender/gru4rec.py`),
/// which LLM2Rec (KDD'25) uses as its second downstream model:
///
///     x  = dropout(E[item])                   item vectors as SASRec's three item modes; no positions, no √d
///     hₗ = GRU layer l over the window        L layers (`blocks`), state size H (`gruHiddenSize`), no biases
///     h  = Linear(H → d)(h_L)                 `[rows, d]`, scored against the item table (tied)
///
/// One GRU step, PyTorch's `nn.GRU` gate order (r, z, n) and form, without bias terms:
///
///     r = σ(W_ir x + W_hr h)      z = σ(W_iz x + W_hz h)      n = tanh(W_in x + r ⊙ (W_hn h))
///     h' = (1 − z) ⊙ n + z ⊙ h                                 h₀ = 0
///
/// Objective: SASRec's (next item at every position of each window, full-softmax cross-entropy).
///
/// NOTE: the paper trains session-parallel mini-batches with ranking losses (BPR, TOP1) on one-hot inputs;
/// like RecBole and the reference (`../shared/reference/seqrec_ref.py --model gru4rec`) we train on item
/// vectors with cross-entropy over the catalogue.
/// NOTE: no padding is ever computed: RecBole left-pads and relies on the bias-free GRU keeping h = 0 over
/// zero inputs, which is exactly starting every sequence at h₀ = 0 here.
/// Parameter names follow PyTorch: `gru.weight_ih_l{k}` `[3H, in]`, `gru.weight_hh_l{k}` `[3H, H]` (rows r | z | n),
/// `dense.weight` `[d, H]`, `dense.bias` `[d]`.
enum GRU4Rec: SequenceArchitecture {
    static var defaultHeads: Int { 1 }
    static var defaultFeedForwardMultiplier: Int { 1 }
    static var defaultActivation: Kernels.Activation { .relu }

    /// RecBole's GRU4Rec defaults: one layer (`num_layers 1`), dropout 0.3 (`dropout_prob`); the state size
    /// defaults to 2d (`resolvedGRUHiddenSize`: 128 for d = 64, RecBole's `hidden_size`).
    static func applyDefaults(to c: inout ModelConfiguration) {
        c.blocks = 1
        c.dropout = 0.3
    }

    static func validate(_ c: ModelConfiguration) throws {
        // The default state size (2d) must stay in range too; the shared check sees only an explicit one.
        if !(1...16_384).contains(c.resolvedGRUHiddenSize) {
            throw LearnError.invalidConfiguration("gruHiddenSize (default 2 × hiddenSize) must be in 1...16384")
        }
        if let d = c.distillation, let k = d.reconstructionLayer, k != c.blocks {
            throw LearnError.invalidConfiguration("GRU4Rec distils the projected output of its last layer: reconstructionLayer must be \(c.blocks) or absent")
        }
    }

    static func makeEncoder(configuration: ModelConfiguration) -> any SequenceEncoder { GRUEncoder(configuration: configuration) }

    static func makeObjective(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) -> any SequenceObjective {
        SASRec(train: train, configuration: configuration)
    }

    /// SASRec's window (the last `maxLength` items): GRU4Rec is trained with SASRec's objective.
    static func appendEvaluationWindow<C: BidirectionalCollection>(_ history: C, to ws: SequenceNetwork.Workspace,
                                                                   network: SequenceNetwork) where C.Element == Int32 {
        SASRec.appendEvaluationWindow(history, to: ws, network: network)
    }

    static func flopsPerEpoch(train: [[Int32]], configuration c: ModelConfiguration, numItems: Int) -> (flops: Double, examples: Int) {
        var rows = 0.0, scored = 0.0, examples = 0
        for s in train {
            for t in c.windows.ends(count: s.count, maxLength: c.maxLength, minimumEnd: 2) {
                let len = min(t - 1, c.maxLength)
                rows += Double(len); examples += 1
                scored += Double(c.windows.scoredRows(targets: len, maxLength: c.maxLength) ?? len)
            }
        }
        let d = Double(c.hiddenSize), h = Double(c.resolvedGRUHiddenSize), n = Double(numItems), layers = Double(c.blocks)
        // Per row: input projections (3H × in), recurrent products (3H × H), the dense layer (d × H); ×2 FLOPs, ×3 passes.
        let perRow = 3 * h * d + (layers - 1) * 3 * h * h + layers * 3 * h * h + h * d
        return (6 * scored * n * d + 6 * rows * perRow, examples)
    }
}

/// The recurrent body of GRU4Rec (see `GRU4Rec`), forward and backward through time over OpenBLAS.
///
/// Layout: a packed batch is processed TIME-MAJOR. Sequences are ordered by length, longest first (as
/// PyTorch's packed sequences), so the sequences still running at step t are the first `B_t` of that order
/// and step t's rows are contiguous (`stepStart[t] ..< stepStart[t] + B_t`), with the previous states of
/// those sequences the first `B_t` rows of step t − 1. Each layer then takes one GEMM for the input
/// projections of all steps, one small GEMM per step for the recurrent products, and its weight gradients
/// are again one GEMM each over all steps (`dW_hh` from the stored previous states).
final class GRUEncoder: SequenceEncoder {
    let width: Int, stateSize: Int, dropout: Float
    let inputWeights: [Parameter]
    let recurrentWeights: [Parameter]
    let denseWeight: Parameter, denseBias: Parameter
    /// Serving copies: every layer's `W_ihᵀ` `[in, 3H]` (BLAS's no-transpose path on one user's rows) and
    /// `W_hhᵀ` `[H, 3H]` (OpenBLAS's transposed matrix-vector kernel takes 2.0 µs on it against 2.8 µs for
    /// the row-major product of `W_hh`, measured with 3H × H = 384 × 128; the recurrence is 50 of them).
    private var servingInput: [Buffer]?
    private var servingRecurrent: [Buffer]?

    init(configuration c: ModelConfiguration) {
        width = c.hiddenSize; stateSize = c.resolvedGRUHiddenSize; dropout = c.dropout
        let h = stateSize
        inputWeights = (0..<c.blocks).map { Parameter("gru.weight_ih_l\($0)", shape: [3 * h, $0 == 0 ? c.hiddenSize : h]) }
        recurrentWeights = (0..<c.blocks).map { Parameter("gru.weight_hh_l\($0)", shape: [3 * h, h]) }
        denseWeight = Parameter("dense.weight", shape: [c.hiddenSize, h])
        denseBias = Parameter("dense.bias", shape: [c.hiddenSize])
    }

    var parameters: [Parameter] {
        var ps: [Parameter] = []
        for (i, r) in zip(inputWeights, recurrentWeights) { ps += [i, r] }
        return ps + [denseWeight, denseBias]
    }

    /// Xavier-normal matrices (the reference initialises every parameter of rank ≥ 2 so), `nn.Linear`'s bias.
    func initialise(_ rng: inout Xoshiro256) {
        for (i, r) in zip(inputWeights, recurrentWeights) {
            Initialiser.xavierNormal(i, &rng); Initialiser.xavierNormal(r, &rng)
        }
        Initialiser.xavierNormal(denseWeight, &rng)
        Initialiser.uniformBias(denseBias, fanIn: stateSize, &rng)
    }

    var layers: Int { inputWeights.count }
    /// Only the projected output of the last layer is `d` wide (the space T maps profiles into).
    func layerOutput(_ layer: Int, in ws: SequenceNetwork.Workspace) -> UnsafePointer<Float> {
        // Unreachable from input: `GRU4Rec.validate` refuses any other reconstruction layer.
        precondition(layer == layers, "GRU4Rec distils its last layer's projected output")
        return UnsafePointer(ws.hidden.p)
    }
    /// No final normalisation: the dense layer's output is scored as it is.
    var outputNorm: (gamma: Parameter, beta: Parameter)? { nil }

    var isFrozenForServing: Bool { servingInput != nil }
    func freezeForServing() {
        func transposed(_ p: Parameter) -> Buffer {
            let rows = p.shape[0], columns = p.shape[1]
            let b = Buffer(rows * columns)
            for o in 0..<rows { for i in 0..<columns { b.p[i * rows + o] = p.value.p[o * columns + i] } }
            return b
        }
        servingInput = inputWeights.map(transposed)
        servingRecurrent = recurrentWeights.map(transposed)
    }
    func thaw() { servingInput = nil; servingRecurrent = nil }

    // MARK: - Workspace

    /// Activations (time-major) and scratch of one workspace.
    final class State {
        /// Time-major row → packed row, and the first time-major row of each step (`steps + 1` entries).
        var packedRow: [Int] = [], stepStart: [Int] = []
        /// Per sequence (packed order): its rank in the longest-first order.
        var rank: [Int] = []
        let input = Buffer(1), inputMask = Buffer(1)
        /// Per layer: input projections `[rows, 3H]`, gates r | z | n `[rows, 3H]`, W_hn·h_prev `[rows, H]`,
        /// previous states `[rows, H]` and outputs `[rows, H]`.
        var projections: [Buffer] = [], gates: [Buffer] = [], candidates: [Buffer] = []
        var previous: [Buffer] = [], outputs: [Buffer] = []
        let recurrent = Buffer(1), output = Buffer(1), lastStates = Buffer(1)
        // backward scratch
        let gradOutput = Buffer(1), gradStates = Buffer(1), gradLower = Buffer(1), gradGates = Buffer(1)
        let gradRecurrent = Buffer(1), carry = Buffer(1), gradInput = Buffer(1)

        init(layers: Int) {
            projections = (0..<layers).map { _ in Buffer(1) }; gates = (0..<layers).map { _ in Buffer(1) }
            candidates = (0..<layers).map { _ in Buffer(1) }; previous = (0..<layers).map { _ in Buffer(1) }
            outputs = (0..<layers).map { _ in Buffer(1) }
        }

        /// The time-major order of `layout`'s sequences.
        func order(_ layout: PackedLayout) {
            let count = layout.count
            let lengths = (0..<count).map { layout.rowStart[$0 + 1] - layout.rowStart[$0] }
            // Longest first; ties in packed order (a stable order keeps training deterministic).
            let sorted = (0..<count).sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
            rank = [Int](repeating: 0, count: count)
            for (j, k) in sorted.enumerated() { rank[k] = j }
            let steps = lengths.max() ?? 0
            packedRow.removeAll(keepingCapacity: true); stepStart.removeAll(keepingCapacity: true)
            var active = count
            for t in 0..<steps {
                while active > 0 && lengths[sorted[active - 1]] <= t { active -= 1 }
                stepStart.append(packedRow.count)
                for j in 0..<active { packedRow.append(layout.rowStart[sorted[j]] + t) }
            }
            stepStart.append(packedRow.count)
        }

        func reserve(rows: Int, count: Int, d: Int, h: Int, training: Bool) {
            input.reserve(rows * d)
            for l in 0..<projections.count {
                projections[l].reserve(rows * 3 * h); gates[l].reserve(rows * 3 * h); candidates[l].reserve(rows * h)
                previous[l].reserve(rows * h); outputs[l].reserve(rows * h)
            }
            recurrent.reserve(max(count, 1) * 3 * h); lastStates.reserve(max(count, 1) * h); output.reserve(rows * d)
            if training {
                inputMask.reserve(rows * d)
                gradOutput.reserve(rows * d); gradStates.reserve(rows * h); gradLower.reserve(rows * h)
                gradGates.reserve(rows * 3 * h); gradRecurrent.reserve(rows * 3 * h); carry.reserve(max(count, 1) * h)
                gradInput.reserve(rows * d)
            }
        }
    }

    func makeState() -> AnyObject { State(layers: layers) }
    @inline(__always) private func state(_ ws: SequenceNetwork.Workspace) -> State { unsafeDowncast(ws.state, to: State.self) }

    // MARK: - Forward

    func forward(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork, training: Bool, lastRowsOnly: Bool,
                 rng: inout Xoshiro256) {
        // A programmer error: computing the last rows only is an inference shortcut.
        precondition(!(training && lastRowsOnly))
        let st = state(ws), d = width, h = stateSize, rows = ws.layout.rows, count = ws.layout.count
        if lastRowsOnly && count == 1 { forwardOne(ws, network: network); return }
        st.order(ws.layout)
        st.reserve(rows: rows, count: count, d: d, h: h, training: training)
        ws.hidden.reserve(max(rows, count) * d)
        if training { ws.gradHidden.reserve(rows * d) }
        // Item vectors in time-major order.
        let table = network.itemTable, x = st.input.p
        ws.items.withUnsafeBufferPointer { items in
            st.packedRow.withUnsafeBufferPointer { packed in
                Parallel.forEachSlice(rows, minimumPerPart: 256) { _, r in
                    for i in r { (x + i * d).update(from: table + Int(items[packed[i]]) * d, count: d) }
                }
            }
        }
        if training && dropout > 0 {
            DropoutMask.fill(st.inputMask.p, count: rows * d, p: dropout, key: rng.next())
            Kernels.multiply(x, st.inputMask.p, count: rows * d, into: x)
        }
        var layerInput = UnsafePointer(x), inputWidth = d
        for l in 0..<layers {
            recur(layer: l, st, input: layerInput, inputWidth: inputWidth, rows: rows)
            layerInput = UnsafePointer(st.outputs[l].p); inputWidth = h
        }
        let top = st.outputs[layers - 1].p
        if lastRowsOnly {
            // The state after each sequence's last step, projected.
            for k in 0..<count {
                let n = ws.layout.rowStart[k + 1] - ws.layout.rowStart[k]
                if n > 0 { (st.lastStates.p + k * h).update(from: top + (st.stepStart[n - 1] + st.rank[k]) * h, count: h) }
                else { (st.lastStates.p + k * h).update(repeating: 0, count: h) }
            }
            Kernels.linearForward(st.lastStates.p, rows: count, inFeatures: h, outFeatures: d, weight: denseWeight.value.p,
                                  bias: denseBias.value.p, into: ws.hidden.p)
            return
        }
        // Project every step, then back to packed order for the loss.
        let projected = st.output.p
        Kernels.linearForward(top, rows: rows, inFeatures: h, outFeatures: d, weight: denseWeight.value.p,
                              bias: denseBias.value.p, into: projected)
        let hidden = ws.hidden.p
        st.packedRow.withUnsafeBufferPointer { packed in
            for i in 0..<rows { (hidden + packed[i] * d).update(from: projected + i * d, count: d) }
        }
    }

    /// One GRU layer over all steps: `input` `[rows, in]` time-major → `st.outputs[l]`.
    private func recur(layer l: Int, _ st: State, input: UnsafePointer<Float>, inputWidth: Int, rows: Int) {
        let h = stateSize
        let gx = st.projections[l].p, gates = st.gates[l].p, cand = st.candidates[l].p
        let prev = st.previous[l].p, out = st.outputs[l].p, gh = st.recurrent.p
        let wih = inputWeights[l].value.p, whh = recurrentWeights[l].value.p
        Kernels.linearForward(input, rows: rows, inFeatures: inputWidth, outFeatures: 3 * h, weight: wih, bias: nil, into: gx)
        let steps = st.stepStart.count - 1
        for t in 0..<steps {
            let base = st.stepStart[t], b = st.stepStart[t + 1] - base
            if t == 0 {
                (prev + base * h).update(repeating: 0, count: b * h)
                (gh).update(repeating: 0, count: b * 3 * h)
            } else {
                // The previous states of step t's sequences are the first b rows of step t − 1.
                (prev + base * h).update(from: out + st.stepStart[t - 1] * h, count: b * h)
                Kernels.linearForward(prev + base * h, rows: b, inFeatures: h, outFeatures: 3 * h, weight: whh, bias: nil, into: gh)
            }
            Parallel.forEachSlice(b, minimumPerPart: 32) { _, r in
                for j in r {
                    let i = base + j
                    GRUKernels.step(gx: gx + i * 3 * h, gh: gh + j * 3 * h, previous: prev + i * h, width: h,
                                    gates: gates + i * 3 * h, candidate: cand + i * h, into: out + i * h)
                }
            }
        }
    }

    /// Serving: one sequence, step by step on the calling thread (matrix-vector products), only the last
    /// state projected.
    private func forwardOne(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork) {
        let st = state(ws), d = width, h = stateSize, n = ws.layout.rows
        ws.hidden.reserve(d)
        if n == 0 { ws.hidden.p.update(repeating: 0, count: d); return }
        st.reserve(rows: n, count: 1, d: d, h: h, training: false)
        let table = network.itemTable, x = st.input.p
        for i in 0..<n { (x + i * d).update(from: table + Int(ws.items[i]) * d, count: d) }
        var layerInput = UnsafePointer(x), inputWidth = d
        for l in 0..<layers {
            let gx = st.projections[l].p, out = st.outputs[l].p, gh = st.recurrent.p
            let whh = recurrentWeights[l].value.p, whhT = servingRecurrent?[l].p
            if let t = servingInput?[l] {
                Kernels.linearForward(layerInput, rows: n, inFeatures: inputWidth, outFeatures: 3 * h, transposedWeight: t.p,
                                      bias: nil, into: gx)
            } else {
                BLAS.gemm(transB: true, m: n, n: 3 * h, k: inputWidth, a: layerInput, lda: inputWidth,
                          b: inputWeights[l].value.p, ldb: inputWidth, c: gx, ldc: 3 * h)
            }
            let zero = st.previous[l].p
            zero.update(repeating: 0, count: h)
            for t in 0..<n {
                let previous = t == 0 ? UnsafePointer(zero) : UnsafePointer(out + (t - 1) * h)
                if t == 0 { gh.update(repeating: 0, count: 3 * h) }
                else if let whhT { BLAS.gemv(trans: true, m: h, n: 3 * h, a: whhT, lda: 3 * h, x: previous, y: gh) }
                else { BLAS.gemv(m: 3 * h, n: h, a: whh, lda: h, x: previous, y: gh) }
                GRUKernels.step(gx: gx + t * 3 * h, gh: gh, previous: previous, width: h, gates: st.gates[l].p,
                                candidate: st.candidates[l].p, into: out + t * h)
            }
            layerInput = UnsafePointer(out); inputWidth = h
        }
        let last = st.outputs[layers - 1].p + (n - 1) * h
        ws.hidden.p.update(from: denseBias.value.p, count: d)
        BLAS.gemv(m: d, n: h, a: denseWeight.value.p, lda: h, x: last, beta: 1, y: ws.hidden.p)
    }

    // MARK: - Backward

    func backward(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork,
                  layerOutputGrad: ((Int, UnsafeMutablePointer<Float>) -> Void)?) {
        let st = state(ws), d = width, h = stateSize, rows = ws.layout.rows
        // Distillation's term on the projected output (packed order) joins the loss gradient first.
        layerOutputGrad?(layers - 1, ws.gradHidden.p)
        let dOut = st.gradOutput.p, gradHidden = ws.gradHidden.p
        st.packedRow.withUnsafeBufferPointer { packed in
            for i in 0..<rows { (dOut + i * d).update(from: gradHidden + packed[i] * d, count: d) }
        }
        // Dense: dW += dOutᵀ·h_L, db += Σ dOut, dh_L = dOut·W.
        Kernels.linearBackward(dOut, x: st.outputs[layers - 1].p, rows: rows, inFeatures: h, outFeatures: d,
                               weight: denseWeight.value.p, weightGrad: denseWeight.grad.p, biasGrad: denseBias.grad.p,
                               dx: st.gradStates.p)
        for l in stride(from: layers - 1, through: 0, by: -1) {
            throughTime(layer: l, st, rows: rows)
            let input = l == 0 ? UnsafePointer(st.input.p) : UnsafePointer(st.outputs[l - 1].p)
            let inputWidth = l == 0 ? d : h
            // dW_ih += dGᵀ·input, d(input) = dG·W_ih; dW_hh += dGhᵀ·h_prev.
            Kernels.linearBackward(st.gradGates.p, x: input, rows: rows, inFeatures: inputWidth, outFeatures: 3 * h,
                                   weight: inputWeights[l].value.p, weightGrad: inputWeights[l].grad.p, biasGrad: nil,
                                   dx: l == 0 ? st.gradInput.p : st.gradLower.p)
            Kernels.linearBackward(st.gradRecurrent.p, x: st.previous[l].p, rows: rows, inFeatures: h, outFeatures: 3 * h,
                                   weight: recurrentWeights[l].value.p, weightGrad: recurrentWeights[l].grad.p,
                                   biasGrad: nil, dx: nil)
            if l > 0 { st.gradStates.p.update(from: st.gradLower.p, count: rows * h) }
        }
        // Item vectors: through the dropout mask, scattered into the table (serial: rows collide).
        let gx = st.gradInput.p
        if dropout > 0 { Kernels.multiply(gx, st.inputMask.p, count: rows * d, into: gx) }
        let tableGrad = network.itemTableGrad
        for i in 0..<rows {
            let dst = tableGrad + Int(ws.items[st.packedRow[i]]) * d, g = gx + i * d
            for j in 0..<d { dst[j] += g[j] }
        }
    }

    /// Back-propagation through time of layer `l`: from dLoss/d(outputs) in `st.gradStates` (time-major)
    /// to the pre-activation gradients `st.gradGates` (for the input projections: r | z | n) and
    /// `st.gradRecurrent` (for the recurrent products: r | z | n ⊙ r).
    private func throughTime(layer l: Int, _ st: State, rows: Int) {
        let h = stateSize, steps = st.stepStart.count - 1
        let dStates = st.gradStates.p, dG = st.gradGates.p, dGh = st.gradRecurrent.p, carry = st.carry.p
        let gates = st.gates[l].p, cand = st.candidates[l].p, prev = st.previous[l].p
        let whh = recurrentWeights[l].value.p
        for t in stride(from: steps - 1, through: 0, by: -1) {
            let base = st.stepStart[t], b = st.stepStart[t + 1] - base
            // Sequences that also ran at step t + 1 (the first `carried`) receive its gradient through h.
            let carried = t + 1 < steps ? st.stepStart[t + 2] - st.stepStart[t + 1] : 0
            Parallel.forEachSlice(b, minimumPerPart: 32) { _, r in
                for j in r {
                    let i = base + j
                    GRUKernels.stepBackward(dOutput: dStates + i * h, carry: carry + j * h, carried: j < carried,
                                            gates: gates + i * 3 * h, candidate: cand + i * h, previous: prev + i * h,
                                            width: h, gradInput: dG + i * 3 * h, gradRecurrent: dGh + i * 3 * h)
                }
            }
            // carry (= dh_prev ⊙ z so far) += dGh·W_hh.
            if t > 0 {
                Parallel.forEachSlice(b, minimumPerPart: 64) { _, r in
                    BLAS.gemm(m: r.count, n: h, k: 3 * h, a: dGh + (base + r.lowerBound) * 3 * h, lda: 3 * h, b: whh, ldb: h,
                              beta: 1, c: carry + r.lowerBound * h, ldc: h)
                }
            }
        }
    }
}

/// The element-wise part of one GRU step and its gradient, eight units at a time.
enum GRUKernels {
    @inline(__always) static func sigmoid(_ a: SIMD8<Float>) -> SIMD8<Float> { 1 / (1 + fastExp(-a)) }
    /// tanh(a) = 1 − 2/(e^{2a} + 1): exact limits ±1, absolute error ~1e-7.
    @inline(__always) static func tanh(_ a: SIMD8<Float>) -> SIMD8<Float> { 1 - 2 / (fastExp(a + a) + 1) }
    @inline(__always) static func sigmoid(_ a: Float) -> Float { 1 / (1 + expf(-a)) }

    /// gx, gh: `[3H]` pre-activations (r | z | n parts) from the input and the previous state. Stores
    /// r | z | n into `gates`, W_hn·h_prev into `candidate`, the new state into `output`.
    @inline(__always)
    static func step(gx: UnsafePointer<Float>, gh: UnsafePointer<Float>, previous: UnsafePointer<Float>, width h: Int,
                     gates: UnsafeMutablePointer<Float>, candidate: UnsafeMutablePointer<Float>,
                     into output: UnsafeMutablePointer<Float>) {
        var u = 0
        while u + 8 <= h {
            let r = sigmoid(load8(gx + u) + load8(gh + u))
            let z = sigmoid(load8(gx + h + u) + load8(gh + h + u))
            let hn = load8(gh + 2 * h + u)
            let n = tanh(load8(gx + 2 * h + u) + r * hn)
            let hp = load8(previous + u)
            store8(r, gates + u); store8(z, gates + h + u); store8(n, gates + 2 * h + u); store8(hn, candidate + u)
            store8(n + z * (hp - n), output + u)
            u += 8
        }
        while u < h {
            let r = sigmoid(gx[u] + gh[u]), z = sigmoid(gx[h + u] + gh[h + u])
            let hn = gh[2 * h + u], n = tanhf(gx[2 * h + u] + r * hn)
            gates[u] = r; gates[h + u] = z; gates[2 * h + u] = n; candidate[u] = hn
            output[u] = n + z * (previous[u] - n)
            u += 1
        }
    }

    /// dh = dOutput (+ carry when `carried`); writes the pre-activation gradients (input side r | z | n,
    /// recurrent side r | z | n ⊙ r) and `carry = dh ⊙ z` (the direct part of dh_prev).
    @inline(__always)
    static func stepBackward(dOutput: UnsafePointer<Float>, carry: UnsafeMutablePointer<Float>, carried: Bool,
                             gates: UnsafePointer<Float>, candidate: UnsafePointer<Float>, previous: UnsafePointer<Float>,
                             width h: Int, gradInput: UnsafeMutablePointer<Float>, gradRecurrent: UnsafeMutablePointer<Float>) {
        var u = 0
        while u + 8 <= h {
            var dh = load8(dOutput + u)
            if carried { dh += load8(carry + u) }
            let r = load8(gates + u), z = load8(gates + h + u), n = load8(gates + 2 * h + u)
            let an = dh * (1 - z) * (1 - n * n)
            let ar = an * load8(candidate + u) * r * (1 - r)
            let az = dh * (load8(previous + u) - n) * z * (1 - z)
            store8(ar, gradInput + u); store8(az, gradInput + h + u); store8(an, gradInput + 2 * h + u)
            store8(ar, gradRecurrent + u); store8(az, gradRecurrent + h + u); store8(an * r, gradRecurrent + 2 * h + u)
            store8(dh * z, carry + u)
            u += 8
        }
        while u < h {
            let dh = dOutput[u] + (carried ? carry[u] : 0)
            let r = gates[u], z = gates[h + u], n = gates[2 * h + u]
            let an = dh * (1 - z) * (1 - n * n)
            let ar = an * candidate[u] * r * (1 - r)
            let az = dh * (previous[u] - n) * z * (1 - z)
            gradInput[u] = ar; gradInput[h + u] = az; gradInput[2 * h + u] = an
            gradRecurrent[u] = ar; gradRecurrent[h + u] = az; gradRecurrent[2 * h + u] = an * r
            carry[u] = dh * z
            u += 1
        }
    }
}
