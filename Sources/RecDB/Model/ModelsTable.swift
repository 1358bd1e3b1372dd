import Foundation

/// Key layout of the `models` table (see schemas/tables.json):
/// - `m/<name>` → model header (JSON: name, active version, next version)
/// - `v/<name>/<version u32 BE>` → version record (JSON: configuration, metrics, event version, …)
/// - `t/<name>/<version u32 BE>/<tensor>` → a tensor (shape header + little-endian f32)
enum ModelKeys {
    static func header(_ name: String) -> [UInt8] { Array("m/\(name)".utf8) }
    static func version(_ name: String, _ version: UInt32) -> [UInt8] {
        var b = Array("v/\(name)/".utf8); b += Keys.u32(version); return b
    }
    static func versionPrefix(_ name: String) -> [UInt8] { Array("v/\(name)/".utf8) }
    static func tensor(_ name: String, _ version: UInt32, _ tensor: String) -> [UInt8] {
        var b = Array("t/\(name)/".utf8); b += Keys.u32(version); b += Array("/\(tensor)".utf8); return b
    }
    static func tensorPrefix(_ name: String, _ version: UInt32) -> [UInt8] {
        var b = Array("t/\(name)/".utf8); b += Keys.u32(version); b += Array("/".utf8); return b
    }
}

extension ReadTransaction {
    /// Names of all stored models.
    public func modelNames() throws -> [String] {
        try keys(in: .models, prefix: Array("m/".utf8)).map { String(decoding: $0.dropFirst(2), as: UTF8.self) }
    }

    /// Every key of `table` starting with `prefix`, in order.
    func keys(in table: Table, prefix: [UInt8]) throws -> [[UInt8]] {
        let cursor = try raw.cursor(table)
        var out: [[UInt8]] = []
        var more = try cursor.seek(prefix) { k, _ -> Bool in
            guard k.starts(with: prefix) else { return false }
            out.append(Array(k)); return true
        } ?? false
        while more {
            more = try cursor.move(.next) { k, _ -> Bool in
                guard k.starts(with: prefix) else { return false }
                out.append(Array(k)); return true
            } ?? false
        }
        return out
    }
}

/// The `m/<name>` record: which version serves and which number the next one gets.
struct ModelHeader: Codable, Equatable {
    var name: String
    var activeVersion: UInt32?
    var previousActive: [UInt32]
    var nextVersion: UInt32
    var createdAt: Int64
}

extension ReadTransaction {
    func modelHeader(_ name: String) throws -> ModelHeader? {
        let key = ModelKeys.header(name)
        return try raw.withValue(.models, key: key) { stored in
            let buf = try Seal.open(stored, key: key, table: .models)
            do { return try JSONDecoder().decode(ModelHeader.self, from: Data(buf)) } catch {
                throw RecDBError.corrupt("model \(name): \(error)")
            }
        }
    }

    func verifyModelsAndIndexes(problem: (String) -> Void, checked: inout [String: Int]) throws {
        let names = try modelNames()
        for name in names {
            guard let header = try modelHeader(name) else { problem("model \(name) has no header"); continue }
            if let active = header.activeVersion, try !raw.contains(.models, key: ModelKeys.version(name, active)) {
                problem("model \(name) points at version \(active), which does not exist")
            }
        }
        checked["models"] = names.count
        checked["indexes"] = try keys(in: .indexes, prefix: IndexKeys.headerPrefix).count
    }
}
