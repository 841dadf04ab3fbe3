import Foundation
import Yams

/// A YAML document that cannot be read as JSON-compatible data.
public struct YAMLError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

extension JSONValue {
    /// Every document of a YAML stream (`---` separated), as JSON values; empty documents are skipped.
    /// Scalars are typed by YAML 1.1's core schema, as kubectl's YAML reader does (`true`, `3`, `1.5`, `~`).
    public static func parseYAMLDocuments(_ text: String) throws(YAMLError) -> [JSONValue] {
        do {
            var documents: [JSONValue] = []
            var sequence = try Yams.compose_all(yaml: text)
            while let node = sequence.next() {
                let value = try convert(node)
                if !value.isNull { documents.append(value) }
            }
            if let error = sequence.error { throw error }
            return documents
        } catch let error as YAMLError {
            throw error
        } catch let error as YamlError {
            throw YAMLError(description: "malformed YAML: \(error)")
        } catch {
            throw YAMLError(description: "malformed YAML: \(error)")
        }
    }

    /// One YAML document.
    public init(yaml text: String) throws(YAMLError) {
        let documents = try Self.parseYAMLDocuments(text)
        guard documents.count <= 1 else {
            throw YAMLError(description: "expected one YAML document, found \(documents.count)")
        }
        self = documents.first ?? .null
    }

    /// One YAML document with the line of every value in it, keyed by its field path as error messages
    /// spell it (`spec.actions.backup.phases[0].exec`; the document itself is ""): a checker that finds a
    /// mistake at a path can say on which line it stands (`line(of:)`).
    public static func parseYAMLWithLines(_ text: String) throws(YAMLError) -> (value: JSONValue, lines: YAMLLines) {
        do {
            var sequence = try Yams.compose_all(yaml: text)
            var found: [(JSONValue, YAMLLines)] = []
            while let node = sequence.next() {
                var lines = YAMLLines()
                let value = try convert(node, path: "", lines: &lines)
                if !value.isNull { found.append((value, lines)) }
            }
            if let error = sequence.error { throw error }
            guard found.count <= 1 else {
                throw YAMLError(description: "expected one YAML document, found \(found.count)")
            }
            return found.first ?? (.null, YAMLLines())
        } catch let error as YAMLError {
            throw error
        } catch {
            throw YAMLError(description: "malformed YAML: \(error)")
        }
    }

    private static func convert(_ node: Node, path: String, lines: inout YAMLLines) throws -> JSONValue {
        if let line = node.mark?.line { lines.byPath[path] = line }
        switch node {
        case .sequence(let sequence):
            return .array(try sequence.enumerated().map { try convert($1, path: "\(path)[\($0)]", lines: &lines) })
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard let name = key.scalar?.string else {
                    throw YAMLError(description: "malformed YAML: a mapping key must be a scalar (line \(key.mark?.line ?? 0))")
                }
                let child = path.isEmpty ? name : path + "." + name
                if let line = key.mark?.line { lines.byPath[child] = line }
                object[name] = try convert(value, path: child, lines: &lines)
                if let line = key.mark?.line { lines.byPath[child] = line }
            }
            return .object(object)
        default:
            return try convert(node)
        }
    }

    private static func convert(_ node: Node) throws -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: if let b = node.bool { return .bool(b) }
            case .int: if let i = node.int { return .int(Int64(i)) }
            case .float: if let d = node.float, d.isFinite { return .double(d) }
            default: break
            }
            return .string(scalar.string)
        case .sequence(let sequence):
            return .array(try sequence.map(convert))
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard let name = key.scalar?.string else {
                    throw YAMLError(description: "malformed YAML: a mapping key must be a scalar (line \(key.mark?.line ?? 0))")
                }
                object[name] = try convert(value)
            }
            return .object(object)
        case .alias:
            throw YAMLError(description: "YAML aliases are not supported")
        }
    }
}

/// Where the values of a YAML document stand: field path → line (1-based).
public struct YAMLLines: Sendable {
    public var byPath: [String: Int] = [:]

    public init() {}

    /// The line of `path`, or of its nearest enclosing field that has one.
    public func line(of path: String) -> Int? {
        var current = path
        while true {
            if let line = byPath[current] { return line }
            if current.isEmpty { return nil }
            if current.hasSuffix("]"), let open = current.lastIndex(of: "[") {
                current = String(current[..<open])
            } else if let dot = current.lastIndex(of: ".") {
                current = String(current[..<dot])
            } else {
                current = ""
            }
        }
    }
}
