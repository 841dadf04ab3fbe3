import Foundation
import Kube
import Protection
import Repository
import Snapshot

/// An ImportAction's spec (administrators', in the controller's namespace), read and checked once.
struct ImportActionSpec: Sendable, Equatable {
    /// The Profile read: an import Profile (another cluster's exports, opened with a receive token), or any
    /// Profile whose repository another cluster wrote (a lost cluster's, for instance).
    var profile: String
    /// The source applications (namespaces) imported; all the repository holds when empty.
    var namespaces: [String]
    /// Restore the newest restore point of each after the import.
    var restore: Restore?

    /// `restore`: what a warm standby does with each newly imported restore point.
    struct Restore: Sendable, Equatable {
        /// A TransformSet in the controller's namespace applied on the way in (storage classes, registry,
        /// hostnames, `replicas: 0` for a standby that keeps data but runs nothing).
        var transformSet: String?
        /// Where the application is restored; its own name when nil. Only with one source namespace.
        var targetNamespace: String?

        init?(_ json: JSONValue?, field: String, namespaces: [String]) throws(ControllerError) {
            guard let json else { return nil }
            guard json.object != nil else {
                throw ControllerError("InvalidSpec", "\(field) must be a mapping such as {transformSet: standby}")
            }
            transformSet = json["transformSet"]?.string
            targetNamespace = json["targetNamespace"]?.string
            if targetNamespace != nil && namespaces.count != 1 {
                throw ControllerError("InvalidSpec", "\(field).targetNamespace needs exactly one source namespace: several applications cannot be restored into one namespace")
            }
        }

        var json: JSONValue {
            var value: JSONValue = .emptyObject
            if let transformSet { value["transformSet"] = .string(transformSet) }
            if let targetNamespace { value["targetNamespace"] = .string(targetNamespace) }
            return value
        }
    }

    init(profile: String, namespaces: [String], restore: Restore?) {
        self.profile = profile
        self.namespaces = namespaces
        self.restore = restore
    }

    init(_ action: KubeObject) throws(ControllerError) {
        let spec = action["spec"] ?? .emptyObject
        guard let profile = spec["profile"]?.string, !profile.isEmpty else {
            throw ControllerError("InvalidSpec", "spec.profile is required: the Profile whose restore points are imported")
        }
        self.profile = profile
        namespaces = spec["namespaces"]?.array?.compactMap(\.string) ?? []
        restore = try Restore(spec["restore"], field: "spec.restore", namespaces: namespaces)
    }

    var json: JSONValue {
        var value: JSONValue = ["profile": .string(profile), "namespaces": .array(namespaces.map { .string($0) })]
        if let restore { value["restore"] = restore.json }
        return value
    }
}

/// ImportActions: read a Profile's repository now — for an import Profile, with its receive token checked
/// again — and show its restore points in this cluster (`ProfileReconciler.syncRestorePoints`: in the
/// namespaces they belong to, else in the catalog), mirroring the source's retention (restore points gone
/// there go here). With `spec.restore`, the newest restore point of each application that is not restored
/// yet is restored by a RestoreAction in the controller's namespace that acts for whoever created the
/// ImportAction (an import Policy's ImportActions: the Policy's author) — never with the controller's rights.
///
/// The import is quick (listings, no data); the restores run as their own actions, each named in
/// `status.applications`.
struct ImportActionReconciler {
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let action = try await context.fetch(key), action.uid != nil else { return nil }
        switch await context.state(of: action) {
        case .done, .runningHere: return nil
        case .interrupted, .new: break   // an import repeats safely
        }
        if let wait = context.retryDelay(of: action) { return wait }
        guard action.namespace == context.namespace else {
            try await fail(action, ControllerError("WrongNamespace", "ImportActions are run in namespace \(context.namespace) only (they are administrators'): create it there"))
            return nil
        }
        let spec: ImportActionSpec
        do {
            spec = try ImportActionSpec(action)
            _ = try await context.client.get(CairnKind.profile.resource, spec.profile, namespace: context.namespace)
            if spec.restore != nil, UserInfo.requester(of: action) == nil {
                throw ControllerError("RequesterUnknown", "Cairn does not know who created this ImportAction (or its Policy): it was written while Cairn's admission webhook was not serving, and a restore acts for that person. Apply it again")
            }
        } catch let error as KubeError where error.code == .notFound {
            try await fail(action, ControllerError("ProfileNotFound", "the Profile '\(action["spec", "profile"]?.string ?? "")' does not exist in namespace \(context.namespace)"))
            return nil
        } catch let error as ControllerError {
            try await fail(action, error)
            return nil
        }
        guard try await context.takeSlot(for: action, kind: .importAction) else { return .seconds(30) }
        let claimed = try await context.transition(action, .importAction, to: .running(
            attempt: action.attempts + 1, reason: "Started", message: "reading the repository of Profile '\(spec.profile)'",
            event: "importing from Profile '\(spec.profile)'", fields: [:]))
        await context.run(claimed) { await run(claimed, spec: spec) }
        return nil
    }

    /// What the import did for one application.
    struct Application {
        var namespace: String
        var restorePoints: Int
        var newest: SnapshotManifest?
        var restore: String?
        var message: String?
        /// Its restore was wanted but could not be started (`message` says why).
        var failed = false

        var json: JSONValue {
            var value: JSONValue = ["namespace": .string(namespace), "restorePoints": .int(Int64(restorePoints))]
            if let newest {
                value["newest"] = .string(String(newest.id.prefix(16)))
                value["newestTime"] = .string(Timestamp.format(newest.time))
            }
            if let restore { value["restoreAction"] = .string(restore) }
            if let message { value["message"] = .string(message) }
            return value
        }
    }

    func run(_ action: KubeObject, spec: ImportActionSpec) async {
        let started = Date()
        do {
            // Opened afresh: a token may have expired or been revoked since the Profile's last look.
            await context.repositories.invalidate(profile: spec.profile)
            let (repository, profileSpec) = try await context.repository(forAction: spec.profile)
            let (total, _) = try await ProfileReconciler(context: context)
                .syncRestorePoints(repository, profile: spec.profile, imported: profileSpec.isImport)
            let points = Dictionary(grouping: try await RestorePoint.list(in: repository), by: \.namespace)
            let names = spec.namespaces.isEmpty ? points.keys.sorted() : spec.namespaces
            var applications: [Application] = []
            for namespace in names {
                let list = points[namespace] ?? []
                var application = Application(namespace: namespace, restorePoints: list.count, newest: list.last?.snapshot)
                if list.isEmpty { application.message = "Profile '\(spec.profile)' holds no restore point of \(namespace) (yet)" }
                if let restore = spec.restore, let newest = list.last?.snapshot {
                    do {
                        (application.restore, application.message) = try await self.restore(newest, of: namespace, spec: restore,
                                                                                             profile: spec.profile, for: action)
                    } catch let error as ControllerError {
                        application.message = error.message
                        application.failed = true
                    }
                }
                applications.append(application)
            }
            let restores = applications.compactMap(\.restore).count
            let problems = applications.filter(\.failed)
            let text = "\(total) restore point(s) in Profile '\(spec.profile)', \(applications.filter { $0.newest != nil }.count) application(s)"
                + (spec.restore == nil ? "" : "; \(restores) restore(s) started")
            let fields: [String: JSONValue] = [
                "applications": .array(applications.map(\.json)),
                "result": ["restorePoints": .int(Int64(total)), "restores": .int(Int64(restores)),
                           "seconds": .double((Date().timeIntervalSince(started) * 10).rounded() / 10)],
            ]
            if let problem = problems.first {
                try await context.transition(action, .importAction, to: .failed(reason: "RestoreNotStarted",
                                                                                 message: "\(text); \(problem.namespace): \(problem.message ?? "")",
                                                                                 fields: fields))
            } else {
                try await context.transition(action, .importAction, to: .succeeded(message: text, fields: fields))
            }
            context.metrics.actionFinished(kind: "import", result: problems.isEmpty ? "succeeded" : "failed",
                                           seconds: Date().timeIntervalSince(started))
            if let policy = action.labels[CairnLabel.policy] {
                try? await context.trimActionHistory(.importAction, policy: policy, namespace: context.namespace)
                try? await context.trimActionHistory(.restoreAction, policy: policy, namespace: context.namespace,
                                                     per: CairnLabel.targetNamespace)
            }
        } catch {
            if Task.isCancelled || error is CancellationError { return }
            let failure = ControllerError.classify(error, fallback: "ImportFailed")
            context.logger.error("import.failed", metadata: ["cairn.action": "\(action.name)", "error": "\(failure)",
                                                             "cairn.reason": "\(failure.reason)"])
            if (try? await context.retryLater(action, kind: .importAction, failure: failure, attempt: max(1, action.attempts),
                                              maxAttempts: 3)) == true { return }
            try? await fail(action, failure)
        }
    }

    /// Starts the restore of `point` (the newest of `namespace`) unless a RestoreAction restored it into the
    /// target already or is restoring it. Returns the RestoreAction's name (nil when none was needed) and a
    /// message.
    func restore(_ point: SnapshotManifest, of namespace: String, spec: ImportActionSpec.Restore, profile: String,
                 for action: KubeObject) async throws -> (String?, String?) {
        let target = spec.targetNamespace ?? namespace
        let id = String(point.id.prefix(16))
        var options = ListOptions()
        options.labelSelector = "\(CairnLabel.targetNamespace)=\(target),\(CairnLabel.restorePointID)=\(id)"
        let earlier = try await context.client.listAll(CairnKind.restoreAction.resource, namespace: context.namespace,
                                                       options: options).items
        if let done = earlier.first(where: { $0.phase != .failed }) {
            return (nil, "restore point \(id.prefix(8)) is restored into \(target) already (RestoreAction \(done.name))")
        }
        // Its RestorePoint object: in the namespace it belongs to, or in the catalog.
        var byProfile = ListOptions()
        byProfile.labelSelector = "\(CairnLabel.profile)=\(profile)"
        let objects = try await context.client.listAll(CairnKind.restorePoint.resource, options: byProfile).items
        guard let object = objects.first(where: { RestorePointSpec($0).id == point.id && $0.deletionTimestamp == nil }) else {
            throw ControllerError("RestorePointNotVisible", "restore point \(id.prefix(8)) of \(namespace) has no RestorePoint object in this cluster (a RestorePoint of that name made by hand holds its name?)")
        }
        let exists = (try? await context.client.get(Namespace.resource, target)) != nil
        var restore = KubeObject(apiVersion: CairnKind.apiVersion, kind: CairnKind.restoreAction.rawValue,
                                 name: Self.restoreName(action: action.name, target: target), namespace: context.namespace)
        var labels = [CairnLabel.importAction: String(action.name.prefix(63)), CairnLabel.targetNamespace: target,
                      CairnLabel.restorePointID: id]
        if let policy = action.labels[CairnLabel.policy] { labels[CairnLabel.policy] = policy }
        restore.labels = labels
        // It acts for whoever created this ImportAction (the webhook lets the controller hand on the stamp).
        restore["metadata", "annotations"] = [ActionAdmission.requesterAnnotation:
                                                .string(action.annotations[ActionAdmission.requesterAnnotation] ?? "")]
        var body: JSONValue = ["restorePoint": .string(object.name), "restorePointNamespace": .string(object.namespace ?? ""),
                               "targetNamespace": .string(target),
                               // A standby kept current: its objects and volumes brought to the new restore point.
                               "existing": .string(exists ? "update" : "fail")]
        if let transformSet = spec.transformSet { body["transformSet"] = .string(transformSet) }
        restore["spec"] = body
        do {
            _ = try await context.client.create(restore, as: CairnKind.restoreAction.resource, namespace: context.namespace)
        } catch let error as KubeError where error.code == .alreadyExists {
            // This action's earlier run made it.
        }
        return (restore.name, "restoring \(id.prefix(8)) into \(target)\(exists ? " (updating what is there)" : "")")
    }

    /// `<import action>.<target>`, within the 253 characters of a name.
    static func restoreName(action: String, target: String) -> String {
        String("\(action).\(target)".prefix(253))
    }

    func fail(_ action: KubeObject, _ error: ControllerError) async throws {
        try await context.transition(action, .importAction, to: .failed(reason: error.reason, message: error.message, fields: [:]))
        context.metrics.actionFinished(kind: "import", result: "failed", seconds: Date().timeIntervalSince(action.startTime ?? Date()))
    }
}
