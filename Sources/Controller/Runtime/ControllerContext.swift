import Foundation
import Kube
import Logging
import Protection

/// What every reconciler shares: the client, the controller's own namespace (Profiles, Policies and
/// the Lease live there), the queue, open repositories, the actions running in this process, events
/// and metrics.
public struct ControllerContext: Sendable {
    public let client: KubeClient
    public let namespace: String
    /// This process's identity: the Lease holder name, written into actions it runs.
    public let identity: String
    public let moverImage: String
    public let metrics: ControllerMetrics
    public let events: EventRecorder
    public let repositories: RepositoryCache
    public let queue: WorkQueue<ObjectKey>
    public let runs: ActionRuns
    public let logger: Logger

    /// The Profile an action or policy names, or else the default one: the Profile with
    /// `spec.default: true`, or the only Profile there is.
    func profileName(_ named: String?) async throws -> String {
        if let named, !named.isEmpty { return named }
        let profiles = try await client.listAll(CairnKind.profile.resource, namespace: namespace).items
        if let marked = profiles.first(where: { $0["spec", "default"]?.bool == true }) { return marked.name }
        if profiles.count == 1 { return profiles[0].name }
        throw SpecError(profiles.isEmpty ? "ProfileNotFound" : "ProfileNotChosen",
                        profiles.isEmpty
                            ? "no Profile exists in namespace \(namespace); an administrator must create one"
                            : "spec.profile is empty and no Profile in namespace \(namespace) is marked default: true")
    }

    /// The Profile object, or a SpecError saying it is missing or not ready.
    func readyProfile(_ name: String) async throws -> KubeObject {
        let profile: KubeObject
        do {
            profile = try await client.get(CairnKind.profile.resource, name, namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            throw SpecError("ProfileNotFound", "Profile '\(name)' does not exist in namespace \(namespace)")
        }
        guard Conditions.isReady(profile) else {
            let why = Conditions.get("Ready", of: profile)?.message ?? "it has not been checked yet"
            throw SpecError("ProfileNotReady", "Profile '\(name)' is not ready: \(why)")
        }
        return profile
    }

    /// Writes `object`'s status; a conflict (someone changed it meanwhile) is left to the next pass.
    func writeStatus(_ object: KubeObject) async throws {
        _ = try await client.updateStatus(object)
    }

    /// Sets a condition and writes the status only if that changed anything.
    func setCondition(_ condition: Condition, on object: KubeObject, event: Bool = true) async throws {
        var updated = object
        Conditions.set(condition, on: &updated)
        guard updated["status"] != object["status"] else { return }
        try await writeStatus(updated)
        let previous = Conditions.get(condition.type, of: object)
        if event && (previous?.reason != condition.reason || previous?.status != condition.status) {
            await events.record(object, warning: !condition.status, reason: condition.reason, message: condition.message)
        }
    }
}

/// The actions this process runs, by object UID, and repositories waiting for a prune.
public actor ActionRuns {
    var running: [String: Task<Void, Never>] = [:]
    var pruneWanted: Set<String> = []

    public init() {}

    func isRunning(_ uid: String) -> Bool { running[uid] != nil }

    func start(_ uid: String, _ body: @escaping @Sendable () async -> Void) {
        guard running[uid] == nil else { return }
        running[uid] = Task { await body() }
    }

    func finished(_ uid: String) { running[uid] = nil }

    /// Cancels every run (graceful shutdown) and waits up to `grace` for them to stop.
    func cancelAll(grace: Duration) async {
        let tasks = Array(running.values)
        for task in tasks { task.cancel() }
        let deadline = ContinuousClock.now + grace
        for task in tasks {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { break }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await task.value }
                group.addTask { try? await Task.sleep(for: remaining) }
                await group.next()
                group.cancelAll()
            }
        }
    }

    func requestPrune(profile: String) { pruneWanted.insert(profile) }
    func takePrune(profile: String) -> Bool { pruneWanted.remove(profile) != nil }
}

extension ControllerContext {
    /// The object a key names, or nil when it no longer exists (nothing to reconcile).
    func fetch(_ key: ObjectKey) async throws -> KubeObject? {
        do {
            return try await client.get(key.kind.resource, key.name, namespace: key.namespace)
        } catch let error as KubeError where error.code == .notFound {
            return nil
        }
    }

    /// Where a BackupAction or RestoreAction stands for this process.
    enum ActionState {
        /// No phase yet (or Pending): to be started.
        case new
        /// Running here, in this process.
        case runningHere
        /// `Running`, but not in this process: the run that started it is gone.
        case interrupted
        /// Succeeded, Failed, or being deleted: nothing to do.
        case done
    }

    func state(of action: KubeObject) async -> ActionState {
        guard action.deletionTimestamp == nil, let uid = action.uid else { return .done }
        switch action["status", "phase"]?.string ?? "" {
        case "Succeeded", "Failed":
            return .done
        case "Running":
            guard action["status", "runID"]?.string == identity else { return .interrupted }
            return await runs.isRunning(uid) ? .runningHere : .interrupted
        default:
            return .new
        }
    }

    /// Reads an object, changes its status and writes it, retrying when someone wrote in between.
    @discardableResult
    func modifyStatus(_ kind: CairnKind, _ namespace: String, _ name: String,
                      _ change: (inout KubeObject) throws -> Void) async throws -> KubeObject {
        var attempt = 1
        while true {
            var object = try await client.get(kind.resource, name, namespace: namespace)
            try change(&object)
            do {
                return try await client.updateStatus(object)
            } catch let error as KubeError where error.code == .conflict && attempt < 5 {
                attempt += 1
            }
        }
    }
}
