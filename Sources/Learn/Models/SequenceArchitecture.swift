import Foundation

/// Everything that differs between sequential architectures, behind one seam. Adding a model is one file
/// that implements this protocol (and usually a `SequenceEncoder`), plus its case in
/// `ModelConfiguration.Architecture` and in `Architecture.model` — the only switch over architectures, so
/// the compiler finds every place a new case must be handled.
///
/// The network around the encoder (item table in the three item modes, tied output scores, profile map T),
/// training (AdamW, full-softmax cross-entropy, validation, early stopping), evaluation, serving and
/// persistence are shared and know nothing of the architecture.
protocol SequenceArchitecture {
    /// Transformer defaults when the configuration leaves them nil (the GRU ignores them).
    static var defaultHeads: Int { get }
    static var defaultFeedForwardMultiplier: Int { get }
    static var defaultActivation: Kernels.Activation { get }
    /// Sets the defaults that differ from `ModelConfiguration`'s shared ones (blocks, dropout, …);
    /// applied by `ModelConfiguration(architecture:)` and to keys missing when decoding.
    static func applyDefaults(to configuration: inout ModelConfiguration)
    /// Checks only this architecture's options (the shared ranges are `ModelConfiguration.validate`'s).
    static func validate(_ configuration: ModelConfiguration) throws
    /// The network body between item vectors and scored hidden states.
    static func makeEncoder(configuration: ModelConfiguration) -> any SequenceEncoder
    /// The training objective over the users' training parts.
    static func makeObjective(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) -> any SequenceObjective
    /// Appends the evaluation (and serving) window of `history` (ids 1...N, oldest first) to `ws`; the
    /// user representation is the final hidden state of the window's last row.
    static func appendEvaluationWindow<C: BidirectionalCollection>(_ history: C, to ws: SequenceNetwork.Workspace,
                                                                   network: SequenceNetwork) where C.Element == Int32
    /// Matrix-product FLOPs of one training epoch over the windows of `train` (forward and both backward
    /// products; output layer included, text adapter excluded: `TrainingCost` adds it), and the number of
    /// training examples.
    static func flopsPerEpoch(train: [[Int32]], configuration: ModelConfiguration, numItems: Int) -> (flops: Double, examples: Int)
}

extension SequenceArchitecture {
    static func applyDefaults(to configuration: inout ModelConfiguration) {}
    static func validate(_ configuration: ModelConfiguration) throws {}
}

extension ModelConfiguration.Architecture {
    /// The implementation of each architecture: the one place that switches over them.
    var model: any SequenceArchitecture.Type {
        switch self {
        case .sasrec: return SASRec.self
        case .bert4rec: return BERT4Rec.self
        case .gru4rec: return GRU4Rec.self
        }
    }
}

/// The part of a network between the item vectors and the final hidden states `ws.hidden` (`[rows, d]`,
/// scored against the tied item table): transformer blocks, a GRU, …. It owns its parameters, their
/// initialisation, its activations (in `Workspace.state`) and its forward and backward passes.
protocol SequenceEncoder: AnyObject {
    /// Trainable parameters in a fixed order (they follow the item table and adapter in the network's list).
    var parameters: [Parameter] { get }
    /// Initialises the parameters, drawing from `rng` (after the item table and adapter, before T).
    func initialise(_ rng: inout Xoshiro256)
    /// Per-workspace activations and scratch.
    func makeState() -> AnyObject
    /// Forward over `ws`'s packed rows, reading item vectors from `network.itemTable`; writes `ws.hidden`
    /// (`[rows, d]`, or with `lastRowsOnly` `[count, d]`: the last row of each sequence). `training` keeps
    /// what `backward` needs and draws dropout from `rng`.
    func forward(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork, training: Bool, lastRowsOnly: Bool,
                 rng: inout Xoshiro256)
    /// Back-propagates `ws.gradHidden` through the last training forward, accumulating parameter gradients
    /// and `network.itemTableGrad`; calls `layerOutputGrad(l, g)` with dLoss/d(output of layer l + 1)
    /// before layer l is back-propagated (profile distillation adds its term there).
    func backward(_ ws: SequenceNetwork.Workspace, network: SequenceNetwork,
                  layerOutputGrad: ((Int, UnsafeMutablePointer<Float>) -> Void)?)
    /// Number of layers whose outputs distillation may pool (1...layers).
    var layers: Int { get }
    /// The `[rows, d]` output of layer `layer` (1-based) of the last training forward.
    func layerOutput(_ layer: Int, in ws: SequenceNetwork.Workspace) -> UnsafePointer<Float>
    /// The normalisation applied after the last layer's output (LN_f), which profile users' vectors go
    /// through as well; nil = none.
    var outputNorm: (gamma: Parameter, beta: Parameter)? { get }
    /// Serving copies (see `SequenceNetwork.freezeForServing`).
    var isFrozenForServing: Bool { get }
    func freezeForServing()
    /// Drops serving copies (training is about to change the weights).
    func thaw()
}

/// Parameter initialisation shared by the architectures (the PyTorch reference's choices).
enum Initialiser {
    /// Xavier-normal: N(0, 2/(fan_out + fan_in)) over a `[out, in]` matrix.
    static func xavierNormal(_ p: Parameter, _ rng: inout Xoshiro256) {
        let std = (2.0 / Float(p.shape[0] + p.shape[1])).squareRoot()
        for i in 0..<p.count { p.value.p[i] = rng.nextNormal() * std }
    }

    /// `nn.Linear`'s bias: U(±1/√fan_in).
    static func uniformBias(_ p: Parameter, fanIn: Int, _ rng: inout Xoshiro256) {
        let bound = 1 / Float(fanIn).squareRoot()
        for i in 0..<p.count { p.value.p[i] = (rng.nextUniform() * 2 - 1) * bound }
    }
}
