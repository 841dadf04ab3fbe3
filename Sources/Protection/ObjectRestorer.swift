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
        /// How many outcomes of each sort a restore keeps besides those it always keeps (`Outcomes`): the
        /// rest are counted.
        public var keep: Int = Outcomes.defaultKeep

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
            /// Left out of a restore a namespace's own user asked for: administrators restore it (`RestoreConfinement`).
            case excluded(String)

            /// created, updated, recreated, skipped, planned, failed, forbidden or excluded.
            public var name: String {
                switch self {
                case .created: "created"
                case .updated: "updated"
                case .recreated: "recreated"
                case .skipped: "skipped"
                case .planned: "planned"
                case .failed: "failed"
                case .forbidden: "forbidden"
                case .excluded: "excluded"
                }
            }

            /// Why it failed, was refused or left out; that a skipped object already exists.
            public var detail: String? {
                switch self {
                case .created, .updated, .recreated, .planned: nil
                case .skipped: "already exists"
                case .failed(let reason), .forbidden(let reason), .excluded(let reason): reason
                }
            }
        }

        /// `Kind namespace/name` as restored (after the namespace change).
        public var object: String
        public var tier: Int
        public var result: Result
        public var transforms: [String]

        /// An outcome the restore needs later (of a claim or workload, `ApplicationCapture.planned`): always kept.
        var essential = false

        public var failed: Bool {
            switch result {
            case .failed, .forbidden: return true
            default: return false
            }
        }

        public static func == (a: Outcome, b: Outcome) -> Bool {
            a.object == b.object && a.tier == b.tier && a.result == b.result && a.transforms == b.transforms
        }
    }

    /// A restore's outcomes in memory that does not grow with the number of objects: every outcome counted by
    /// result (`Outcome.Result.name`); those of claims and workloads kept; of the others, the first `keep`
    /// failures and refusals and the first `keep` of the rest kept, the others only counted (`omitted`).
    public struct Outcomes: RandomAccessCollection, Sendable {
        public static let defaultKeep = 1000
        public private(set) var kept: [Outcome] = []
        public private(set) var counts: [String: Int] = [:]
        /// Outcomes counted but not kept.
        public private(set) var omitted = 0
        let keep: Int
        var keptFailures = 0
        var keptOthers = 0

        public init(keep: Int = Outcomes.defaultKeep) {
            self.keep = keep
        }

        public mutating func append(_ outcome: Outcome) {
            counts[outcome.result.name, default: 0] += 1
            keepOrOmit(outcome)
        }

        mutating func keepOrOmit(_ outcome: Outcome) {
            if outcome.essential {
                kept.append(outcome)
            } else if outcome.failed ? keptFailures < keep : keptOthers < keep {
                if outcome.failed { keptFailures += 1 } else { keptOthers += 1 }
                kept.append(outcome)
            } else {
                omitted += 1
            }
        }

        public mutating func append(contentsOf other: Outcomes) {
            for (name, count) in other.counts { counts[name, default: 0] += count }
            for outcome in other.kept { keepOrOmit(outcome) }
            omitted += other.omitted
        }

        /// Failed or refused, kept or not.
        public var failures: Int { counts["failed", default: 0] + counts["forbidden", default: 0] }

        public var startIndex: Int { kept.startIndex }
        public var endIndex: Int { kept.endIndex }
        public subscript(position: Int) -> Outcome { kept[position] }
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

    /// Restores the objects tier by tier. `afterTier` runs once each tier with objects is done (not in a dry
    /// run), with that tier's outcomes (restore writes volume data there, after the claims and before any
    /// workload).
    public func restore(_ objects: [KubeObject], sourceNamespace: String,
                        afterTier: (Int, Outcomes) async throws -> Void = { _, _ in }) async throws -> Outcomes {
        try await restore(Listed(objects: objects), sourceNamespace: sourceNamespace, afterTier: afterTier)
    }

    /// Objects to restore, handed over a tier at a time: a restore holds the objects in flight, not all of them.
    public protocol Source: Sendable {
        /// The tiers that may have objects, ascending.
        var tiers: [Int] { get }
        /// The objects of `tier`, one at a time.
        func forEach(tier: Int, _ body: (KubeObject) async throws -> Void) async throws
    }

    /// Objects in memory.
    public struct Listed: Source {
        let byTier: [Int: [KubeObject]]

        public init(objects: [KubeObject]) {
            byTier = Dictionary(uniqueKeysWithValues: RestoreOrder.tiers(objects).map { ($0.tier, $0.objects) })
        }

        public var tiers: [Int] { byTier.keys.sorted() }

        public func forEach(tier: Int, _ body: (KubeObject) async throws -> Void) async throws {
            for object in byTier[tier] ?? [] { try await body(object) }
        }
    }

    /// An object on its way: to be written, or already decided.
    enum Item: Sendable {
        case put(KubeObject, tier: Int, transforms: [String])
        case done(Outcome)
    }

    /// Restores the objects of `source` tier by tier, `concurrency` objects at a time, as they are read.
    public func restore(_ source: some Source, sourceNamespace: String,
                        afterTier: (Int, Outcomes) async throws -> Void = { _, _ in }) async throws -> Outcomes {
        var outcomes = Outcomes(keep: options.keep)
        // A target namespace that the restore point does not bring (a user who could not read it) is made plain
        // before the first object that goes into it (not by a namespace's own user: the namespace exists, and
        // is the administrators').
        let target = options.targetNamespace ?? sourceNamespace
        var namespaceNeeded = !options.confined
        for tier in source.tiers {
            var results = Outcomes(keep: options.keep)
            var crds: [KubeObject] = []
            try await Concurrent.ordered(width: options.concurrency, produce: { (emit: (Item) async throws -> Void) in
                try await source.forEach(tier: tier) { object in
                    if options.confined, let reason = RestoreConfinement.exclusion(of: object) {
                        try await emit(.done(Outcome(object: object.description, tier: tier, result: .excluded(reason), transforms: [])))
                        return
                    }
                    let prepared: KubeObject
                    let transforms: [String]
                    do {
                        (prepared, transforms) = try prepare(object, sourceNamespace: sourceNamespace)
                    } catch let refusal as ProtectionError where refusal.code == .forbidden {
                        try await emit(.done(Outcome(object: object.description, tier: tier, result: .forbidden(refusal.message), transforms: [])))
                        return
                    } catch {
                        try await emit(.done(Outcome(object: object.description, tier: tier, result: .failed("\(error)"), transforms: [])))
                        return
                    }
                    if prepared.kind == "Namespace", prepared.group.isEmpty, prepared.name == target { namespaceNeeded = false }
                    if namespaceNeeded, prepared.namespace == target {
                        namespaceNeeded = false
                        let plain = Namespace(name: target).object
                        let tier = RestoreOrder.tier(of: plain)
                        outcomes.append(Outcome(object: plain.description, tier: tier,
                                                result: options.dryRun ? .planned : await put(plain), transforms: []))
                    }
                    if prepared.kind == "CustomResourceDefinition" { crds.append(prepared) }
                    try await emit(.put(prepared, tier: tier, transforms: transforms))
                }
            }, { (item: Item) -> Outcome in
                switch item {
                case .done(let outcome):
                    return outcome
                case .put(let object, let tier, let transforms):
                    return Outcome(object: object.description, tier: tier,
                                   result: self.options.dryRun ? .planned : await self.put(object), transforms: transforms,
                                   essential: ApplicationCapture.planned(group: object.group, kind: object.kind))
                }
            }, collect: { outcome in
                results.append(outcome)
            })
            outcomes.append(contentsOf: results)
            if options.dryRun || results.counts.isEmpty { continue }
            if !crds.isEmpty { try await waitForCRDs(crds) }
            try await afterTier(tier, results)
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
