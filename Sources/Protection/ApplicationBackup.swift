import Concurrent
import Foundation
import Kube
import Repository
import Snapshot

/// Backs up an application — a namespace, optionally narrowed by a label selector — into one restore
/// point: its objects (captured through discovery, `ApplicationCapture`) and the files of its bound
/// claims (through `VolumeAccess`), with metadata. A restore point is written only when every volume
/// was read: never a restore point without its data.
public struct ApplicationBackup: Sendable {
    public enum Quiesce: String, Sendable, CaseIterable {
        /// Volumes are read while the application runs (crash-consistent at best per file).
        case none
        /// Deployments and StatefulSets are scaled to zero while the volumes are read and back afterwards:
        /// consistent by stopping (the state a clean shutdown leaves).
        case scale
    }

    public struct Options: Sendable {
        public var namespace: String
        public var labelSelector: String?
        public var rules: CaptureRules
        public var volumeAccess: VolumeAccessMode
        public var moverImage: String
        public var quiesce: Quiesce
        /// Whether volume data is read at all (`--no-volumes`: objects only).
        public var volumes: Bool
        public var quiesceTimeout: Duration
        /// Tags added to the restore point's snapshot (the controller records its action and names here).
        public var tags: [String]
        /// What the repository lock says is running (the controller puts its identity here).
        public var lockOperation = "app backup"
        /// How long to wait for an exclusive lock (a prune) to go away before failing with `.locked`.
        public var lockWait: TimeInterval = 30
        /// Blueprints workloads may name (`cairn.dev/blueprint`) or be bound to, by name.
        public var blueprints: [String: Blueprint] = [:]
        /// Blueprints that exist but do not check, with why: a workload naming one fails the backup with it.
        public var invalidBlueprints: [String: String] = [:]
        public var bindings: [BlueprintBinding] = []
        /// Who runs a blueprint's phases, by blueprint name (a namespace's blueprint: its author); the others
        /// run as `client`.
        public var blueprintClients: [String: KubeClient] = [:]
        /// Who wrote each blueprint (their user info as JSON), recorded in the restore point: its restore
        /// phases run as them too.
        public var blueprintAuthors: [String: String] = [:]
        /// Who `client` is (their user info as JSON), recorded in the restore point: the delete actions of
        /// blueprints without an author run as them (`BlueprintDeletion`). Nil: not recorded (the CLI).
        public var blueprintRequester: String?
        /// Hooks: `beforeCapture` and `afterCapture` phases (`ConsistencyPlan`).
        public var hooks: [String: [Blueprint.Phase]] = [:]
        /// Workloads captured at one instant (`ConsistencyPlan.groupBackup`).
        public var consistencyGroup: ConsistencyGroup?
        /// Labels the VolumeSnapshots and temporary claims of this backup (`SnapshotVolumeAccess.label`): the
        /// same for a run resumed after a crash (the controller gives its action's UID), so what an interrupted
        /// run left is found and removed.
        public var operation = UUID().uuidString.lowercased()
        /// How long CSI snapshots may take to become ready to use.
        public var snapshotTimeout: Duration = .seconds(300)
        /// How many volumes are read at once (live, or from their snapshots once taken): each by its own
        /// mover on the volume's node, or on the host.
        public var volumeWidth = 4
        /// Keep the VolumeSnapshots after the backup as the restore point's local tier
        /// (`SnapshotVolumeAccess.keep`): a restore into this namespace then makes claims from them.
        public var keepSnapshots = false

        public init(namespace: String, labelSelector: String? = nil, rules: CaptureRules = CaptureRules(),
                    volumeAccess: VolumeAccessMode = .auto, moverImage: String = MoverVolumeAccess.defaultImage,
                    quiesce: Quiesce = .none, volumes: Bool = true, quiesceTimeout: Duration = .seconds(300),
                    tags: [String] = []) {
            self.namespace = namespace
            self.labelSelector = labelSelector
            self.rules = rules
            self.volumeAccess = volumeAccess
            self.moverImage = moverImage
            self.quiesce = quiesce
            self.volumes = volumes
            self.quiesceTimeout = quiesceTimeout
            self.tags = tags
        }
    }

    public struct Result: Sendable {
        public var snapshot: SnapshotManifest
        public var metadata: RestorePoint.Metadata
        public var seconds: Double
    }

    /// How far a backup is, for status displays.
    public struct Progress: Sendable, Equatable {
        public var objects = 0
        public var volumes = 0
        public var volumesDone = 0
        public var bytes = 0
        public var step = ""
    }

    /// The annotation a workload carries while a backup keeps it scaled to zero: its replica count.
    /// A backup that finds it (its predecessor was killed mid-quiesce) scales the workload back first.
    public static let quiescedAnnotation = "cairn.dev/quiesced-replicas"

    /// Reads the application and quiesces it (in the controller: whoever asked for the backup).
    public let client: KubeClient
    /// Cairn's own identity for volumes: bound PersistentVolumes, mover pods.
    public let volumeClient: KubeClient
    public let repository: Repository
    public let options: Options

    public init(client: KubeClient, volumeClient: KubeClient? = nil, repository: Repository, options: Options) {
        self.client = client
        self.volumeClient = volumeClient ?? client
        self.repository = repository
        self.options = options
    }

    /// Runs the backup; `progress` hears a line per step.
    public func run(progress: @escaping @Sendable (String) -> Void = { _ in },
                    status: @Sendable (Progress) -> Void = { _ in }) async throws -> Result {
        let start = Date()
        let namespace = options.namespace
        var state = Progress()
        try await recoverQuiesced(progress: progress)
        progress("capturing the objects of namespace \(namespace)")
        state.step = "capturing objects"
        status(state)
        // The namespace's identity, read as Cairn (a namespace's users may not be allowed to read it).
        let namespaceUID = try? await volumeClient.get(Namespace.resource, namespace).uid
        // One unit of work (its mark taken before the lock): a pack lost meanwhile fails it at once.
        let result = try await repository.work { mark in
            try await RepositoryLock.with(repository, exclusive: false, operation: options.lockOperation, wait: options.lockWait) {
                try await repository.loadIndex()
                // Objects go into the repository as they are listed (never all in memory); the restore point that
                // refers to them is written last.
                let objects = RestorePoint.ObjectWriter(repository: repository)
                let capture = try await ApplicationCapture(client: client, volumeClient: volumeClient, rules: options.rules,
                                                           labelSelector: options.labelSelector).capture(namespace: namespace, into: objects)
                var warnings = capture.warnings
                let plan = try ConsistencyPlan(objects: capture.objects, blueprints: options.blueprints,
                                               invalid: options.invalidBlueprints, bindings: options.bindings,
                                               hooks: options.hooks, group: options.consistencyGroup)
                let skippedClaims = plan.skippedClaims(in: capture.objects)
                let excluded = plan.excludedPaths(in: capture.objects)
                var claims: [ClaimVolume] = []
                if options.volumes {
                    for var claim in try await boundClaims(capture, warnings: &warnings) where !skippedClaims.contains(claim.claim) {
                        claim.exclude = excluded[claim.claim] ?? []
                        claims.append(claim)
                    }
                }
                // Claims whose CSI driver can snapshot them are snapshotted together and read afterwards.
                var snapshotter = SnapshotVolumeAccess(client: volumeClient, repository: repository, moverImage: options.moverImage,
                                                       operation: options.operation)
                snapshotter.readyTimeout = options.snapshotTimeout
                snapshotter.exportWidth = max(1, options.volumeWidth)
                let leftovers = await snapshotter.removeLeftovers(namespace: namespace)
                if !leftovers.isEmpty { progress("removed what an interrupted run of this backup left: \(leftovers.joined(separator: ", "))") }
                var snapshotClasses: [String: String] = [:]
                var liveReasons: [String: String] = [:]
                let snapshotOnly = plan.snapshotOnlyClaims(in: capture.objects)
                if !claims.isEmpty, options.volumeAccess == .auto || options.volumeAccess == .snapshot {
                    (snapshotClasses, liveReasons) = await SnapshotVolumeAccess.classes(for: claims, client: volumeClient)
                    if options.volumeAccess == .snapshot {
                        for (claim, reason) in liveReasons.sorted(by: { $0.key < $1.key }) {
                            warnings.append("claim \(claim) was read live, not from a snapshot: \(reason)")
                        }
                    }
                }
                // A blueprint whose fence holds only for a capture at one instant (`volumes: snapshot`): fail before
                // any fence rather than read its claims live.
                for claim in claims.map(\.claim).sorted() where snapshotOnly[claim] != nil && snapshotClasses[claim] == nil {
                    let why = options.volumeAccess == .auto || options.volumeAccess == .snapshot
                        ? liveReasons[claim] ?? "it cannot be snapshotted"
                        : "the backup's volume access is \(options.volumeAccess.rawValue) (snapshot or auto would snapshot it)"
                    throw ProtectionError(.snapshotFailed, "claim \(claim) of \(snapshotOnly[claim]!) must be captured by a CSI snapshot "
                                          + "(the blueprint's volumes: snapshot — its fence holds only for a copy of every file at one instant), "
                                          + "but \(why). Put the claim on a storage class whose CSI driver has a VolumeSnapshotClass, "
                                          + "or bind a blueprint that reads it another way")
                }
                state.objects = capture.count
                state.volumes = claims.count
                state.step = claims.isEmpty ? "writing the restore point" : "reading volumes"
                status(state)
                var workloads: [(APIResource, String, Int)] = []
                if options.quiesce == .scale {
                    workloads = capture.objects.compactMap { object in
                        guard object.group == "apps", object.kind == "Deployment" || object.kind == "StatefulSet",
                              let replicas = object["spec", "replicas"]?.int, replicas > 0 else { return nil }
                        return (object.kind == "Deployment" ? Deployment.resource : StatefulSet.resource, object.name, Int(replicas))
                    }
                }
                let previous = try await RestorePoint.list(in: repository, namespace: namespace).last
                var earlier: [String: Node] = [:]
                if let previous { earlier = try await RestorePoint.volumes(of: previous.snapshot, in: repository) }
                var nodes: [String: Node] = [:]
                var transfers: [VolumeTransfer] = []
                var unscaled: [String] = []
                let runner = BlueprintRunner(client: client, namespace: namespace, repository: repository)
                let runners = options.blueprintClients.mapValues { BlueprintRunner(client: $0, namespace: namespace, repository: repository) }
                // One volume read, live or from its snapshot: kept for the restore point, counted, told.
                func read(_ node: Node, _ transfer: VolumeTransfer, _ lead: String) {
                    nodes[transfer.claim] = node
                    transfers.append(transfer)
                    state.volumesDone += 1
                    state.bytes += transfer.bytes
                    status(state)
                    progress(lead + "\(transfer.files) files, \(transfer.bytes) bytes, \(transfer.bytesAdded ?? 0) new, \(String(format: "%.1f", transfer.seconds)) s")
                }
                var taken: [SnapshotVolumeAccess.Taken] = []
                var snapshotReport: SnapshotVolumeAccess.Report?
                let consistency: ConsistencyPlan.Result
                do {
                consistency = try await plan.backup(runner: runner, runners: runners, progress: progress) {
                if !claims.isEmpty {
                    if !workloads.isEmpty {
                        progress("quiescing: scaling \(workloads.map { "\($0.0.kind)/\($0.1)" }.joined(separator: ", ")) to zero")
                    }
                    unscaled = try await quiesced(workloads) {
                        let snapshotted = claims.compactMap { claim in snapshotClasses[claim.claim].map { (claim, $0) } }
                        if !snapshotted.isEmpty {
                            (taken, snapshotReport) = try await snapshotter.take(snapshotted, progress: progress)
                        }
                        // The claims read live, `volumeWidth` at once (each mover on its volume's node).
                        let live = claims.filter { snapshotClasses[$0.claim] == nil }
                        let known = earlier
                        let (mode, volumeClient, repository, image) = (options.volumeAccess, volumeClient, repository, options.moverImage)
                        try await Concurrent.forEach(live, width: max(1, options.volumeWidth), { claim in
                            let access = await mode.accessor(for: claim, client: volumeClient, repository: repository, moverImage: image)
                            progress("reading claim \(claim.claim) (\(access.method))")
                            return try await access.backup(claim, previous: known[claim.claim])
                        }) { node, transfer in
                            read(node, transfer, "read claim \(transfer.claim): ")
                        }
                    }
                }
                }
                // The application runs on (its fences released, its workloads scaled back): the snapshots are read now.
                let known = earlier
                let exporter = snapshotter
                try await Concurrent.forEach(taken, width: exporter.exportWidth, { item in
                    try await exporter.export(item, previous: known[item.claim.claim])
                }) { node, transfer in
                    read(node, transfer, "read snapshot of claim \(transfer.claim): ")
                }
                } catch {
                    await snapshotter.remove(taken.map(\.snapshot), namespace: namespace)
                    _ = await snapshotter.removeLeftovers(namespace: namespace)
                    throw error
                }
                let keep = options.keepSnapshots && !taken.isEmpty
                if !keep {
                    await snapshotter.remove(taken.map(\.snapshot), namespace: namespace)
                }
                if snapshotReport != nil, !liveReasons.isEmpty { snapshotReport?.liveClaims = liveReasons }
                if keep { snapshotReport?.kept = true }
                transfers.sort { $0.claim < $1.claim }
                var withWarnings = capture
                withWarnings.warnings = warnings
                let written: SnapshotManifest
                do {
                written = try await RestorePoint.write(withWarnings, objects: objects, namespace: namespace, namespaceUID: namespaceUID,
                                                            labelSelector: options.labelSelector,
                                                            volumes: nodes, transfers: transfers, volumeSnapshots: snapshotReport,
                                                            tags: options.tags,
                                                            quiesced: workloads.map { "\($0.0.kind)/\($0.1)" },
                                                            consistency: RestorePoint.Consistency(plan: plan, result: consistency,
                                                                                                  skippedClaims: skippedClaims,
                                                                                                  authors: options.blueprintAuthors,
                                                                                                  requester: options.blueprintRequester),
                                                            to: repository,
                                                            since: mark)
                } catch {
                    await snapshotter.remove(taken.map(\.snapshot), namespace: namespace)
                    _ = await snapshotter.removeLeftovers(namespace: namespace)
                    throw error
                }
                let manifest = written
                if keep {
                    let lost = await snapshotter.keep(taken.map(\.snapshot), namespace: namespace, restorePoint: manifest.id)
                    if !lost.isEmpty { progress("could not keep VolumeSnapshots \(lost.joined(separator: ", ")) as the local tier; a restore reads the repository") }
                    else { progress("kept \(taken.count) VolumeSnapshot\(taken.count == 1 ? "" : "s") as the restore point's local tier") }
                }
                // Anything else of this operation (an interrupted predecessor still finishing its step when this
                // run started; snapshots that could not be kept).
                _ = await snapshotter.removeLeftovers(namespace: namespace)
                if !unscaled.isEmpty {
                    throw ProtectionError(.quiesceFailed, "restore point \(manifest.shortID) was written, but these workloads could not be scaled back: \(unscaled.joined(separator: "; "))")
                }
                return manifest
            }
        }
        let metadata = try await RestorePoint.metadata(result, from: repository)
        return Result(snapshot: result, metadata: metadata, seconds: Date().timeIntervalSince(start))
    }

    /// The captured claims that are bound, with their volumes and the node a running pod uses them on.
    func boundClaims(_ capture: ApplicationCapture.Result, warnings: inout [String]) async throws -> [ClaimVolume] {
        let volumes = Dictionary(capture.objects.filter { $0.kind == "PersistentVolume" && $0.group.isEmpty }
            .map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var nodes: [String: String] = [:]
        var tolerations: [String: JSONValue] = [:]
        if let pods = try? await client.list(Pod.self, namespace: options.namespace) {
            for pod in pods where pod.phase == "Running" {
                for claim in pod.claimNames {
                    nodes[claim] = pod.nodeName
                    tolerations[claim] = pod.object["spec", "tolerations"]
                }
            }
        }
        var claims: [ClaimVolume] = []
        for object in capture.objects where object.kind == "PersistentVolumeClaim" && object.group.isEmpty {
            guard object["status", "phase"]?.string == "Bound", let volumeName = object["spec", "volumeName"]?.string else {
                warnings.append("claim \(object.name) is not bound: it has no data to back up")
                continue
            }
            var claim = ClaimVolume(namespace: options.namespace, claim: object.name, volume: volumes[volumeName],
                                    node: nodes[object.name], tolerations: tolerations[object.name])
            claim.claimObject = object
            claims.append(claim)
        }
        return claims
    }

    /// Scales back workloads a killed backup left at zero (they carry `quiescedAnnotation`).
    func recoverQuiesced(progress: @Sendable (String) -> Void) async throws {
        for resource in [Deployment.resource, StatefulSet.resource] {
            for object in try await client.listAll(resource, namespace: options.namespace).items {
                guard let text = object.annotations[Self.quiescedAnnotation], let replicas = Int64(text) else { continue }
                progress("scaling \(object.kind)/\(object.name) back to \(replicas): an interrupted backup left it at zero")
                _ = try await client.patch(resource, object.name, namespace: options.namespace,
                                           .merge(["metadata": ["annotations": [Self.quiescedAnnotation: .null]],
                                                   "spec": ["replicas": .int(replicas)]]))
            }
        }
    }

    /// Scales the workloads to zero, waits until their pods are gone, runs `body`, and scales them back
    /// to their replica counts whatever happened. Returns the workloads that could not be scaled back.
    func quiesced(_ workloads: [(APIResource, String, Int)], _ body: () async throws -> Void) async throws -> [String] {
        guard !workloads.isEmpty else {
            try await body()
            return []
        }
        let namespace = options.namespace
        func scale(_ workload: (APIResource, String, Int), to replicas: Int) async throws {
            // The annotation remembers the count while the workload is down, for a successor if we die.
            let note: JSONValue = replicas == 0 ? .string(String(workload.2)) : .null
            _ = try await client.patch(workload.0, workload.1, namespace: namespace,
                                       .merge(["metadata": ["annotations": [Self.quiescedAnnotation: note]],
                                               "spec": ["replicas": .int(Int64(replicas))]]))
        }
        var failure: Error?
        do {
            for workload in workloads { try await scale(workload, to: 0) }
            // `status.replicas` leaves out terminating pods, which may still write: wait until no pod of
            // the workload is left at all.
            let control = WorkloadControl(client: client, namespace: namespace)
            for workload in workloads {
                try await control.wait(WorkloadRef(kind: workload.0.kind, name: workload.1), .stopped,
                                       timeout: options.quiesceTimeout, code: .quiesceFailed)
            }
            try await body()
        } catch {
            failure = error
        }
        var unscaled: [String] = []
        for workload in workloads {
            do { try await scale(workload, to: workload.2) } catch { unscaled.append("\(workload.0.kind)/\(workload.1): \(error)") }
        }
        if let failure {
            if unscaled.isEmpty { throw failure }
            throw ProtectionError(.quiesceFailed, "\(failure); and these workloads could not be scaled back: \(unscaled.joined(separator: "; "))")
        }
        return unscaled
    }
}
