import Concurrent
import Kube

/// Where captured objects go as they are read (`ApplicationCapture.capture(namespace:into:)`): a restore
/// point's object tree (`RestorePoint.ObjectWriter`, objects stored as they come), or memory (`Collector`).
public protocol CaptureSink: Sendable {
    /// One captured object.
    func add(_ object: KubeObject) async throws
    /// Every object of `group`/`kind` has been added (none will follow).
    func finished(group: String, kind: String) async throws
    /// Forget the objects of `group`/`kind` added so far: their list is read again from its start.
    func discard(group: String, kind: String) async throws
}

/// Reads an application — a namespace, optionally narrowed by a label selector — through discovery, not a
/// fixed list: every namespaced resource type the server lists, custom resources included, filtered by
/// `CaptureRules`; plus the cluster-scoped objects it depends on: the CRDs of its custom resources, the
/// PersistentVolumes bound to its claims, the StorageClasses they use, and the ClusterRoles and
/// ClusterRoleBindings that grant its service accounts, and the Namespace object itself.
///
/// Objects are streamed: each page of a list goes to the sink as it arrives, so what a capture holds does not
/// grow with the application's ConfigMaps, Secrets or custom resources. It keeps only the objects a backup
/// plans with (`planned`: claims, their volumes and classes, workloads, CRDs, the Namespace) and what the
/// cluster-scoped dependencies are found from (kinds, service account names, roles bound).
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
        /// The captured objects later steps plan with (`planned(_:)`), sorted by restore tier, kind,
        /// namespace, name. Every captured object went to the sink.
        public var objects: [KubeObject]
        /// How many objects were captured, and of which kind.
        public var count: Int
        public var byKind: [String: Int]
        public var skipped: [Skipped]
        /// Things the user should know: types that could not be read, references to missing objects.
        public var warnings: [String]
        public var resourceTypes: Int
    }

    /// Every captured object, in memory, in restore order: for small applications and tests.
    public actor Collector: CaptureSink {
        public private(set) var objects: [KubeObject] = []

        public init() {}

        public func add(_ object: KubeObject) { objects.append(object) }
        public func finished(group: String, kind: String) {}
        public func discard(group: String, kind: String) { objects.removeAll { $0.group == group && $0.kind == kind } }
        /// The objects in restore order.
        public var ordered: [KubeObject] { RestoreOrder.tiers(objects).flatMap(\.objects) }
    }

    /// Whether a captured object is kept in memory for planning a backup or a restore: claims, volumes,
    /// storage classes, workloads (blueprints, quiescing, placement), CRDs and the Namespace.
    public static func planned(_ object: KubeObject) -> Bool { planned(group: object.group, kind: object.kind) }

    public static func planned(group: String, kind: String) -> Bool {
        switch (group, kind) {
        case ("", "PersistentVolumeClaim"), ("", "PersistentVolume"), ("", "Namespace"), ("storage.k8s.io", "StorageClass"),
             ("apiextensions.k8s.io", "CustomResourceDefinition"): return true
        case ("", _), ("apps", _), ("batch", _): return WorkloadPlacement.podSpecPath(kind) != nil
        default: return false
        }
    }

    /// What the capture gathers while objects stream past.
    struct Tally: Sendable {
        var planned: [KubeObject] = []
        var count = 0
        var byKind: [String: Int] = [:]
        var skipped: [Skipped] = []
        /// `group/kind` of every captured object.
        var kinds: Set<String> = []
        /// Names of captured ServiceAccounts.
        var accounts: Set<String> = []
        /// ClusterRoles captured RoleBindings refer to, with the binding.
        var boundRoles: [(role: String, binding: String)] = []

        mutating func decided(_ object: KubeObject, _ rules: CaptureRules) -> Bool {
            switch rules.decide(object) {
            case .skip(let reason):
                skipped.append(Skipped(object: object.description, reason: reason))
                return false
            case .capture:
                count += 1
                byKind[object.kind, default: 0] += 1
                kinds.insert(object.group + "/" + object.kind)
                if ApplicationCapture.planned(object) { planned.append(object) }
                if object.kind == "ServiceAccount", object.group.isEmpty { accounts.insert(object.name) }
                if object.kind == "RoleBinding", object.group == "rbac.authorization.k8s.io",
                   object["roleRef", "kind"]?.string == "ClusterRole", let role = object["roleRef", "name"]?.string {
                    boundRoles.append((role, object.description))
                }
                return true
            }
        }

        mutating func merge(_ other: Tally) {
            planned += other.planned
            count += other.count
            byKind.merge(other.byKind, uniquingKeysWith: +)
            skipped += other.skipped
            kinds.formUnion(other.kinds)
            accounts.formUnion(other.accounts)
            boundRoles += other.boundRoles
        }
    }

    public let client: KubeClient
    public let volumeClient: KubeClient
    public let rules: CaptureRules
    public let labelSelector: String?
    /// Objects per list request.
    public var pageSize = 500

    public init(client: KubeClient, volumeClient: KubeClient? = nil, rules: CaptureRules = CaptureRules(),
                labelSelector: String? = nil) {
        self.client = client
        self.volumeClient = volumeClient ?? client
        self.rules = rules
        self.labelSelector = labelSelector
    }

    public func capture(namespace: String, into sink: some CaptureSink) async throws -> Result {
        let all = try await client.discovery.all(using: client, refresh: true)
        // One version per (group, resource): the preferred one when it serves the type.
        var chosen: [String: APIResource] = [:]
        for r in all where r.namespaced && r.supports("list") {
            let key = r.group + "/" + r.name
            if let existing = chosen[key], existing.preferred || !r.preferred { continue }
            chosen[key] = r
        }
        // The same objects served by two groups (extensions and networking.k8s.io Ingresses, core and
        // events.k8s.io Events in 1.20) are kept once, from the group listed first: core, then named groups,
        // `extensions` last.
        let types = chosen.values.sorted { a, b in
            func rank(_ r: APIResource) -> Int { r.group.isEmpty ? 0 : (r.group == "extensions" ? 2 : 1) }
            return (rank(a), a.group, a.name) < (rank(b), b.group, b.name)
        }
        let shared = Set(Dictionary(grouping: types, by: \.kind).filter { $0.value.count > 1 }.keys)
        let tally = Locked(Tally())
        var warnings: [String] = []
        // Kinds served once: 8 types at a time, each object to the sink as its page arrives.
        warnings += try await Concurrent.map(types.filter { !shared.contains($0.kind) }, width: 8) { r in
            try await stream(r, namespace: namespace, into: sink, tally: tally, seen: nil)
        }.compactMap { $0 }
        // Kinds served by several groups: one type after another, each object once (by UID).
        let seen = Locked(Set<String>())
        for r in types where shared.contains(r.kind) {
            if let warning = try await stream(r, namespace: namespace, into: sink, tally: tally, seen: seen) { warnings.append(warning) }
        }
        // What they need from the cluster, unless a filter leaves it out (Cairn's configuration: no CRD, no
        // Namespace object).
        let gathered = tally.withLock { $0 }
        var dependencyKinds: Set<String> = []
        for object in try await dependencies(of: gathered, namespace: namespace, warnings: &warnings) {
            if tally.withLock({ $0.decided(object, rules) }) {
                try await sink.add(object)
                dependencyKinds.insert(object.group + "/" + object.kind)
            }
        }
        for key in dependencyKinds.sorted() {
            let parts = key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            try await sink.finished(group: parts[0], kind: parts[1])
        }
        let result = tally.withLock { $0 }
        return Result(objects: RestoreOrder.tiers(result.planned).flatMap(\.objects), count: result.count, byKind: result.byKind,
                      skipped: result.skipped.sorted { $0.object < $1.object },
                      warnings: warnings.sorted(), resourceTypes: types.count)
    }

    /// Streams one type's objects into the sink a page at a time; returns a warning if it could not be read.
    /// A list whose continue token expired midway (410) is read again from its start, once its objects so far
    /// are discarded: the objects of a type are always one consistent list.
    func stream(_ r: APIResource, namespace: String, into sink: some CaptureSink, tally: Locked<Tally>,
                seen: Locked<Set<String>>?) async throws -> String? {
        var restarts = 0
        while true {
            // This type's share, merged once its list is complete.
            var mine = Tally()
            var uids: Set<String> = []
            do {
                for try await page in client.pages(r, namespace: namespace, options: ListOptions(labelSelector: labelSelector),
                                                   pageSize: pageSize) {
                    for object in page.items {
                        if let seen, let uid = object.uid {
                            guard !seen.withLock({ $0.contains(uid) }), uids.insert(uid).inserted else { continue }
                        }
                        if mine.decided(object, rules) { try await sink.add(object) }
                    }
                }
                if mine.count > 0 { try await sink.finished(group: r.group, kind: r.kind) }
                seen?.withLock { $0.formUnion(uids) }
                tally.withLock { $0.merge(mine) }
                return nil
            } catch let error as KubeError where error.code == .gone && restarts < 3 {
                restarts += 1
                try await sink.discard(group: r.group, kind: r.kind)
            } catch let error as KubeError where error.code == .forbidden || error.code == .notFound
                || error.code == .methodNotAllowed {
                try await sink.discard(group: r.group, kind: r.kind)
                return "\(r.qualifiedName) not captured: \(error.message)"
            }
        }
    }

    /// The cluster-scoped objects the captured ones need.
    func dependencies(of captured: Tally, namespace: String, warnings: inout [String]) async throws -> [KubeObject] {
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
        let kinds = captured.kinds
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
        for claim in captured.planned.filter({ $0.kind == "PersistentVolumeClaim" && $0.group.isEmpty }).map(PersistentVolumeClaim.init) {
            if let volume = claim.volumeName { try await fetch(PersistentVolume.resource, volume, for: "\(claim)", as: volumeClient) }
            if let sc = claim.storageClassName, !sc.isEmpty { classes.append((sc, "\(claim)")) }
        }
        for volume in found.values.filter({ $0.kind == "PersistentVolume" }).map(PersistentVolume.init) {
            if let sc = volume.storageClassName, !sc.isEmpty { classes.append((sc, "\(volume)")) }
        }
        for (sc, user) in classes { try await fetch(StorageClass.resource, sc, for: user, as: volumeClient) }
        // ClusterRoleBindings granting the application's service accounts, their ClusterRoles, and
        // ClusterRoles that its RoleBindings refer to.
        let accounts = captured.accounts
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
        for (role, binding) in captured.boundRoles
        where !role.hasPrefix("system:") && !["admin", "edit", "view", "cluster-admin"].contains(role) {
            try await fetch(clusterRole, role, for: binding, as: client)
        }
        return Array(found.values)
    }
}
