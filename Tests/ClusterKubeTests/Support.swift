import Foundation
import Kube
import KubeTesting
import Testing

/// The local cluster as the Kubernetes client sees it.
enum TestCluster {
    static func connection(_ context: String = "cairn-admin") throws -> ClusterConnection {
        try ClusterConnection.resolve(kubeconfig: try LocalCluster.shared().kubeconfig, context: context)
    }

    static func withClient<T: Sendable>(_ context: String = "cairn-admin",
                                        options: KubeClient.Options = KubeClient.Options(),
                                        _ body: (KubeClient) async throws -> T) async throws -> T {
        try await KubeClient.with(try connection(context), options: options, body)
    }

    /// A fresh namespace for one test, deleted afterwards (without waiting for it to be gone).
    static func withNamespace<T: Sendable>(_ prefix: String = "k", _ body: (KubeClient, String) async throws -> T)
        async throws -> T
    {
        try await withClient { client in
            let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
            _ = try await client.create(Namespace(name: name))
            do {
                let result = try await body(client, name)
                _ = try? await client.delete(Namespace.self, name)
                return result
            } catch {
                _ = try? await client.delete(Namespace.self, name)
                throw error
            }
        }
    }

    /// Polls `condition` until it holds.
    static func waitUntil(_ what: String, timeout: Duration = .seconds(120),
                          _ condition: () async throws -> Bool) async throws {
        try await eventually(what, timeout: timeout, condition)
    }

    static func configMap(_ name: String, _ namespace: String, data: [String: String] = [:],
                          labels: [String: String] = [:]) -> ConfigMap {
        var cm = ConfigMap(name: name, namespace: namespace)
        cm.data = data
        cm.labels = labels
        return cm
    }

    /// The `KubeError` that `body` throws, if any.
    static func kubeError(_ body: () async throws -> Void) async -> KubeError? {
        await caught(KubeError.self, body)
    }
}
