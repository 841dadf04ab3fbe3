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
