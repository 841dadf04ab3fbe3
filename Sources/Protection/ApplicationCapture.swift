import Concurrent
import Kube

/// Reads an application — a namespace, optionally narrowed by a label selector — through discovery, not a
/// fixed list: every namespaced resource type the server lists, custom resources included, filtered by
/// `CaptureRules`; plus the cluster-scoped objects it depends on: the CRDs of its custom resources, the
/// PersistentVolumes bound to its claims, the StorageClasses they use, and the ClusterRoles and
/// ClusterRoleBindings that grant its service accounts, and the Namespace object itself.
///
/// Objects are read with `client` (in the controller, the identity of whoever asked for the backup: what
/// they cannot read is reported, not captured); the volumes bound to the claims and their StorageClasses
/// with `volumeClient`, Cairn's own identity, because Cairn needs them to read and restore the claims' data.
public struct ApplicationCapture: Sendable {
    public struct Skipped: Sendable, Equatable {
        public var object: String
        public var reason: String
    }

    public struct Result: Sendable {
        /// Namespaced and cluster-scoped objects, sorted by restore tier, kind, namespace, name.
        public var objects: [KubeObject]
        public var skipped: [Skipped]
        /// Things the user should know: types that could not be read, references to missing objects.
        public var warnings: [String]
        public var resourceTypes: Int
    }

    public let client: KubeClient
    public let volumeClient: KubeClient
    public let rules: CaptureRules
    public let labelSelector: String?

    public init(client: KubeClient, volumeClient: KubeClient? = nil, rules: CaptureRules = CaptureRules(),
                labelSelector: String? = nil) {
        self.client = client
        self.volumeClient = volumeClient ?? client
        self.rules = rules
        self.labelSelector = labelSelector
    }

    public func capture(namespace: String) async throws -> Result {
        let all = try await client.discovery.all(using: client, refresh: true)
        // One version per (group, resource): the preferred one when it serves the type.
        var chosen: [String: APIResource] = [:]
        for r in all where r.namespaced && r.supports("list") {
            let key = r.group + "/" + r.name
            if let existing = chosen[key], existing.preferred || !r.preferred { continue }
            chosen[key] = r
        }
        // The same objects served by two groups (extensions and networking.k8s.io Ingresses in 1.20)
        // are kept once, from the group listed first: core, then named groups, `extensions` last.
        let types = chosen.values.sorted { a, b in
            func rank(_ r: APIResource) -> Int { r.group.isEmpty ? 0 : (r.group == "extensions" ? 2 : 1) }
            return (rank(a), a.group, a.name) < (rank(b), b.group, b.name)
        }
        var warnings: [String] = []
        let listed = try await Concurrent.map(types, width: 8) { r -> (items: [KubeObject]?, warning: String?) in
            do {
                let list = try await client.listAll(r, namespace: namespace, options: ListOptions(labelSelector: labelSelector))
                return (list.items, nil)
            } catch let error as KubeError where error.code == .forbidden || error.code == .notFound
                || error.code == .methodNotAllowed {
                return (nil, "\(r.qualifiedName) not captured: \(error.message)")
            }
        }
        warnings += listed.compactMap(\.warning)
        let lists = listed.map(\.items)
        var objects: [KubeObject] = []
        var skipped: [Skipped] = []
        var seen: Set<String> = []
        for items in lists.compactMap({ $0 }) {
            for object in items {
                if let uid = object.uid {
                    guard seen.insert(uid).inserted else { continue }
                }
                switch rules.decide(object) {
                case .capture: objects.append(object)
                case .skip(let reason): skipped.append(Skipped(object: object.description, reason: reason))
                }
            }
        }
        // What they need from the cluster, unless a filter leaves it out (Cairn's configuration: no CRD, no
        // Namespace object).
        for object in try await dependencies(of: objects, namespace: namespace, warnings: &warnings) {
            switch rules.decide(object) {
            case .capture: objects.append(object)
            case .skip(let reason): skipped.append(Skipped(object: object.description, reason: reason))
            }
        }
        let ordered = RestoreOrder.tiers(objects).flatMap(\.objects)
        return Result(objects: ordered, skipped: skipped.sorted { $0.object < $1.object },
                      warnings: warnings.sorted(), resourceTypes: types.count)
    }

    /// The cluster-scoped objects the captured ones need.
    func dependencies(of objects: [KubeObject], namespace: String, warnings: inout [String]) async throws -> [KubeObject] {
        var found: [String: KubeObject] = [:]
        // The namespace itself (labels and annotations matter: pod security, network policies, quotas).
        do {
            found["Namespace/" + namespace] = try await client.get(Namespace.resource, namespace)
        } catch let error as KubeError where error.code == .forbidden {
            warnings.append("the Namespace object not captured (a restore creates a plain one): \(error.message)")
        }
        func fetch(_ r: APIResource, _ name: String, for user: String, as reader: KubeClient) async throws {
            let key = r.kind + "/" + name
            guard found[key] == nil else { return }
            do {
                found[key] = try await reader.get(r, name)
            } catch let error as KubeError where error.code == .notFound {
                warnings.append("\(user) refers to \(r.kind) \(name), which does not exist")
            } catch let error as KubeError where error.code == .forbidden {
                warnings.append("\(r.kind) \(name) (needed by \(user)) not captured: \(error.message)")
            }
        }
        // CRDs of custom resources (found by group and kind among the cluster's CRDs, so CRD-defined
        // types under *.k8s.io, like VolumeSnapshots, count too).
        let kinds = Set(objects.map { $0.group + "/" + $0.kind })
        do {
            for crd in try await client.listAll(CustomResourceDefinition.resource).items.map(CustomResourceDefinition.init)
            where kinds.contains((crd.group ?? "") + "/" + (crd.kind ?? "")) {
                found["CustomResourceDefinition/" + crd.name] = crd.object
            }
        } catch let error as KubeError where error.code == .forbidden {
            warnings.append("custom resource definitions not captured: \(error.message)")
        }
        // Volumes bound to claims, and the storage classes of both.
        var classes: [(String, String)] = []
        for claim in objects.filter({ $0.kind == "PersistentVolumeClaim" && $0.group.isEmpty }).map(PersistentVolumeClaim.init) {
            if let volume = claim.volumeName { try await fetch(PersistentVolume.resource, volume, for: "\(claim)", as: volumeClient) }
            if let sc = claim.storageClassName, !sc.isEmpty { classes.append((sc, "\(claim)")) }
        }
        for volume in found.values.filter({ $0.kind == "PersistentVolume" }).map(PersistentVolume.init) {
            if let sc = volume.storageClassName, !sc.isEmpty { classes.append((sc, "\(volume)")) }
        }
        for (sc, user) in classes { try await fetch(StorageClass.resource, sc, for: user, as: volumeClient) }
        // ClusterRoleBindings granting the application's service accounts, their ClusterRoles, and
        // ClusterRoles that its RoleBindings refer to.
        let accounts = Set(objects.filter { $0.kind == "ServiceAccount" && $0.group.isEmpty }.map(\.name))
        let clusterRole = APIResource(group: "rbac.authorization.k8s.io", version: "v1", name: "clusterroles",
                                      kind: "ClusterRole", namespaced: false)
        if !accounts.isEmpty {
            let bindingsType = APIResource(group: "rbac.authorization.k8s.io", version: "v1", name: "clusterrolebindings",
                                           kind: "ClusterRoleBinding", namespaced: false)
            do {
                for binding in try await client.listAll(bindingsType).items {
                    let subjects = binding["subjects"]?.array ?? []
                    let grants = subjects.contains {
                        $0["kind"]?.string == "ServiceAccount" && $0["namespace"]?.string == namespace
                            && accounts.contains($0["name"]?.string ?? "")
                    }
                    guard grants else { continue }
                    found["ClusterRoleBinding/" + binding.name] = binding
                    if binding["roleRef", "kind"]?.string == "ClusterRole", let role = binding["roleRef", "name"]?.string {
                        try await fetch(clusterRole, role, for: "ClusterRoleBinding \(binding.name)", as: client)
                    }
                }
            } catch let error as KubeError where error.code == .forbidden {
                warnings.append("cluster role bindings not read: \(error.message)")
            }
        }
        for binding in objects where binding.kind == "RoleBinding" && binding["roleRef", "kind"]?.string == "ClusterRole" {
            if let role = binding["roleRef", "name"]?.string, !role.hasPrefix("system:"),
               !["admin", "edit", "view", "cluster-admin"].contains(role) {
                try await fetch(clusterRole, role, for: "\(binding)", as: client)
            }
        }
        return Array(found.values)
    }
}
