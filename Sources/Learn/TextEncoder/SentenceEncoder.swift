// Sentence embeddings from a sentence-transformers model folder of the BERT family
// (Reimers & Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", EMNLP 2019):
// WordPiece tokens → BERT encoder → pooling (mean / CLS / max) → optional L2 normalisation,
// all as configured by the folder itself. First target: all-MiniLM-L6-v2; BAAI bge-*-v1.5 (CLS pooling) also fits.

import Foundation
import Synchronization

/// Errors of loading a model folder. Weight-file and vocabulary problems are thrown as `SafeTensorsError` and
/// `WordPieceTokenizerError`, which also name the file.
public enum SentenceEncoderError: Error, Equatable, CustomStringConvertible {
    /// A required file of the model folder does not exist.
    case missingFile(path: String)
    /// A configuration file is unreadable, not JSON, or lacks a required field.
    case badConfiguration(file: String, reason: String)
    /// The folder describes a model this encoder does not implement (e.g. a Dense module, an unknown activation).
    case unsupportedModel(file: String, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(path): return "\(path): required model file is missing"
        case let .badConfiguration(file, reason): return "\(file): bad configuration: \(reason)"
        case let .unsupportedModel(file, reason): return "\(file): unsupported model: \(reason)"
        }
    }
}

/// A BERT-family sentence encoder loaded from a sentence-transformers folder.
///
/// ```swift
/// let encoder = try SentenceEncoder(modelDirectory: URL(fileURLWithPath: "models/all-MiniLM-L6-v2"))
/// let vectors = try encoder.encode(["OPI Nail Lacquer", "Shampoo"])   // 2 × 384, L2-normalised
/// ```
///
/// Performance: sentences are tokenised, sorted by token count and cut into batches of `batchSize`; each batch is
/// packed without padding. With more than one batch, each of `threadCount` workers runs whole batches (no
/// synchronisation inside a batch); a single batch instead splits its products by rows and its attention by
/// (sentence, head) over `threadCount` lanes with `DispatchQueue.concurrentPerform`. Either way the encoder's
/// threads are its own: it never changes OpenBLAS's process-wide thread count. It is fastest with OpenBLAS on one
/// thread and kernels that match the CPU, which executables opt into with `LearnEngine.configureProcess()`.
///
/// Memory: the weights as Float (≈ 90 MB for MiniLM-L6) plus one activation workspace per worker, kept between
/// calls and sized by the largest batch seen: 3H + max(3H, I) floats per token (10.5 KB for MiniLM), i.e. ≈ 7 MB
/// for 32 titles of 20 tokens and ≈ 86 MB for 32 sentences of 256 tokens. `releaseWorkspaces()` frees them.
///
/// Thread safety: the encoder is immutable after `init` and `encode` may be called from any thread. Calls are
/// serialised internally (each one already uses `threadCount` threads); no process-wide setting is touched.
// Unchecked: the only mutable state, `workspaces`, is read and written only while `callLock` is held.
public final class SentenceEncoder: @unchecked Sendable {
    /// The folder's configuration (transformer, tokenizer, pooling, normalisation).
    public let configuration: SentenceEncoderConfiguration
    /// The tokenizer the encoder uses (truncates to `configuration.maxSequenceLength`).
    public let tokenizer: WordPieceTokenizer
    /// Number of worker threads used by `encode` (defaults to the active processor count).
    public let threadCount: Int
    let model: BERTModel
    /// Serialises `encode` calls; also guards `workspaces`.
    private let callLock = NSLock()
    /// One activation workspace per worker, kept between calls so repeated small calls do not reallocate.
    private var workspaces: [BERTWorkspace] = []

    /// Length of every vector `encode` returns (hidden size × number of pooling modes; 384 for MiniLM-L6).
    public var dimension: Int { configuration.pooling.modeCount * configuration.bert.hiddenSize }

    /// Loads a sentence-transformers model folder: `config.json`, `model.safetensors` (F32, F16 or BF16),
    /// `vocab.txt`, and when present `tokenizer_config.json`, `sentence_bert_config.json`, `modules.json`,
    /// and the pooling module's `config.json` (`1_Pooling/` by default). Without `modules.json` the folder is read as
    /// a plain Hugging Face BERT with mean pooling and no normalisation.
    ///
    /// - Parameter threadCount: workers for `encode`; `nil` = `ProcessInfo.activeProcessorCount`.
    /// - Throws: `SentenceEncoderError` (missing file, bad or unsupported configuration), `SafeTensorsError`
    ///   (bad header, truncated tensor, missing weight, shape mismatch), `WordPieceTokenizerError`.
    public init(modelDirectory: URL, threadCount: Int? = nil) throws {
        let fm = FileManager.default
        func file(_ relative: String) -> URL { modelDirectory.appendingPathComponent(relative) }
        func require(_ relative: String) throws -> URL {
            let url = file(relative)
            guard fm.fileExists(atPath: url.path) else { throw SentenceEncoderError.missingFile(path: url.path) }
            return url
        }
        func jsonObject(_ url: URL) throws -> Any {
            do {
                return try JSONSerialization.jsonObject(with: Data(contentsOf: url))
            } catch {
                throw SentenceEncoderError.badConfiguration(file: url.path, reason: "not readable JSON (\(error.localizedDescription))")
            }
        }

        // Transformer hyper-parameters.
        let configURL = try require("config.json")
        let bert: BERTConfiguration
        do { bert = try JSONDecoder().decode(BERTConfiguration.self, from: Data(contentsOf: configURL)) } catch {
            throw SentenceEncoderError.badConfiguration(file: configURL.path, reason: "\(error)")
        }
        if let modelType = (try? jsonObject(configURL) as? [String: Any])?["model_type"] as? String,
           modelType != "bert" {
            throw SentenceEncoderError.unsupportedModel(file: configURL.path, reason: "model_type '\(modelType)' is not a BERT encoder")
        }

        // Pipeline modules.
        var poolingDirectory = "1_Pooling"
        var normalize = false
        let modulesURL = file("modules.json")
        var hasModules = false
        if fm.fileExists(atPath: modulesURL.path) {
            hasModules = true
            guard let modules = try jsonObject(modulesURL) as? [[String: Any]] else {
                throw SentenceEncoderError.badConfiguration(file: modulesURL.path, reason: "expected a JSON array of modules")
            }
            var sawPooling = false
            for (index, module) in modules.enumerated() {
                guard let type = module["type"] as? String, module["path"] == nil || module["path"] is String else {
                    throw SentenceEncoderError.badConfiguration(file: modulesURL.path, reason: "module \(index) needs a string \"type\" (and \"path\" a string when present)")
                }
                let path = module["path"] as? String ?? ""
                switch type.split(separator: ".").last.map(String.init) ?? "" {
                case "Transformer":
                    guard path.isEmpty || path == "." else {
                        throw SentenceEncoderError.unsupportedModel(file: modulesURL.path, reason: "Transformer module in subfolder '\(path)'")
                    }
                case "Pooling": poolingDirectory = path; sawPooling = true
                case "Normalize": normalize = true
                default:
                    throw SentenceEncoderError.unsupportedModel(file: modulesURL.path, reason: "module type '\(type)' is not implemented")
                }
            }
            guard sawPooling else {
                throw SentenceEncoderError.unsupportedModel(file: modulesURL.path, reason: "no Pooling module")
            }
        }
        var pooling = SentenceEncoderPooling()
        if hasModules {
            let poolingURL = try require(poolingDirectory + "/config.json")
            do { pooling = try JSONDecoder().decode(SentenceEncoderPooling.self, from: Data(contentsOf: poolingURL)) } catch {
                throw SentenceEncoderError.badConfiguration(file: poolingURL.path, reason: "\(error)")
            }
            if let raw = try jsonObject(poolingURL) as? [String: Any] {
                for (key, value) in raw where key.hasPrefix("pooling_mode_") && (value as? Bool) == true {
                    guard SentenceEncoderPooling.CodingKeys(rawValue: key) != nil else {
                        throw SentenceEncoderError.unsupportedModel(file: poolingURL.path, reason: "\(key) is not implemented")
                    }
                }
            }
            guard pooling.modeCount > 0 else {
                throw SentenceEncoderError.badConfiguration(file: poolingURL.path, reason: "no pooling mode enabled")
            }
        }

        // Tokenizer settings.
        var tokenizerConfiguration = WordPieceTokenizer.Configuration()
        var modelMaxLength = Int.max
        let tokenizerConfigURL = file("tokenizer_config.json")
        if fm.fileExists(atPath: tokenizerConfigURL.path) {
            guard let raw = try jsonObject(tokenizerConfigURL) as? [String: Any] else {
                throw SentenceEncoderError.badConfiguration(file: tokenizerConfigURL.path, reason: "expected a JSON object")
            }
            // A key that is present with the wrong type is an error naming it: ignoring it would silently
            // change tokenisation (e.g. "do_lower_case": "false" read as absent, i.e. lower-casing).
            let path = tokenizerConfigURL.path
            func wrongType(_ key: String, _ expected: String) -> SentenceEncoderError {
                .badConfiguration(file: path, reason: "\"\(key)\" must be \(expected), is \(String(describing: raw[key]!).prefix(40))")
            }
            func bool(_ key: String) throws -> Bool? {
                guard let value = raw[key], !(value is NSNull) else { return nil }
                guard let n = value as? NSNumber, String(cString: n.objCType) == "c" else { throw wrongType(key, "true or false") }
                return n.boolValue
            }
            if let lower = try bool("do_lower_case") { tokenizerConfiguration.lowercase = lower }
            if let strip = try bool("strip_accents") { tokenizerConfiguration.stripAccents = strip }
            if let chinese = try bool("tokenize_chinese_chars") { tokenizerConfiguration.tokenizeChineseCharacters = chinese }
            // Some configs store a huge sentinel (1e30) meaning "no limit"; NSNumber covers both int and float.
            if let value = raw["model_max_length"], !(value is NSNull) {
                guard let length = value as? NSNumber, String(cString: length.objCType) != "c", length.doubleValue.isFinite else {
                    throw wrongType("model_max_length", "a number")
                }
                if length.doubleValue < 1e9 { modelMaxLength = length.intValue }
            }
            func special(_ key: String) throws -> String? {
                guard let value = raw[key], !(value is NSNull) else { return nil }
                if let s = value as? String { return s }
                if let s = (value as? [String: Any])?["content"] as? String { return s }
                throw wrongType(key, "a string or {\"content\": string}")
            }
            if let s = try special("unk_token") { tokenizerConfiguration.unknownToken = s }
            if let s = try special("cls_token") { tokenizerConfiguration.classifierToken = s }
            if let s = try special("sep_token") { tokenizerConfiguration.separatorToken = s }
            if let s = try special("pad_token") { tokenizerConfiguration.paddingToken = s }
            if let s = try special("mask_token") { tokenizerConfiguration.maskToken = s }
            if let value = raw["tokenizer_class"], !(value is NSNull), !(value is String) { throw wrongType("tokenizer_class", "a string") }
            if let tokenizerClass = raw["tokenizer_class"] as? String, !tokenizerClass.hasPrefix("Bert") {
                throw SentenceEncoderError.unsupportedModel(file: tokenizerConfigURL.path, reason: "tokenizer_class '\(tokenizerClass)' is not a BERT WordPiece tokenizer")
            }
        }
        var maxSequenceLength = min(modelMaxLength, bert.maxPositionEmbeddings)
        var lowercaseInput = false
        let sentenceConfigURL = file("sentence_bert_config.json")
        if fm.fileExists(atPath: sentenceConfigURL.path) {
            guard let raw = try jsonObject(sentenceConfigURL) as? [String: Any] else {
                throw SentenceEncoderError.badConfiguration(file: sentenceConfigURL.path, reason: "expected a JSON object")
            }
            if let value = raw["max_seq_length"], !(value is NSNull) {
                guard let n = value as? NSNumber, String(cString: n.objCType) != "c", let length = Int(exactly: n.doubleValue) else {
                    throw SentenceEncoderError.badConfiguration(file: sentenceConfigURL.path, reason: "\"max_seq_length\" must be an integer")
                }
                maxSequenceLength = min(length, bert.maxPositionEmbeddings)
            }
            if let value = raw["do_lower_case"], !(value is NSNull) {
                guard let n = value as? NSNumber, String(cString: n.objCType) == "c" else {
                    throw SentenceEncoderError.badConfiguration(file: sentenceConfigURL.path, reason: "\"do_lower_case\" must be true or false")
                }
                lowercaseInput = n.boolValue
            }
        }
        guard maxSequenceLength >= 2 else {
            throw SentenceEncoderError.badConfiguration(file: sentenceConfigURL.path, reason: "max_seq_length \(maxSequenceLength) leaves no room for [CLS] and [SEP]")
        }
        tokenizerConfiguration.maxLength = maxSequenceLength

        tokenizer = try WordPieceTokenizer(vocabularyFile: try require("vocab.txt"), configuration: tokenizerConfiguration)
        guard tokenizer.vocabulary.count <= bert.vocabularySize, (tokenizer.vocabulary.values.max() ?? 0) < bert.vocabularySize else {
            throw SentenceEncoderError.badConfiguration(file: configURL.path,
                reason: "vocab_size \(bert.vocabularySize) is smaller than vocab.txt (\(tokenizer.vocabulary.count) tokens)")
        }
        let weightsURL = file("model.safetensors")
        guard fm.fileExists(atPath: weightsURL.path) else {
            // A pytorch_model.bin (pickle) is deliberately not read: it can execute code when unpickled.
            throw SentenceEncoderError.missingFile(path: weightsURL.path)
        }
        model = try BERTModel(configuration: bert, weights: try SafeTensorsFile(contentsOf: weightsURL), configurationFile: configURL.path)
        configuration = SentenceEncoderConfiguration(bert: bert, tokenizer: tokenizerConfiguration, maxSequenceLength: maxSequenceLength,
                                                     lowercaseInput: lowercaseInput, pooling: pooling, normalize: normalize)
        self.threadCount = max(1, threadCount ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Frees the activation workspaces kept between `encode` calls (they are recreated on the next call).
    public func releaseWorkspaces() {
        callLock.lock(); defer { callLock.unlock() }
        workspaces.removeAll()
    }

    /// Below this many tokens in a lone batch, `encode` stays on the calling thread (measured with EncoderBench's
    /// latency probe: threading a 20-token title costs more than it saves).
    static let minimumTokensForIntraBatchThreads = 128

    /// Token ids the encoder feeds the model for `text` (with [CLS]/[SEP], truncated to `maxSequenceLength`).
    public func tokenIDs(_ text: String) -> [Int] {
        tokenizer.encode(configuration.lowercaseInput ? text.lowercased() : text)
    }

    /// Embeds `texts`; result `i` is the vector of `texts[i]` (`dimension` floats; unit length when the folder has
    /// a Normalize module). An empty text is embedded as `[CLS] [SEP]`, as sentence-transformers does.
    ///
    /// - Parameters:
    ///   - batchSize: sentences per forward pass (after sorting by length). Larger batches amortise more per-call
    ///     overhead; 32 matches sentence-transformers' default.
    ///   - progress: called with (sentences done, total) after each batch, serialised, from a worker thread.
    /// - Throws: nothing for valid input today; `throws` is kept so that input validation or cancellation can be
    ///   added without breaking callers.
    public func encode(_ texts: [String], batchSize: Int = 32, progress: ((Int, Int) -> Void)? = nil) throws -> [[Float]] {
        // Unreachable from input: Database.embed refuses a batch size below 1 before encoding.
        precondition(batchSize > 0, "batchSize must be positive")
        let width = dimension
        var flat = [Float](repeating: 0, count: texts.count * width)
        flat.withUnsafeMutableBufferPointer { encode(texts, batchSize: batchSize, into: $0.baseAddress!, progress: progress) }
        return (0 ..< texts.count).map { Array(flat[$0 * width ..< ($0 + 1) * width]) }
    }

    /// Like `encode(_:batchSize:progress:)`, writing row `i` (`dimension` floats) of a row-major
    /// `texts.count × dimension` matrix at `output`; avoids one array per sentence for large jobs.
    public func encode(_ texts: [String], batchSize: Int = 32, into output: UnsafeMutablePointer<Float>,
                       progress: ((Int, Int) -> Void)? = nil) {
        // Unreachable from input: Database.embed refuses a batch size below 1 before encoding.
        precondition(batchSize > 0, "batchSize must be positive")
        if texts.isEmpty { return }
        callLock.lock()
        defer { callLock.unlock() }

        let ids = texts.map(tokenIDs)
        // Sort by token count so each batch holds sentences of similar length (less attention waste, steadier
        // batch cost); sentence i keeps its output row through `order`.
        let order = ids.indices.sorted { ids[$0].count > ids[$1].count || (ids[$0].count == ids[$1].count && $0 < $1) }
        let batches = stride(from: 0, to: order.count, by: batchSize).map { Array(order[$0 ..< min($0 + batchSize, order.count)]) }
        let width = dimension
        let workers = min(threadCount, batches.count)
        while workspaces.count < max(1, workers) { workspaces.append(BERTWorkspace()) }
        // Worker i uses workspaces[i] alone (a workspace is not thread-safe), and all workers finish before return.
        nonisolated(unsafe) let workspaces = self.workspaces

        let progressLock = NSLock()
        // Guarded by `progressLock`; the workers below are joined before this function returns.
        nonisolated(unsafe) var done = 0
        let outputAddress = UnsafeMutableSendablePointer(pointer: output)
        // Called under `progressLock` only and only before `encode` returns (the caller is blocked meanwhile), so the
        // caller's non-Sendable closure never runs concurrently with itself or with the caller.
        nonisolated(unsafe) let progress = progress
        @Sendable func run(_ batch: [Int], workspace: BERTWorkspace, scratch: inout [Float], lanes: Int) {
            let sentences = batch.map { ids[$0] }
            if scratch.count < batch.count * width { scratch = [Float](repeating: 0, count: batch.count * width) }
            scratch.withUnsafeMutableBufferPointer { pooled in
                model.forward(sentences, workspace: workspace, pooling: configuration.pooling, attentionLanes: lanes,
                              output: pooled.baseAddress!)
                for (row, sentence) in batch.enumerated() {
                    let source = pooled.baseAddress! + row * width
                    if configuration.normalize { BERTKernels.l2Normalize(source, count: width) }
                    (outputAddress.pointer + sentence * width).update(from: source, count: width)
                }
            }
            if let progress {
                progressLock.lock()
                done += batch.count
                progress(done, texts.count)
                progressLock.unlock()
            }
        }

        if workers <= 1 {
            // One batch (or one thread): let OpenBLAS thread the products, share attention across cores — unless the
            // batch is so small that waking threads costs more than it saves (a single short title on insert).
            let tokens = ids.reduce(0) { $0 + $1.count }
            let lanes = tokens >= Self.minimumTokensForIntraBatchThreads ? threadCount : 1
            var scratch: [Float] = []
            for batch in batches { run(batch, workspace: workspaces[0], scratch: &scratch, lanes: lanes) }
        } else {
            // Several batches: whole batches per worker, one lane each.
            let next = BatchCounter()
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let workspace = workspaces[worker]
                var scratch: [Float] = []
                while let index = next.take(below: batches.count) {
                    run(batches[index], workspace: workspace, scratch: &scratch, lanes: 1)
                }
            }
        }
    }
}

/// Hands out batch indices to workers (longest batches first, since `order` is sorted by decreasing length,
/// which also balances the tail).
/// An atomic counter rather than a `Mutex`: its operations are inlined, so ThreadSanitizer sees them (it cannot
/// see inside the uninstrumented Synchronization library's lock and reported a false race).
private final class BatchCounter: Sendable {
    private let next = Atomic<Int>(0)
    func take(below limit: Int) -> Int? {
        let taken = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return taken < limit ? taken : nil
    }
}

// Unchecked: a raw pointer is not Sendable; the workers write disjoint rows and are joined before `encode` returns.
private struct UnsafeMutableSendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
}
