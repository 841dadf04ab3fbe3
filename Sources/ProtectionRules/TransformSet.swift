import KubeModel

/// Changes applied to objects on their way back into a cluster — a `--transform FILE` or a `TransformSet`
/// resource. A file (YAML or JSON):
///
/// ```yaml
/// transforms:                          # JSON-patch operations for the objects a matcher selects
///   - name: one replica for web
///     match: {group: apps, kind: Deployment, name: web, namespace: shop, labels: {tier: front}}
///     patch:
///       - {op: replace, path: /spec/replicas, value: 1}
/// storageClasses: {fast-ssd: standard}  # claims, volumes and StatefulSet claim templates
/// imageRegistry: {from: docker.io, to: registry.internal:5000}
/// replicas: 0                           # every Deployment/StatefulSet/ReplicaSet; or {Deployment/web: 2}
/// ```
///
/// Shortcuts apply first, then the transforms in file order. A transform that cannot apply to an object
/// fails that object alone (the caller reports it) and changes nothing of it.
public struct TransformSet: Sendable {
    public struct Match: Sendable {
        public var group: String?
        public var kind: String?
        public var name: String?
        public var namespace: String?
        public var labels: [String: String]

        func matches(_ object: KubeObject) -> Bool {
            if let group, group != object.group { return false }
            if let kind, kind.lowercased() != object.kind.lowercased() { return false }
            if let name, name != object.name { return false }
            if let namespace, namespace != object.namespace { return false }
            let have = object.labels
            return labels.allSatisfy { have[$0.key] == $0.value }
        }
    }

    public struct Transform: Sendable {
        public var name: String
        public var match: Match
        public var patch: [JSONValue]
    }

    public var transforms: [Transform] = []
    public var storageClasses: [String: String] = [:]
    public var imageRegistry: (from: String, to: String)?
    /// Replicas for every scalable workload (key "*") or per `Kind/name`.
    public var replicas: [String: Int] = [:]

    public init() {}

    public init(json document: JSONValue) throws(ProtectionError) {
        guard document.object != nil else { throw ProtectionError(.invalidTransform, "a transform file must be a mapping") }
        let known: Set<String> = ["transforms", "storageClasses", "imageRegistry", "replicas", "apiVersion", "kind", "metadata", "spec"]
        // A TransformSet resource carries the same fields under spec.
        let body = document["kind"]?.string == "TransformSet" ? (document["spec"] ?? .emptyObject) : document
        for key in body.object?.keys.sorted() ?? [] where !known.contains(key) {
            throw ProtectionError(.invalidTransform, "unknown field '\(key)' (expected transforms, storageClasses, imageRegistry, replicas)")
        }
        for (i, entry) in (body["transforms"]?.array ?? []).enumerated() {
            let label = entry["name"]?.string ?? "transform \(i + 1)"
            guard let ops = entry["patch"]?.array, !ops.isEmpty else {
                throw ProtectionError(.invalidTransform, "\(label): 'patch' must be a non-empty list of JSON-patch operations")
            }
            for (j, op) in ops.enumerated() {
                guard let kind = op["op"]?.string, ["add", "remove", "replace", "move", "copy", "test"].contains(kind),
                      let path = op["path"]?.string, JSONPatch.pointer(path) != nil
                else { throw ProtectionError(.invalidTransform, "\(label): operation \(j + 1) is not a JSON-patch operation with a path") }
            }
            let m = entry["match"] ?? .emptyObject
            var labels: [String: String] = [:]
            for (k, v) in m["labels"]?.object ?? [:] {
                guard let s = v.string else { throw ProtectionError(.invalidTransform, "\(label): label '\(k)' must be a string") }
                labels[k] = s
            }
            transforms.append(Transform(
                name: label,
                match: Match(group: m["group"]?.string, kind: m["kind"]?.string, name: m["name"]?.string,
                             namespace: m["namespace"]?.string, labels: labels),
                patch: ops))
        }
        for (from, to) in body["storageClasses"]?.object ?? [:] {
            guard let to = to.string else { throw ProtectionError(.invalidTransform, "storageClasses.\(from) must be a class name") }
            storageClasses[from] = to
        }
        if let registry = body["imageRegistry"] {
            guard let from = registry["from"]?.string, let to = registry["to"]?.string, !from.isEmpty, !to.isEmpty else {
                throw ProtectionError(.invalidTransform, "imageRegistry needs 'from' and 'to'")
            }
            imageRegistry = (from, to)
        }
        switch body["replicas"] {
        case nil: break
        case .some(.int(let n)) where n >= 0: replicas["*"] = Int(n)
        case .some(.object(let map)):
            for (key, value) in map {
                guard let n = value.int, n >= 0, key.contains("/") else {
                    throw ProtectionError(.invalidTransform, "replicas.\(key): expected 'Kind/name: count'")
                }
                replicas[key] = Int(n)
            }
        default: throw ProtectionError(.invalidTransform, "replicas must be a count or a map of Kind/name to counts")
        }
    }

    /// Reads a transform file (YAML or JSON).
    public init(yaml text: String) throws(ProtectionError) {
        let document: JSONValue
        do {
            document = try JSONValue(yaml: text)
        } catch {
            throw ProtectionError(.invalidTransform, error.description)
        }
        try self.init(json: document)
    }

    /// The transformed object and the names of what changed it.
    public func apply(to original: KubeObject) throws(ProtectionError) -> (object: KubeObject, applied: [String]) {
        var object = original
        var applied: [String] = []
        let kind = object.kind
        // Storage classes.
        if !storageClasses.isEmpty {
            var changed = false
            func map(_ path: String...) {
                if let old = object.json[path: path[...]]?.string, let new = storageClasses[old] {
                    object.json[path: path[...]] = .string(new)
                    changed = true
                }
            }
            switch kind {
            case "PersistentVolumeClaim", "PersistentVolume": map("spec", "storageClassName")
            case "StatefulSet":
                if var templates = object["spec", "volumeClaimTemplates"]?.array {
                    for i in templates.indices {
                        if let old = templates[i]["spec", "storageClassName"]?.string, let new = storageClasses[old] {
                            templates[i]["spec", "storageClassName"] = .string(new)
                            changed = true
                        }
                    }
                    object["spec", "volumeClaimTemplates"] = .array(templates)
                }
            default: break
            }
            if changed { applied.append("storage-class mapping") }
        }
        // Image registry.
        if let (from, to) = imageRegistry, let podPath = WorkloadPlacement.podSpecPath(kind) {
            var changed = false
            for field in ["containers", "initContainers", "ephemeralContainers"] {
                guard var containers = object.json[path: (podPath + [field])[...]]?.array else { continue }
                for i in containers.indices {
                    if let image = containers[i]["image"]?.string, let rewritten = Self.rewrite(image, from: from, to: to) {
                        containers[i]["image"] = .string(rewritten)
                        changed = true
                    }
                }
                object.json[path: (podPath + [field])[...]] = .array(containers)
            }
            if changed { applied.append("image registry \(from) → \(to)") }
        }
        // Replicas.
        if ["Deployment", "StatefulSet", "ReplicaSet"].contains(kind),
           let count = replicas["\(kind)/\(object.name)"] ?? replicas["*"] {
            object["spec", "replicas"] = .int(Int64(count))
            applied.append("replicas \(count)")
        }
        // Transforms.
        for transform in transforms where transform.match.matches(object) {
            do {
                object = KubeObject(try JSONPatch.apply(transform.patch, to: object.json))
            } catch {
                throw ProtectionError(.invalidTransform, "\(transform.name) on \(original): \(error.description)")
            }
            applied.append(transform.name)
        }
        return (object, applied)
    }

    /// `from/...` → `to/...`. An image without a registry is on Docker Hub (`docker.io`, `library/` for
    /// single names), as the container runtime reads it.
    static func rewrite(_ image: String, from: String, to: String) -> String? {
        let first = image.split(separator: "/", maxSplits: 1).first.map(String.init) ?? image
        let hasRegistry = image.contains("/") && (first.contains(".") || first.contains(":") || first == "localhost")
        if hasRegistry {
            guard first == from else { return nil }
            return to + image.dropFirst(first.count)
        }
        guard from == "docker.io" else { return nil }
        return to + "/" + (image.contains("/") ? image : "library/" + image)
    }
}
