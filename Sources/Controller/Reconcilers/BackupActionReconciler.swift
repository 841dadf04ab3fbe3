import Foundation
import Kube
import Logging
import Protection
import Repository
import Server
import Snapshot
import Synchronization

/// BackupActions: one backup of the action's namespace (the application) into the Profile's
/// repository, then its RestorePoint object, then the policy's retention.
///
/// Phases: (none) → `Running` → `Succeeded` | `Failed`. Taking an action to `Running` writes this
/// process's identity with the API server's optimistic concurrency, so two controllers can never both
/// start it. A `Running` action whose run is not in this process was interrupted (the controller was
/// killed or lost its Lease): if its restore point was written it is completed from the repository,
/// else it is run again (up to `maxAttempts` runs in all) — the restore point is written last, so an
/// interrupted run leaves nothing half-written behind, and the workloads it scaled down are scaled back.
struct BackupActionReconciler {
    static let maxAttempts = 3
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let action = try await context.fetch(key) else { return nil }
        switch await context.state(of: action) {
        case .done, .runningHere: return nil
        case .interrupted: return try await resume(action)
        case .new: return try await start(action, resumed: false)
        }
    }

    func start(_ action: KubeObject, resumed: Bool) async throws -> Duration? {
        if let wait = context.retryDelay(of: action) { return wait }
        let profile: String
        do {
            let spec = try BackupActionSpec(action)
            profile = try await context.profileName(spec.profile)
            let profileObject = try await context.readyProfile(profile)
            if (try? ProfileSpec(profileObject))?.isImport == true {
                throw ControllerError("ProfileReadOnly", "Profile '\(profile)' imports another cluster's exports and is read-only: back up into a Profile of this cluster")
            }
            try await context.authorize(profile: profileObject, for: action)
        } catch let error as ControllerError {
            if error.reason == "ProfileNotReady" {
                try await context.transition(action, .backupAction, to: .waiting(reason: error.reason, message: error.message))
                return .seconds(15)
            }
            try await finish(action, failed: error.reason, message: error.message, seconds: 0)
            return nil
        }
        guard try await context.takeSlot(for: action, kind: .backupAction) else { return .seconds(30) }
        let attempts = action.attempts + 1
        let message = resumed ? "run \(attempts) of at most \(Self.maxAttempts): the previous run was interrupted"
                              : "backing up namespace \(action.namespace ?? "")"
        let claimed = try await context.transition(action, .backupAction, to: .running(
            attempt: attempts, reason: resumed ? "Resumed" : "Started", message: message, event: message,
            fields: ["profile": .string(profile)]))
        await context.run(claimed) { await run(claimed, profile: profile) }
        return nil
    }

    /// The run of an action this process started; writes the final status unless cancelled (shutdown:
    /// the successor resumes it).
    func run(_ action: KubeObject, profile: String) async {
        let namespace = action.namespace ?? ""
        var actionLogger = context.logger
        actionLogger[metadataKey: "k8s.namespace"] = "\(namespace)"
        actionLogger[metadataKey: "cairn.action"] = "\(action.name)"
        let logger = actionLogger
        let started = Date()
        do {
            let client = try context.client(actingFor: action)
            let (repository, profileSpec) = try await context.repository(forAction: profile)
            let spec = try BackupActionSpec(action)
            var tags = ["action=\(action.uid ?? "")", "name=\(action.name)"]
            if let policy = action.labels[CairnLabel.policy] {
                tags.append("policy=\(policy)")
            } else if let period = spec.expiresAfter ?? profileSpec.defaultExpiresAfter {
                // Hand-made restore points expire (a namespace's users may not delete them).
                tags.append("\(RestorePointObject.expiresTag)=\(Timestamp.format(started.addingTimeInterval(period)))")
            }
            var options = ApplicationBackup.Options(
                namespace: namespace, labelSelector: spec.labelSelector,
                volumeAccess: .auto, moverImage: context.moverImage,
                quiesce: spec.quiesce, volumes: spec.volumes, tags: tags)
            if namespace == context.namespace {
                // The controller's namespace: Cairn's configuration, for recovering Cairn itself elsewhere.
                options.rules = .cairnConfiguration
                options.volumes = false
                options.quiesce = .none
            }
            // A resumed run finds the VolumeSnapshots and temporary claims of the interrupted one by this.
            options.operation = action.uid ?? action.name
            options.keepSnapshots = spec.keepSnapshots
            options.lockOperation = ControllerLock.operation("backup \(namespace)/\(action.name)", context)
            // A namespace's blueprints run as whoever wrote them; cluster-wide ones (administrators') and hooks
            // as whoever asked for the backup.
            var catalog = try await BlueprintCatalog.load(namespace: namespace, reader: client,
                                                          systemNamespace: context.namespace, systemReader: context.client)
            (options.blueprintClients, options.blueprintAuthors) = context.blueprintIdentities(&catalog)
            options.blueprintRequester = UserInfo.requester(of: action).map { String(decoding: $0.json.serialized(), as: UTF8.self) }
            (options.blueprints, options.invalidBlueprints) = (catalog.valid, catalog.invalid)
            options.bindings = spec.consistency.bindings
            options.hooks = spec.consistency.hooks
            options.consistencyGroup = spec.consistency.consistencyGroup
            // A slot is not held for long behind a prune: the action is tried again later instead.
            options.lockWait = 10
            let progress = ProgressWriter(context: context, kind: .backupAction, namespace: namespace, name: action.name)
            let result = try await ApplicationBackup(client: client, volumeClient: context.client, repository: repository,
                                                     options: options)
                .run(progress: { line in logger.info("backup.step", metadata: ["cairn.step": "\(line)"]) },
                     status: { state in progress.update(state) })
            await progress.flush()
            try await complete(action, snapshot: result.snapshot, metadata: result.metadata, profile: profile,
                               seconds: Date().timeIntervalSince(started), message: nil)
        } catch {
            if Task.isCancelled || error is CancellationError {
                logger.info("backup.interrupted")
                return
            }
            let failure = ControllerError.classify(error, fallback: "BackupFailed")
            logger.error("backup.failed", metadata: ["error": "\(failure)", "cairn.reason": "\(failure.reason)"])
            let attempt = max(1, action.attempts)
            if (try? await context.retryLater(action, kind: .backupAction, failure: failure, attempt: attempt,
                                              maxAttempts: Self.maxAttempts)) == true { return }
            try? await finish(action, failed: failure.reason, message: failure.message,
                              seconds: Date().timeIntervalSince(started), phases: (error as? ProtectionError)?.phases ?? [])
        }
    }

    /// A Running action not run by this process.
    func resume(_ action: KubeObject) async throws -> Duration? {
        let namespace = action.namespace ?? ""
        let profile = action.runProfile ?? ""
        let (repository, _) = try await context.repositories.repository(profile: profile)
        let uid = action.uid ?? ""
        if let snapshot = try await SnapshotFiles.all(in: repository).snapshots
            .first(where: { $0.tags.contains("action=\(uid)") }) {
            let metadata = try await RestorePoint.metadata(snapshot, from: repository)
            try await complete(action, snapshot: snapshot, metadata: metadata, profile: profile, seconds: nil,
                               message: "the restore point was written before the controller restarted")
            return nil
        }
        // Mover pods of the interrupted run.
        var options = ListOptions()
        options.labelSelector = MoverVolumeAccess.label
        for pod in try await context.client.listAll(Pod.resource, namespace: namespace, options: options).items {
            _ = try? await context.client.delete(Pod.resource, pod.name, namespace: namespace,
                                                 options: DeleteOptions(gracePeriodSeconds: 0))
        }
        let attempts = max(1, action.attempts)
        if attempts >= Self.maxAttempts {
            try await finish(action, failed: "Interrupted",
                             message: "the controller stopped \(attempts) times while this backup ran; no restore point was written. Create a new BackupAction to try again", seconds: nil)
            return nil
        }
        return try await start(action, resumed: true)
    }

    /// Records a written restore point: its RestorePoint object, retention, final status, metrics.
    func complete(_ action: KubeObject, snapshot: SnapshotManifest, metadata: RestorePoint.Metadata, profile: String,
                  seconds: Double?, message: String?) async throws {
        let namespace = action.namespace ?? ""
        let point = RestorePointObject.make(for: snapshot, namespace: namespace, profile: profile)
        do {
            _ = try await context.client.create(point, as: CairnKind.restorePoint.resource, namespace: namespace)
        } catch let error as KubeError where error.code == .alreadyExists {}
        if let policy = action.labels[CairnLabel.policy] {
            try await applyRetention(policy: policy, namespace: namespace, profile: profile)
        }
        let volumes = metadata.volumes ?? []
        let bytes = volumes.reduce(0) { $0 + $1.bytes }
        let added = volumes.reduce(0) { $0 + ($1.bytesAdded ?? 0) }
        let text = message ?? "restore point \(point.name): \(metadata.objects) objects, \(volumes.count) volumes, \(bytes) bytes"
        var result: JSONValue = ["objects": .int(Int64(metadata.objects)), "volumes": .int(Int64(volumes.count)),
                                 "bytes": .int(Int64(bytes)), "bytesAdded": .int(Int64(added)),
                                 "warnings": .array(metadata.warnings.prefix(20).map { .string($0) })]
        if let phases = metadata.phases, !phases.isEmpty { result["phases"] = PhaseRecord.statusJSON(phases) }
        if let artifacts = metadata.artifacts, !artifacts.isEmpty {
            result["artifacts"] = .object(artifacts.mapValues { .int(Int64($0)) })
        }
        if let group = metadata.consistencyGroup {
            result["consistencyGroup"] = ["workloads": .array(group.workloads.map { .string($0) }),
                                          "fenceStarted": .string(Timestamp.format(group.fenceStarted)),
                                          "fencedSeconds": .double(group.fencedSeconds), "windowSeconds": .double(group.windowSeconds),
                                          "volumesInWindow": .bool(group.volumesInWindow),
                                          "pointSeconds": .object((group.pointSeconds ?? [:]).mapValues { .double($0) })]
        }
        if let snapshots = metadata.volumeSnapshots {
            result["volumeSnapshots"] = ["claims": .array(snapshots.snapshots.map { .string($0.claim) }),
                                         "spreadSeconds": .double(snapshots.spreadSeconds),
                                         "takeSeconds": .double(snapshots.takeSeconds),
                                         "kept": .bool(snapshots.kept == true)]
        }
        if let seconds { result["seconds"] = .double((seconds * 10).rounded() / 10) }
        try await context.transition(action, .backupAction, to: .succeeded(message: text, fields: [
            "restorePoint": .string(point.name), "restorePointID": .string(snapshot.id), "result": result]))
        context.metrics.actionFinished(kind: "backup", result: "succeeded",
                                       seconds: seconds ?? Date().timeIntervalSince(action.startTime ?? Date()))
        context.metrics.backupBytes(read: bytes, added: added)
        context.metrics.lastSuccessfulBackup(namespace: namespace, policy: action.labels[CairnLabel.policy] ?? "",
                                             time: snapshot.time)
        if let policy = action.labels[CairnLabel.policy] {
            try? await export(point: point, policy: policy, namespace: namespace, profile: profile, action: action)
            try? await context.trimActionHistory(.backupAction, policy: policy, namespace: namespace)
            await context.queue.add(ObjectKey(.policy, context.namespace, policy))
        }
        await context.queue.add(ObjectKey(.profile, context.namespace, profile), after: .seconds(2))
    }

    /// A failed action's final status; with the phases that ran before the failure (`result.phases`).
    func finish(_ action: KubeObject, failed reason: String, message: String, seconds: Double?, phases: [PhaseRecord] = []) async throws {
        let fields: [String: JSONValue] = phases.isEmpty ? [:] : ["result": ["phases": PhaseRecord.statusJSON(phases)]]
        try await context.transition(action, .backupAction, to: .failed(reason: reason, message: message, fields: fields))
        context.metrics.actionFinished(kind: "backup", result: "failed", seconds: seconds ?? 0)
    }

    /// Deletes the policy's restore points of this application in `profile` that its retention no longer
    /// keeps (their finalizer removes the data). Copies exported to another Profile follow the export's own
    /// retention.
    func applyRetention(policy: String, namespace: String, profile: String) async throws {
        let object: KubeObject
        do {
            object = try await context.client.get(CairnKind.policy.resource, policy, namespace: context.namespace)
        } catch let error as KubeError where error.code == .notFound {
            return   // no policy, no retention: keep everything
        }
        guard let spec = try? PolicySpec(object) else { return }
        var options = ListOptions()
        options.labelSelector = "\(CairnLabel.policy)=\(policy)"
        let points = try await context.client.listAll(CairnKind.restorePoint.resource, namespace: namespace, options: options).items
            .filter { $0.deletionTimestamp == nil && RestorePointSpec($0).profile == profile }
        // The local tier: only the newest `localSnapshots.keep` restore points keep their VolumeSnapshots.
        let newestFirst = points.sorted { (RestorePointSpec($0).time ?? .distantPast) > (RestorePointSpec($1).time ?? .distantPast) }
        for point in newestFirst.dropFirst(spec.localSnapshots) {
            let dropped = (try? await SnapshotVolumeAccess.dropKept(restorePoint: RestorePointSpec(point).id, namespace: namespace,
                                                                    client: context.client)) ?? 0
            if dropped > 0 {
                context.logger.info("retention.snapshots.delete", metadata: ["k8s.namespace": "\(namespace)", "cairn.restorepoint": "\(point.name)",
                                                                            "cairn.policy": "\(policy)", "cairn.snapshots": "\(dropped)"])
            }
        }
        await context.applyRetention(spec.retention, timeZone: spec.schedule.timeZone, to: points, policy: policy)
    }

    /// A policy with `spec.export` (and no export schedule of its own): the restore point just written is
    /// copied to the export Profile, by an ExportAction named `<namespace>.<backup action>`.
    func export(point: KubeObject, policy name: String, namespace: String, profile: String, action: KubeObject) async throws {
        guard let object = try? await context.client.get(CairnKind.policy.resource, name, namespace: context.namespace),
              let export = (try? PolicySpec(object))?.export, export.schedule == nil else { return }
        try await context.requestExport(export, policy: name, namespace: namespace, profile: profile, restorePoint: point.name,
                                        name: "\(namespace).\(action.name)")
    }

}
