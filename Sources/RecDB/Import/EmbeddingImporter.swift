import Foundation

extension Database {
    /// Imports vectors from a 2-D `.npy` (float32/float16, C order) or a JSON `{"id": [floats]}` file
    /// into `options.space`, creating the space when it does not exist. One write transaction: a wrong
    /// dimension, NaN/Inf, an unknown id or a truncated file stops it and nothing is written.
    /// Re-importing replaces the same vectors (idempotent by id).
    @discardableResult
    public func importEmbeddings(from path: String, options: EmbeddingImportOptions) throws -> ImportSummary {
        let isNPY = path.lowercased().hasSuffix(".npy")
        return try runImport(path, bytesPerFileByte: 2) { tx -> ImportSummary in
            var summary = ImportSummary(file: path, kind: "embeddings", format: isNPY ? "npy" : "json")
            summary.space = options.space
            if isNPY {
                try importNPY(path: path, options: options, tx: tx, summary: &summary)
            } else {
                try importJSONVectors(path: path, options: options, tx: tx, summary: &summary)
            }
            return summary
        }
    }

    /// The space to write into: the existing one (checked against the file) or a new one.
    private func prepareSpace(_ tx: WriteTransaction, options: EmbeddingImportOptions, dimension: Int, fileDType: VectorDType, path: String) throws -> EmbeddingSpace {
        if let space = try tx.space(named: options.space) {
            guard space.kind == options.kind else {
                throw RecDBError.importFailed(ImportError(file: path, line: nil, problem: "space '\(space.name)' holds \(space.kind.rawValue) vectors, not \(options.kind.rawValue) vectors"))
            }
            guard space.dimension == dimension else {
                throw RecDBError.importFailed(ImportError(file: path, line: nil, problem: "vectors have dimension \(dimension) but space '\(space.name)' has dimension \(space.dimension)"))
            }
            return space
        }
        return try tx.createSpace(EmbeddingSpace(
            name: options.space, kind: options.kind, dimension: dimension, dtype: options.dtype ?? fileDType,
            metric: options.metric, normalized: options.normalize,
            provenance: options.provenance ?? "imported from \(URL(fileURLWithPath: path).lastPathComponent)"))
    }

    /// The entity id for an external id, creating users when allowed. Rows mapped by position (an `.npy`
    /// without `--ids`) never create users: a padding row 0 must not become user "0".
    /// The entity a row's vector belongs to; a missing user is created when allowed (and counted in `summary`).
    private func entity(_ external: String, tx: WriteTransaction, options: EmbeddingImportOptions, named: Bool = true,
                        summary: inout ImportSummary) throws -> UInt32? {
        switch options.kind {
        case .item: return try tx.itemID(for: external)
        case .user:
            if let id = try tx.userID(for: external) { return id }
            guard options.createMissingUsers && named else { return nil }
            summary.createdUsers += 1
            return try tx.upsertUser(externalID: external)
        }
    }

    private func importNPY(path: String, options: EmbeddingImportOptions, tx: WriteTransaction, summary: inout ImportSummary) throws {
        let npy = try NPYReader(path: path)
        let space = try prepareSpace(tx, options: options, dimension: npy.columns, fileDType: npy.dtype, path: path)
        var ids: [String]?
        if let idsFile = options.idsFile {
            let reader = try LineReader(path: idsFile, maxLineBytes: options.maxLineBytes)
            var list: [String] = []
            while let line = try reader.next() {
                guard UTF8Check.isValid(line) else { throw reader.error("not valid UTF-8") }
                let id = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                guard !id.isEmpty else { throw reader.error("empty id") }
                list.append(id)
            }
            guard list.count == npy.rows else {
                throw RecDBError.importFailed(ImportError(file: idsFile, line: nil, problem: "has \(list.count) ids but \(path) has \(npy.rows) rows"))
            }
            ids = list
        }
        var row = [Float](repeating: 0, count: npy.columns)
        for r in 0..<npy.rows {
            let external = ids?[r] ?? String(r)
            guard let entity = try entity(external, tx: tx, options: options, named: ids != nil, summary: &summary) else {
                if ids != nil {
                    throw RecDBError.importFailed(ImportError(file: options.idsFile!, line: r + 1, problem: "unknown \(options.kind.rawValue) '\(external)'"))
                }
                summary.skipped += 1
                continue
            }
            try npy.read(row: r, into: &row)
            try tx.putVector(space: space.name, entity: entity, row)
            summary.vectors += 1
            summary.rows += 1
            if r & 0x7FF == 0, let progress = options.progress {
                progress(ImportProgress(rows: r, bytesDone: r * npy.columns * npy.dtype.byteWidth, bytesTotal: npy.rows * npy.columns * npy.dtype.byteWidth))
            }
        }
    }

    private func importJSONVectors(path: String, options: EmbeddingImportOptions, tx: WriteTransaction, summary: inout ImportSummary) throws {
        var stream = try JSONObjectStream(path: path)
        var space: EmbeddingSpace?
        while let (key, value, line) = try stream.next() {
            guard case let .numbers(vector) = value else {
                throw RecDBError.importFailed(ImportError(file: path, line: line, problem: "value of \"\(key.prefix(40))\" is not an array of numbers"))
            }
            if space == nil { space = try prepareSpace(tx, options: options, dimension: vector.count, fileDType: .f32, path: path) }
            guard vector.count == space!.dimension else {
                throw RecDBError.importFailed(ImportError(file: path, line: line, problem: "vector of \"\(key.prefix(40))\" has dimension \(vector.count), expected \(space!.dimension)"))
            }
            guard let entity = try entity(key, tx: tx, options: options, summary: &summary) else {
                throw RecDBError.importFailed(ImportError(file: path, line: line, problem: "unknown \(options.kind.rawValue) '\(key.prefix(40))'"))
            }
            try tx.putVector(space: space!.name, entity: entity, vector)
            summary.vectors += 1
            summary.rows += 1
            if summary.rows & 0x3FF == 0, let progress = options.progress {
                progress(ImportProgress(rows: summary.rows, bytesDone: stream.bytesConsumed, bytesTotal: stream.totalBytes))
            }
        }
    }

    /// Imports profile texts from JSON `{"user": "text", ...}` or JSON Lines (`{"user": …, "text": …}`),
    /// creating users that do not exist yet (a profile may arrive before any event). One write
    /// transaction; re-importing replaces the same profiles.
    @discardableResult
    public func importProfiles(from path: String, options: ProfileImportOptions = .init()) throws -> ImportSummary {
        let isJSONL = path.lowercased().hasSuffix(".jsonl") || path.lowercased().hasSuffix(".ndjson")
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return try runImport(path, bytesPerFileByte: 2) { tx -> ImportSummary in
            var summary = ImportSummary(file: path, kind: "profiles", format: isJSONL ? "jsonl" : "json")
            func store(_ user: String, _ text: String, line: Int) throws {
                do {
                    let existed = try tx.userID(for: user) != nil
                    let id = try tx.upsertUser(externalID: user)
                    if !existed { summary.createdUsers += 1 }
                    try tx.putProfile(user: id, text: text)
                } catch let error as RecDBError {
                    throw RecDBError.importFailed(ImportError(file: path, line: line, problem: "\(error)"))
                }
                summary.profiles += 1
                summary.rows += 1
                if summary.rows & 0x3FF == 0, let progress = options.progress {
                    progress(ImportProgress(rows: summary.rows, bytesDone: 0, bytesTotal: fileSize))
                }
            }
            if isJSONL {
                let reader = try LineReader(path: path, maxLineBytes: options.maxLineBytes)
                let schema = try JSONSchema.bundled("import/profiles.jsonl.schema.json")
                let defaultKeys = options.userKey == "user" && options.textKey == "text"
                while let line = try reader.next() {
                    guard UTF8Check.isValid(line) else { throw reader.error("not valid UTF-8") }
                    if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                    guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else { throw reader.error("not a JSON object") }
                    if defaultKeys, let problem = schema.violation(of: object) { throw reader.error(problem) }
                    let user: String
                    switch object[options.userKey] {
                    case let s as String: user = s
                    case let n? where jsonNumber(n) != nil: user = (n as! NSNumber).stringValue
                    default: throw reader.error("missing or non-string \"\(options.userKey)\"")
                    }
                    guard let text = object[options.textKey] as? String else { throw reader.error("missing or non-string \"\(options.textKey)\"") }
                    try store(user, text, line: reader.lineNumber)
                }
            } else {
                var stream = try JSONObjectStream(path: path)
                while let (key, value, line) = try stream.next() {
                    guard case let .string(text) = value else {
                        throw RecDBError.importFailed(ImportError(file: path, line: line, problem: "profile of \"\(key.prefix(40))\" is not a string (for profile embeddings use `import embeddings --kind user`)"))
                    }
                    try store(key, text, line: line)
                }
            }
            return summary
        }
    }
}
