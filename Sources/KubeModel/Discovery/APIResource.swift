/// One resource type the API server serves: `deployments` in `apps/v1`, a custom resource, …
public struct APIResource: Sendable, Hashable, CustomStringConvertible {
    /// "" for the core group.
    public var group: String
    public var version: String
    /// The plural name used in URLs, e.g. `deployments`.
    public var name: String
    public var singularName: String
    public var kind: String
    public var namespaced: Bool
    public var verbs: Set<String>
    public var shortNames: [String]
    /// Subresources such as `status`, `scale`, `log`, `exec`.
    public var subresources: Set<String>
    public var categories: [String]
    /// Whether this is the group's preferred version.
    public var preferred: Bool

    public init(group: String, version: String, name: String, kind: String, namespaced: Bool,
                verbs: Set<String> = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                singularName: String = "", shortNames: [String] = [], subresources: Set<String> = [],
                categories: [String] = [], preferred: Bool = true) {
        self.group = group
        self.version = version
        self.name = name
        self.singularName = singularName.isEmpty ? kind.lowercased() : singularName
        self.kind = kind
        self.namespaced = namespaced
        self.verbs = verbs
        self.shortNames = shortNames
        self.subresources = subresources
        self.categories = categories
        self.preferred = preferred
    }

    /// `apps/v1`, or `v1` for the core group.
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `deployments.apps`, or `pods` for the core group — the name kubectl accepts.
    public var qualifiedName: String { group.isEmpty ? name : "\(name).\(group)" }

    public var description: String { "\(qualifiedName) (\(apiVersion), kind \(kind))" }

    public func supports(_ verb: String) -> Bool { verbs.contains(verb) }

    /// The URL path of the collection, or of one object when `name` is given.
    public func path(namespace: String?, name objectName: String? = nil, subresource: String? = nil) -> String {
        var path = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace {
            path += "/namespaces/" + Self.escape(namespace)
        }
        path += "/" + name
        if let objectName {
            path += "/" + Self.escape(objectName)
            if let subresource { path += "/" + subresource }
        }
        return path
    }

    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .kubePathSegment) ?? segment
    }
}

import Foundation

extension CharacterSet {
    static let kubePathSegment: CharacterSet = {
        var set = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
        set.insert(charactersIn: "-._~:@")
        return set
    }()

    package static let kubeQueryValue: CharacterSet = {
        var set = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
        set.insert(charactersIn: "-._~")
        return set
    }()
}
