import Foundation

/// A validator for the subset of JSON Schema (2020-12) that RecDB's own schemas in `schemas/` use:
/// `type` (one or a list), `enum`, `required`, `properties`, `additionalProperties` (bool or schema),
/// `items`, `minItems`, `minLength`, `minimum`, `maximum`, `anyOf`. Unknown keywords are ignored,
/// as the specification allows for annotations.
public struct JSONSchema {
    let root: [String: Any]
    public let name: String

    /// The schema bundled from `schemas/<path>`.
    /// - throws: `RecDBError.invalidArgument` naming the path when no such schema is bundled (the path is
    ///   the caller's input: a wrong one is an error to report, not a reason to stop the process).
    public static func bundled(_ path: String) throws -> JSONSchema {
        guard let text = BundledSchemas.files[path] else {
            throw RecDBError.invalidArgument("no bundled schema schemas/\(path) (bundled: \(BundledSchemas.files.keys.sorted().joined(separator: ", ")))")
        }
        guard let data = text.data(using: .utf8), let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw RecDBError.invalidArgument("bundled schema schemas/\(path) is not a JSON object; run tools/bundle-schemas.sh")
        }
        return JSONSchema(root: object, name: path)
    }

    /// The text of a bundled file under `schemas/` (the HTTP server serves `openapi.json` from here).
    public static func bundledText(_ path: String) -> String? { BundledSchemas.files[path] }

    public init(root: [String: Any], name: String) {
        self.root = root
        self.name = name
    }

    /// The first violation found, as a sentence naming the JSON path, or nil when `value` conforms.
    public func violation(of value: Any) -> String? {
        check(value, against: root, at: "$")
    }

    private func typeName(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case is String: return "string"
        case is [Any]: return "array"
        case is [String: Any]: return "object"
        default:
            if let n = value as? NSNumber {
                if String(cString: n.objCType) == "c" { return "boolean" }
                let d = n.doubleValue
                return d == d.rounded() && abs(d) < 9e15 ? "integer" : "number"
            }
            return "unknown"
        }
    }

    private func check(_ value: Any, against schema: [String: Any], at path: String) -> String? {
        let actual = typeName(value)
        if let type = schema["type"] {
            let allowed = (type as? [String]) ?? [(type as? String) ?? ""]
            let ok = allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))
            if !ok { return "\(path) must be \(allowed.joined(separator: " or ")), is \(actual)" }
        }
        if let options = schema["enum"] as? [Any] {
            let text = "\(value)"
            if !options.contains(where: { "\($0)" == text }) {
                return "\(path) must be one of \(options.map { "\($0)" }.joined(separator: ", ")), is \(text)"
            }
        }
        if let anyOf = schema["anyOf"] as? [[String: Any]] {
            let failures = anyOf.compactMap { check(value, against: $0, at: path) }
            if failures.count == anyOf.count { return failures.joined(separator: "; or ") }
        }
        switch value {
        case let object as [String: Any]:
            for key in (schema["required"] as? [String]) ?? [] where object[key] == nil {
                return "\(path) is missing required \"\(key)\""
            }
            let properties = (schema["properties"] as? [String: Any]) ?? [:]
            for (key, child) in object.sorted(by: { $0.key < $1.key }) {
                if let sub = properties[key] as? [String: Any] {
                    if let v = check(child, against: sub, at: "\(path).\(key)") { return v }
                } else if let extra = schema["additionalProperties"] {
                    if let allowed = extra as? Bool, !allowed { return "\(path) has unexpected key \"\(key)\"" }
                    if let sub = extra as? [String: Any], let v = check(child, against: sub, at: "\(path).\(key)") { return v }
                }
            }
        case let array as [Any]:
            if let min = schema["minItems"] as? Int, array.count < min { return "\(path) needs at least \(min) items, has \(array.count)" }
            if let sub = schema["items"] as? [String: Any] {
                for (i, child) in array.enumerated() {
                    if let v = check(child, against: sub, at: "\(path)[\(i)]") { return v }
                }
            }
        case let string as String:
            if let min = schema["minLength"] as? Int, string.count < min { return "\(path) must have at least \(min) characters" }
        default:
            if actual == "integer" || actual == "number", let d = (value as? NSNumber)?.doubleValue {
                if let min = (schema["minimum"] as? NSNumber)?.doubleValue, d < min { return "\(path) must be ≥ \(min), is \(d)" }
                if let max = (schema["maximum"] as? NSNumber)?.doubleValue, d > max { return "\(path) must be ≤ \(max), is \(d)" }
            }
        }
        return nil
    }
}
