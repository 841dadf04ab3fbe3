import Concurrent
import Kube

/// Puts captured objects back into a cluster: cleaned, moved to the target namespace, transformed, then
/// created tier by tier (`RestoreOrder`) with the objects of one tier in parallel. Every object gets an
/// outcome; one the API rejects fails alone and the rest goes on.
public struct ObjectRestorer: Sendable {
    /// What to do when an object already exists.
    public enum ExistingPolicy: String, Sendable, CaseIterable {
        /// Leave it as it is.
        case skip
        /// Converge it to the restore point (server-side apply, Cairn owning the fields it restores).
        case update
        /// Delete it, wait until it is gone, create it again.
        case recreate
        /// Report it as failed.
        case fail
    }

    public struct Options: Sendable {
        public var targetNamespace: String?
        public var existing: ExistingPolicy
        public var transforms: TransformSet?
        /// Plan only: no request reaches the cluster.
        public var dryRun: Bool
        public var cleaner: ObjectCleaner
        public var concurrency: Int
        /// A restore a namespace's own user asked for: every object is checked after its transforms
        /// (`RestoreConfinement`), must be of a namespaced kind, and the target Namespace is never written.
        public var confined: Bool
        /// Claims made from a VolumeSnapshot of the restore point's local tier (claim name → VolumeSnapshot in
        /// the target namespace): their `spec.dataSource`, set after cleaning.
        public var claimSnapshots: [String: String] = [:]

        public init(targetNamespace: String? = nil, existing: ExistingPolicy = .fail, transforms: TransformSet? = nil,
                    dryRun: Bool = false, cleaner: ObjectCleaner = ObjectCleaner(), concurrency: Int = 32,
                    confined: Bool = false) {
            self.targetNamespace = targetNamespace
            self.existing = existing
            self.transforms = transforms
            self.dryRun = dryRun
            self.cleaner = cleaner
            self.concurrency = concurrency
            self.confined = confined
        }
    }

    public struct Outcome: Sendable, Equatable {
        public enum Result: Sendable, Equatable {
            case created, updated, recreated, skipped, planned
            case failed(String)
            /// Refused before any request: what and why (`RestoreConfinement`).
            case forbidden(String)
        }

        /// `Kind namespace/name` as restored (after the namespace change).
        public var object: String
        public var tier: Int
        public var result: Result
        public var transforms: [String]

        public var failed: Bool {
            switch result {
            case .failed, .forbidden: return true
            default: return false
            }
        }
    }

    public let client: KubeClient
    public let options: Options

    public init(client: KubeClient, options: Options = Options()) {
        self.client = client
        self.options = options
    }

    /// Prepares one object: cleaned, retargeted, transformed — and, for a confined restore, checked after
    /// its transforms (throws `ProtectionError` `.forbidden`).
    public func prepare(_ original: KubeObject, sourceNamespace: String) throws -> (KubeObject, [String]) {
        if let reason = RestoreConfinement.foreign(original, source: sourceNamespace) {
            throw ProtectionError(.forbidden, reason)
        }
        var planned = retarget(options.cleaner.clean(original), sourceNamespace: sourceNamespace)
        if planned.kind == "PersistentVolumeClaim", planned.group.isEmpty, let snapshot = options.claimSnapshots[planned.name] {
            planned["spec", "dataSource"] = ["apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": .string(snapshot)]
        }
        guard let transforms = options.transforms else { return (planned, []) }
        let result = try transforms.apply(to: planned)
        if options.confined, let reason = RestoreConfinement.refusal(
            planned: planned, transformed: result.0, target: options.targetNamespace ?? sourceNamespace) {
            throw ProtectionError(.forbidden, reason)
        }
        return result
    }

    /// The object moved into the target namespace.
    func retarget(_ cleaned: KubeObject, sourceNamespace: String) -> KubeObject {
        var object = cleaned
        if let target = options.targetNamespace, target != sourceNamespace {
            if object.namespace == sourceNamespace { object.namespace = target }
            if object.kind == "Namespace", object.group.isEmpty, object.name == sourceNamespace { object.name = target }
            // Bindings grant the application's service accounts in their new namespace.
            if object.group == "rbac.authorization.k8s.io", var subjects = object["subjects"]?.array {
                for i in subjects.indices where subjects[i]["kind"]?.string == "ServiceAccount"
                    && subjects[i]["namespace"]?.string == sourceNamespace {
                    subjects[i]["namespace"] = .string(target)
                }
                object["subjects"] = .array(subjects)
            }
        }
        return object
    }

    /// Restores the objects tier by tier. `afterTier` runs once each tier is done (not in a dry run),
    /// with that tier's outcomes; its outcomes are added to the report (restore writes volume data there,
    /// after the claims and before any workload).
    public func restore(_ objects: [KubeObject], sourceNamespace: String,
                        afterTier: (Int, [Outcome]) async throws -> [Outcome] = { _, _ in [] }) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        var prepared: [(KubeObject, [String])] = []
        for object in objects {
            do {
                prepared.append(try prepare(object, sourceNamespace: sourceNamespace))
            } catch let refusal as ProtectionError where refusal.code == .forbidden {
                outcomes.append(Outcome(object: object.description, tier: RestoreOrder.tier(of: object),
                                        result: .forbidden(refusal.message), transforms: []))
            } catch {
                outcomes.append(Outcome(object: object.description, tier: RestoreOrder.tier(of: object),
                                        result: .failed("\(error)"), transforms: []))
            }
        }
        // A target namespace that the restore point does not bring (a user who could not read it) is made plain
        // (not by a namespace's own user: the namespace exists, and is the administrators').
        let target = options.targetNamespace ?? sourceNamespace
        if !options.confined, !prepared.contains(where: { $0.0.kind == "Namespace" && $0.0.group.isEmpty && $0.0.name == target }),
           prepared.contains(where: { $0.0.namespace == target }) {
            prepared.append((Namespace(name: target).object, []))
        }
        let tiers = RestoreOrder.tiers(prepared.map(\.0))
        let applied = Dictionary(prepared.map { ($0.0.description, $0.1) }, uniquingKeysWith: { a, _ in a })
        for (tier, members) in tiers {
            if options.dryRun {
                outcomes += members.map { Outcome(object: $0.description, tier: tier, result: .planned,
                                                  transforms: applied[$0.description] ?? []) }
                continue
            }
            let results = try await Concurrent.map(members, width: options.concurrency) { object in
                Outcome(object: object.description, tier: tier, result: await self.put(object),
                        transforms: applied[object.description] ?? [])
            }
            outcomes += results
            if tier == 0 { try await waitForCRDs(members) }
            outcomes += try await afterTier(tier, results)
        }
        return outcomes
    }

    func put(_ object: KubeObject) async -> Outcome.Result {
        do {
            let resource = try await client.resource(for: object)
            if options.confined && !resource.namespaced {
                return .forbidden("\(resource.qualifiedName) is cluster-scoped: restored by administrators only")
            }
            do {
                _ = try await client.create(object, as: resource, namespace: object.namespace)
                return .created
            } catch let error as KubeError where error.code == .alreadyExists {
                // The cluster makes a `default` ServiceAccount in every new namespace: merge into it.
                let madeByCluster = object.kind == "ServiceAccount" && object.group.isEmpty && object.name == "default"
                // Cluster-scoped objects (CRDs, classes, cluster roles) are shared with other applications:
                // an existing one is used as it is — never failed on, never deleted (deleting a CRD would
                // delete every custom resource of its kind in the cluster) — and updated only on request.
                let isNamespace = object.kind == "Namespace" && object.group.isEmpty
                let shared = object.namespace == nil && !isNamespace
                if shared && options.existing != .update { return .skipped }
                // The target namespace holds the objects being restored (and, for the controller, the
                // RestoreAction itself): an existing one is restored into, never failed on or deleted.
                if isNamespace && (options.existing == .fail || options.existing == .skip) { return .skipped }
                let policy = isNamespace && options.existing == .recreate ? .update : options.existing
                switch madeByCluster && policy != .skip ? .update : policy {
                case .skip:
                    return .skipped
                case .fail:
                    return .failed("already exists (the existing-object policy is fail; choose skip, update or recreate)")
                case .update:
                    _ = try await client.patch(resource, object.name, namespace: object.namespace,
                                               .apply(object.json, fieldManager: "cairn-restore", force: true))
                    return .updated
                case .recreate:
                    try await client.delete(resource, object.name, namespace: object.namespace,
                                            options: DeleteOptions(propagationPolicy: .foreground))
                    let deadline = ContinuousClock.now + .seconds(120)
                    while true {
                        do {
                            _ = try await client.get(resource, object.name, namespace: object.namespace)
                        } catch let gone as KubeError where gone.code == .notFound {
                            break
                        }
                        guard ContinuousClock.now < deadline else {
                            return .failed("the old object was still being deleted after 2 minutes")
                        }
                        try await Task.sleep(for: .milliseconds(250))
                    }
                    _ = try await client.create(object, as: resource, namespace: object.namespace)
                    return .recreated
                }
            }
        } catch let error as KubeError {
            return .failed(error.description)
        } catch {
            return .failed("\(error)")
        }
    }

    /// Custom resources can be created only once their CRD is Established.
    func waitForCRDs(_ crds: [KubeObject]) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        for crd in crds where crd.kind == "CustomResourceDefinition" {
            while ContinuousClock.now < deadline {
                if let current = try? await client.get(CustomResourceDefinition.self, crd.name), current.isEstablished { break }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        await client.discovery.invalidate()
    }
}
