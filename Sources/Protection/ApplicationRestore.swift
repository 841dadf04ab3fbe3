import Concurrent
import Crypto
import Foundation
import Kube
import Repository
import Snapshot

/// Brings an application back from a restore point: objects in dependency order (`ObjectRestorer`),
/// volume data written into the restored claims after the claims tier and before any workload, into the
/// same namespace or another, with transforms, an existing-object policy, and partial selections.
///
/// PersistentVolumes are never replayed as captured: every restored claim with data gets a volume of its
/// own — for hostPath/local volumes a copy of the original definition pointing at a new directory beside
/// the original (`<path>-<id>`), pre-bound to the restored claim; for other volume types the claim's
/// storage class provisions one — so the original volume and its data are never touched. New volumes are
/// built by Cairn after the transforms and never take one.
///
/// Two identities: `client` writes the application's objects (in the controller, the identity of whoever
/// asked for the restore); `volumeClient` does Cairn's own volume work — the new PersistentVolumes, reading
/// bound volumes, mover pods — which the person asking could not do themselves.
public struct ApplicationRestore: Sendable {
    public struct Options: Sendable {
        public var targetNamespace: String?
        public var existing: ObjectRestorer.ExistingPolicy
        public var transforms: TransformSet?
        public var dryRun: Bool
        /// Only objects matching these selectors (`Kind`, `Kind/name`, `group/Kind`…); empty: all.
        public var only: [CaptureRules.Selector]
        /// Only claims and their data, no other object.
        public var volumesOnly: Bool
        /// The claims whose data is written back; nil: every claim restored that has data.
        public var volumes: Set<String>?
        /// Whether volume data is written at all.
        public var volumeData: Bool
        /// Keep files a written volume holds beyond the restore point (by default a volume is brought back
        /// to the restore point's state: files created after the backup are removed).
        public var keepExtraFiles = false
        public var volumeAccess: VolumeAccessMode
        public var moverImage: String
        /// How many volumes are written at once, each by its own mover (or on the host).
        public var volumeWidth = 4
        public var bindTimeout: Duration
        /// A restore a namespace's own user asked for: what `RestoreConfinement` leaves to administrators is
        /// excluded (cluster-scoped objects, the Namespace, RBAC, Cairn's kinds), and every object is checked
        /// after its transforms. New volumes for restored claims are made either way.
        public var confined = false
        /// Hooks: `afterRestore` phases, run once the objects, the volumes and the blueprints' restore actions
        /// are done.
        public var hooks: [String: [Blueprint.Phase]] = [:]
        /// Who runs a blueprint's restore phases, given the author the restore point recorded for it (nil:
        /// `client`, whoever restores). The controller impersonates the author of a namespace's blueprint.
        public var blueprintClient: (@Sendable (_ author: String) throws -> KubeClient)?
        /// How long a workload whose blueprint has a restore action may take to be ready before it runs.
        public var readyTimeout: Duration = .seconds(300)
        /// Make claims from the restore point's local tier (its kept VolumeSnapshots) where it can: a restore
        /// into the namespace it was taken of, of a claim that does not exist there, whose snapshot is ready.
        /// Every other claim's data is written from the repository.
        public var localSnapshots = true

        public init(targetNamespace: String? = nil, existing: ObjectRestorer.ExistingPolicy = .fail,
                    transforms: TransformSet? = nil, dryRun: Bool = false, only: [CaptureRules.Selector] = [],
                    volumesOnly: Bool = false, volumes: Set<String>? = nil, volumeData: Bool = true,
                    volumeAccess: VolumeAccessMode = .auto, moverImage: String = MoverVolumeAccess.defaultImage,
                    bindTimeout: Duration = .seconds(120)) {
            self.targetNamespace = targetNamespace
            self.existing = existing
            self.transforms = transforms
            self.dryRun = dryRun
            self.only = only
            self.volumesOnly = volumesOnly
            self.volumes = volumes
            self.volumeData = volumeData
            self.volumeAccess = volumeAccess
            self.moverImage = moverImage
            self.bindTimeout = bindTimeout
        }
    }

    /// The result of one object or volume.
    public struct Row: Sendable, Codable, Equatable {
        public var object: String
        public var tier: Int
        /// created, updated, recreated, skipped, planned, excluded, failed, forbidden, or for volumes: written,
        /// skipped, failed, planned.
        public var result: String
        public var detail: String?
        public var transforms: [String]?
        public var volume: VolumeTransfer?

        /// Failed or refused.
        public var failed: Bool { result == "failed" || result == "forbidden" }
    }

    public struct Report: Sendable, Codable {
        public var restorePoint: String
        public var sourceNamespace: String
        public var targetNamespace: String
        public var dryRun: Bool
        /// The objects' rows: of claims and workloads always, of the others at most `Outcomes.defaultKeep`
        /// failures and as many other results (`objectCounts` counts them all).
        public var objects: [Row]
        /// Every object's result, counted: created, updated, recreated, skipped, planned, failed, forbidden, excluded.
        public var objectCounts: [String: Int]
        /// Objects counted in `objectCounts` without a row in `objects`.
        public var unlisted: Int
        public var volumes: [Row]
        /// The blueprints' restore phases and the restore hooks.
        public var phases: [PhaseRecord] = []
        public var seconds: Double

        /// Objects, volumes and phases that failed or were refused.
        public var failures: Int {
            objectCounts["failed", default: 0] + objectCounts["forbidden", default: 0] + volumes.count(where: \.failed)
                + phases.filter { $0.result == "failed" }.count
        }
    }

    public let client: KubeClient
    /// Cairn's own identity for volumes (see the type's documentation).
    public let volumeClient: KubeClient
    public let repository: Repository
    public let options: Options

    public init(client: KubeClient, volumeClient: KubeClient? = nil, repository: Repository, options: Options) {
        self.client = client
        self.volumeClient = volumeClient ?? client
        self.repository = repository
        self.options = options
    }

    /// Which of a restore point's objects a restore writes (its options' `volumesOnly`, `volumes`, `only`).
    /// PersistentVolumes never: restored claims get new ones (see the type's documentation).
    struct Selection: Sendable {
        let volumesOnly: Bool
        let volumes: Set<String>?
        let only: [CaptureRules.Selector]

        init(options: Options) {
            volumesOnly = options.volumesOnly
            volumes = options.volumes
            only = options.only
        }

        func restores(_ object: KubeObject) -> Bool {
            if object.kind == "PersistentVolume" && object.group.isEmpty { return false }
            if volumesOnly {
                return object.kind == "PersistentVolumeClaim" && object.group.isEmpty && (volumes?.contains(object.name) ?? true)
            }
            return only.isEmpty || only.contains { $0.matches(object) }
        }
    }

    /// The selected objects of a restore point, read from the repository as their tier is restored.
    struct RestoredObjects: ObjectRestorer.Source {
        let stored: RestorePoint.StoredObjects
        let selection: Selection

        var tiers: [Int] { Array(Set(stored.kinds.map(\.tier))).sorted() }

        func forEach(tier: Int, _ body: (KubeObject) async throws -> Void) async throws {
            try await stored.forEach(stored.kinds.filter { $0.tier == tier }) { object in
                if selection.restores(object) { try await body(object) }
            }
        }
    }

    /// A planned volume: the claim as restored and what backs it.
    struct PlannedVolume: Sendable {
        var claim: String
        /// nil: a new, empty volume (the workload's blueprint brings its data back).
        var data: Node?
        /// The new PersistentVolume made for the claim, if its original was hostPath/local.
        var volume: KubeObject?
        /// The VolumeSnapshot of the local tier the claim is made from (its data is not written).
        var snapshot: String?
        /// Where the restored workload's pods that mount the claim may run (`ClaimVolume.placement`).
        var placement: JSONValue?
    }

    public func run(_ snapshot: SnapshotManifest, progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Report {
        let start = Date()
        return try await RepositoryLock.with(repository, exclusive: false, operation: "app restore", wait: 30) {
            try await repository.loadIndex()
            let (metadata, storedObjects) = try await RestorePoint.objects(snapshot, from: repository)
            let source = metadata.namespace
            let target = options.targetNamespace ?? source
            let stored = options.volumeData ? try await RestorePoint.volumes(of: snapshot, in: repository) : [:]
            if let wanted = options.volumes {
                for claim in wanted.sorted() where stored[claim] == nil {
                    throw ProtectionError(.dataMissing, "restore point \(snapshot.shortID) has no data of claim \(claim); it has: \(stored.keys.sorted().joined(separator: ", "))")
                }
            }
            // What the restore plans with is read first, into memory: claims, volumes, workloads, the Namespace
            // (`ApplicationCapture.planned`). Every object is read again as its tier is restored, a batch at a
            // time: a restore never holds all of an application's objects.
            var captured: [KubeObject] = []
            try await storedObjects.forEach(storedObjects.kinds.filter { ApplicationCapture.planned(group: $0.group, kind: $0.kind) }) {
                captured.append($0)
            }
            let selection = Selection(options: options)
            let objects = captured.filter { selection.restores($0) && !(options.confined && RestoreConfinement.exclusion(of: $0) != nil) }
            let originals = Dictionary(captured.filter { $0.kind == "PersistentVolume" && $0.group.isEmpty }.map { ($0.name, $0) },
                                       uniquingKeysWith: { a, _ in a })
            var planned: [String: PlannedVolume] = [:]
            let placements = WorkloadPlacement.claimPlacements(objects)
            for claim in objects where claim.kind == "PersistentVolumeClaim" && claim.group.isEmpty
                && RestoreConfinement.foreign(claim, source: source) == nil {
                guard options.volumes?.contains(claim.name) ?? true else { continue }
                guard let data = stored[claim.name] else {
                    if metadata.blueprintClaims?.contains(claim.name) ?? false, options.volumeData {
                        planned[claim.name] = PlannedVolume(claim: claim.name, data: nil,
                                                            volume: plannedVolume(for: claim, originals: originals, source: source, target: target, snapshot: snapshot))
                    }
                    continue
                }
                planned[claim.name] = PlannedVolume(claim: claim.name, data: data,
                                                    volume: plannedVolume(for: claim, originals: originals, source: source, target: target, snapshot: snapshot),
                                                    placement: placements[claim.name])
            }
            // The local tier: claims made from the restore point's kept VolumeSnapshots, in the namespace they are in.
            var claimSnapshots: [String: String] = [:]
            if options.localSnapshots, metadata.volumeSnapshots?.kept == true, target == source,
               let kept = try? await SnapshotVolumeAccess.kept(restorePoint: snapshot.id, namespace: target, client: volumeClient) {
                for (claim, plan) in planned where plan.data != nil {
                    guard let vs = kept[claim], vs["status", "readyToUse"]?.bool == true,
                          vs["metadata", "deletionTimestamp"] == nil,
                          (try? await volumeClient.get(PersistentVolumeClaim.resource, claim, namespace: target)) == nil
                    else { continue }
                    claimSnapshots[claim] = vs.name
                    planned[claim]?.snapshot = vs.name
                    planned[claim]?.volume = nil
                }
            }
            // A claim that exists bound in the target keeps its volume (updated in place, or skipped): a new
            // one made for it would never be bound (a standby restored again and again would collect them).
            if options.existing != .recreate {
                for (claim, plan) in planned where plan.volume != nil {
                    if let existing = try? await volumeClient.get(PersistentVolumeClaim.self, claim, namespace: target),
                       existing.volumeName != nil {
                        planned[claim]?.volume = nil
                    }
                }
            }
            var volumeRows: [Row] = []
            progress("restoring the objects of \(source) (\(metadata.objects) in the restore point) and \(planned.count) volumes into \(target)"
                     + (claimSnapshots.isEmpty ? "" : "; \(claimSnapshots.count) from the local tier (VolumeSnapshots)"))
            // New volumes first, as Cairn (with the same existing-object policy, never transformed).
            let newVolumes = planned.values.compactMap(\.volume).sorted { $0.name < $1.name }
            var outcomes = try await ObjectRestorer(client: volumeClient, options: ObjectRestorer.Options(
                targetNamespace: target, existing: options.existing, dryRun: options.dryRun))
                .restore(newVolumes, sourceNamespace: target)
            var restorerOptions = ObjectRestorer.Options(
                targetNamespace: target, existing: options.existing, transforms: options.transforms, dryRun: options.dryRun,
                confined: options.confined)
            restorerOptions.claimSnapshots = claimSnapshots
            let restorer = ObjectRestorer(client: client, options: restorerOptions)
            var startRecords: [PhaseRecord] = []
            outcomes.append(contentsOf: try await restorer.restore(RestoredObjects(stored: storedObjects, selection: selection), sourceNamespace: source) { tier, results in
                guard tier == RestoreOrder.claimsTier else { return }
                volumeRows = try await writeVolumes(planned, claims: results, namespace: target, progress: progress)
                if !options.dryRun {
                    startRecords = try await runBeforeStart(snapshot, metadata: metadata, objects: objects, namespace: target,
                                                            progress: progress)
                }
            })
            if options.dryRun {
                volumeRows = planned.values.sorted { $0.claim < $1.claim }.map { plan in
                    Row(object: "volume \(target)/\(plan.claim)", tier: 6, result: "planned",
                        detail: plan.snapshot.map { "made from VolumeSnapshot \($0) (the restore point's local tier)" } ?? plan.volume.map { "new PersistentVolume \($0.name) at \(ClaimVolume(namespace: target, claim: plan.claim, volume: $0).directory ?? "?")" }
                            ?? "volume provisioned by the claim's storage class", transforms: nil, volume: nil)
                }
            }
            let rows = outcomes.map { outcome in
                Row(object: outcome.object, tier: outcome.tier, result: outcome.result.name, detail: outcome.result.detail,
                    transforms: outcome.transforms.isEmpty ? nil : outcome.transforms, volume: nil)
            }
            let (counts, unlisted) = (outcomes.counts, outcomes.omitted)
            outcomes = ObjectRestorer.Outcomes()  // the rows say it all now: not held twice
            var phases: [PhaseRecord] = startRecords
            if !options.dryRun {
                phases += try await runRestorePhases(snapshot, metadata: metadata, rows: rows, namespace: target,
                                                    progress: progress)
            }
            return Report(restorePoint: snapshot.id, sourceNamespace: source, targetNamespace: target,
                          dryRun: options.dryRun, objects: rows, objectCounts: counts, unlisted: unlisted,
                          volumes: volumeRows, phases: phases,
                          seconds: Date().timeIntervalSince(start))
        }
    }

    /// The `beforeStart` actions of the blueprints of the workloads being restored: once their volumes are
    /// written, before any workload is created (task pods with the claims mounted put files in place). A
    /// failed phase stops the restore there — the workloads are not created on data that is not ready —
    /// with the phase and why.
    func runBeforeStart(_ snapshot: SnapshotManifest, metadata: RestorePoint.Metadata, objects: [KubeObject], namespace: String,
                        progress: @Sendable (String) -> Void) async throws -> [PhaseRecord] {
        var records: [PhaseRecord] = []
        for (workload, blueprint, artifacts) in try await RestorePoint.consistency(of: snapshot, metadata: metadata, in: repository) {
            guard let action = blueprint.actions[.beforeStart],
                  objects.contains(where: { $0.kind == workload.kind && $0.name == workload.name && $0.group == "apps" }) else { continue }
            var runner = BlueprintRunner(client: client, namespace: namespace, repository: repository)
            if let author = metadata.blueprintAuthors?[blueprint.name], let identity = options.blueprintClient {
                runner = BlueprintRunner(client: try identity(author), namespace: namespace, repository: repository)
            }
            let outcome = try await runner.run(action, named: "beforeStart", blueprint: blueprint.name, workload: nil,
                                               inputs: artifacts,
                                               values: BlueprintRunner.templateValues(workload, object: objects.first {
                                                   $0.kind == workload.kind && $0.name == workload.name && $0.group == "apps"
                                               }),
                                               progress: progress)
            records += outcome.records
            if let failure = outcome.failure {
                throw ProtectionError(.phaseFailed, "the restore stopped before creating the workloads: \(failure.message)", cause: failure)
            }
        }
        return records
    }

    /// The restore actions of the blueprints the restore point's workloads ran (each once its workload is
    /// ready, with its artifacts on stdin), then the `afterRestore` hooks. A failed phase is a failed row of
    /// the report; the workloads of other blueprints still get theirs.
    func runRestorePhases(_ snapshot: SnapshotManifest, metadata: RestorePoint.Metadata, rows: [Row],
                          namespace: String, progress: @Sendable (String) -> Void) async throws -> [PhaseRecord] {
        let runner = BlueprintRunner(client: client, namespace: namespace, repository: repository)
        let control = WorkloadControl(client: client, namespace: namespace)
        var records: [PhaseRecord] = []
        for (workload, blueprint, artifacts) in try await RestorePoint.consistency(of: snapshot, metadata: metadata, in: repository) {
            guard let action = blueprint.actions[.restore] else { continue }
            let restored = rows.contains { row in
                row.object == "\(workload.kind) \(namespace)/\(workload.name)" && ["created", "updated", "recreated"].contains(row.result)
            }
            guard restored else {
                progress("blueprint \(blueprint.name): \(workload) was not restored; its restore action does not run")
                continue
            }
            progress("waiting for \(workload) to be ready for blueprint \(blueprint.name)")
            do {
                try await control.wait(workload, .ready, timeout: options.readyTimeout)
            } catch let error as ProtectionError {
                records.append(PhaseRecord(blueprint: blueprint.name, action: "restore", phase: "(ready)", workload: workload.description,
                                           result: "failed", seconds: 0, message: error.message))
                continue
            }
            var phaseRunner = runner
            if let author = metadata.blueprintAuthors?[blueprint.name], let identity = options.blueprintClient {
                phaseRunner = BlueprintRunner(client: try identity(author), namespace: namespace, repository: repository)
            }
            records += try await phaseRunner.run(action, named: "restore", blueprint: blueprint.name, workload: workload,
                                                 inputs: artifacts, progress: progress).records
        }
        if let hooks = options.hooks["afterRestore"], !hooks.isEmpty {
            records += try await runner.run(Blueprint.Action(phases: hooks), named: "afterRestore", blueprint: "hooks",
                                            workload: nil, progress: progress).records
        }
        return records
    }

    /// The new volume Cairn makes for a restored claim (`newVolume`), unless the transforms move the claim to
    /// another storage class (`storageClasses: {cairn-hostpath: csi-hostpath}`): then that class provisions it.
    func plannedVolume(for claim: KubeObject, originals: [String: KubeObject], source: String, target: String,
                       snapshot: SnapshotManifest) -> KubeObject? {
        guard let original = claim["spec", "volumeName"]?.string.flatMap({ originals[$0] }),
              let volume = newVolume(from: original, claim: claim.name, targetNamespace: target, snapshot: snapshot) else { return nil }
        // The claim as it will be written: cleaned, moved, transformed.
        let restorer = ObjectRestorer(client: client, options: ObjectRestorer.Options(targetNamespace: target, transforms: options.transforms))
        let written = (try? restorer.prepare(claim, sourceNamespace: source).0) ?? claim
        let wanted = written["spec", "storageClassName"]?.string ?? ""
        return wanted == (PersistentVolume(volume).storageClassName ?? "") ? volume : nil
    }

    /// A new volume for a restored claim, from the original's definition: hostPath and local volumes get a
    /// new directory beside the original; other types are left to the claim's storage class (nil).
    func newVolume(from original: KubeObject, claim: String, targetNamespace: String, snapshot: SnapshotManifest) -> KubeObject? {
        let kind: String
        if original["spec", "hostPath"] != nil { kind = "hostPath" } else if original["spec", "local"] != nil { kind = "local" } else { return nil }
        guard let path = original["spec", kind, "path"]?.string else { return nil }
        let digest = SHA256.hash(data: Data("\(targetNamespace)/\(claim)/\(snapshot.id)".utf8))
        let id = digest.prefix(4).map { String(format: "%02x", $0) }.joined()
        var volume = ObjectCleaner().clean(original)
        volume.name = String(original.name.prefix(240)) + "-" + id
        var labels = volume.labels
        labels["cairn.dev/restored-from"] = String(original.name.prefix(63))
        volume.labels = labels
        volume["spec", kind, "path"] = .string(path.hasSuffix("/") ? String(path.dropLast()) + "-" + id : path + "-" + id)
        if kind == "hostPath" { volume["spec", "hostPath", "type"] = "DirectoryOrCreate" }
        volume["spec", "claimRef"] = ["apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "namespace": .string(targetNamespace), "name": .string(claim)]
        return volume
    }

    /// Writes the planned volumes into the restored claims: after the claims tier, before workloads.
    func writeVolumes(_ planned: [String: PlannedVolume], claims results: ObjectRestorer.Outcomes, namespace: String,
                      progress: @escaping @Sendable (String) -> Void) async throws -> [Row] {
        // `volumeWidth` volumes at once, each by its own mover (or on the host); the rows in claim order.
        // A volume's failure is its row; only cancellation ends the restore here.
        let plans = planned.values.sorted(by: { $0.claim < $1.claim })
        return try await Concurrent.map(plans, width: max(1, options.volumeWidth)) { plan in
            await writeVolume(plan, claims: results, namespace: namespace, progress: progress)
        }
    }

    /// One planned volume written (or why not): its row.
    func writeVolume(_ plan: PlannedVolume, claims results: ObjectRestorer.Outcomes, namespace: String,
                     progress: @Sendable (String) -> Void) async -> Row {
        let label = "volume \(namespace)/\(plan.claim)"
        let outcome = results.first { $0.object == "PersistentVolumeClaim \(namespace)/\(plan.claim)" }
        switch outcome?.result {
        case .failed(let reason)?, .forbidden(let reason)?:
            return Row(object: label, tier: 6, result: "failed", detail: "the claim was not restored: \(reason)")
        case .skipped?:
            return Row(object: label, tier: 6, result: "skipped", detail: "the claim already exists and the existing-object policy is skip: its data was left as it is")
        case nil:
            return Row(object: label, tier: 6, result: "failed", detail: "the claim is not part of this restore")
        default:
            break
        }
        guard let data = plan.data else {
            return Row(object: label, tier: 6, result: "empty",
                       detail: "a new, empty volume: the workload's blueprint restores its data")
        }
        if let snapshot = plan.snapshot {
            // Made by the storage from the local tier; bound once the driver has copied it.
            let start = Date()
            do {
                _ = try await boundVolume(plan, namespace: namespace)
                let transfer = VolumeTransfer(claim: plan.claim, method: "snapshot", seconds: Date().timeIntervalSince(start))
                progress("claim \(plan.claim) made from VolumeSnapshot \(snapshot) in \(String(format: "%.1f", transfer.seconds)) s")
                return Row(object: label, tier: 6, result: "written",
                           detail: "made from VolumeSnapshot \(snapshot) (the restore point's local tier)", volume: transfer)
            } catch {
                return Row(object: label, tier: 6, result: "failed",
                           detail: "the claim made from VolumeSnapshot \(snapshot) was not bound: \(error)")
            }
        }
        do {
            let volume = try await boundVolume(plan, namespace: namespace)
            // Host access writes the new directory itself (the Restorer creates its target).
            let access = await options.volumeAccess.accessor(for: volume, client: volumeClient, repository: repository,
                                                             moverImage: options.moverImage, creating: true)
            progress("writing claim \(plan.claim) (\(access.method))")
            let transfer = try await access.restore(data, into: volume, exact: !options.keepExtraFiles)
            progress("wrote claim \(plan.claim): \(transfer.files) files, \(transfer.bytes) bytes, \(String(format: "%.1f", transfer.seconds)) s")
            return Row(object: label, tier: 6, result: transfer.problems.isEmpty ? "written" : "failed",
                       detail: transfer.problems.isEmpty ? nil : "\(transfer.problems.count) files not written: \(transfer.problems.prefix(3).joined(separator: "; "))",
                       volume: transfer)
        } catch {
            return Row(object: label, tier: 6, result: "failed", detail: "\(error)")
        }
    }

    /// The claim's volume once bound. A claim waiting for its first consumer (a storage class with
    /// `WaitForFirstConsumer`) is returned unbound: a mover pod is that consumer.
    func boundVolume(_ plan: PlannedVolume, namespace: String) async throws -> ClaimVolume {
        // A claim without a volume of ours is provisioned dynamically; it may wait for a consumer. One made
        // from a snapshot of the local tier waits too, when its storage class binds at once.
        var mode: String?
        if plan.volume == nil, let name = try await volumeClient.get(PersistentVolumeClaim.self, plan.claim, namespace: namespace).storageClassName {
            mode = try? await volumeClient.get(StorageClass.self, name).volumeBindingMode
        }
        let waitsForConsumer = mode == "WaitForFirstConsumer"
        var dynamic = plan.volume == nil && options.volumeAccess != .host
        if plan.snapshot != nil { dynamic = waitsForConsumer }
        // A class that binds at once gets a few seconds; one that waits for a consumer binds only once one runs.
        let deadline = ContinuousClock.now + (dynamic ? (waitsForConsumer ? .zero : .seconds(10)) : options.bindTimeout)
        while true {
            let claim = try await volumeClient.get(PersistentVolumeClaim.self, plan.claim, namespace: namespace)
            if claim.phase == "Bound", let name = claim.volumeName {
                let volume = try await volumeClient.get(PersistentVolume.self, name)
                return ClaimVolume(namespace: namespace, claim: plan.claim, volume: volume.object)
            }
            guard ContinuousClock.now < deadline else {
                if dynamic {
                    var unbound = ClaimVolume(namespace: namespace, claim: plan.claim, volume: nil)
                    unbound.placement = plan.placement
                    return unbound
                }
                throw ProtectionError(.claimNotBound, "claim \(namespace)/\(plan.claim) was not bound within \(options.bindTimeout) (phase \(claim.phase ?? "unknown"))")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Restores files of one volume of a restore point into a local directory (no cluster involved).
    public static func restoreFiles(_ snapshot: SnapshotManifest, claim: String, paths: [String], target: String,
                                    existing: ExistingPolicy, repository: Repository) async throws -> RestoreReport {
        try await RepositoryLock.with(repository, exclusive: false, operation: "restore", wait: 30) {
            try await repository.loadIndex()
            let stored = try await RestorePoint.volumes(of: snapshot, in: repository)
            guard let node = stored[claim] else {
                let claims = stored.keys.sorted()
                throw ProtectionError(.dataMissing, "restore point \(snapshot.shortID) has no data of claim \(claim); it has: \(claims.isEmpty ? "none" : claims.joined(separator: ", "))")
            }
            return try await Restorer(repository: repository)
                .restoreDirectory(node, options: RestoreOptions(target: target, include: paths, existing: existing))
        }
    }
}
