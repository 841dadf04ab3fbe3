import Foundation
import Kube
import Protection
import Repository
import Server
import Snapshot

/// RestoreActions: bring an application back from a RestorePoint.
///
/// Who may restore what follows RBAC: an action restores a RestorePoint of its own namespace into its
/// own namespace — so a user who may create RestoreActions and read RestorePoints in namespace A can
/// restore A and nothing else — and only its namespaced objects: cluster-scoped objects a restore point
/// holds (CRDs, ClusterRoles and their bindings) are restored by administrators. Only actions in the
/// controller's namespace (administrators) may name a restore point of another namespace
/// (`spec.restorePointNamespace`) or another target (`spec.targetNamespace`), e.g. to clone an application.
///
/// A restore that was running when the controller stopped is not repeated behind the user's back: it
/// fails with reason `Interrupted`, and says how to finish it.
struct RestoreActionReconciler {
    /// Runs in all when a run fails for a transient reason before it wrote anything.
    static let maxAttempts = 3
    let context: ControllerContext

    struct Plan {
        var restorePoint: KubeObject
        var options: ApplicationRestore.Options
        /// Acts for whoever created the action.
        var client: KubeClient
    }

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let action = try await context.fetch(key), action.uid != nil else { return nil }
        switch await context.state(of: action) {
        case .done, .runningHere:
            return nil
        case .interrupted:
            try await finish(action, report: nil, failed: "Interrupted",
                             message: "the controller stopped while this restore ran; what was restored so far stays. Create a new RestoreAction with existing: skip to finish it")
            return nil
        case .new:
            if let wait = context.retryDelay(of: action) { return wait }
        }
        let plan: Plan
        do {
            plan = try await self.plan(action)
        } catch let error as ControllerError {
            try await finish(action, report: nil, failed: error.reason, message: error.message)
            return nil
        }
        guard try await context.takeSlot(for: action, kind: .restoreAction) else { return .seconds(30) }
        let target = plan.options.targetNamespace ?? ""
        let claimed = try await context.transition(action, .restoreAction, to: .running(
            attempt: action.attempts + 1, reason: "Started",
            message: "restoring \(plan.restorePoint.name) into namespace \(target)",
            event: "restoring \(plan.restorePoint.name)", fields: ["targetNamespace": .string(target)]))
        await context.run(claimed) { await run(claimed, plan: plan) }
        return nil
    }

    /// Checks the spec against what the action's namespace may do; resolves the restore point and
    /// transforms.
    func plan(_ action: KubeObject) async throws -> Plan {
        let spec = try RestoreActionSpec(action)
        let client = try context.client(actingFor: action)
        let namespace = action.namespace ?? ""
        let admin = namespace == context.namespace
        let pointName = spec.restorePoint
        let pointNamespace = spec.restorePointNamespace ?? namespace
        var target = spec.targetNamespace ?? namespace
        if !admin {
            guard pointNamespace == namespace else {
                throw ControllerError("Forbidden", "a RestoreAction in namespace \(namespace) restores RestorePoints of \(namespace) only; ask an administrator to restore from \(pointNamespace)")
            }
            guard target == namespace else {
                throw ControllerError("Forbidden", "a RestoreAction in namespace \(namespace) restores into \(namespace) only; ask an administrator to restore into \(target)")
            }
        }
        let point: KubeObject
        do {
            point = try await client.get(CairnKind.restorePoint.resource, pointName, namespace: pointNamespace)
        } catch let error as KubeError where error.code == .notFound {
            throw ControllerError("RestorePointNotFound", "RestorePoint \(pointName) does not exist in namespace \(pointNamespace)")
        } catch let error as KubeError where error.code == .forbidden {
            throw ControllerError("Forbidden", "the creator of this action may not read RestorePoint \(pointName) in namespace \(pointNamespace): \(error.message)")
        }
        if admin && spec.targetNamespace == nil { target = RestorePointSpec(point).sourceNamespace ?? pointNamespace }
        var transforms = spec.transforms
        if let name = spec.transformSet {
            let object: KubeObject
            do {
                object = try await client.get(CairnKind.transformSet.resource, name, namespace: namespace)
            } catch let error as KubeError where error.code == .notFound {
                throw ControllerError("TransformSetNotFound", "TransformSet \(name) does not exist in namespace \(namespace)")
            } catch let error as KubeError where error.code == .forbidden {
                throw ControllerError("Forbidden", "the creator of this action may not read TransformSet \(name): \(error.message)")
            }
            do {
                transforms = try TransformSet(json: object.json)
            } catch {
                throw ControllerError("InvalidTransform", "TransformSet \(name): \(error.description)", cause: error)
            }
        }
        var options = ApplicationRestore.Options(
            targetNamespace: target, existing: spec.existing, transforms: transforms, only: spec.only,
            volumesOnly: spec.volumesOnly, volumes: spec.volumes,
            volumeData: spec.volumeData, volumeAccess: .mover, moverImage: context.moverImage)
        options.keepExtraFiles = spec.keepExtraFiles
        options.hooks = spec.hooks
        // A namespace's blueprint restores with the rights of whoever wrote it, as it backed up.
        let context = self.context
        options.blueprintClient = { author in try context.client(actingAsRecorded: author) }
        // A namespace's users restore their namespace; the cluster, the namespace itself and who may do
        // what are the administrators'.
        options.confined = !admin
        return Plan(restorePoint: point, options: options, client: client)
    }

    func run(_ action: KubeObject, plan: Plan) async {
        let started = Date()
        let profile = RestorePointSpec(plan.restorePoint).profile
        // Until the restore writes, a transient failure (the repository locked or unreachable) is tried again;
        // once it writes, it is never repeated behind the user's back.
        var writing = false
        do {
            let (repository, _) = try await context.repository(forAction: profile)
            let owner = try await context.owner(of: plan.restorePoint)
            let snapshot = try await RestorePointObject.snapshot(of: plan.restorePoint, in: repository, profile: profile,
                                                                 owner: owner)
            let progress = ProgressWriter(context: context, kind: .restoreAction, namespace: action.namespace ?? "",
                                          name: action.name)
            let logger = context.logger
            writing = true
            let report = try await ApplicationRestore(client: plan.client, volumeClient: context.client, repository: repository,
                                                      options: plan.options)
                .run(snapshot) { line in
                    logger.info("restore.step", metadata: ["cairn.action": "\(action.name)", "cairn.step": "\(line)"])
                    progress.update(["step": .string(line)])
                }
            await progress.flush()
            var adoption: String?
            if case .catalog = owner, let target = plan.options.targetNamespace {
                adoption = await adopt(snapshot, into: target, as: plan.client, action: action)
            }
            let failures = report.failures
            try await finish(action, report: report, failed: failures == 0 ? nil : "PartlyRestored",
                             message: failures == 0 ? adoption : "\(failures) object(s), volume(s) or blueprint phase(s) failed; see status.result.failures and status.result.phases",
                             seconds: Date().timeIntervalSince(started))
        } catch {
            if Task.isCancelled || error is CancellationError { return }
            let failure = ControllerError.classify(error, fallback: "RestoreFailed")
            context.logger.error("restore.failed", metadata: ["cairn.action": "\(action.name)", "error": "\(failure)",
                                                              "cairn.reason": "\(failure.reason)"])
            if !writing, (try? await context.retryLater(action, kind: .restoreAction, failure: failure,
                                                        attempt: max(1, action.attempts),
                                                        maxAttempts: Self.maxAttempts)) == true { return }
            try? await finish(action, report: nil, failed: failure.reason, message: failure.message,
                              seconds: Date().timeIntervalSince(started))
        }
    }

    /// An administrator restored a catalog entry (an application of a lost or another cluster) into `target`:
    /// that namespace now is the application, so it adopts the restore points of the namespace they were
    /// taken of (`RestorePointOwnership`), which then appear in it. Done as the action's creator (who may
    /// annotate the namespace, or not: then the restore stands and the message says what is missing).
    /// Returns a message when the adoption could not be made.
    func adopt(_ snapshot: SnapshotManifest, into target: String, as client: KubeClient, action: KubeObject) async -> String? {
        guard let uid = RestorePoint.namespaceUID(of: snapshot) else { return nil }
        do {
            let namespace = try await client.get(Namespace.resource, target)
            guard !RestorePointOwnership.uids(of: namespace).contains(uid) else { return nil }
            let adopted = (namespace.annotations[RestorePointOwnership.adoptAnnotation].map { $0 + "," } ?? "") + uid
            _ = try await client.patch(Namespace.resource, target, namespace: nil,
                                       .merge(["metadata": ["annotations": [RestorePointOwnership.adoptAnnotation: .string(adopted)]]]))
            context.logger.info("namespace.adopted", metadata: ["k8s.namespace": "\(target)", "cairn.uid": "\(uid)"])
            return nil
        } catch {
            let message = "restored; but namespace \(target) could not adopt the application's restore points (\(ControllerError.classify(error, fallback: "AdoptFailed").message)): annotate it \(RestorePointOwnership.adoptAnnotation)=\(uid) to see them there"
            await context.events.record(action, warning: true, reason: "NotAdopted", message: message)
            return message
        }
    }

    func finish(_ action: KubeObject, report: ApplicationRestore.Report?, failed reason: String?, message: String?,
                seconds: Double? = nil) async throws {
        var summary = "restored"
        var fields: [String: JSONValue] = [:]
        if let report {
            let counts = report.objectCounts
            var volumeCounts: [String: Int] = [:]
            for row in report.volumes { volumeCounts[row.result, default: 0] += 1 }
            let failures = (report.objects.filter(\.failed) + report.volumes.filter(\.failed))
                .map { "\($0.object): \($0.result == "forbidden" ? "forbidden: " : "")\($0.detail ?? "failed")" }
                + report.phases.filter { $0.result == "failed" }.map { $0.message ?? "phase \($0.phase) failed" }
            fields["result"] = [
                "restorePoint": .string(report.restorePoint),
                "sourceNamespace": .string(report.sourceNamespace),
                "targetNamespace": .string(report.targetNamespace),
                "objects": .object(counts.mapValues { .int(Int64($0)) }),
                "volumes": .object(volumeCounts.mapValues { .int(Int64($0)) }),
                "bytes": .int(Int64(report.volumes.reduce(0) { $0 + ($1.volume?.bytes ?? 0) })),
                "failures": .array(failures.prefix(20).map { .string($0) }),
                "seconds": .double((report.seconds * 10).rounded() / 10),
            ]
            if !report.phases.isEmpty { fields["result"]?["phases"] = PhaseRecord.statusJSON(report.phases) }
            summary = "\(counts["created", default: 0]) objects created, \(counts["skipped", default: 0]) skipped, \(counts["failed", default: 0]) failed, \(counts["forbidden", default: 0]) forbidden, \(counts["excluded", default: 0]) excluded; \(volumeCounts["written", default: 0]) volume(s) written"
        }
        if let reason {
            try await context.transition(action, .restoreAction, to: .failed(reason: reason, message: message ?? summary, fields: fields))
        } else {
            try await context.transition(action, .restoreAction, to: .succeeded(message: message ?? summary, fields: fields))
        }
        context.metrics.actionFinished(kind: "restore", result: reason == nil ? "succeeded" : "failed", seconds: seconds ?? 0)
    }
}
