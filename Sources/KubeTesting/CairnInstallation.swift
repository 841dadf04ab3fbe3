import Foundation
import TestSupport
import Synchronization

/// Cairn installed in the local cluster from `deploy/` (`scripts/local-cluster install-cairn`), once per
/// test process; plus what tests need around it: Profiles with their own repository directory.
public enum CairnInstallation {
    /// Cluster name → its installation, run once; every caller awaits the same one.
    private static let installs = Mutex<[String: Task<Void, any Error>]>([:])

    /// Installs (or updates) Cairn's CRDs, roles and controller and waits until the controller runs.
    public static func ensure(_ cluster: LocalCluster) async throws {
        let install = installs.withLock { installs in
            if let running = installs[cluster.name] { return running }
            let task = Task {
                let r = try await ChildProcess.run([LocalCluster.script, "install-cairn", "--name", cluster.name])
                guard r.status == 0 else { throw ClusterError("install-cairn failed: \(r.stderr.suffix(3000))") }
            }
            installs[cluster.name] = task
            return task
        }
        do {
            try await install.value
        } catch {
            installs.withLock { if $0[cluster.name] == install { $0[cluster.name] = nil } }  // the next caller tries again
            throw error
        }
    }

    /// The cluster was destroyed: the next `ensure` installs again.
    static func forget(_ cluster: LocalCluster) {
        installs.withLock { _ = $0.removeValue(forKey: cluster.name) }
    }

    /// The controller's pod name.
    public static func controllerPod(_ cluster: LocalCluster) async throws -> String {
        try await cluster.kubectlOK(["-n", "cairn-system", "get", "pods", "-l", "app.kubernetes.io/component=controller",
                               "--field-selector", "status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}"])
    }
}

/// A Profile for one test: a password Secret and a filesystem repository under /var/lib/cairn/tests
/// (the controller's hostPath), removed again by `remove()`.
public struct TestProfile: Sendable {
    public let cluster: LocalCluster
    public let name: String
    public let password: String
    public var path: String { "/var/lib/cairn/tests/\(name)" }

    /// `namespaceSelector`: which namespaces' own users may use it (YAML flow; default `{}`: all).
    /// `exportDestination`: no `spec.init`, not waited for: the first export creates its repository.
    public init(_ cluster: LocalCluster, prefix: String = "p", immutability: String? = nil,
                namespaceSelector: String = "{}", exportDestination: Bool = false) async throws {
        self.cluster = cluster
        name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        password = "pw-\(UUID().uuidString)"
        try await cluster.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: \(name)-password, namespace: cairn-system}
            stringData: {password: "\(password)"}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: \(name), namespace: cairn-system}
            spec:
              location: {filesystem: {path: \(path)}}
              passwordSecretRef: {name: \(name)-password}
              namespaceSelector: \(namespaceSelector)
              init: \(!exportDestination)
            \(immutability.map { "  immutability: \($0)" } ?? "")
            """)
        if exportDestination { return }
        try await cluster.waitUntil("Profile \(name) to be ready", timeout: 60) {
            try await cluster.kubectlOK(["-n", "cairn-system", "get", "profile", name, "-o",
                                   "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]) == "True"
        }
    }

    /// Runs the `cairn` CLI against this profile's repository.
    public func cairn(_ arguments: [String]) async throws -> ChildProcess.Result {
        try await ChildProcess.run([CairnBinary.path] + arguments + ["--repo", path],
                             environment: ["CAIRN_PASSWORD": password, "KUBECONFIG": cluster.kubeconfig])
    }

    /// Restore points of `namespace` in the repository (not the objects: the data).
    public func restorePointIDs(namespace: String) async throws -> [String] {
        let r = try await cairn(["restorepoints", namespace, "--json"])
        guard r.status == 0 else { throw ClusterError("cairn restorepoints failed: \(r.stderr)") }
        let data = Data(r.stdout.utf8)
        let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
        return list.compactMap { $0["id"] as? String }
    }

    /// Deletes the Profile, its Secret and its repository (without waiting: fit for a `defer`).
    public func remove() {
        _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "profile", name, "--wait=false"])
        _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "secret", "\(name)-password", "--wait=false"])
        try? FileManager.default.removeItem(atPath: path)
    }
}
