import Foundation
import Kube
import Protection
import Repository
import Server
import Snapshot

/// Profiles: opens (or creates) the repository and reports it Ready or why not; releases locks a
/// killed controller left; runs the prunes deletions asked for; and mirrors the repository's restore
/// points as RestorePoint objects in every existing namespace they belong to (`RestorePointOwnership`: the
/// namespace they were taken of, or one an administrator made adopt them after it was deleted and created
/// again).
struct ProfileReconciler {
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let profile = try await context.fetch(key) else {
            await context.repositories.invalidate(profile: key.name)
            // Its catalog entries go with it (they never own data).
            var options = ListOptions()
            options.labelSelector = "\(CairnLabel.profile)=\(key.name),\(CairnLabel.sourceNamespace)"
            for entry in (try? await context.client.listAll(CairnKind.restorePoint.resource, namespace: context.namespace,
                                                            options: options).items) ?? [] {
                _ = try? await context.client.delete(CairnKind.restorePoint.resource, entry.name, namespace: context.namespace)
            }
            return nil
        }
        guard key.namespace == context.namespace else {
            try await context.setCondition(Condition("Ready", false, reason: "WrongNamespace",
                                                     message: "Profiles are read in namespace \(context.namespace) only, where the controller runs"),
                                           on: profile)
            return nil
        }
        let repository: Repository
        let spec: ProfileSpec
        do {
            // An import Profile's token is checked again at every pass (it may have expired or been revoked).
            if (try? ProfileSpec(profile))?.isImport == true { await context.repositories.invalidate(profile: key.name) }
            (repository, spec) = try await context.repositories.repository(profile: key.name)
        } catch let error as ControllerError {
            try await context.setCondition(Condition("Ready", false, reason: error.reason, message: error.message), on: profile)
            return .seconds(30)
        } catch {
            await context.repositories.invalidate(profile: key.name)
            try await context.setCondition(Condition("Ready", false, reason: "RepositoryUnavailable",
                                                     message: "cannot open the repository: \(error)"), on: profile)
            return .seconds(30)
        }
        // An import Profile's repository is another cluster's: never written here (no locks, no prune).
        if !spec.isImport { try await releaseOrphanedLocks(repository) }
        if !spec.isImport, await context.runs.takePrune(profile: key.name) {
            do {
                try await prune(repository)
            } catch let error as RepositoryError where error.code == .locked {
                await context.runs.requestPrune(profile: key.name)   // a backup runs: later
                await context.queue.add(key, after: .seconds(60))
            }
        }
        let (count, withheld) = try await syncRestorePoints(repository, profile: key.name, imported: spec.isImport)
        var updated = profile
        updated["status", "repositoryID"] = .string(String(repository.config.id.prefix(8)))
        updated["status", "restorePoints"] = .int(Int64(count))
        updated["status", "withheld"] = withheld.isEmpty ? nil : .array(withheld.map { entry in
            ["namespace": .string(entry.namespace), "restorePoints": .int(Int64(entry.count)),
             "earlierUIDs": .array(entry.uids.map { .string($0) })]
        })
        let announced = Set(profile["status", "withheld"]?.array?.compactMap { $0["namespace"]?.string } ?? [])
        for entry in withheld where !announced.contains(entry.namespace) {
            await context.events.record(profile, warning: true, reason: "RestorePointsWithheld",
                                        message: "\(entry.count) restore point(s) of an earlier namespace named \(entry.namespace) are not shown in the namespace of that name that exists now (another namespace object). To give them to it, annotate it \(RestorePointOwnership.adoptAnnotation)=\(entry.uids.joined(separator: ","))")
        }
        let ready = spec.isImport ? "the exported repository is open with the receive token (read-only)" : "the repository is open"
        Conditions.set(Condition("Ready", true, reason: "RepositoryReady", message: ready), on: &updated)
        if updated["status"] != profile["status"] {
            try await context.writeStatus(updated)
            if !Conditions.isReady(profile) {
                await context.events.record(profile, reason: "RepositoryReady", message: "the repository is open")
            }
        }
        return .seconds(300)
    }

    /// Locks written by an earlier controller process: only the Lease holder acts, so any controller
    /// lock but ours belongs to a process that is gone.
    func releaseOrphanedLocks(_ repository: Repository) async throws {
        let identity = context.identity
        let removed = try await RepositoryLock.removeAll(repository) { info in
            guard let info else { return false }
            return info.operation.hasPrefix(ControllerLock.prefix) && !info.operation.contains(identity)
        }
        if removed > 0 {
            context.logger.info("locks.orphaned.removed", metadata: ["cairn.locks": "\(removed)"])
        }
    }

    func prune(_ repository: Repository) async throws {
        try await RepositoryLock.with(repository, exclusive: true, operation: ControllerLock.operation("prune", context),
                                      wait: 5) {
            let (all, errors) = try await SnapshotFiles.all(in: repository)
            guard errors.isEmpty else {
                context.logger.warning("prune.skipped", metadata: ["reason": "unreadable snapshots", "count": "\(errors.count)"])
                return
            }
            let report = try await repository.pruneUnused(keeping: all)
            context.logger.info("prune.done", metadata: ["cairn.packs.deleted": "\(report.packsDeleted)",
                                                         "cairn.bytes.freed": "\(report.bytesFreed)"])
        }
    }

    /// A namespace that exists under the name of an earlier one whose restore points it does not own (yet).
    struct Withheld: Sendable {
        var namespace: String
        var count: Int
        /// The earlier namespaces' UIDs: what an administrator lists to adopt them.
        var uids: [String]
    }

    /// Creates the RestorePoint objects missing for restore points in the repository, deletes objects whose
    /// data is gone; returns how many restore points the repository holds, and the namespaces whose
    /// name-sakes' restore points are withheld.
    ///
    /// A restore point appears in the namespace it was taken of when that namespace exists (the same
    /// namespace object, or one that adopted it: `RestorePointOwnership`); otherwise — the namespace is gone,
    /// or is another namespace of the same name, or the restore point comes from another cluster — it
    /// appears in the **catalog**: a RestorePoint in the controller's namespace, named `<namespace>.<name>`,
    /// labelled `cairn.dev/source-namespace`, which administrators restore from (the namespace is created)
    /// and whose deletion never touches the data.
    func syncRestorePoints(_ repository: Repository, profile: String, imported: Bool = false) async throws -> (Int, [Withheld]) {
        let client = context.client
        // Objects first, then the repository: an object deleted (and its data forgotten) in between is
        // then missing from both, never mirrored back from a stale listing.
        let objects = try await client.listAll(CairnKind.restorePoint.resource).items
            .filter { RestorePointSpec($0).profile == profile }
        let points = try await RestorePoint.list(in: repository)
        let namespaces = Dictionary(try await client.listAll(Namespace.resource).items.map { ($0.name, $0) },
                                    uniquingKeysWith: { a, _ in a })
        let isCatalog = { (object: KubeObject) in object.namespace == self.context.namespace && RestorePointSpec(object).sourceNamespace != nil }
        let known = Set(objects.filter { !isCatalog($0) }.map { RestorePointSpec($0).id })
        let knownInCatalog = Set(objects.filter(isCatalog).map { RestorePointSpec($0).id })
        var perNamespace: [String: Int] = [:]
        var withheld: [String: (count: Int, uids: Set<String>)] = [:]
        var catalog = Set<String>()
        for point in points {
            perNamespace[point.namespace, default: 0] += 1
            let object: KubeObject
            // Only into the namespace the restore point was taken of (or one that adopted it), never into
            // a namespace that merely has its name.
            if let namespace = namespaces[point.namespace], RestorePointOwnership.belongs(point.snapshot, to: namespace) {
                guard Namespace(namespace).phase == "Active", !known.contains(point.id) else { continue }
                object = RestorePointObject.make(for: point.snapshot, namespace: point.namespace, profile: profile, imported: imported)
            } else {
                if namespaces[point.namespace] != nil {
                    withheld[point.namespace, default: (0, [])].count += 1
                    if let uid = RestorePoint.namespaceUID(of: point.snapshot) { withheld[point.namespace]!.uids.insert(uid) }
                }
                catalog.insert(point.id)
                guard !knownInCatalog.contains(point.id) else { continue }
                object = RestorePointObject.make(for: point.snapshot, namespace: context.namespace, profile: profile,
                                                 imported: imported, catalogOf: point.namespace)
            }
            do {
                _ = try await client.create(object, as: CairnKind.restorePoint.resource, namespace: object.namespace)
                context.logger.info("restorepoint.mirrored", metadata: ["k8s.namespace": "\(object.namespace ?? "")",
                                                                       "cairn.restorepoint": "\(object.name)"])
            } catch let error as KubeError where error.code == .alreadyExists {
                // Another restore point's object holds the name (one made by hand): say so once per pass.
                context.logger.warning("restorepoint.name.taken", metadata: ["k8s.namespace": "\(object.namespace ?? "")",
                                                                            "cairn.restorepoint": "\(object.name)",
                                                                            "cairn.profile": "\(profile)"])
                continue
            }
        }
        for (namespace, count) in perNamespace where namespaces[namespace] != nil {
            context.metrics.restorePoints(namespace: namespace, count: count)
        }
        // Objects whose snapshot was removed outside the controller (cairn forget): gone too. Young ones
        // are left alone — their snapshot may have been written after we listed. Catalog entries of restore
        // points that now appear in their namespace go.
        let ids = Set(points.map(\.id))
        for object in objects where object.deletionTimestamp == nil {
            let id = RestorePointSpec(object).id
            let stale = isCatalog(object) ? !catalog.contains(id) : !ids.contains(id)
            guard !id.isEmpty, stale,
                  let created = Timestamp.parse(object.creationTimestamp), Date().timeIntervalSince(created) > 120 || isCatalog(object)
            else { continue }
            _ = try? await client.delete(CairnKind.restorePoint.resource, object.name, namespace: object.namespace)
        }
        return (points.count, withheld.sorted { $0.key < $1.key }.map {
            Withheld(namespace: $0.key, count: $0.value.count, uids: $0.value.uids.sorted())
        })
    }
}

/// How the controller names its repository locks: with its identity, so a successor knows which are
/// orphans.
enum ControllerLock {
    static let prefix = "controller "
    static func operation(_ what: String, _ context: ControllerContext) -> String {
        "\(prefix)\(context.identity): \(what)"
    }
}
