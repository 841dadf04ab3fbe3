import Foundation
import Kube
import KubeTesting
import Testing

@Suite("cairn cluster info against the local cluster")
struct ClusterInfoCommandTests {
    static let binary = CairnBinary.path

    @Test("reports server version, user, API size and Cairn's CRDs as installed from deploy/; bad contexts are clear errors")
    func clusterInfo() async throws {
        let cluster = try LocalCluster.shared()
        let env = ["KUBECONFIG": cluster.kubeconfig]
        let text = try await ChildProcess.run([Self.binary, "cluster", "info", "--context", "cairn-alice"], environment: env)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("v1.20.2"))
        #expect(text.stdout.contains("User:       alice"))
        #expect(text.stdout.contains("Namespace:  team-a"))

        // Other tests register and remove CRDs meanwhile: Cairn's count must be kubectl's from just before or
        // just after it (tried again while they keep changing).
        func apiResources() async throws -> Int64 {
            Int64(try await cluster.kubectlOK(["api-resources", "-o", "name"]).split(separator: "\n").count)
        }
        var info = JSONValue.null
        var counts: [String] = []
        var agreed = false
        for _ in 0..<5 where !agreed {
            let before = try await apiResources()
            let json = try await ChildProcess.run([Self.binary, "cluster", "info", "--json"], environment: env)
            info = try JSONValue(parsing: json.stdout)
            let after = try await apiResources()
            let reported = info["resources"]?.int ?? 0
            counts.append("kubectl \(before), cairn \(reported), kubectl \(after)")
            agreed = reported == before || reported == after
        }
        #expect(info["user"]?.string == "cairn-admin")
        #expect((info["groups"]?.int ?? 0) >= 15)
        #expect((info["resources"]?.int ?? 0) >= 40)
        #expect(agreed, "API sizes: \(counts)")

        // Installed from deploy/ (as the controller tests do; idempotent): reported complete.
        try await CairnInstallation.ensure(cluster)
        let installed = try await ChildProcess.run([Self.binary, "cluster", "info"], environment: env)
        #expect(installed.stdout.contains("Cairn CRDs: installed (Profile, Policy, BackupAction, RestoreAction, RestorePoint, TransformSet, Blueprint, ExportAction, ImportAction)"),
                "\(installed.stdout)")

        let badContext = try await ChildProcess.run([Self.binary, "cluster", "info", "--context", "nope"], environment: env)
        #expect(badContext.status == 64)
        #expect(badContext.stderr.contains("context 'nope' is not in the kubeconfig"))
        let unreachable = try TemporaryDirectory()
        defer { unreachable.remove() }
        try """
            clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
            users: [{name: u, user: {token: secret-token-value}}]
            contexts: [{name: x, context: {cluster: c, user: u}}]
            current-context: x
            """.write(toFile: unreachable.sub("config"), atomically: true, encoding: .utf8)
        let down = try await ChildProcess.run([Self.binary, "cluster", "info", "--kubeconfig", unreachable.sub("config")])
        #expect(down.status == 1)
        #expect(down.stderr.contains("cannot reach https://127.0.0.1:1"), "\(down.stderr)")
        #expect(!down.stderr.contains("secret-token-value"))
    }
}
