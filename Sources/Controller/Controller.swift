import Concurrent
import Foundation
import Kube
import Logging
import Server

/// Cairn's controller: waits to hold the leader Lease, then watches Cairn's kinds and reconciles them
/// with a pool of workers until the task is cancelled (graceful shutdown: runs are stopped and left
/// for the successor, the Lease released) or leadership is lost (then it throws: the process must exit,
/// because what it was doing may now be done by another).
public final class Controller: Sendable {
    public struct Configuration: Sendable {
        public var namespace: String
        public var identity: String
        public var moverImage: String
        public var workers: Int
        public var leaseName: String
        /// The controller's service account: its username is how Cairn tells its own requests (a Policy's
        /// runs) from a person's.
        public var serviceAccount: String
        /// Actions (backups, restores) running at once, in all and per namespace; the others are Queued.
        public var maxRunning: Int
        public var maxRunningPerNamespace: Int
        /// Opens a Profile's store (the backends the executable links).
        public var openStore: StoreOpener

        public init(namespace: String, identity: String, moverImage: String, workers: Int = 4,
                    leaseName: String = "cairn-controller", serviceAccount: String = "cairn-controller",
                    maxRunning: Int = 8, maxRunningPerNamespace: Int = 2, openStore: @escaping StoreOpener) {
            self.openStore = openStore
            self.namespace = namespace
            self.identity = identity
            self.moverImage = moverImage
            self.workers = workers
            self.leaseName = leaseName
            self.serviceAccount = serviceAccount
            self.maxRunning = maxRunning
            self.maxRunningPerNamespace = maxRunningPerNamespace
        }

        public var controllerUser: String { UserInfo.serviceAccount(namespace: namespace, name: serviceAccount) }
    }

    public let configuration: Configuration
    public let context: ControllerContext
    let probes: ProbeState

    public init(client: KubeClient, configuration: Configuration, metrics: ControllerMetrics, probes: ProbeState,
                logger: Logger) {
        self.configuration = configuration
        self.probes = probes
        context = ControllerContext(
            client: client, namespace: configuration.namespace, identity: configuration.identity,
            controllerUser: configuration.controllerUser, moverImage: configuration.moverImage, metrics: metrics,
            events: EventRecorder(client: client, instance: configuration.identity, logger: logger),
            repositories: RepositoryCache(client: client, namespace: configuration.namespace,
                                          openStore: configuration.openStore, logger: logger),
            queue: WorkQueue<ObjectKey>(),
            runs: ActionRuns(maxRunning: configuration.maxRunning, maxRunningPerNamespace: configuration.maxRunningPerNamespace),
            logger: logger)
    }

    public func run() async throws {
        let election = LeaderElection(client: context.client, namespace: configuration.namespace,
                                      name: configuration.leaseName, identity: configuration.identity,
                                      logger: context.logger)
        probes.set(ready: true, reason: "standing by for the leader Lease")
        do {
            try await election.acquire()
        } catch {
            return   // cancelled while waiting
        }
        context.metrics.setLeader(true)
        probes.set(ready: true, reason: "leading")
        defer { context.metrics.setLeader(false) }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await election.holdUntilLost()
                    throw ControllerError.leadershipLost
                }
                for kind in CairnKind.allCases {
                    group.addTask { await self.watch(kind) }
                }
                group.addTask { await self.watchNamespaces() }
                // The actions' runs: cancelled with the group, which waits for them to end.
                group.addTask { await self.context.runs.serve() }
                for worker in 0..<max(1, configuration.workers) {
                    group.addTask { await self.work(worker) }
                }
                // Whatever ends first (lost lease, cancellation), the workers waiting on the queue must be
                // woken, or the group would wait for them forever.
                do {
                    try await group.next()
                } catch {
                    await context.queue.shutDown()
                    group.cancelAll()
                    throw error
                }
                await context.queue.shutDown()
                group.cancelAll()
            }
        } catch let lost as ControllerError where lost.reason == ControllerError.leadershipLost.reason {
            await context.queue.shutDown()
            throw lost
        } catch {
            // cancelled: graceful shutdown
        }
        context.logger.info("controller.stopping")
        await context.queue.shutDown()
        // Our task is cancelled; the hand-over must still reach the API server.
        await Concurrent.uncancelled { await election.release() }
    }

    /// Watches one kind in all namespaces and queues every object that changes (all of them at the
    /// start and after every re-list). Re-watches after errors (e.g. before the CRD is installed).
    func watch(_ kind: CairnKind) async {
        let part = "watch of \(kind.plural)"
        defer { probes.rest(part) }
        while !Task.isCancelled {
            probes.beat(part, limit: Self.watchSilence)
            do {
                for try await event in context.client.watch(kind.resource) {
                    probes.beat(part, limit: Self.watchSilence)
                    switch event {
                    case .synced(let objects, _):
                        for object in objects { await enqueue(kind, object) }
                    case .added(let object), .modified(let object), .deleted(let object):
                        await enqueue(kind, object)
                    case .bookmark:
                        break
                    }
                }
            } catch {
                if Task.isCancelled { return }
                context.logger.warning("watch.failed", metadata: ["cairn.kind": "\(kind.rawValue)", "error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }

    func enqueue(_ kind: CairnKind, _ object: KubeObject) async {
        await context.queue.add(ObjectKey(kind, object))
        // A policy's status follows its actions and restore points.
        if kind == .backupAction || kind == .restorePoint, let policy = object.labels[CairnLabel.policy] {
            await context.queue.add(ObjectKey(.policy, context.namespace, policy), after: .seconds(1))
        }
    }

    /// A namespace that appears, or adopts earlier restore points, may have restore points in a repository:
    /// the Profiles mirror them. A namespace being deleted: its RestorePoints let go.
    func watchNamespaces() async {
        var known: [String: String] = [:]   // name → the adoption annotation
        func adoption(_ object: KubeObject) -> String { object.annotations[RestorePointOwnership.adoptAnnotation] ?? "" }
        let part = "watch of namespaces"
        defer { probes.rest(part) }
        while !Task.isCancelled {
            probes.beat(part, limit: Self.watchSilence)
            do {
                for try await event in context.client.watch(Namespace.resource) {
                    probes.beat(part, limit: Self.watchSilence)
                    var appeared = false
                    switch event {
                    case .synced(let objects, _):
                        known = Dictionary(objects.map { ($0.name, adoption($0)) }, uniquingKeysWith: { a, _ in a })
                    case .added(let object), .modified(let object):
                        appeared = known[object.name] != adoption(object)
                        known[object.name] = adoption(object)
                        // Its RestorePoints let go of their data without touching it (an immutable one may be
                        // waiting hours for its period to end): look at them now.
                        if Namespace(object).phase == "Terminating" {
                            let points = (try? await context.client.listAll(CairnKind.restorePoint.resource, namespace: object.name))?.items ?? []
                            for point in points { await context.queue.add(ObjectKey(.restorePoint, point)) }
                        }
                    case .deleted(let object):
                        known[object.name] = nil
                        context.metrics.forget(namespace: object.name)
                    case .bookmark:
                        break
                    }
                    if appeared {
                        for profile in (try? await context.client.listAll(CairnKind.profile.resource, namespace: context.namespace))?.items ?? [] {
                            await context.queue.add(ObjectKey(.profile, profile), after: .seconds(1))
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                context.logger.warning("watch.failed", metadata: ["cairn.kind": "Namespace", "error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }

    /// A watch hears at least a bookmark or a re-list within the server's watch timeout (5–6 min).
    static let watchSilence: Duration = .seconds(15 * 60)
    /// One reconcile pass never takes this long (long runs go beside the workers).
    static let passLimit: Duration = .seconds(5 * 60)

    func work(_ worker: Int) async {
        let part = "worker \(worker)"
        defer { probes.rest(part) }
        while let key = await context.queue.next() {
            let started = ContinuousClock.now
            probes.beat(part, limit: Self.passLimit)
            defer { probes.rest(part) }
            do {
                let requeue = try await reconcile(key)
                await context.queue.forget(key)
                if let requeue { await context.queue.add(key, after: requeue) }
            } catch {
                if Task.isCancelled { await context.queue.done(key); return }
                context.metrics.reconcileFailed(kind: key.kind.rawValue)
                let conflict = (error as? KubeError)?.code == .conflict
                if conflict {
                    context.logger.debug("reconcile.conflict", metadata: ["cairn.object": "\(key)"])
                } else {
                    context.logger.warning("reconcile.failed", metadata: ["cairn.object": "\(key)", "error": "\(error)"])
                }
                await context.queue.retry(key)
            }
            context.logger.trace("reconciled", metadata: ["cairn.object": "\(key)",
                                                          "cairn.seconds": "\((ContinuousClock.now - started).components.seconds)"])
            await context.queue.done(key)
        }
    }

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        switch key.kind {
        case .profile: return try await ProfileReconciler(context: context).reconcile(key)
        case .policy: return try await PolicyReconciler(context: context).reconcile(key)
        case .backupAction: return try await BackupActionReconciler(context: context).reconcile(key)
        case .restoreAction: return try await RestoreActionReconciler(context: context).reconcile(key)
        case .restorePoint: return try await RestorePointReconciler(context: context).reconcile(key)
        case .transformSet: return try await TransformSetReconciler(context: context).reconcile(key)
        case .blueprint: return try await BlueprintReconciler(context: context).reconcile(key)
        case .exportAction: return try await ExportActionReconciler(context: context).reconcile(key)
        case .importAction: return try await ImportActionReconciler(context: context).reconcile(key)
        }
    }
}
