import Foundation
import Kube
import Protection
import Repository
import Snapshot

/// An ExportAction's spec (administrators', in the controller's namespace), read and checked once.
struct ExportActionSpec: Sendable, Equatable {
    /// The source Profile; the default Profile when nil.
    var profile: String?
    /// The Profile whose repository receives the copy: created there, paired with the source, when its
    /// location is empty.
    var destination: String
    /// The application (namespace) whose restore point is exported.
    var namespace: String
    /// A RestorePoint of that namespace; its newest restore point in the source when nil.
    var restorePoint: String?
    /// Issue a receive token for another cluster.
    var receiver: Receiver?

    struct Receiver: Sendable, Equatable {
        /// The receiving cluster's kube-system namespace UID: the token is refused anywhere else.
        var clusterID: String?
        var expiresAfter: TimeInterval

        init?(_ json: JSONValue?, field: String) throws(ControllerError) {
            guard let json else { return nil }
            var expires: TimeInterval = 30 * 86_400
            if let text = json["expiresAfter"]?.string {
                guard let period = ProfileSpec.period(text) else {
                    throw ControllerError("InvalidSpec", "\(field).expiresAfter '\(text)' is not a period such as 12h or 30d")
                }
                expires = period
            }
            clusterID = json["clusterID"]?.string
            expiresAfter = expires
        }

        var json: JSONValue {
            var value: JSONValue = ["expiresAfter": .string("\(Int(expiresAfter))s")]
            if let clusterID { value["clusterID"] = .string(clusterID) }
            return value
        }
    }

    init(_ action: KubeObject) throws(ControllerError) {
        let spec = action["spec"] ?? .emptyObject
        profile = spec["profile"]?.string
        guard let destination = spec["destination"]?.string, !destination.isEmpty else {
            throw ControllerError("InvalidSpec", "spec.destination is required: the Profile to copy the restore point into")
        }
        self.destination = destination
        guard let namespace = spec["namespace"]?.string, !namespace.isEmpty else {
            throw ControllerError("InvalidSpec", "spec.namespace is required: the application whose restore point is exported")
        }
        self.namespace = namespace
        restorePoint = spec["restorePoint"]?.string
        receiver = try Receiver(spec["receiver"], field: "spec.receiver")
    }
}

/// ExportActions: copy one restore point — objects and volume data — from a Profile's repository into
/// another Profile's (`SnapshotCopier`: only what the destination lacks, re-encrypted under its key, the
/// restore point written last), and, with `spec.receiver`, hand out a receive token for the destination in a
/// Secret beside the action (never in its status, events or logs).
///
/// Phases as for BackupActions (`ActionTransition`). An interrupted or failed run leaves no restore point
/// at the destination; the next run sends only what is still missing.
struct ExportActionReconciler {
    static let maxAttempts = 3
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let action = try await context.fetch(key) else { return nil }
        switch await context.state(of: action) {
        case .done, .runningHere: return nil
        case .interrupted: return try await start(action, resumed: true)
        case .new: return try await start(action, resumed: false)
        }
    }

    func start(_ action: KubeObject, resumed: Bool) async throws -> Duration? {
        if let wait = context.retryDelay(of: action) { return wait }
        guard action.namespace == context.namespace else {
            try await fail(action, ControllerError("WrongNamespace", "ExportActions are run in namespace \(context.namespace) only (they are administrators'): create it there"))
            return nil
        }
        let source: String
        do {
            let spec = try ExportActionSpec(action)
            source = try await context.profileName(spec.profile)
            _ = try await context.readyProfile(source)
            guard spec.destination != source else {
                throw ControllerError("InvalidSpec", "spec.destination is the source Profile '\(source)': export into another Profile")
            }
            do {
                _ = try await context.client.get(CairnKind.profile.resource, spec.destination, namespace: context.namespace)
            } catch let error as KubeError where error.code == .notFound {
                throw ControllerError("ProfileNotFound", "the destination Profile '\(spec.destination)' does not exist in namespace \(context.namespace)")
            }
        } catch let error as ControllerError {
            if error.reason == "ProfileNotReady" {
                try await context.transition(action, .exportAction, to: .waiting(reason: error.reason, message: error.message))
                return .seconds(15)
            }
            try await fail(action, error)
            return nil
        }
        guard try await context.takeSlot(for: action, kind: .exportAction) else { return .seconds(30) }
        let attempts = action.attempts + 1
        if resumed && attempts > Self.maxAttempts {
            try await fail(action, ControllerError("Interrupted", "the controller stopped \(attempts - 1) times while this export ran; nothing partial is at the destination. Create a new ExportAction to try again"))
            return nil
        }
        let message = resumed ? "run \(attempts) of at most \(Self.maxAttempts): the previous run was interrupted (what it sent is kept)"
                              : "exporting a restore point of \(action["spec", "namespace"]?.string ?? "")"
        let claimed = try await context.transition(action, .exportAction, to: .running(
            attempt: attempts, reason: resumed ? "Resumed" : "Started", message: message, event: message,
            fields: ["profile": .string(source)]))
        await context.run(claimed) { await run(claimed, source: source) }
        return nil
    }

    func run(_ action: KubeObject, source sourceProfile: String) async {
        var logger = context.logger
        logger[metadataKey: "cairn.action"] = "\(action.name)"
        let started = Date()
        do {
            let spec = try ExportActionSpec(action)
            let (source, _) = try await context.repositories.repository(profile: sourceProfile)
            let (destination, destinationSpec) = try await context.repositories.repository(profile: spec.destination, pairedWith: source)
            guard let destinationLocation = destinationSpec.location, !destinationSpec.isImport else {
                throw ControllerError("InvalidSpec", "the destination Profile '\(spec.destination)' is an import Profile (read-only): export into a Profile of this cluster's own")
            }
            let snapshot = try await restorePoint(spec, profile: sourceProfile, in: source)
            let copier = try SnapshotCopier(source: source, destination: destination)
            let progress = ProgressWriter(context: context, kind: .exportAction, namespace: context.namespace, name: action.name)
            let report = try await RepositoryLock.with(source, exclusive: false,
                                                       operation: ControllerLock.operation("export \(action.name)", context), wait: 10) {
                try await RepositoryLock.with(destination, exclusive: false,
                                              operation: ControllerLock.operation("export \(action.name)", context), wait: 10) {
                    try await copier.copy([snapshot]) { p in progress.update(Self.json(p, step: "copying")) }
                }
            }
            await progress.flush()
            let removed = try await ReceiveToken.removeExpired(from: destination)
            if removed > 0 { logger.info("export.tokens.expired.removed", metadata: ["cairn.keys": "\(removed)"]) }
            var fields: [String: JSONValue] = [:]
            if let receiver = spec.receiver {
                fields["receiveToken"] = try await receiveToken(for: action, receiver: receiver, destination: destination,
                                                                location: destinationLocation)
            }
            let copied = report.copied[0]
            let p = report.progress
            fields["progress"] = Self.json(p, step: "done")
            fields["result"] = ["restorePointID": .string(snapshot.id), "copyID": .string(copied.copy),
                                "alreadyThere": .bool(copied.existed), "totalBytes": .int(p.totalBytes),
                                "readBytes": .int(p.readBytes), "transferredBytes": .int(p.transferredBytes),
                                "seconds": .double((Date().timeIntervalSince(started) * 10).rounded() / 10)]
            let text = copied.existed
                ? "the destination already held this restore point (\(copied.copy.prefix(8))); nothing was sent"
                : "restore point \(snapshot.id.prefix(8)) of \(spec.namespace) copied to Profile '\(spec.destination)' as \(copied.copy.prefix(8)): \(p.transferredBytes) bytes sent of \(p.totalBytes)"
            try await context.transition(action, .exportAction, to: .succeeded(message: text, fields: fields))
            context.metrics.actionFinished(kind: "export", result: "succeeded", seconds: Date().timeIntervalSince(started))
            // The copy's RestorePoint object now (in its namespace, if that still owns it), so that a policy's
            // retention sees it; the destination Profile's sync does the rest.
            if let namespace = try? await context.client.get(Namespace.resource, spec.namespace),
               let copy = try? await SnapshotFiles.load(copied.copy, from: destination),
               RestorePointOwnership.belongs(copy, to: namespace) {
                let object = RestorePointObject.make(for: copy, namespace: spec.namespace, profile: spec.destination)
                _ = try? await context.client.create(object, as: CairnKind.restorePoint.resource, namespace: spec.namespace)
            }
            await context.queue.add(ObjectKey(.profile, context.namespace, spec.destination), after: .seconds(1))
            if let policy = action.labels[CairnLabel.policy] {
                try? await applyRetention(policy: policy, spec: spec)
            }
        } catch {
            if Task.isCancelled || error is CancellationError {
                logger.info("export.interrupted")
                return
            }
            let failure = ControllerError.classify(error, fallback: "ExportFailed")
            logger.error("export.failed", metadata: ["error": "\(failure)", "cairn.reason": "\(failure.reason)"])
            if (try? await context.retryLater(action, kind: .exportAction, failure: failure, attempt: max(1, action.attempts),
                                              maxAttempts: Self.maxAttempts)) == true { return }
            try? await fail(action, failure)
        }
    }

    /// The restore point to export: the named RestorePoint (which must be of the source Profile), or the
    /// namespace's newest in the source repository.
    func restorePoint(_ spec: ExportActionSpec, profile: String, in repository: Repository) async throws -> SnapshotManifest {
        if let name = spec.restorePoint {
            let object: KubeObject
            do {
                object = try await context.client.get(CairnKind.restorePoint.resource, name, namespace: spec.namespace)
            } catch let error as KubeError where error.code == .notFound {
                throw ControllerError("RestorePointNotFound", "RestorePoint \(spec.namespace)/\(name) does not exist")
            }
            let point = RestorePointSpec(object)
            guard point.profile == profile else {
                throw ControllerError("InvalidSpec", "RestorePoint \(spec.namespace)/\(name) is in Profile '\(point.profile)', not the source Profile '\(profile)': set spec.profile to it")
            }
            return try await SnapshotFiles.load(point.id, from: repository)
        }
        guard let newest = try await RestorePoint.list(in: repository, namespace: spec.namespace).last else {
            throw ControllerError("RestorePointNotFound", "Profile '\(profile)' holds no restore point of namespace \(spec.namespace)")
        }
        return newest.snapshot
    }

    /// The Secret with a receive token for the destination: `<policy>-receive-token` (owned by the Policy) for a
    /// policy's exports, `<action>-receive-token` (owned by the action) otherwise. Issued once and kept while its
    /// key is in the destination and unexpired; issued anew (the Secret updated) when it was revoked or expired.
    /// Returns what the status shows of it: never the token.
    func receiveToken(for action: KubeObject, receiver: ExportActionSpec.Receiver, destination: Repository,
                      location: ProfileSpec.Location) async throws -> JSONValue {
        let policy = action.labels[CairnLabel.policy]
        let name = "\(policy ?? action.name)-receive-token"
        let keyAnnotation = "cairn.dev/receive-key", expiresAnnotation = "cairn.dev/receive-expires"
        func status(key: String, expires: String) -> JSONValue {
            var value: JSONValue = ["secret": .string(name), "key": .string(String(key.prefix(8))), "expires": .string(expires)]
            if let cluster = receiver.clusterID { value["clusterID"] = .string(cluster) }
            return value
        }
        let existing = try? await context.client.get(Secret.resource, name, namespace: context.namespace)
        if let existing, let key = existing.annotations[keyAnnotation], let expires = existing.annotations[expiresAnnotation],
           let keys = try? await destination.listKeys(),
           let live = keys.first(where: { $0.name == key }), live.grant?.isExpired() == false,
           live.grant?.audience == receiver.clusterID {
            return status(key: key, expires: expires)
        }
        let issuer = try? await context.client.get(Namespace.resource, "kube-system").uid
        let token = try await ReceiveToken.issue(for: destination, location: location.receiveLocation,
                                                 expires: Date().addingTimeInterval(receiver.expiresAfter),
                                                 audience: receiver.clusterID, label: policy.map { "Policy \($0)" } ?? "ExportAction \(action.name)",
                                                 issuer: issuer)
        let expires = Timestamp.format(token.grant.expires ?? Date())
        var owner: (kind: CairnKind, name: String, uid: String) = (.exportAction, action.name, action.uid ?? "")
        if let policy, let object = try? await context.client.get(CairnKind.policy.resource, policy, namespace: context.namespace) {
            owner = (.policy, policy, object.uid ?? "")
        }
        var secret = Secret(KubeObject(apiVersion: "v1", kind: "Secret", name: name, namespace: context.namespace))
        secret.type = "Opaque"
        secret.data = ["token": Array(try token.encoded().utf8)]
        secret.object.labels = policy.map { [CairnLabel.policy: $0] } ?? [CairnLabel.action: action.name]
        secret.object["metadata", "annotations"] = [keyAnnotation: .string(token.key), expiresAnnotation: .string(expires)]
        secret.object["metadata", "ownerReferences"] = [["apiVersion": .string(CairnKind.apiVersion), "kind": .string(owner.kind.rawValue),
                                                         "name": .string(owner.name), "uid": .string(owner.uid)]]
        do {
            _ = try await context.client.create(secret.object, as: Secret.resource, namespace: context.namespace)
        } catch let error as KubeError where error.code == .alreadyExists {
            _ = try await context.client.update(secret.object)
        }
        await context.events.record(action, reason: "ReceiveTokenIssued",
                                    message: "a receive token for the destination repository is in Secret \(name) (key \(token.key.prefix(8)), expires \(expires))")
        return status(key: token.key, expires: expires)
    }

    /// A policy's export retention over the copies in the destination (their RestorePoint objects, whose
    /// finalizer removes the data there); then the policy's older ExportActions, as for its BackupActions.
    func applyRetention(policy name: String, spec: ExportActionSpec) async throws {
        guard let object = try? await context.client.get(CairnKind.policy.resource, name, namespace: context.namespace),
              let policy = try? PolicySpec(object), let export = policy.export, export.profile == spec.destination else { return }
        var options = ListOptions()
        options.labelSelector = "\(CairnLabel.policy)=\(name),\(CairnLabel.profile)=\(spec.destination)"
        let copies = try await context.client.listAll(CairnKind.restorePoint.resource, namespace: spec.namespace, options: options).items
            .filter { $0.deletionTimestamp == nil }
        await context.applyRetention(export.retention, timeZone: policy.schedule.timeZone, to: copies, policy: name)
        try await context.trimActionHistory(.exportAction, policy: name, namespace: context.namespace)
    }

    func fail(_ action: KubeObject, _ error: ControllerError) async throws {
        try await context.transition(action, .exportAction, to: .failed(reason: error.reason, message: error.message, fields: [:]))
        context.metrics.actionFinished(kind: "export", result: "failed", seconds: Date().timeIntervalSince(action.startTime ?? Date()))
    }

    static func json(_ p: SnapshotCopier.Progress, step: String) -> JSONValue {
        ["step": .string(step), "totalBytes": .int(p.totalBytes), "readBytes": .int(p.readBytes),
         "transferredBytes": .int(p.transferredBytes), "bytesPerSecond": .int(p.bytesPerSecond),
         "volumes": .int(Int64(p.volumes)), "volumesDone": .int(Int64(p.volumesDone))]
    }
}

extension ControllerContext {
    /// A policy's export of one restore point: an ExportAction (administrators', in the controller's namespace)
    /// named `name`, labelled with the policy and the application (its retention and history go by them).
    /// Created once: a name that exists is this export already.
    func requestExport(_ export: PolicySpec.Export, policy: String, namespace: String, profile: String, restorePoint: String,
                       name: String) async throws {
        var action = KubeObject(apiVersion: CairnKind.apiVersion, kind: CairnKind.exportAction.rawValue,
                                name: String(name.prefix(253)), namespace: self.namespace)
        action.labels = [CairnLabel.policy: policy, CairnLabel.sourceNamespace: namespace]
        var spec: JSONValue = ["profile": .string(profile), "destination": .string(export.profile), "namespace": .string(namespace),
                               "restorePoint": .string(restorePoint)]
        if let receiver = export.receiver { spec["receiver"] = receiver.json }
        action["spec"] = spec
        do {
            _ = try await client.create(action, as: CairnKind.exportAction.resource, namespace: self.namespace)
        } catch let error as KubeError where error.code == .alreadyExists {}
    }
}

extension ProfileSpec.Location {
    /// The location as a receive token carries it (a Profile's `spec.location` on the other side).
    var receiveLocation: ReceiveToken.Location {
        switch self {
        case .filesystem(let path): return ReceiveToken.Location(path: path)
        case .s3(let bucket, let prefix, let endpoint, let region, let pathStyle):
            return ReceiveToken.Location(s3: .init(bucket: bucket, prefix: prefix.isEmpty ? nil : prefix, endpoint: endpoint,
                                                   region: region, pathStyle: pathStyle,
                                                   insecure: endpoint?.lowercased().hasPrefix("http://") == true ? true : nil))
        }
    }
}
