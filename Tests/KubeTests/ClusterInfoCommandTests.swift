import Foundation
import Kube
import KubeTesting
import StorageTesting
import Testing

@Suite("cairn cluster info against the local cluster")
struct ClusterInfoCommandTests {
    static let binary = CairnBinary.path

    @Test("reports server version, user, API size and Cairn's CRDs (missing, then partly installed); bad contexts are clear errors")
    func clusterInfo() async throws {
        let cluster = try LocalCluster.shared()
        let env = ["KUBECONFIG": cluster.kubeconfig]
        let text = try ChildProcess.run([Self.binary, "cluster", "info", "--context", "cairn-alice"], environment: env)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("v1.20.2"))
        #expect(text.stdout.contains("User:       alice"))
        #expect(text.stdout.contains("Namespace:  team-a"))

        let json = try ChildProcess.run([Self.binary, "cluster", "info", "--json"], environment: env)
        let info = try JSONValue(parsing: json.stdout)
        #expect(info["user"]?.string == "cairn-admin")
        #expect((info["groups"]?.int ?? 0) >= 15)
        #expect((info["resources"]?.int ?? 0) >= 40)
        let apiResources = try cluster.kubectlOK(["api-resources", "-o", "name"]).split(separator: "\n").count
        #expect(info["resources"]?.int == Int64(apiResources), "kubectl api-resources lists \(apiResources)")
        let installedBefore = info["cairnKindsInstalled"]?.array?.count ?? -1

        // Install one of Cairn's kinds (as a test stand-in for deploy/crds): reported as incomplete.
        let crd = """
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata: {name: profiles.cairn.dev}
            spec:
              group: cairn.dev
              scope: Namespaced
              names: {plural: profiles, singular: profile, kind: Profile}
              versions:
              - name: v1alpha1
                served: true
                storage: true
                schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
            """
        if installedBefore == 0 {
            try cluster.apply(crd)
            defer { _ = try? cluster.kubectl(["delete", "crd", "profiles.cairn.dev", "--wait=false"]) }
            try cluster.waitUntil("the CRD to be served", timeout: 60) {
                try ChildProcess.run([Self.binary, "cluster", "info"], environment: env).stdout.contains("missing")
            }
            let partial = try ChildProcess.run([Self.binary, "cluster", "info"], environment: env)
            #expect(partial.stdout.contains("Cairn CRDs: incomplete: missing Policy, BackupAction"), "\(partial.stdout)")
        }

        let badContext = try ChildProcess.run([Self.binary, "cluster", "info", "--context", "nope"], environment: env)
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
        let down = try ChildProcess.run([Self.binary, "cluster", "info", "--kubeconfig", unreachable.sub("config")])
        #expect(down.status == 1)
        #expect(down.stderr.contains("cannot reach https://127.0.0.1:1"), "\(down.stderr)")
        #expect(!down.stderr.contains("secret-token-value"))
    }
}
