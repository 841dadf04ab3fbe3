/// One Kubernetes object as the API server sent it, every field kept. Typed views (`Pod`, `Deployment`, …)
/// read and write through it, so fields they do not model survive an update.
public struct KubeObject: Sendable, Hashable, CustomStringConvertible {
    public var json: JSONValue

    public init(_ json: JSONValue) {
        self.json = json
    }

    /// A new object of a kind.
    public init(apiVersion: String, kind: String, name: String, namespace: String? = nil) {
        json = ["apiVersion": .string(apiVersion), "kind": .string(kind), "metadata": ["name": .string(name)]]
        if let namespace { self.namespace = namespace }
    }

    public subscript(path: String...) -> JSONValue? {
        get { json[path: path[...]] }
        set { json[path: path[...]] = newValue }
    }

    public var apiVersion: String {
        get { json["apiVersion"]?.string ?? "" }
        set { json["apiVersion"] = .string(newValue) }
    }

    public var kind: String {
        get { json["kind"]?.string ?? "" }
        set { json["kind"] = .string(newValue) }
    }

    /// The API group: "" for the core group.
    public var group: String {
        let parts = apiVersion.split(separator: "/", maxSplits: 1)
        return parts.count == 2 ? String(parts[0]) : ""
    }

    public var name: String {
        get { json["metadata", "name"]?.string ?? "" }
        set { json["metadata", "name"] = .string(newValue) }
    }

    public var generateName: String? {
        get { json["metadata", "generateName"]?.string }
        set { json["metadata", "generateName"] = newValue.map(JSONValue.string) }
    }

    public var namespace: String? {
        get { json["metadata", "namespace"]?.string }
        set { json["metadata", "namespace"] = newValue.map(JSONValue.string) }
    }

    public var uid: String? { json["metadata", "uid"]?.string }

    public var resourceVersion: String? {
        get { json["metadata", "resourceVersion"]?.string }
        set { json["metadata", "resourceVersion"] = newValue.map(JSONValue.string) }
    }

    public var generation: Int64? { json["metadata", "generation"]?.int }
    public var creationTimestamp: String? { json["metadata", "creationTimestamp"]?.string }
    public var deletionTimestamp: String? { json["metadata", "deletionTimestamp"]?.string }

    public var labels: [String: String] {
        get { Self.stringMap(json["metadata", "labels"]) }
        set { json["metadata", "labels"] = newValue.isEmpty ? nil : .object(newValue.mapValues(JSONValue.string)) }
    }

    public var annotations: [String: String] {
        get { Self.stringMap(json["metadata", "annotations"]) }
        set {
            json["metadata", "annotations"] = newValue.isEmpty ? nil : .object(newValue.mapValues(JSONValue.string))
        }
    }

    public var finalizers: [String] {
        get { json["metadata", "finalizers"]?.array?.compactMap(\.string) ?? [] }
        set { json["metadata", "finalizers"] = newValue.isEmpty ? nil : .array(newValue.map(JSONValue.string)) }
    }

    public struct OwnerReference: Sendable, Hashable {
        public var apiVersion: String
        public var kind: String
        public var name: String
        public var uid: String
        public var controller: Bool
    }

    public var ownerReferences: [OwnerReference] {
        (json["metadata", "ownerReferences"]?.array ?? []).map {
            OwnerReference(apiVersion: $0["apiVersion"]?.string ?? "", kind: $0["kind"]?.string ?? "",
                           name: $0["name"]?.string ?? "", uid: $0["uid"]?.string ?? "",
                           controller: $0["controller"]?.bool ?? false)
        }
    }

    /// `kind namespace/name` for messages.
    public var description: String {
        let ns = namespace.map { "\($0)/" } ?? ""
        return "\(kind) \(ns)\(name)"
    }

    public static func stringMap(_ value: JSONValue?) -> [String: String] {
        guard let o = value?.object else { return [:] }
        var result: [String: String] = [:]
        for (k, v) in o { if let s = v.string { result[k] = s } }
        return result
    }
}

/// A page of a list, or a whole list.
public struct ObjectList: Sendable {
    public var items: [KubeObject]
    public var resourceVersion: String
    /// The token for the next page, nil on the last one.
    public var continueToken: String?
    public var remainingItemCount: Int64?

    public init(items: [KubeObject], resourceVersion: String, continueToken: String? = nil,
                remainingItemCount: Int64? = nil) {
        self.items = items
        self.resourceVersion = resourceVersion
        self.continueToken = continueToken
        self.remainingItemCount = remainingItemCount
    }
}
