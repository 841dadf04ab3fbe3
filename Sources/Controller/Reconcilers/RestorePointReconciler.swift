import Foundation
import Kube
import Protection
import Repository
import Server
import Snapshot

/// RestorePoints: keep the data finalizer on, show the restore point's contents in status, feed the
/// "last successful backup" metric — and on deletion remove the data from the repository (once the
/// Profile's immutability period allows), except when the whole namespace is being deleted: then the
/// data stays, and the object comes back when the namespace does.
struct RestorePointReconciler {
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        let client = context.client
        guard let object = try await context.fetch(key) else { return nil }
        let spec = RestorePointSpec(object)
        let profile = spec.profile, time = spec.time
        if object.deletionTimestamp != nil {
            guard object.finalizers.contains(CairnLabel.dataFinalizer) else { return nil }
            return try await delete(object, profile: profile, time: time)
        }
        if spec.ownsData && !object.finalizers.contains(CairnLabel.dataFinalizer) {
            var updated = object
            updated["metadata", "finalizers"] = .array((object.finalizers + [CairnLabel.dataFinalizer]).map { .string($0) })
            _ = try await client.update(updated)
            return nil
        }
        var untilExpiry: Duration?
        // A hand-made restore point past its expiry is deleted (its finalizer removes the data, once any
        // immutability period has passed).
        if let expires = spec.expireTime {
            if expires <= Date() {
                context.logger.info("restorepoint.expired", metadata: ["k8s.namespace": "\(key.namespace)",
                                                                      "cairn.restorepoint": "\(object.name)"])
                _ = try await client.delete(CairnKind.restorePoint.resource, object.name, namespace: key.namespace)
                return nil
            }
            untilExpiry = .seconds(max(1, expires.timeIntervalSinceNow))
        }
        if let time {
            context.metrics.lastSuccessfulBackup(namespace: key.namespace, policy: object.labels[CairnLabel.policy] ?? "",
                                                 time: time)
        }
        if object["status", "objects"] == nil, !spec.id.isEmpty {
            do {
                let (repository, _) = try await context.repositories.repository(profile: profile)
                let snapshot = try await RestorePointObject.snapshot(
                    of: object, in: repository, profile: profile, owner: try await context.owner(of: object))
                let metadata = try await RestorePoint.metadata(snapshot, from: repository)
                var updated = object
                var status = RestorePointObject.status(from: metadata)
                status["conditions"] = object["status", "conditions"]
                updated["status"] = status
                Conditions.set(Condition("Ready", true, reason: "DataPresent",
                                         message: "the restore point's data is in the repository of Profile '\(profile)'"),
                               on: &updated)
                try await context.writeStatus(updated)
            } catch let error as ControllerError {
                try await context.setCondition(Condition("Ready", false, reason: error.reason, message: error.message),
                                               on: object)
                return .seconds(60)
            } catch let error as RepositoryError where error.code == .missing {
                try await context.setCondition(Condition("Ready", false, reason: "DataMissing",
                                                         message: "restore point \(spec.id.prefix(8)) is not in the repository of Profile '\(profile)'"),
                                               on: object)
            }
        }
        return untilExpiry
    }

    /// The snapshot whose data deleting `object` removes: only a restore point of the object's own
    /// namespace (a RestorePoint naming another's data lets go without touching it).
    func deletableData(_ object: KubeObject, in repository: Repository, profile: String, namespace: KubeObject) async throws -> SnapshotManifest? {
        do {
            return try await RestorePointObject.snapshot(of: object, in: repository, profile: profile, namespace: namespace)
        } catch let error as ControllerError {
            if error.reason != "DataMissing" {
                await context.events.record(object, warning: true, reason: error.reason, message: error.message)
            }
            return nil
        }
    }

    func delete(_ object: KubeObject, profile: String, time: Date?) async throws -> Duration? {
        let client = context.client
        let namespace = object.namespace ?? ""
        var owner: KubeObject?
        do {
            owner = try await client.get(Namespace.resource, namespace)
        } catch let error as KubeError where error.code == .notFound {}
        if let owner, Namespace(owner).phase != "Terminating" {
            do {
                let (repository, spec) = try await context.repositories.repository(profile: profile)
                if let period = spec.immutability, let time, time.addingTimeInterval(period) > Date() {
                    let until = time.addingTimeInterval(period)
                    try await context.setCondition(
                        Condition("Deletable", false, reason: "Immutable",
                                  message: "Profile '\(profile)' keeps restore points for \(Int(period / 3600)) h: the data is removed after \(Timestamp.format(until))"),
                        on: object)
                    return .seconds(max(1, until.timeIntervalSinceNow))
                }
                if let snapshot = try await deletableData(object, in: repository, profile: profile, namespace: owner) {
                    let id = snapshot.id
                    if let wait = try await runDeleteActions(object, snapshot: snapshot, repository: repository) { return wait }
                    try await RepositoryLock.with(repository, exclusive: true,
                                                  operation: ControllerLock.operation("forget", context), wait: 60) {
                        if try await repository.listFiles(.snapshots).contains(id) {
                            try await repository.removeFile(.snapshots, name: id)
                        }
                    }
                    await context.runs.requestPrune(profile: profile)
                    await context.queue.add(ObjectKey(.profile, context.namespace, profile), after: .seconds(5))
                    context.logger.info("restorepoint.forgotten", metadata: ["k8s.namespace": "\(namespace)",
                                                                            "cairn.restorepoint": "\(object.name)"])
                    // Its local tier goes with it, on the same terms as its data (its own namespace's restore point).
                    let dropped = (try? await SnapshotVolumeAccess.dropKept(restorePoint: id, namespace: namespace, client: client)) ?? 0
                    if dropped > 0 {
                        context.logger.info("restorepoint.snapshots.deleted", metadata: ["k8s.namespace": "\(namespace)",
                                                                                        "cairn.restorepoint": "\(object.name)",
                                                                                        "cairn.snapshots": "\(dropped)"])
                    }
                }
            } catch let error as ControllerError where error.reason == "ProfileNotFound" {
                context.logger.warning("restorepoint.profile.missing",
                                       metadata: ["k8s.namespace": "\(namespace)", "cairn.restorepoint": "\(object.name)"])
            }
        }
        var updated = object
        updated["metadata", "finalizers"] = .array(object.finalizers.filter { $0 != CairnLabel.dataFinalizer }.map { .string($0) })
        _ = try await client.update(updated)
        return nil
    }

    /// How long until a failed delete action is tried again.
    static let deleteRetry: Duration = .seconds(300)

    /// The `delete` actions of the restore point's blueprints (`BlueprintDeletion`), before its data goes. A
    /// failed phase keeps the restore point (condition `Deletable` false, reason `PhaseFailed`, a Warning
    /// event) and is tried again after `deleteRetry`; the returned delay says so. Nil: go on deleting.
    func runDeleteActions(_ object: KubeObject, snapshot: SnapshotManifest, repository: Repository) async throws -> Duration? {
        let metadata = try await RestorePoint.metadata(snapshot, from: repository)
        guard BlueprintDeletion.mayRun(metadata) else { return nil }
        let namespace = object.namespace ?? ""
        var logger = context.logger
        logger[metadataKey: "k8s.namespace"] = "\(namespace)"
        logger[metadataKey: "cairn.restorepoint"] = "\(object.name)"
        let stepLogger = logger
        let context = self.context
        let deletion = BlueprintDeletion(repository: repository, identity: { try context.client(actingAsRecorded: $0) })
        let outcome = try await RepositoryLock.with(repository, exclusive: false,
                                                    operation: ControllerLock.operation("delete actions \(namespace)/\(object.name)", context),
                                                    wait: 60) {
            try await deletion.run(snapshot, metadata: metadata, namespace: namespace,
                                   progress: { line in stepLogger.info("restorepoint.delete.step", metadata: ["cairn.step": "\(line)"]) })
        }
        for skipped in outcome.skipped {
            await context.events.record(object, warning: true, reason: "DeleteActionSkipped", message: "blueprint \(skipped): not run")
        }
        if let failure = outcome.failure {
            let message = "the blueprint delete action failed, so the restore point stays (tried again in \(Int(Self.deleteRetry.components.seconds / 60)) minutes): \(failure.message)"
            logger.warning("restorepoint.delete.failed", metadata: ["cairn.reason": "PhaseFailed"])
            // The condition's change is the Warning event (reason PhaseFailed).
            try await context.setCondition(Condition("Deletable", false, reason: "PhaseFailed", message: message), on: object)
            return Self.deleteRetry
        }
        if !outcome.records.isEmpty {
            await context.events.record(object, warning: false, reason: "DeleteActionRan",
                                        message: outcome.records.map { "\($0.blueprint) \($0.action)/\($0.phase): \($0.result)" }.joined(separator: ", "))
        }
        return nil
    }
}
