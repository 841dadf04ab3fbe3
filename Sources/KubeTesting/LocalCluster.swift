import Foundation
import TestSupport
import Synchronization

/// The local single-node cluster of `scripts/local-cluster`, for tests: starts it (or reuses a running
/// one), runs `kubectl` as the admin or as a namespace-scoped user, gives each test its own namespace,
/// and creates hostPath PersistentVolumes on request.
public final class LocalCluster: Sendable {
    /// A user of the local cluster: the admin, or a user who administers one namespace only.
    public enum User: String, Sendable, CaseIterable {
        case admin
        /// Administers `team-a` only.
        case alice
        /// Administers `team-b` only.
        case bob
    }

    public struct CommandResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public let name: String
    public let kubeconfig: String
    public let stateDirectory: String
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let script = repositoryRoot + "/scripts/local-cluster"
    /// The checkout the tests run from (deploy/, scripts/).
    public static var repositoryRootPath: String { repositoryRoot }

    private static let sharedCluster = Mutex<LocalCluster?>(nil)

    init(name: String) {
        self.name = name
        let stateRoot = ProcessInfo.processInfo.environment["CAIRN_CLUSTER_STATE"] ?? "/var/lib/cairn-local-cluster"
        self.stateDirectory = stateRoot + "/" + name
        self.kubeconfig = stateDirectory + "/kubeconfig"
    }

    /// The default cluster, started by the first caller if it does not run yet (`scripts/test` starts it
    /// before the tests, so this normally only checks it answers).
    public static func shared() throws -> LocalCluster {
        try sharedCluster.withLock { shared in
            if let shared { return shared }
            let cluster = LocalCluster(name: ProcessInfo.processInfo.environment["CAIRN_CLUSTER_NAME"] ?? "cairn")
            if try cluster.kubectlBlocking(["get", "--raw", "/readyz"]).status != 0 {
                try cluster.upBlocking()
            }
            shared = cluster
            return cluster
        }
    }

    /// Another cluster beside the default one (for disaster-recovery and migration tests).
    public static func named(_ name: String) -> LocalCluster {
        LocalCluster(name: name)
    }

    /// The machine's S3 server that every local cluster reaches (`scripts/local-cluster s3 up`): its endpoint.
    @discardableResult
    public static func sharedS3() async throws -> String {
        let r = try await run([script, "s3", "up"])
        guard r.status == 0 else { throw ClusterError("local-cluster s3 up failed: \(r.stderr.suffix(2000))") }
        return "http://10.254.255.1:9000"
    }

    /// Starts the cluster (`scripts/local-cluster up`), with `nodes` nodes when given.
    public func up(nodes: Int? = nil) async throws {
        try await onOwnThread { [self] in try upBlocking(nodes: nodes) }
    }

    private func upBlocking(nodes: Int? = nil) throws {
        let r = try Self.runBlocking([Self.script, "up", "--name", name] + (nodes.map { ["--nodes", String($0)] } ?? []))
        guard r.status == 0 else { throw ClusterError("local-cluster up --name \(name) failed: \(r.stderr.suffix(3000))") }
    }

    /// Stops it; with `purge` removes its state.
    public func down(purge: Bool = false) async throws {
        try await onOwnThread { [self] in try downBlocking(purge: purge) }
    }

    /// `down`, holding the calling thread: for a `defer`.
    public func downBlocking(purge: Bool = false) throws {
        let r = try Self.runBlocking([Self.script, "down", "--name", name] + (purge ? ["--purge"] : []))
        guard r.status == 0 else { throw ClusterError("local-cluster down --name \(name) failed: \(r.stderr)") }
        // A purged cluster comes up new: Cairn is installed into it again.
        if purge { CairnInstallation.forget(self) }
    }

    /// Checks that nothing of a stopped cluster is left (processes, mounts, network, cgroups, chains).
    public func verifyDown() async throws -> CommandResult {
        try await onOwnThread { [self] in try verifyDownBlocking() }
    }

    /// `verifyDown`, holding the calling thread: for a `defer`.
    public func verifyDownBlocking() throws -> CommandResult {
        try Self.runBlocking([Self.script, "verify-down", "--name", name])
    }

    /// Runs a command inside the cluster's network (where ClusterIPs and pod IPs are reachable).
    public func execInNetwork(_ arguments: [String], environment: [String: String] = [:]) async throws
        -> CommandResult {
        try await Self.run([Self.script, "exec", "--name", name, "--"] + arguments, environment: environment)
    }

    /// Runs the cairn CLI of this build against the filesystem repository at `repository`, with this cluster's
    /// kubeconfig (and a cheap key derivation: tests open repositories often).
    public func cairn(_ arguments: [String], repository: String, password: String) async throws
        -> ChildProcess.Result {
        try await ChildProcess.run([CairnBinary.path] + arguments, environment: [
            "CAIRN_REPOSITORY": repository, "CAIRN_PASSWORD": password, "CAIRN_KDF_N": "1024", "KUBECONFIG": kubeconfig,
        ])
    }

    /// The bearer token of `user` (from the cluster's kubeconfig).
    public func token(of user: User) async throws -> String {
        let r = try await Self.run(["kubectl", "config", "view", "--raw", "--minify", "--context", "\(name)-\(user.rawValue)",
                              "-o", "jsonpath={.users[0].user.token}"], environment: ["KUBECONFIG": kubeconfig])
        guard r.status == 0, !r.stdout.isEmpty else { throw ClusterError("no token for \(user.rawValue): \(r.stderr)") }
        return r.stdout
    }

    /// Runs kubectl as `user`, optionally feeding `stdin`.
    @discardableResult
    public func kubectl(_ arguments: [String], as user: User = .admin, stdin: String? = nil) async throws
        -> CommandResult {
        try await onOwnThread { [self] in try kubectlBlocking(arguments, as: user, stdin: stdin) }
    }

    /// `kubectl`, holding the calling thread: only where no `await` is possible (a `defer`'s clean-up).
    @discardableResult
    public func kubectlBlocking(_ arguments: [String], as user: User = .admin, stdin: String? = nil) throws
        -> CommandResult {
        try Self.runBlocking(["kubectl", "--context", "\(name)-\(user.rawValue)"] + arguments,
                             environment: ["KUBECONFIG": kubeconfig], stdin: stdin)
    }

    /// Runs kubectl and fails with its stderr unless it succeeds; returns stdout.
    @discardableResult
    public func kubectlOK(_ arguments: [String], as user: User = .admin, stdin: String? = nil) async throws -> String {
        let r = try await kubectl(arguments, as: user, stdin: stdin)
        guard r.status == 0 else {
            throw ClusterError("kubectl \(arguments.joined(separator: " ")) failed (\(r.status)): \(r.stderr)")
        }
        return r.stdout
    }

    /// Applies YAML or JSON manifests.
    public func apply(_ manifest: String, as user: User = .admin) async throws {
        try await kubectlOK(["apply", "-f", "-"], as: user, stdin: manifest)
    }

    /// Waits until `condition` returns true, without holding a thread (`eventually`).
    public func waitUntil(_ what: String, timeout: TimeInterval = 120, _ condition: () async throws -> Bool) async throws {
        try await eventually(what, timeout: .seconds(timeout), condition)
    }

    /// Creates a fresh namespace for one test, runs `body`, then deletes the namespace (and the hostPath
    /// volumes made for it) and waits until it is gone.
    public func withNamespace<T>(_ prefix: String = "t", _ body: (TestNamespace) async throws -> T) async throws -> T {
        let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        try await kubectlOK(["create", "namespace", name])
        let namespace = TestNamespace(cluster: self, name: name)
        do {
            let result = try await body(namespace)
            await namespace.cleanUp()
            return result
        } catch {
            await namespace.cleanUp()
            throw error
        }
    }

    /// Runs a command found on PATH and waits for it on a thread of its own (see `ChildProcess.run`).
    static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) async throws
        -> CommandResult {
        try await onOwnThread { try runBlocking(arguments, environment: environment, stdin: stdin) }
    }

    static func runBlocking(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws
        -> CommandResult {
        let result = try ChildProcess.runBlocking(arguments, environment: environment, stdin: stdin)
        return CommandResult(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }
}

/// A namespace that belongs to one test.
public struct TestNamespace: Sendable {
    public let cluster: LocalCluster
    public let name: String

    /// A namespace of this name (created by the caller, or by a restore), cleaned up by `cleanUp()`.
    public init(cluster: LocalCluster, name: String) {
        self.cluster = cluster
        self.name = name
    }

    /// Host directory holding this namespace's hostPath volumes.
    public var volumesDirectory: String { cluster.stateDirectory + "/volumes/" + name }

    /// kubectl in this namespace.
    @discardableResult
    public func kubectl(_ arguments: [String], as user: LocalCluster.User = .admin, stdin: String? = nil) async throws
        -> LocalCluster.CommandResult {
        try await cluster.kubectl(["-n", name] + arguments, as: user, stdin: stdin)
    }

    @discardableResult
    public func kubectlOK(_ arguments: [String], stdin: String? = nil) async throws -> String {
        try await cluster.kubectlOK(["-n", name] + arguments, stdin: stdin)
    }

    public func apply(_ manifest: String) async throws {
        try await kubectlOK(["apply", "-f", "-"], stdin: manifest)
    }

    /// Creates a hostPath PersistentVolume that only a claim named `claim` in this namespace binds, backed
    /// by a fresh host directory; returns that directory.
    @discardableResult
    public func hostPathVolume(forClaim claim: String, size: String = "1Gi",
                               storageClass: String = "cairn-hostpath") async throws -> String {
        let pvName = "\(name)-\(claim)"
        let path = volumesDirectory + "/" + claim
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o777)
        try await cluster.apply("""
            apiVersion: v1
            kind: PersistentVolume
            metadata:
              name: \(pvName)
              labels: {cairn.dev/test-namespace: \(name)}
            spec:
              capacity: {storage: \(size)}
              accessModes: [ReadWriteOnce]
              persistentVolumeReclaimPolicy: Retain
              storageClassName: \(storageClass)
              claimRef: {namespace: \(name), name: \(claim)}
              hostPath: {path: \(path), type: DirectoryOrCreate}
            """)
        return path
    }

    /// Waits until a pod is Running and Ready.
    public func waitForPodReady(_ pod: String, timeout: TimeInterval = 180) async throws {
        try await cluster.waitUntil("pod \(name)/\(pod) to be ready", timeout: timeout) {
            let r = try await kubectl(["get", "pod", pod, "-o",
                                 "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
            return r.stdout == "True"
        }
    }

    /// Waits until a pod has finished successfully.
    public func waitForPodSucceeded(_ pod: String, timeout: TimeInterval = 120) async throws {
        try await cluster.waitUntil("pod \(name)/\(pod) to succeed", timeout: timeout) {
            let phase = try await kubectl(["get", "pod", pod, "-o", "jsonpath={.status.phase}"]).stdout
            if phase == "Failed" { throw GiveUp("pod \(name)/\(pod) failed") }
            return phase == "Succeeded"
        }
    }

    /// Deletes the namespace, waits until it is gone, then deletes the PersistentVolumes labelled for it and
    /// its volumes' directories.
    public func cleanUp() async {
        let namespace = self
        _ = try? await onOwnThread { namespace.cleanUpBlocking() }
    }

    /// `cleanUp` on a thread of its own, not waited for (`Background`): for a `defer`.
    public func cleanUpLater() {
        let namespace = self
        Background.run { namespace.cleanUpBlocking() }
    }

    private func cleanUpBlocking() {
        _ = try? cluster.kubectlBlocking(["delete", "namespace", name, "--wait=true", "--timeout=120s"])
        _ = try? cluster.kubectlBlocking(["delete", "pv", "-l", "cairn.dev/test-namespace=\(name)", "--wait=false"])
        try? FileManager.default.removeItem(atPath: volumesDirectory)
    }
}

public struct ClusterError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
