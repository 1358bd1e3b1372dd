// BERT WordPiece tokenizer, matching Hugging Face `BertTokenizerFast` (the Rust `tokenizers` pipeline:
// BertNormalizer → BertPreTokenizer → WordPiece → TemplateProcessing "[CLS] $A [SEP]").
//
// Reference behaviour (tokenizers 0.x, `normalizers/bert.rs`, `pre_tokenizers/bert.rs`, `models/wordpiece`):
// 1. Special tokens ([CLS], [SEP], [PAD], [UNK], [MASK]) written literally in the input are matched on the RAW
//    text first (they are "added tokens" with normalized = false) and map straight to their ids.
// 2. clean_text: drop U+0000, U+FFFD and control characters (Unicode "Other": Cc, Cf, Co, Cn — but \t \n \r
//    count as whitespace), and map every White_Space character to " ".
// 3. handle_chinese_chars: put spaces around CJK Unified Ideographs (the block list in `is_chinese_char`).
// 4. strip_accents (defaults to `lowercase`): NFD, then drop non-spacing marks (Mn).
// 5. lowercase: full Unicode lower-case mapping per character (no context; "Σ" → "σ").
// 6. Pre-tokenise: split on White_Space (removed), isolate every punctuation character
//    (ASCII !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~ and Unicode P* categories).
// 7. WordPiece: a word longer than `maxInputCharsPerWord` scalars is [UNK]; otherwise greedy longest-match-first
//    from the left, continuation pieces prefixed with "##"; if any position has no match the WHOLE word is [UNK].
// NOTE: the slow Python `BertTokenizer` lower-cases before stripping accents and uses slightly different
// whitespace/control definitions; the fast tokenizer (what sentence-transformers loads) is the reference here.

import Foundation

/// Errors raised while building a tokenizer.
public enum WordPieceTokenizerError: Error, Equatable, CustomStringConvertible {
    case unreadableVocabulary(file: String, reason: String)
    case emptyVocabulary(file: String)
    /// A special token ([CLS], [SEP], [UNK], [PAD]) is not in the vocabulary.
    case missingSpecialToken(file: String, token: String)

    public var description: String {
        switch self {
        case let .unreadableVocabulary(file, reason): return "\(file): cannot read vocabulary: \(reason)"
        case let .emptyVocabulary(file): return "\(file): vocabulary is empty"
        case let .missingSpecialToken(file, token): return "\(file): special token \(token) is not in the vocabulary"
        }
    }
}

/// Hugging Face-compatible BERT WordPiece tokenizer (uncased and cased models).
///
/// Thread safety: immutable value; all methods may be called concurrently.
public struct WordPieceTokenizer: Sendable {
    /// Tokenizer settings, mirroring `tokenizer_config.json` / `tokenizer.json`.
    public struct Configuration: Codable, Sendable, Equatable {
        /// Lower-case the text (`do_lower_case`). Default true (uncased models).
        public var lowercase: Bool = true
        /// Strip accents; `nil` means "same as `lowercase`" (Hugging Face's default).
        public var stripAccents: Bool? = nil
        /// Surround CJK ideographs with spaces (`tokenize_chinese_chars`). Default true.
        public var tokenizeChineseCharacters: Bool = true
        /// Words longer than this many Unicode scalars become [UNK]. Default 100.
        public var maxInputCharactersPerWord: Int = 100
        /// Maximum sequence length including [CLS] and [SEP]; longer inputs are truncated. Default 512.
        public var maxLength: Int = 512
        public var unknownToken = "[UNK]", classifierToken = "[CLS]", separatorToken = "[SEP]"
        public var paddingToken = "[PAD]", maskToken = "[MASK]"
        /// Prefix of continuation pieces. Default "##".
        public var continuingSubwordPrefix = "##"
        public init() {}
    }

    public let configuration: Configuration
    /// Token string → id (line number in vocab.txt).
    public let vocabulary: [String: Int]
    /// Id → token string (vocab.txt in order).
    private let tokens: [String]
    public let unknownID: Int, classifierID: Int, separatorID: Int, paddingID: Int
    /// Special tokens recognised verbatim in raw input, as scalar arrays, longest first.
    private let specialTokens: [(scalars: [Unicode.Scalar], id: Int)]

    /// Builds a tokenizer from the vocabulary in order (id = position).
    /// - Throws: `WordPieceTokenizerError` when the vocabulary is empty or lacks [CLS]/[SEP]/[UNK]/[PAD].
    public init(vocabulary tokens: [String], configuration: Configuration = Configuration(), sourceName: String = "vocabulary") throws {
        // Unreachable from input: SentenceEncoder.init refuses max_seq_length < 2.
        precondition(configuration.maxLength >= 2, "maxLength must leave room for [CLS] and [SEP]")
        guard !tokens.isEmpty else { throw WordPieceTokenizerError.emptyVocabulary(file: sourceName) }
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(tokens.count)
        // Later duplicates win, as in both Hugging Face loaders.
        for (id, token) in tokens.enumerated() { vocabulary[token] = id }
        func id(_ token: String) throws -> Int {
            guard let id = vocabulary[token] else { throw WordPieceTokenizerError.missingSpecialToken(file: sourceName, token: token) }
            return id
        }
        self.configuration = configuration
        self.vocabulary = vocabulary
        self.tokens = tokens
        unknownID = try id(configuration.unknownToken)
        classifierID = try id(configuration.classifierToken)
        separatorID = try id(configuration.separatorToken)
        paddingID = try id(configuration.paddingToken)
        var specials: [(scalars: [Unicode.Scalar], id: Int)] = []
        for token in [configuration.unknownToken, configuration.classifierToken, configuration.separatorToken,
                      configuration.paddingToken, configuration.maskToken] {
            if let id = vocabulary[token] { specials.append((Array(token.unicodeScalars), id)) }
        }
        specialTokens = specials.sorted { $0.scalars.count > $1.scalars.count }
    }

    /// Reads `vocab.txt` (one token per line; trailing whitespace trimmed as Hugging Face does).
    public init(vocabularyFile url: URL, configuration: Configuration = Configuration()) throws {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw WordPieceTokenizerError.unreadableVocabulary(file: url.path, reason: error.localizedDescription)
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var scalars = Substring(line).unicodeScalars[...]
            while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
            return String(String.UnicodeScalarView(scalars))
        }
        if lines.last == "" { lines.removeLast() }  // final newline
        try self.init(vocabulary: lines, configuration: configuration, sourceName: url.path)
    }

    // MARK: - Public entry points

    /// Token ids for one text: `[CLS] pieces… [SEP]`, truncated to `configuration.maxLength` ids in total.
    public func encode(_ text: String) -> [Int] { encode(text, maxLength: configuration.maxLength) }

    /// Token ids for one text, truncated to `maxLength` ids including [CLS] and [SEP] (`maxLength >= 2`).
    public func encode(_ text: String, maxLength: Int) -> [Int] {
        // Unreachable from input: SentenceEncoder.init refuses max_seq_length < 2; other callers pass constants.
        precondition(maxLength >= 2, "maxLength must leave room for [CLS] and [SEP]")
        var ids = [classifierID]
        ids.reserveCapacity(min(maxLength, text.utf8.count + 2))
        appendPieceIDs(of: text, to: &ids, limit: maxLength - 1)
        ids.append(separatorID)
        return ids
    }

    /// Word pieces (as strings) without [CLS]/[SEP] and without truncation; for inspection and tests.
    public func tokenize(_ text: String) -> [String] {
        var ids: [Int] = []
        appendPieceIDs(of: text, to: &ids, limit: Int.max)
        return ids.map { token(for: $0) ?? configuration.unknownToken }
    }

    /// The vocabulary entry for `id`, or nil when `id` is not a token id.
    public func token(for id: Int) -> String? {
        id >= 0 && id < tokens.count ? tokens[id] : nil
    }

    // MARK: - Pipeline

    /// Appends piece ids for `text` until `ids.count == limit`.
    private func appendPieceIDs(of text: String, to ids: inout [Int], limit: Int) {
        let raw = Array(text.unicodeScalars)
        var segmentStart = 0
        var i = 0
        // Split on literal special tokens first (matched on the raw, un-normalised text).
        while i < raw.count && ids.count < limit {
            if raw[i] == "[", let special = specialTokens.first(where: { matches($0.scalars, in: raw, at: i) }) {
                appendWordIDs(ofSegment: raw[segmentStart ..< i], to: &ids, limit: limit)
                if ids.count < limit { ids.append(special.id) }
                i += special.scalars.count
                segmentStart = i
            } else {
                i += 1
            }
        }
        if ids.count < limit { appendWordIDs(ofSegment: raw[segmentStart ..< raw.count], to: &ids, limit: limit) }
    }

    private func matches(_ token: [Unicode.Scalar], in text: [Unicode.Scalar], at position: Int) -> Bool {
        guard position + token.count <= text.count else { return false }
        for k in 0 ..< token.count where text[position + k] != token[k] { return false }
        return true
    }

    private func appendWordIDs(ofSegment segment: ArraySlice<Unicode.Scalar>, to ids: inout [Int], limit: Int) {
        if segment.isEmpty { return }
        let normalized = normalize(segment)
        var word: [Unicode.Scalar] = []
        word.reserveCapacity(32)
        func flush() {
            if !word.isEmpty { appendWordPieces(word, to: &ids, limit: limit); word.removeAll(keepingCapacity: true) }
        }
        for scalar in normalized {
            if ids.count >= limit { return }
            if scalar.properties.isWhitespace {
                flush()
            } else if Self.isPunctuation(scalar) {
                flush()
                if ids.count < limit { appendWordPieces([scalar], to: &ids, limit: limit) }
            } else {
                word.append(scalar)
            }
        }
        if ids.count < limit { flush() }
    }

    /// BertNormalizer: clean text, CJK spacing, accent stripping, lower-casing — in the Rust implementation's order.
    private func normalize(_ segment: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(segment.count + 8)
        var allASCII = true
        for scalar in segment {
            let value = scalar.value
            if value == 0 || value == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isWhitespace(scalar) { cleaned.append(" "); continue }
            if value >= 0x80 { allASCII = false }
            if configuration.tokenizeChineseCharacters && Self.isChineseCharacter(value) {
                cleaned.append(" "); cleaned.append(scalar); cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        let stripAccents = configuration.stripAccents ?? configuration.lowercase
        if allASCII {
            // Fast path: NFD and Mn removal are identities on ASCII; lower-casing is a byte operation.
            if configuration.lowercase {
                for k in cleaned.indices where cleaned[k].value >= 0x41 && cleaned[k].value <= 0x5A {
                    cleaned[k] = Unicode.Scalar(cleaned[k].value + 0x20)!
                }
            }
            return cleaned
        }
        var result = cleaned
        if stripAccents {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: cleaned)
            let decomposed = String(view).decomposedStringWithCanonicalMapping
            result = decomposed.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
        }
        if configuration.lowercase {
            var lowered: [Unicode.Scalar] = []
            lowered.reserveCapacity(result.count)
            for scalar in result {
                if scalar.value < 0x80 {
                    lowered.append(scalar.value >= 0x41 && scalar.value <= 0x5A ? Unicode.Scalar(scalar.value + 0x20)! : scalar)
                } else if scalar.properties.changesWhenLowercased {
                    lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
                } else {
                    lowered.append(scalar)
                }
            }
            result = lowered
        }
        return result
    }

    /// Greedy longest-match-first WordPiece over one pre-tokenised word.
    private func appendWordPieces(_ word: [Unicode.Scalar], to ids: inout [Int], limit: Int) {
        if word.count > configuration.maxInputCharactersPerWord {
            ids.append(unknownID)
            return
        }
        var pieces: [Int] = []
        var start = 0
        var candidate = String.UnicodeScalarView()
        while start < word.count {
            var end = word.count
            var found: Int? = nil
            while start < end {
                candidate.removeAll(keepingCapacity: true)
                if start > 0 { candidate.append(contentsOf: configuration.continuingSubwordPrefix.unicodeScalars) }
                candidate.append(contentsOf: word[start ..< end])
                if let id = vocabulary[String(candidate)] { found = id; break }
                end -= 1
            }
            guard let id = found else {
                ids.append(unknownID)
                return
            }
            pieces.append(id)
            start = end
        }
        for id in pieces where ids.count < limit { ids.append(id) }
    }

    // MARK: - Character classes (as in tokenizers' bert normalizer / pre-tokenizer)

    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A, 0x0D: return true
        default: return scalar.properties.isWhitespace
        }
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A, 0x0D: return false
        default:
            switch scalar.properties.generalCategory {
            case .control, .format, .privateUse, .unassigned, .surrogate: return true
            default: return false
            }
        }
    }

    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if (33 ... 47).contains(v) || (58 ... 64).contains(v) || (91 ... 96).contains(v) || (123 ... 126).contains(v) { return true }
        if v < 0x80 { return false }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isChineseCharacter(_ v: UInt32) -> Bool {
        (0x4E00 ... 0x9FFF).contains(v) || (0x3400 ... 0x4DBF).contains(v) || (0x20000 ... 0x2A6DF).contains(v)
            || (0x2A700 ... 0x2B73F).contains(v) || (0x2B740 ... 0x2B81F).contains(v) || (0x2B920 ... 0x2CEAF).contains(v)
            || (0xF900 ... 0xFAFF).contains(v) || (0x2F800 ... 0x2FA1F).contains(v)
    }
}
