import Foundation

/// Formats `export` writes.
public enum ExportFormat: String, Codable, Sendable, CaseIterable { case csv, jsonl }

extension Database {
    /// Writes every interaction (user, item, timestamp, type, value — external ids) to `path`, in
    /// (user, time) order, from one snapshot. The CSV has the header `user,item,timestamp,type,value`
    /// that `importInteractions` reads back.
    /// - returns: the number of rows written.
    @discardableResult
    public func exportInteractions(to path: String, format: ExportFormat) throws -> Int {
        let out = try OutputFile(path: path, database: self.path)
        if format == .csv { try out.write("user,item,timestamp,type,value\n") }
        var rows = 0
        try read { tx in
            var userNames: [UInt32: String] = [:]
            var itemNames: [UInt32: String] = [:]
            func userName(_ id: UInt32) throws -> String {
                if let n = userNames[id] { return n }
                let n = try tx.user(id: id)?.externalID ?? "#\(id)"
                userNames = [id: n]  // events come grouped by user: one entry is enough
                return n
            }
            func itemName(_ id: UInt32) throws -> String {
                if let n = itemNames[id] { return n }
                let n = try tx.item(id: id)?.externalID ?? "#\(id)"
                itemNames[id] = n
                return n
            }
            try tx.forEachUser { user in
                for event in try tx.events(user: user.id) {
                    let u = try userName(event.user), i = try itemName(event.item)
                    switch format {
                    case .csv:
                        let value = event.value.map { String($0) } ?? ""
                        try out.write("\(csvField(u)),\(csvField(i)),\(event.timestamp),\(csvField(event.type)),\(value)\n")
                    case .jsonl:
                        var object: [String: Any] = ["user": u, "item": i, "timestamp": event.timestamp, "type": event.type]
                        if let v = event.value { object["value"] = Double(v) }
                        try out.write(jsonLine(object))
                    }
                    rows += 1
                }
                return true
            }
        }
        try out.close()
        return rows
    }

    /// Writes every item (id, title, text, available, attributes) to `path` from one snapshot.
    @discardableResult
    public func exportItems(to path: String, format: ExportFormat) throws -> Int {
        let out = try OutputFile(path: path, database: self.path)
        if format == .csv { try out.write("item,title,text,available,attributes\n") }
        var rows = 0
        try read { tx in
            try tx.forEachItem { item in
                guard !item.isDeleted else { return true }
                switch format {
                case .csv:
                    try out.write("\(csvField(item.externalID)),\(csvField(item.title ?? "")),\(csvField(item.text ?? "")),\(item.isAvailable ? 1 : 0),\(csvField(item.attributesJSON ?? ""))\n")
                case .jsonl:
                    var object: [String: Any] = ["item": item.externalID, "available": item.isAvailable]
                    if let t = item.title { object["title"] = t }
                    if let t = item.text { object["text"] = t }
                    if !item.attributes.isEmpty { object["attributes"] = item.attributes }
                    try out.write(jsonLine(object))
                }
                rows += 1
                return true
            }
        }
        try out.close()
        return rows
    }
}

func csvField(_ s: String) -> String {
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

private func jsonLine(_ object: [String: Any]) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self) + "\n"
}

/// A buffered output file that reports write failures (full disk) as errors. It writes a temporary file
/// next to `path` and renames it over `path` only in `close()`, so a failed export leaves whatever was
/// at `path` untouched. It refuses any target inside a database directory (or any LMDB environment):
/// `export items DB DB/data.mdb` must not replace the live store.
final class OutputFile {
    private let handle: FileHandle
    private var buffer = Data()
    let path: String
    private let temporaryPath: String
    private var closed = false

    init(path: String, database: String) throws {
        self.path = path
        try OutputFile.refuseDatabaseTarget(path, database: database)
        // A device or FIFO (`/dev/stdout`) is written in place; a regular file via a temporary and a rename.
        let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType
        temporaryPath = type == nil || type == .typeRegular ? path + ".rdbctl-export-\(getpid())" : path
        guard temporaryPath == path || FileManager.default.createFile(atPath: temporaryPath, contents: nil) else {
            throw RecDBError.invalidArgument("cannot create \(path)")
        }
        guard let h = FileHandle(forWritingAtPath: temporaryPath) else {
            if temporaryPath != path { try? FileManager.default.removeItem(atPath: temporaryPath) }
            throw RecDBError.invalidArgument("cannot open \(path) for writing")
        }
        handle = h
    }

    deinit {
        if !closed {
            try? handle.close()
            if temporaryPath != path { try? FileManager.default.removeItem(atPath: temporaryPath) }
        }
    }

    /// Throws when `path` is a directory, or its directory is (or lies inside) the database directory or
    /// holds an LMDB environment (`data.mdb`/`lock.mdb`).
    static func refuseDatabaseTarget(_ path: String, database: String) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw RecDBError.invalidArgument("\(path) is a directory; give a file name to export to")
        }
        let target = URL(fileURLWithPath: path).standardizedFileURL
        let parent = target.deletingLastPathComponent().resolvingSymlinksInPath().path
        let databaseDirectory = URL(fileURLWithPath: database).standardizedFileURL.resolvingSymlinksInPath().path
        let insideDatabase = parent == databaseDirectory || parent.hasPrefix(databaseDirectory.hasSuffix("/") ? databaseDirectory : databaseDirectory + "/")
        let lmdbNames = ["data.mdb", "lock.mdb"]
        let parentIsEnvironment = lmdbNames.contains { fm.fileExists(atPath: (parent as NSString).appendingPathComponent($0)) }
        if insideDatabase || parentIsEnvironment || lmdbNames.contains(target.lastPathComponent) {
            throw RecDBError.invalidArgument("refusing to export to \(path): it is inside a database directory (\(insideDatabase ? database : parent)); nothing was written")
        }
    }

    func write(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        if buffer.count > 1 << 20 { try flush() }
    }

    private func flush() throws {
        do { try handle.write(contentsOf: buffer) } catch {
            throw RecDBError.storage(code: -1, message: error.localizedDescription, context: "writing \(path)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        try flush()
        do {
            if temporaryPath != path { try handle.synchronize() }
            try handle.close()
        } catch {
            throw RecDBError.storage(code: -1, message: error.localizedDescription, context: "writing \(path)")
        }
        guard temporaryPath == path || rename(temporaryPath, path) == 0 else {
            throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "renaming the export to \(path)")
        }
        closed = true
    }
}
