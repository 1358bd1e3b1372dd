// Configuration of a BERT-family encoder and of the sentence-transformers pipeline around it, read from a
// model folder (`config.json`, `tokenizer_config.json`, `sentence_bert_config.json`, `modules.json`,
// `1_Pooling/config.json`).

import Foundation

/// Hyper-parameters of a BERT encoder (Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
/// Language Understanding", NAACL 2019), as in Hugging Face's `config.json` (snake_case keys).
public struct BERTConfiguration: Codable, Sendable, Equatable {
    /// Width of every hidden state `H` (384 for MiniLM-L6, 768 for BERT-base).
    public var hiddenSize: Int
    /// Number of encoder layers.
    public var layerCount: Int
    /// Attention heads per layer; `hiddenSize` must be a multiple of it.
    public var headCount: Int
    /// Width of the feed-forward layer (usually 4 H).
    public var intermediateSize: Int
    /// Rows of the position-embedding table: the longest sequence the model can read.
    public var maxPositionEmbeddings: Int
    /// Rows of the token-type (segment) table; only type 0 is used for single sentences.
    public var typeVocabularySize: Int
    /// Rows of the word-embedding table.
    public var vocabularySize: Int
    /// LayerNorm epsilon (1e-12 in BERT).
    public var layerNormEpsilon: Float
    /// Activation of the feed-forward layer: "gelu" (erf-exact), "gelu_new"/"gelu_pytorch_tanh"/"gelu_fast"
    /// (tanh approximation) or "relu".
    public var hiddenActivation: String
    /// Only "absolute" position embeddings are supported.
    public var positionEmbeddingType: String

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", layerCount = "num_hidden_layers", headCount = "num_attention_heads"
        case intermediateSize = "intermediate_size", maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabularySize = "type_vocab_size", vocabularySize = "vocab_size", layerNormEpsilon = "layer_norm_eps"
        case hiddenActivation = "hidden_act", positionEmbeddingType = "position_embedding_type"
    }

    public init(hiddenSize: Int, layerCount: Int, headCount: Int, intermediateSize: Int, maxPositionEmbeddings: Int = 512,
                typeVocabularySize: Int = 2, vocabularySize: Int, layerNormEpsilon: Float = 1e-12,
                hiddenActivation: String = "gelu", positionEmbeddingType: String = "absolute") {
        self.hiddenSize = hiddenSize; self.layerCount = layerCount; self.headCount = headCount
        self.intermediateSize = intermediateSize; self.maxPositionEmbeddings = maxPositionEmbeddings
        self.typeVocabularySize = typeVocabularySize; self.vocabularySize = vocabularySize
        self.layerNormEpsilon = layerNormEpsilon; self.hiddenActivation = hiddenActivation
        self.positionEmbeddingType = positionEmbeddingType
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        layerCount = try c.decode(Int.self, forKey: .layerCount)
        headCount = try c.decode(Int.self, forKey: .headCount)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 512
        typeVocabularySize = try c.decodeIfPresent(Int.self, forKey: .typeVocabularySize) ?? 2
        vocabularySize = try c.decode(Int.self, forKey: .vocabularySize)
        layerNormEpsilon = Float(try c.decodeIfPresent(Double.self, forKey: .layerNormEpsilon) ?? 1e-12)
        hiddenActivation = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? "gelu"
        positionEmbeddingType = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType) ?? "absolute"
    }

    /// Width of one attention head.
    public var headSize: Int { hiddenSize / headCount }
}

/// How token states become one sentence vector (sentence-transformers `Pooling`). Several modes may be on at once;
/// their outputs are concatenated in the order cls, max, mean, mean-sqrt-len, as sentence-transformers does.
public struct SentenceEncoderPooling: Codable, Sendable, Equatable {
    public var clsToken: Bool
    public var maxTokens: Bool
    public var meanTokens: Bool
    public var meanSqrtLengthTokens: Bool

    enum CodingKeys: String, CodingKey {
        case clsToken = "pooling_mode_cls_token", maxTokens = "pooling_mode_max_tokens"
        case meanTokens = "pooling_mode_mean_tokens", meanSqrtLengthTokens = "pooling_mode_mean_sqrt_len_tokens"
    }

    public init(clsToken: Bool = false, maxTokens: Bool = false, meanTokens: Bool = true, meanSqrtLengthTokens: Bool = false) {
        self.clsToken = clsToken; self.maxTokens = maxTokens; self.meanTokens = meanTokens; self.meanSqrtLengthTokens = meanSqrtLengthTokens
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clsToken = try c.decodeIfPresent(Bool.self, forKey: .clsToken) ?? false
        maxTokens = try c.decodeIfPresent(Bool.self, forKey: .maxTokens) ?? false
        meanTokens = try c.decodeIfPresent(Bool.self, forKey: .meanTokens) ?? false
        meanSqrtLengthTokens = try c.decodeIfPresent(Bool.self, forKey: .meanSqrtLengthTokens) ?? false
    }

    /// Number of pooled blocks of width H.
    public var modeCount: Int { [clsToken, maxTokens, meanTokens, meanSqrtLengthTokens].filter { $0 }.count }
}

/// Everything `SentenceEncoder` reads from a sentence-transformers model folder besides the weights.
public struct SentenceEncoderConfiguration: Codable, Sendable, Equatable {
    /// The transformer's hyper-parameters (`config.json`).
    public var bert: BERTConfiguration
    /// Tokenizer settings (`tokenizer_config.json`, with `maxLength` = `maxSequenceLength`).
    public var tokenizer: WordPieceTokenizer.Configuration
    /// Tokens per sentence including [CLS]/[SEP]; longer sentences are truncated (`sentence_bert_config.json`
    /// `max_seq_length`, else min(tokenizer `model_max_length`, `max_position_embeddings`)).
    public var maxSequenceLength: Int
    /// Lower-case the text before tokenising (`sentence_bert_config.json` `do_lower_case`; rarely true).
    public var lowercaseInput: Bool
    /// Pooling (`1_Pooling/config.json`).
    public var pooling: SentenceEncoderPooling
    /// L2-normalise the pooled vector (a `Normalize` module in `modules.json`).
    public var normalize: Bool
}
