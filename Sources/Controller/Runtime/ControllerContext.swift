import Foundation
import Kube
import Logging
import Protection
import Repository
import Server
import Snapshot

/// What every reconciler shares: the client, the controller's own namespace (Profiles, Policies and
/// the Lease live there), the queue, open repositories, the actions running in this process, events
/// and metrics.
public struct ControllerContext: Sendable {
    public let client: KubeClient
    public let namespace: String
    /// This process's identity: the Lease holder name, written into actions it runs.
    public let identity: String
    /// The controller's own username (its service account).
    public let controllerUser: String
    public let moverImage: String
    public let metrics: ControllerMetrics
    public let events: EventRecorder
    public let repositories: RepositoryCache
    public let queue: WorkQueue<ObjectKey>
    public let runs: ActionRuns
    public let logger: Logger

    /// The client that acts for whoever created `action` (recorded by the admission webhook): the
    /// controller's own for its Policies' runs, else one impersonating that person, so that the API server
    /// decides what the action may read and write exactly as if they had asked themselves.
    func client(actingFor action: KubeObject) throws -> KubeClient {
        guard let requester = UserInfo.requester(of: action) else {
            throw ControllerError("RequesterUnknown", "Cairn does not know who created this \(action.kind): it was created while Cairn's admission webhook was not serving. Delete it and create it again")
        }
        return client(actingAs: requester)
    }

    /// A client acting as `user` (the controller's own when it is the controller).
    func client(actingAs user: UserInfo) -> KubeClient {
        user.username == controllerUser ? client : client.impersonating(user)
    }

    /// A client acting as a user a restore point records (their `UserInfo` as JSON: a blueprint's author,
    /// a backup's requester).
    func client(actingAsRecorded recorded: String) throws -> KubeClient {
        guard let json = try? JSONValue(parsing: Array(recorded.utf8)), let user = UserInfo(json: json) else {
            throw ControllerError("InvalidRestorePoint", "the restore point's record of whose rights a blueprint runs with cannot be read")
        }
        return client(actingAs: user)
    }

    /// Who runs the phases of an application's own Blueprints: each its author, as the webhook recorded
    /// them. One without a record cannot run (moved to `invalid`).
    func blueprintIdentities(_ catalog: inout BlueprintCatalog) -> (clients: [String: KubeClient], authors: [String: String]) {
        var clients: [String: KubeClient] = [:]
        var authors: [String: String] = [:]
        for (name, object) in catalog.namespaced where catalog.valid[name] != nil {
            guard let author = UserInfo.requester(of: object) else {
                catalog.valid[name] = nil
                catalog.invalid[name] = "Blueprint \(object.namespace ?? "")/\(name) has no record of who wrote it (it was written while Cairn's admission webhook was not serving): apply it again"
                continue
            }
            clients[name] = client(actingAs: author)
            authors[name] = String(decoding: author.json.serialized(), as: UTF8.self)
        }
        return (clients, authors)
    }

    /// The Profile an action or policy names, or else the default one: the Profile with
    /// `spec.default: true`, or the only Profile there is.
    func profileName(_ named: String?) async throws -> String {
        if let named, !named.isEmpty { return named }
        let profiles = try await client.listAll(CairnKind.profile.resource, namespace: namespace).items
        if let marked = profiles.first(where: { $0["spec", "default"]?.bool == true }) { return marked.name }
        if profiles.count == 1 { return profiles[0].name }
        throw ControllerError(profiles.isEmpty ? "ProfileNotFound" : "ProfileNotChosen",
                        profiles.isEmpty
                            ? "no Profile exists in namespace \(namespace); an administrator must create one"
                            : "spec.profile is empty and no Profile in namespace \(namespace) is marked default: true")
    }

    /// Refuses (`ControllerError` `ProfileNotAllowed`) an action whose creator may not use `profile` for the
    /// action's namespace. Allowed: the controller's own runs (an administrator's Policy chose the Profile);
    /// a Profile whose namespaceSelector admits the namespace (the default Profile admits all unless it
    /// says otherwise); and whoever RBAC lets `use` the Profile (verb `use` on `profiles` in the controller's
    /// namespace: administrators). The message never shows where the Profile stores data.
    func authorize(profile: KubeObject, for action: KubeObject) async throws {
        let acting = try client(actingFor: action)
        if acting === client { return }
        let namespace = action.namespace ?? ""
        let spec = try ProfileSpec(profile)
        let labels = (try? await client.get(Namespace.resource, namespace))?.labels ?? [:]
        if spec.admits(namespaceLabels: labels) { return }
        var review = KubeObject(apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", name: "")
        review["spec"] = ["resourceAttributes": ["namespace": .string(self.namespace), "verb": "use", "group": "cairn.dev",
                                                 "resource": "profiles", "name": .string(profile.name)]]
        let answer = try await acting.create(review, as: Self.selfSubjectAccessReviews)
        if answer["status", "allowed"]?.bool == true { return }
        throw ControllerError("ProfileNotAllowed", "Profile '\(profile.name)' is not offered to namespace \(namespace): its namespaceSelector does not select it. Use another Profile or ask an administrator")
    }

    static let selfSubjectAccessReviews = APIResource(
        group: "authorization.k8s.io", version: "v1", name: "selfsubjectaccessreviews", kind: "SelfSubjectAccessReview",
        namespaced: false)

    /// The Profile's repository for an action, whose status a namespace's users read: a failure says the
    /// reason and never the Profile's location or its Secrets' names (administrators see those in the Profile).
    func repository(forAction profile: String) async throws -> (Repository, ProfileSpec) {
        do {
            return try await repositories.repository(profile: profile)
        } catch let error as ControllerError {
            throw ControllerError(error.reason, "the repository of Profile '\(profile)' cannot be used (\(error.reason)); an administrator can see why in the Profile")
        } catch {
            throw ControllerError("RepositoryUnavailable", "the repository of Profile '\(profile)' cannot be opened; an administrator can see why in the Profile")
        }
    }

    /// The Profile object, or a ControllerError saying it is missing or not ready.
    func readyProfile(_ name: String) async throws -> KubeObject {
        let profile: KubeObject
        do {
            profile = try await client.get(CairnKind.profile.resource, name, namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            throw ControllerError("ProfileNotFound", "Profile '\(name)' does not exist in namespace \(namespace)")
        }
        guard Conditions.isReady(profile) else {
            // The reason only: the Profile's message names its location, which is the administrators'.
            let why = Conditions.get("Ready", of: profile)?.reason ?? "not checked yet"
            throw ControllerError("ProfileNotReady", "Profile '\(name)' is not ready (\(why)); an administrator can see why in the Profile")
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

/// The actions this process runs, by object UID, their slots (`ActionSlots`), and repositories waiting
/// for a prune. The runs themselves are children of the controller's task group (`serve`), not detached
/// tasks: when the controller stops or loses its Lease they are cancelled, and it waits for them to end
/// before it hands the Lease over.
public actor ActionRuns {
    struct Run: Sendable {
        let uid: String
        let body: @Sendable () async -> Void
    }

    var running: Set<String> = []
    var slots: ActionSlots
    var pruneWanted: Set<String> = []
    private let requests: AsyncStream<Run>
    private let submit: AsyncStream<Run>.Continuation

    public init(maxRunning: Int = 8, maxRunningPerNamespace: Int = 2) {
        slots = ActionSlots(limits: .init(total: max(1, maxRunning), perNamespace: max(1, maxRunningPerNamespace)))
        (requests, submit) = AsyncStream.makeStream(of: Run.self)
    }

    func isRunning(_ uid: String) -> Bool { running.contains(uid) }

    /// Asks for a slot for an action about to start (see `ActionSlots`).
    func requestSlot(for action: KubeObject, kind: CairnKind) -> ActionSlots.Decision {
        slots.request(ActionSlots.Waiter(uid: action.uid ?? "", namespace: action.namespace ?? "",
                                         created: action.creationTimestamp ?? "", key: ObjectKey(kind, action)))
    }

    /// Gives a slot back (a claim that failed, a run that ended); returns the waiting actions to wake.
    func releaseSlot(_ uid: String) -> [ObjectKey] { slots.release(uid) }

    /// Hands a run to `serve`; at most one run per action.
    func start(_ uid: String, _ body: @escaping @Sendable () async -> Void) {
        guard !running.contains(uid) else { return }
        running.insert(uid)
        submit.yield(Run(uid: uid, body: body))
    }

    /// The run ended: its slot is free; returns the waiting actions to wake.
    func finished(_ uid: String) -> [ObjectKey] {
        running.remove(uid)
        return slots.release(uid)
    }

    /// Runs the actions started, each as a child of the calling task (their number bounded by the slots),
    /// until that task is cancelled; then returns once every run has ended. Called once, by the controller.
    nonisolated func serve() async {
        await withDiscardingTaskGroup { group in
            for await run in requests {
                group.addTask { await run.body() }
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
        switch action.phase {
        case .succeeded, .failed:
            return .done
        case .running:
            guard action.runID == identity else { return .interrupted }
            return await runs.isRunning(uid) ? .runningHere : .interrupted
        default:
            return .new
        }
    }

    /// The time left before an action that failed for a transient reason may run again, or nil.
    func retryDelay(of action: KubeObject, now: Date = Date()) -> Duration? {
        guard action.phase == .pending, let at = action.nextAttemptTime else { return nil }
        let left = at.timeIntervalSince(now)
        return left > 0 ? .milliseconds(Int64((left * 1000).rounded(.up))) : nil
    }

    /// An action's run met a transient failure (`ControllerError.isTransient`) on run `attempt`: it goes back
    /// to `Pending` and runs again after a back-off (15 s, doubling), its condition saying why. Returns false
    /// when it has had its `maxAttempts` and must fail instead.
    func retryLater(_ action: KubeObject, kind: CairnKind, failure: ControllerError, attempt: Int,
                    maxAttempts: Int) async throws -> Bool {
        guard failure.isTransient, attempt < maxAttempts else { return false }
        let delay = 15.0 * Double(1 << min(attempt - 1, 6))
        let at = Date().addingTimeInterval(delay)
        let message = "run \(attempt) of at most \(maxAttempts) stopped: \(failure.message); trying again at \(Timestamp.format(at))"
        try await transition(action, kind, to: .retry(attempt: attempt, at: at, reason: failure.reason, message: message))
        await queue.add(ObjectKey(kind, action), after: .seconds(delay))
        return true
    }

    /// Takes a slot for `action` (true), or writes it `Queued` with its place in line and the reason
    /// (false: it is woken when a slot frees, and looked at again every 30 s).
    func takeSlot(for action: KubeObject, kind: CairnKind) async throws -> Bool {
        guard case .wait(let position, let reason) = await runs.requestSlot(for: action, kind: kind) else { return true }
        let message = "waiting for a free slot (\(reason)); place in line: \(position)"
        try await transition(action, kind, to: .queued(position: position, message: message))
        return false
    }

    /// Runs an action's work beside the workers; when it ends, its slot goes to the next in line.
    func run(_ action: KubeObject, _ body: @escaping @Sendable () async -> Void) async {
        let uid = action.uid ?? ""
        await runs.start(uid) {
            await body()
            for key in await runs.finished(uid) { await queue.add(key) }
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

    /// Whose restore point a RestorePoint object may name (`RestorePointObject.Owner`): a catalog entry's
    /// source namespace, or the object's namespace.
    func owner(of restorePoint: KubeObject) async throws -> RestorePointObject.Owner {
        if restorePoint.namespace == namespace, let source = RestorePointSpec(restorePoint).sourceNamespace {
            return .catalog(sourceNamespace: source)
        }
        return .namespace(try await client.get(Namespace.resource, restorePoint.namespace ?? ""))
    }

    /// Deletes the restore points a policy's GFS `retention` does not keep (their finalizer removes the data).
    func applyRetention(_ retention: ForgetPolicy, timeZone: TimeZone, to points: [KubeObject], policy: String) async {
        guard !retention.isEmpty else { return }
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = timeZone
        for (point, reasons) in retention.keep(points, time: { RestorePointSpec($0).time ?? .distantPast }, id: \.name,
                                               calendar: calendar) where reasons.isEmpty {
            logger.info("retention.delete", metadata: ["k8s.namespace": "\(point.namespace ?? "")", "cairn.restorepoint": "\(point.name)",
                                                      "cairn.policy": "\(policy)"])
            _ = try? await client.delete(CairnKind.restorePoint.resource, point.name, namespace: point.namespace)
        }
    }

    /// Finished actions a policy created are records, not restore points: the newest `actionHistory` per
    /// application (BackupActions) or per policy (ExportActions) are kept, like a CronJob's job history.
    static let actionHistory = 10

    /// `per`: a label whose every value keeps its own history (an import Policy's restores, per target
    /// namespace: the newest is the record that a restore point was restored).
    func trimActionHistory(_ kind: CairnKind, policy: String, namespace: String, per label: String? = nil) async throws {
        var options = ListOptions()
        options.labelSelector = "\(CairnLabel.policy)=\(policy)"
        let finished = try await client.listAll(kind.resource, namespace: namespace, options: options).items
            .filter { $0.phase.isFinished }
            .sorted { ($0.creationTimestamp ?? "", $0.name) > ($1.creationTimestamp ?? "", $1.name) }
        for group in Dictionary(grouping: finished, by: { action in label.flatMap { action.labels[$0] } ?? "" }).values {
            for action in group.dropFirst(Self.actionHistory) {
                _ = try? await client.delete(kind.resource, action.name, namespace: namespace)
            }
        }
    }
}
