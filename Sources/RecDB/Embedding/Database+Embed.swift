import Foundation
import Learn

/// What to embed: `db.embed(EmbedRequest(space: "minilm", encoderDirectory: "models/all-MiniLM-L6-v2"))`.
public struct EmbedRequest {
    /// The space to fill (created when new; its dimension is the encoder's).
    public var space: String
    /// A sentence-transformers model folder of the BERT family (config.json, model.safetensors, vocab.txt, …).
    public var encoderDirectory: String
    /// Text template: `{title}`, `{text}`, `{<attribute>}` for item attributes, `{profile}` for users.
    /// Items (or profiles) whose rendered text is empty get no vector.
    public var template: String = "{title}"
    /// `item` embeds items, `user` embeds profile texts.
    public var kind: EntityKind = .item
    /// Sentences per forward pass; also the unit of commit (each batch is one write transaction,
    /// so an interrupted run keeps what it did and a rerun resumes).
    public var batchSize = 128
    /// Recompute vectors that already exist (default: resume, embedding only what is missing).
    public var recomputeAll = false
    /// Keep the space current: items (profiles) written later are embedded in their own transaction.
    public var embedOnInsert = true
    public var dtype: VectorDType = .f32
    public var progress: ((Int, Int) -> Void)?

    public init(space: String, encoderDirectory: String) {
        self.space = space
        self.encoderDirectory = encoderDirectory
    }
}

public struct EmbedOutcome: Codable, Sendable {
    public var space: String
    public var dimension: Int
    /// Vectors written by this run.
    public var embedded: Int
    /// Entities that already had a vector (resume) or whose text was empty.
    public var skipped: Int
    public var seconds: Double
    public var sentencesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case space, dimension, embedded, skipped, seconds
        case sentencesPerSecond = "sentences_per_second"
    }
}

/// A loaded encoder, shared by the process (loading reads ~90 MB of weights).
final class EncoderBox: Sendable {
    let encoder: SentenceEncoder
    init(_ encoder: SentenceEncoder) { self.encoder = encoder }
}

enum TextTemplate {
    /// Renders `{title}`, `{text}`, `{profile}` and `{<attribute>}` placeholders; nil only when the text
    /// is blank once the fields are filled — every placeholder empty (what remains is the template's own
    /// separators) or, for a template without placeholders, nothing but whitespace. Any other text is
    /// embedded, punctuation or symbols only included ("!!!", "∑ ∫ √"), as sentence-transformers does.
    static func render(_ template: String, item: Item?, profile: String?) -> String? {
        var out = ""
        var rest = Substring(template)
        var placeholders = 0, filled = 0
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            let key = String(rest[rest.index(after: open)..<close])
            let v = value(key, item: item, profile: profile)
            placeholders += 1
            if !isBlank(v) { filled += 1 }
            out += v
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        if placeholders > 0 ? filled == 0 : isBlank(out) { return nil }
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func isBlank(_ s: String) -> Bool { s.unicodeScalars.allSatisfy { $0.properties.isWhitespace } }

    private static func value(_ key: String, item: Item?, profile: String?) -> String {
        switch key {
        case "title": return item?.title ?? ""
        case "text": return item?.text ?? ""
        case "id": return item?.externalID ?? ""
        case "profile": return profile ?? ""
        default:
            guard let attribute = item?.attributes[key] else { return "" }
            if let s = attribute as? String { return s }
            if let list = attribute as? [Any] { return list.map { "\($0)" }.joined(separator: ", ") }
            return "\(attribute)"
        }
    }
}

extension Database {
    func encoder(at directory: String) throws -> SentenceEncoder {
        let key = "encoder:" + URL(fileURLWithPath: directory).standardizedFileURL.path
        if let box = runtime.value(key, as: EncoderBox.self) { return box.encoder }
        do {
            let encoder = try SentenceEncoder(modelDirectory: URL(fileURLWithPath: directory))
            runtime.set(key, EncoderBox(encoder))
            return encoder
        } catch {
            throw RecDBError.invalidArgument("cannot load the encoder in \(directory): \(error)")
        }
    }

    /// Embeds every item (or profile) text of the database into `request.space` with an in-store
    /// sentence encoder, in batches that each commit on their own, and attaches the encoder to the
    /// space so that later inserts are embedded too.
    public func embed(_ request: EmbedRequest) throws -> EmbedOutcome {
        try requireNoTransaction("embed")
        let start = Date()
        let encoder = try self.encoder(at: request.encoderDirectory)
        guard request.batchSize > 0 else { throw RecDBError.invalidArgument("batch size must be positive") }
        let binding = EncoderBinding(modelDirectory: URL(fileURLWithPath: request.encoderDirectory).standardizedFileURL.path,
                                     template: request.template, embedOnInsert: request.embedOnInsert)
        // Create or check the space and attach the encoder in the same transaction as the first batch's
        // vectors: a run that fails before its first commit (bad weights, NaN vectors) leaves nothing behind.
        func prepareSpace(_ tx: WriteTransaction) throws {
            if var space = try tx.space(named: request.space) {
                guard space.kind == request.kind, space.dimension == encoder.dimension else {
                    throw RecDBError.invalidArgument("space '\(request.space)' is \(space.kind.rawValue) × \(space.dimension); the encoder gives \(request.kind.rawValue) × \(encoder.dimension)")
                }
                guard space.encoder != binding else { return }
                space.encoder = binding
                try tx.updateSpace(space)
            } else {
                try tx.createSpace(EmbeddingSpace(name: request.space, kind: request.kind, dimension: encoder.dimension, dtype: request.dtype,
                                                  metric: .cosine, normalized: false,
                                                  provenance: "RecDB sentence encoder \(URL(fileURLWithPath: request.encoderDirectory).lastPathComponent), template \(request.template)",
                                                  encoder: binding))
            }
        }
        // The work list, from one snapshot (checked against an existing space first, so a mismatch fails early).
        let (work, skipped) = try read { tx -> ([(UInt32, String)], Int) in
            let existing = try tx.space(named: request.space)
            if let space = existing, space.kind != request.kind || space.dimension != encoder.dimension {
                throw RecDBError.invalidArgument("space '\(request.space)' is \(space.kind.rawValue) × \(space.dimension); the encoder gives \(request.kind.rawValue) × \(encoder.dimension)")
            }
            var work: [(UInt32, String)] = []
            var skipped = 0
            func consider(_ id: UInt32, _ text: String?) throws {
                guard let text else { skipped += 1; return }
                if !request.recomputeAll, let space = existing, try tx.raw.contains(.vectors, key: Keys.pair(space.id, id)) {
                    skipped += 1
                    return
                }
                work.append((id, text))
            }
            switch request.kind {
            case .item:
                try tx.forEachItem { item in
                    guard !item.isDeleted else { return true }
                    try consider(item.id, TextTemplate.render(request.template, item: item, profile: nil))
                    return true
                }
            case .user:
                try tx.forEachProfile { p in
                    try consider(p.user, TextTemplate.render(request.template, item: nil, profile: p.text))
                    return true
                }
            }
            return (work, skipped)
        }
        // Encode and commit batch by batch.
        var done = 0
        request.progress?(0, work.count)
        if work.isEmpty { try write(prepareSpace) }
        while done < work.count {
            let batch = work[done..<min(work.count, done + request.batchSize)]
            let vectors: [[Float]]
            do { vectors = try encoder.encode(batch.map(\.1), batchSize: min(64, request.batchSize)) } catch {
                throw RecDBError.invalidArgument("encoding failed: \(error)")
            }
            try write { tx in
                try prepareSpace(tx)
                for ((id, text), vector) in zip(batch, vectors) {
                    do { try tx.putVector(space: request.space, entity: id, vector) } catch let error as RecDBError {
                        throw RecDBError.invalidArgument("the encoder in \(request.encoderDirectory) gave an unusable vector for \(request.kind.rawValue) #\(id) (text \(text.prefix(60).debugDescription)): \(error)")
                    }
                }
            }
            done += batch.count
            request.progress?(done, work.count)
        }
        let seconds = Date().timeIntervalSince(start)
        return EmbedOutcome(space: request.space, dimension: encoder.dimension, embedded: work.count, skipped: skipped,
                            seconds: seconds, sentencesPerSecond: seconds > 0 ? Double(work.count) / seconds : 0)
    }

    /// Embed-on-insert: items (or profiles) written in this transaction get vectors in every space
    /// whose attached encoder asks for it — before commit, in the same transaction.
    func embedOnInsert(_ tx: WriteTransaction) throws {
        guard !tx.changedItems.isEmpty || !tx.changedProfiles.isEmpty else { return }
        for space in try tx.spaces() {
            guard let binding = space.encoder, binding.embedOnInsert else { continue }
            var pending: [(UInt32, String)] = []
            switch space.kind {
            case .item:
                for id in tx.changedItems.sorted() {
                    guard let item = try tx.item(id: id), !item.isDeleted,
                          let text = TextTemplate.render(binding.template, item: item, profile: nil) else { continue }
                    pending.append((id, text))
                }
            case .user:
                for id in tx.changedProfiles.sorted() {
                    guard let text = TextTemplate.render(binding.template, item: nil, profile: try tx.profile(user: id)?.text) else { continue }
                    pending.append((id, text))
                }
            }
            guard !pending.isEmpty else { continue }
            let encoder = try self.encoder(at: binding.modelDirectory)
            let vectors: [[Float]]
            do { vectors = try encoder.encode(pending.map(\.1)) } catch { throw RecDBError.invalidArgument("encoding failed: \(error)") }
            for ((id, _), vector) in zip(pending, vectors) { try tx.putVector(space: space.name, entity: id, vector) }
        }
    }
}
