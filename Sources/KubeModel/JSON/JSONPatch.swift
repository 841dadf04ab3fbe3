/// A JSON patch that could not be applied: which operation and why.
public struct JSONPatchError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: Int
    public var reason: String
    public var description: String { "JSON patch operation \(operation + 1): \(reason)" }
}

/// RFC 6902 JSON Patch applied to a `JSONValue` on the client side — for restore transforms, which must
/// change objects before they reach the server. Paths are RFC 6901 JSON Pointers (`/spec/replicas`,
/// `~1` for `/`, `~0` for `~`, `-` for the end of an array). All operations apply or none: the input is
/// untouched when one fails.
public enum JSONPatch {
    public static func apply(_ operations: [JSONValue], to document: JSONValue) throws(JSONPatchError) -> JSONValue {
        var result = document
        for (index, operation) in operations.enumerated() {
            func fail(_ reason: String) -> JSONPatchError { JSONPatchError(operation: index, reason: reason) }
            guard let op = operation["op"]?.string else { throw fail("no 'op'") }
            guard let pathText = operation["path"]?.string else { throw fail("no 'path'") }
            guard let path = pointer(pathText) else { throw fail("'\(pathText)' is not a JSON pointer") }
            switch op {
            case "add":
                guard let value = operation["value"] else { throw fail("'add' needs a 'value'") }
                try insert(value, at: path[...], into: &result, replacing: false, fail)
            case "remove":
                _ = try remove(at: path[...], from: &result, fail)
            case "replace":
                guard let value = operation["value"] else { throw fail("'replace' needs a 'value'") }
                _ = try remove(at: path[...], from: &result, fail)
                try insert(value, at: path[...], into: &result, replacing: true, fail)
            case "move", "copy":
                guard let fromText = operation["from"]?.string, let from = pointer(fromText) else {
                    throw fail("'\(op)' needs a 'from' pointer")
                }
                if op == "move", path.count > from.count, Array(path.prefix(from.count)) == from {
                    throw fail("cannot move '\(fromText)' into itself")
                }
                guard let value = try? get(from[...], in: result) else { throw fail("'\(fromText)' does not exist") }
                if op == "move" { _ = try remove(at: from[...], from: &result, fail) }
                try insert(value, at: path[...], into: &result, replacing: false, fail)
            case "test":
                guard let value = operation["value"] else { throw fail("'test' needs a 'value'") }
                guard let actual = try? get(path[...], in: result), actual == value else {
                    throw fail("test failed: '\(pathText)' is not \(value)")
                }
            default:
                throw fail("unknown op '\(op)'")
            }
        }
        return result
    }

    /// Splits a JSON pointer into unescaped tokens; nil when it is not one.
    public static func pointer(_ text: String) -> [String]? {
        if text.isEmpty { return [] }
        guard text.hasPrefix("/") else { return nil }
        return text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    struct Missing: Error {}

    static func get(_ path: ArraySlice<String>, in value: JSONValue) throws -> JSONValue {
        guard let token = path.first else { return value }
        switch value {
        case .object(let members):
            guard let child = members[token] else { throw Missing() }
            return try get(path.dropFirst(), in: child)
        case .array(let elements):
            guard let i = Int(token), token == String(i), elements.indices.contains(i) else { throw Missing() }
            return try get(path.dropFirst(), in: elements[i])
        default:
            throw Missing()
        }
    }

    static func insert(_ new: JSONValue, at path: ArraySlice<String>, into value: inout JSONValue, replacing: Bool,
                       _ fail: (String) -> JSONPatchError) throws(JSONPatchError) {
        guard let token = path.first else {
            value = new
            return
        }
        let last = path.count == 1
        switch value {
        case .object(var members):
            if last {
                members[token] = new
            } else {
                guard var child = members[token] else { throw fail("'\(token)' does not exist") }
                try insert(new, at: path.dropFirst(), into: &child, replacing: replacing, fail)
                members[token] = child
            }
            value = .object(members)
        case .array(var elements):
            if last {
                if token == "-" {
                    elements.append(new)
                } else if let i = Int(token), token == String(i), (0...elements.count).contains(i) {
                    elements.insert(new, at: i)
                } else {
                    throw fail("'\(token)' is not an index of an array of \(elements.count)")
                }
            } else {
                guard let i = Int(token), token == String(i), elements.indices.contains(i) else {
                    throw fail("'\(token)' is not an index of an array of \(elements.count)")
                }
                try insert(new, at: path.dropFirst(), into: &elements[i], replacing: replacing, fail)
            }
            value = .array(elements)
        default:
            throw fail("'\(token)' cannot be added to a \(kind(value))")
        }
    }

    static func remove(at path: ArraySlice<String>, from value: inout JSONValue,
                       _ fail: (String) -> JSONPatchError) throws(JSONPatchError) -> JSONValue {
        guard let token = path.first else { throw fail("cannot remove the whole document") }
        let last = path.count == 1
        switch value {
        case .object(var members):
            guard var child = members[token] else { throw fail("'\(token)' does not exist") }
            let removed: JSONValue
            if last {
                removed = child
                members[token] = nil
            } else {
                removed = try remove(at: path.dropFirst(), from: &child, fail)
                members[token] = child
            }
            value = .object(members)
            return removed
        case .array(var elements):
            guard let i = Int(token), token == String(i), elements.indices.contains(i) else {
                throw fail("'\(token)' is not an index of an array of \(elements.count)")
            }
            let removed: JSONValue
            if last {
                removed = elements.remove(at: i)
            } else {
                removed = try remove(at: path.dropFirst(), from: &elements[i], fail)
            }
            value = .array(elements)
            return removed
        default:
            throw fail("'\(token)' does not exist in a \(kind(value))")
        }
    }

    static func kind(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}
