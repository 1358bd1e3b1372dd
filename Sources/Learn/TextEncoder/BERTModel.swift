// BERT encoder forward pass (inference only) over OpenBLAS.
//
// Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", NAACL 2019;
// the layer layout is Hugging Face's `BertModel` (post-LayerNorm blocks), whose weight names the loader reads.
//
// Shapes (T = total tokens of a batch, H = hidden, I = intermediate, h = heads, d = H / h):
//   embeddings  x[T, H] = LN(word[id] + position[p] + tokenType[0])
//   per layer   qkv[T, 3H] = x · Wqkvᵀ + b          (Q, K, V fused into one sgemm)
//               ctx[T, H]  = per (sentence, head): softmax(Q Kᵀ / √d) V
//               x = LN(x + ctx · Woᵀ + bo)
//               u[T, I] = act(x · W1ᵀ + b1);  x = LN(x + u · W2ᵀ + b2)
//
// NOTE: sentences are PACKED, not padded: the T rows hold the sentences back to back and attention runs per
// sentence over exactly its own tokens. This is what the padding mask of the reference implementation computes
// (padded keys get probability 0, padded queries are discarded by masked pooling), without spending any
// multiply on padding in the projections and the feed-forward layers, which dominate the cost.

import Foundation

/// Weights and forward pass of a BERT encoder. Immutable after loading; `forward` may run concurrently from
/// several threads as long as each uses its own `BERTWorkspace`.
final class BERTModel: Sendable {
    struct Layer {
        var qkvWeight: [Float]     // [3H, H]: query rows, then key rows, then value rows
        var qkvBias: [Float]       // [3H]
        var outputWeight: [Float]  // [H, H]
        var outputBias: [Float]
        var attentionNormGamma: [Float], attentionNormBeta: [Float]
        var intermediateWeight: [Float]  // [I, H]
        var intermediateBias: [Float]    // [I]
        var ffnOutputWeight: [Float]     // [H, I]
        var ffnOutputBias: [Float]
        var outputNormGamma: [Float], outputNormBeta: [Float]
    }

    let configuration: BERTConfiguration
    let activation: BERTKernels.Activation
    let wordEmbeddings: [Float]      // [V, H]
    let positionEmbeddings: [Float]  // [P, H]
    let tokenTypeEmbedding: [Float]  // [H]: row 0 of the token-type table (single-sentence input)
    let embeddingNormGamma: [Float], embeddingNormBeta: [Float]
    let layers: [Layer]

    /// Loads the weights of Hugging Face's `BertModel` from `file` (names with or without a `bert.` prefix;
    /// LayerNorm `weight`/`bias` or the older `gamma`/`beta`).
    /// - Throws: `SafeTensorsError.missingTensor` / `.shapeMismatch` naming the tensor, or
    ///   `SentenceEncoderError.unsupportedModel` for an activation or position-embedding type not implemented here.
    init(configuration c: BERTConfiguration, weights file: SafeTensorsFile, configurationFile: String) throws {
        guard c.hiddenSize > 0, c.headCount > 0, c.hiddenSize % c.headCount == 0, c.layerCount >= 0,
              c.intermediateSize > 0, c.maxPositionEmbeddings > 0, c.vocabularySize > 0, c.typeVocabularySize > 0 else {
            throw SentenceEncoderError.badConfiguration(file: configurationFile,
                reason: "inconsistent sizes (hidden \(c.hiddenSize), heads \(c.headCount), layers \(c.layerCount))")
        }
        switch c.hiddenActivation {
        case "gelu": activation = .geluErf
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": activation = .geluTanh
        case "relu": activation = .relu
        default:
            throw SentenceEncoderError.unsupportedModel(file: configurationFile, reason: "hidden_act '\(c.hiddenActivation)' is not implemented")
        }
        guard c.positionEmbeddingType == "absolute" else {
            throw SentenceEncoderError.unsupportedModel(file: configurationFile,
                reason: "position_embedding_type '\(c.positionEmbeddingType)' is not implemented (only 'absolute')")
        }
        configuration = c
        let prefix = file.contains("embeddings.word_embeddings.weight") || !file.contains("bert.embeddings.word_embeddings.weight") ? "" : "bert."
        let H = c.hiddenSize, I = c.intermediateSize
        func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
            let values = try file.floats(prefix + name, expectedShape: shape)
            // A NaN/Inf weight would only surface later as "component 0 of the vector is nan" for every
            // text; name the tensor and the file instead, before anything is written.
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw SentenceEncoderError.badConfiguration(file: file.fileName,
                    reason: "tensor '\(prefix + name)' holds a non-finite value (\(values[bad])) at element \(bad)")
            }
            return values
        }
        func norm(_ base: String) throws -> ([Float], [Float]) {
            if file.contains(prefix + base + ".weight") || !file.contains(prefix + base + ".gamma") {
                return (try tensor(base + ".weight", [H]), try tensor(base + ".bias", [H]))
            }
            return (try tensor(base + ".gamma", [H]), try tensor(base + ".beta", [H]))
        }
        wordEmbeddings = try tensor("embeddings.word_embeddings.weight", [c.vocabularySize, H])
        positionEmbeddings = try tensor("embeddings.position_embeddings.weight", [c.maxPositionEmbeddings, H])
        tokenTypeEmbedding = Array(try tensor("embeddings.token_type_embeddings.weight", [c.typeVocabularySize, H])[0 ..< H])
        (embeddingNormGamma, embeddingNormBeta) = try norm("embeddings.LayerNorm")
        var layers: [Layer] = []
        for index in 0 ..< c.layerCount {
            let base = "encoder.layer.\(index)."
            let q = try tensor(base + "attention.self.query.weight", [H, H])
            let k = try tensor(base + "attention.self.key.weight", [H, H])
            let v = try tensor(base + "attention.self.value.weight", [H, H])
            let qb = try tensor(base + "attention.self.query.bias", [H])
            let kb = try tensor(base + "attention.self.key.bias", [H])
            let vb = try tensor(base + "attention.self.value.bias", [H])
            let attentionNorm = try norm(base + "attention.output.LayerNorm")
            let outputNorm = try norm(base + "output.LayerNorm")
            layers.append(Layer(
                qkvWeight: q + k + v, qkvBias: qb + kb + vb,
                outputWeight: try tensor(base + "attention.output.dense.weight", [H, H]),
                outputBias: try tensor(base + "attention.output.dense.bias", [H]),
                attentionNormGamma: attentionNorm.0, attentionNormBeta: attentionNorm.1,
                intermediateWeight: try tensor(base + "intermediate.dense.weight", [I, H]),
                intermediateBias: try tensor(base + "intermediate.dense.bias", [I]),
                ffnOutputWeight: try tensor(base + "output.dense.weight", [H, I]),
                ffnOutputBias: try tensor(base + "output.dense.bias", [H]),
                outputNormGamma: outputNorm.0, outputNormBeta: outputNorm.1))
        }
        self.layers = layers
    }

    /// Runs the encoder over a packed batch and pools each sentence into `output` (row-major,
    /// `sentences.count × pooling.modeCount·H`).
    ///
    /// - Parameters:
    ///   - sentences: token ids per sentence (each non-empty, at most `maxPositionEmbeddings` long, ids < V).
    ///   - attentionLanes: how many threads share the products and the attention of this batch (1 = the calling
    ///     thread only). The lanes are this call's own threads; OpenBLAS's process-wide thread count is never changed.
    func forward(_ sentences: [[Int]], workspace: BERTWorkspace, pooling: SentenceEncoderPooling, attentionLanes: Int,
                 output: UnsafeMutablePointer<Float>) {
        let c = configuration
        let H = c.hiddenSize, I = c.intermediateSize, heads = c.headCount, d = c.headSize
        var offsets = [Int](repeating: 0, count: sentences.count + 1)
        var longest = 0
        for (s, ids) in sentences.enumerated() {
            // Unreachable from input: SentenceEncoder.init caps the tokenizer's length at max_position_embeddings.
            precondition(!ids.isEmpty && ids.count <= c.maxPositionEmbeddings, "sentence length \(ids.count) out of range")
            offsets[s + 1] = offsets[s] + ids.count
            longest = max(longest, ids.count)
        }
        let T = offsets[sentences.count]
        workspace.reserve(tokens: T, longestSentence: longest, lanes: attentionLanes, configuration: c)
        let x = workspace.hidden, qkv = workspace.qkv, context = workspace.context
        let projected = workspace.projected, intermediate = workspace.intermediate

        // Embeddings.
        wordEmbeddings.withUnsafeBufferPointer { word in
            positionEmbeddings.withUnsafeBufferPointer { position in
                tokenTypeEmbedding.withUnsafeBufferPointer { type in
                    for (s, ids) in sentences.enumerated() {
                        for (p, id) in ids.enumerated() {
                            // Unreachable from input: SentenceEncoder.init refuses a vocab.txt larger than vocab_size.
                            precondition(id >= 0 && id < c.vocabularySize, "token id \(id) outside the vocabulary")
                            let row = x + (offsets[s] + p) * H
                            let w = word.baseAddress! + id * H, pe = position.baseAddress! + p * H, te = type.baseAddress!
                            for j in 0 ..< H { row[j] = w[j] + pe[j] + te[j] }
                        }
                    }
                }
            }
        }
        embeddingNormGamma.withUnsafeBufferPointer { g in
            embeddingNormBeta.withUnsafeBufferPointer { b in
                BERTKernels.residualLayerNorm(x, adding: nil, bias: nil, gamma: g.baseAddress!, beta: b.baseAddress!,
                                              rows: T, width: H, epsilon: c.layerNormEpsilon)
            }
        }

        let scale = 1 / Float(d).squareRoot()
        for layer in layers {
            // Q, K, V in one product; the bias is pre-filled so sgemm (beta = 1) adds onto it.
            layer.qkvBias.withUnsafeBufferPointer { BERTKernels.broadcastRows($0.baseAddress!, rows: T, width: 3 * H, into: qkv) }
            layer.qkvWeight.withUnsafeBufferPointer {
                BERTKernels.linear(x, rows: T, inFeatures: H, weight: $0.baseAddress!, outFeatures: 3 * H, into: qkv, beta: 1,
                                   lanes: attentionLanes)
            }

            // Attention, one task per (sentence, head); each lane owns a scores scratch of longest² floats.
            let taskCount = sentences.count * heads
            let attend = { (lane: Int, laneCount: Int) in
                let scores = workspace.scores + lane * longest * longest
                var task = lane
                while task < taskCount {
                    let s = task / heads, head = task % heads
                    let length = offsets[s + 1] - offsets[s]
                    let rows = qkv + offsets[s] * 3 * H
                    let q = rows + head * d, k = rows + H + head * d, v = rows + 2 * H + head * d
                    BERTKernels.gemm(transposeB: true, m: length, n: length, k: d, alpha: scale,
                                     a: q, lda: 3 * H, b: k, ldb: 3 * H, c: scores, ldc: length)
                    BERTKernels.softmaxRows(scores, rows: length, count: length, stride: length)
                    BERTKernels.gemm(transposeB: false, m: length, n: d, k: length, alpha: 1,
                                     a: scores, lda: length, b: v, ldb: 3 * H,
                                     c: context + offsets[s] * H + head * d, ldc: H)
                    task += laneCount
                }
            }
            if attentionLanes > 1 {
                // Lanes own disjoint tasks (their own scores scratch, their own context columns); concurrentPerform
                // returns only when every lane is done.
                nonisolated(unsafe) let attend = attend
                DispatchQueue.concurrentPerform(iterations: attentionLanes) { lane in attend(lane, attentionLanes) }
            } else {
                attend(0, 1)
            }

            // Attention output projection, residual, LayerNorm.
            layer.outputWeight.withUnsafeBufferPointer {
                BERTKernels.linear(context, rows: T, inFeatures: H, weight: $0.baseAddress!, outFeatures: H, into: projected,
                                   lanes: attentionLanes)
            }
            layer.outputBias.withUnsafeBufferPointer { bias in
                layer.attentionNormGamma.withUnsafeBufferPointer { g in
                    layer.attentionNormBeta.withUnsafeBufferPointer { b in
                        BERTKernels.residualLayerNorm(x, adding: projected, bias: bias.baseAddress!, gamma: g.baseAddress!,
                                                      beta: b.baseAddress!, rows: T, width: H, epsilon: c.layerNormEpsilon)
                    }
                }
            }

            // Feed-forward.
            layer.intermediateWeight.withUnsafeBufferPointer {
                BERTKernels.linear(x, rows: T, inFeatures: H, weight: $0.baseAddress!, outFeatures: I, into: intermediate,
                                   lanes: attentionLanes)
            }
            layer.intermediateBias.withUnsafeBufferPointer {
                BERTKernels.addBiasActivate(intermediate, bias: $0.baseAddress!, rows: T, width: I, activation: activation)
            }
            layer.ffnOutputWeight.withUnsafeBufferPointer {
                BERTKernels.linear(intermediate, rows: T, inFeatures: I, weight: $0.baseAddress!, outFeatures: H, into: projected,
                                   lanes: attentionLanes)
            }
            layer.ffnOutputBias.withUnsafeBufferPointer { bias in
                layer.outputNormGamma.withUnsafeBufferPointer { g in
                    layer.outputNormBeta.withUnsafeBufferPointer { b in
                        BERTKernels.residualLayerNorm(x, adding: projected, bias: bias.baseAddress!, gamma: g.baseAddress!,
                                                      beta: b.baseAddress!, rows: T, width: H, epsilon: c.layerNormEpsilon)
                    }
                }
            }
        }

        // Pooling over each sentence's tokens (all of them, [CLS] and [SEP] included, as the attention mask does).
        let width = pooling.modeCount * H
        for s in 0 ..< sentences.count {
            let first = x + offsets[s] * H
            let length = offsets[s + 1] - offsets[s]
            var out = output + s * width
            if pooling.clsToken {
                out.update(from: first, count: H)
                out += H
            }
            if pooling.maxTokens {
                out.update(from: first, count: H)
                for t in 1 ..< max(length, 1) { for j in 0 ..< H { out[j] = max(out[j], first[t * H + j]) } }
                out += H
            }
            if pooling.meanTokens || pooling.meanSqrtLengthTokens {
                let sum = workspace.poolSum
                sum.update(repeating: 0, count: H)
                for t in 0 ..< length { for j in 0 ..< H { sum[j] += first[t * H + j] } }
                if pooling.meanTokens {
                    let inverse = 1 / Float(length)
                    for j in 0 ..< H { out[j] = sum[j] * inverse }
                    out += H
                }
                if pooling.meanSqrtLengthTokens {
                    let inverse = 1 / Float(length).squareRoot()
                    for j in 0 ..< H { out[j] = sum[j] * inverse }
                    out += H
                }
            }
        }
    }
}

/// Activation buffers for `BERTModel.forward`, grown on demand and reused across batches (no allocation per
/// batch once the largest batch has been seen). Not thread-safe: one workspace per concurrently running forward.
final class BERTWorkspace {
    private(set) var tokenCapacity = 0
    private(set) var scoresCapacity = 0
    private var hiddenWidth = 0, intermediateWidth = 0
    private(set) var hidden = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var qkv = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var context = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var projected = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    /// Feed-forward activations; shares `qkv`'s storage (see `reserve`).
    var intermediate: UnsafeMutablePointer<Float> { qkv }
    private(set) var scores = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var poolSum = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    init() {}

    /// Ensures room for a batch of `tokens` packed tokens whose longest sentence has `longestSentence` tokens.
    func reserve(tokens: Int, longestSentence: Int, lanes: Int, configuration c: BERTConfiguration) {
        if tokens > tokenCapacity || c.hiddenSize != hiddenWidth || c.intermediateSize != intermediateWidth {
            // Grow geometrically so a slowly increasing sequence of batch sizes does not reallocate every time.
            let capacity = max(tokens, tokenCapacity + tokenCapacity / 2)
            for buffer in [hidden, qkv, context, projected, poolSum] { buffer.deallocate() }
            hidden = .allocate(capacity: capacity * c.hiddenSize)
            // Q/K/V are dead once attention has produced `context`, and the feed-forward activations are born
            // after that: one buffer serves both.
            qkv = .allocate(capacity: capacity * max(3 * c.hiddenSize, c.intermediateSize))
            context = .allocate(capacity: capacity * c.hiddenSize)
            projected = .allocate(capacity: capacity * c.hiddenSize)
            poolSum = .allocate(capacity: c.hiddenSize)
            tokenCapacity = capacity
            hiddenWidth = c.hiddenSize
            intermediateWidth = c.intermediateSize
        }
        let needed = max(1, lanes) * longestSentence * longestSentence
        if needed > scoresCapacity {
            scores.deallocate()
            scores = .allocate(capacity: needed)
            scoresCapacity = needed
        }
    }

    deinit {
        for buffer in [hidden, qkv, context, projected, scores, poolSum] { buffer.deallocate() }
    }
}
