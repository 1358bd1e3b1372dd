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
        let out = try OutputFile(path: path)
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
        let out = try OutputFile(path: path)
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

/// A buffered output file that reports write failures (full disk) as errors.
final class OutputFile {
    private let handle: FileHandle
    private var buffer = Data()
    let path: String

    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw RecDBError.invalidArgument("cannot create \(path)")
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw RecDBError.invalidArgument("cannot open \(path) for writing") }
        handle = h
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
        try handle.close()
    }
}
