import Foundation
import TestSupport
import Synchronization

/// Cairn installed in the local cluster from `deploy/` (`scripts/local-cluster install-cairn`), once per
/// test process; plus what tests need around it: Profiles with their own repository directory.
public enum CairnInstallation {
    private static let installed = Mutex<Set<String>>([])

    /// Installs (or updates) Cairn's CRDs, roles and controller and waits until the controller runs.
    public static func ensure(_ cluster: LocalCluster) throws {
        try installed.withLock { done in
            guard !done.contains(cluster.name) else { return }
            let r = try ChildProcess.run([LocalCluster.script, "install-cairn", "--name", cluster.name])
            guard r.status == 0 else {
                throw ClusterError("install-cairn failed: \(r.stderr.suffix(3000))")
            }
            done.insert(cluster.name)
        }
    }

    /// The cluster was destroyed: the next `ensure` installs again.
    static func forget(_ cluster: LocalCluster) {
        installed.withLock { _ = $0.remove(cluster.name) }
    }

    /// The controller's pod name.
    public static func controllerPod(_ cluster: LocalCluster) throws -> String {
        try cluster.kubectlOK(["-n", "cairn-system", "get", "pods", "-l", "app.kubernetes.io/component=controller",
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
        try cluster.apply("""
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
            try cluster.kubectlOK(["-n", "cairn-system", "get", "profile", name, "-o",
                                   "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]) == "True"
        }
    }

    /// Runs the `cairn` CLI against this profile's repository.
    public func cairn(_ arguments: [String]) throws -> ChildProcess.Result {
        try ChildProcess.run([CairnBinary.path] + arguments + ["--repo", path],
                             environment: ["CAIRN_PASSWORD": password, "KUBECONFIG": cluster.kubeconfig])
    }

    /// Restore points of `namespace` in the repository (not the objects: the data).
    public func restorePointIDs(namespace: String) throws -> [String] {
        let r = try cairn(["restorepoints", namespace, "--json"])
        guard r.status == 0 else { throw ClusterError("cairn restorepoints failed: \(r.stderr)") }
        let data = Data(r.stdout.utf8)
        let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
        return list.compactMap { $0["id"] as? String }
    }

    public func remove() {
        _ = try? cluster.kubectl(["-n", "cairn-system", "delete", "profile", name, "--wait=false"])
        _ = try? cluster.kubectl(["-n", "cairn-system", "delete", "secret", "\(name)-password", "--wait=false"])
        try? FileManager.default.removeItem(atPath: path)
    }
}
