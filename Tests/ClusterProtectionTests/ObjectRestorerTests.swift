import Foundation
import Kube
import KubeTesting
import Protection
import Testing

@Suite("Restoring objects into the local cluster", .serialized)
struct ObjectRestorerTests {
    @Test("clone into another namespace with transforms; skip changes nothing, update converges; a rejected object fails alone; dry-run touches nothing")
    func restore() async throws {
        let cluster = try LocalCluster.shared()
        let connection = try ClusterConnection.resolve(kubeconfig: cluster.kubeconfig, context: "cairn-admin")
        let tag = UUID().uuidString.prefix(6).lowercased()
        let (source, clone, broken, planned) = ("src-\(tag)", "clone-\(tag)", "broken-\(tag)", "plan-\(tag)")
        let group = "r\(tag).cairn.dev"
        defer {
            for ns in [source, clone, broken, planned] { _ = try? cluster.kubectlBlocking(["delete", "namespace", ns, "--wait=false"]) }
            _ = try? cluster.kubectlBlocking(["delete", "crd", "gadgets.\(group)", "--wait=false"])
        }
        try await cluster.apply("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: \(source)}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: \(source)}
            spec:
              selector: {app: web}
              ports: [{port: 80, targetPort: 8080}]
            """ + "\n---\n" + SampleApplication.objects(namespace: source) + "\n---\n" + SampleApplication.crd(group: group))
        try await KubeClient.with(connection) { client in
            try await eventually("the CRD to be established") { try await client.get(CustomResourceDefinition.self, "gadgets.\(group)").isEstablished }
            var gadget = KubeObject(apiVersion: "\(group)/v1", kind: "Gadget", name: "g1", namespace: source)
            gadget["spec"] = ["size": 3]
            _ = try await client.create(gadget)
            try await eventually("the pod to exist") { !(try await client.list(Pod.self, namespace: source)).isEmpty }
            let all = ApplicationCapture.Collector()
            _ = try await ApplicationCapture(client: client).capture(namespace: source, into: all)
            let captured = await all.ordered

            // Clone with a transform, into a namespace that does not exist yet (the Namespace object comes along).
            let transforms = try TransformSet(yaml: "replicas: 0")
            let outcomes = try await ObjectRestorer(client: client, options: .init(
                targetNamespace: clone, existing: .skip, transforms: transforms)).restore(captured, sourceNamespace: source)
            #expect(outcomes.filter(\.failed).isEmpty, "\(outcomes.filter(\.failed))")
            #expect(outcomes.first { $0.object == "CustomResourceDefinition gadgets.\(group)" }?.result == .skipped)
            #expect(outcomes.first { $0.object == "Deployment \(clone)/web" }?.transforms == ["replicas 0"])
            #expect(try await client.get(ConfigMap.self, "settings", namespace: clone).data == ["mode": "fast"])
            #expect(try await client.get(Secret.self, "db", namespace: clone).data["password"] == Array("s3cret".utf8))
            #expect(try await client.get(Deployment.self, "web", namespace: clone).replicas == 0)
            #expect(try await client.get(Deployment.self, "web", namespace: source).replicas == 1)
            let binding = try await client.get(APIResource(group: "rbac.authorization.k8s.io", version: "v1", name: "rolebindings",
                                                           kind: "RoleBinding", namespaced: true), "reader", namespace: clone)
            #expect(binding["subjects"]?.array?.first?["namespace"]?.string == clone)
            let service = try await client.get(APIResource(group: "", version: "v1", name: "services", kind: "Service",
                                                           namespaced: true), "web", namespace: clone)
            #expect(service["spec", "clusterIP"]?.string?.isEmpty == false)  // a new address, allocated by the server
            let gadgetType = try await client.resource(apiVersion: "\(group)/v1", kind: "Gadget")
            #expect(try await client.get(gadgetType, "g1", namespace: clone)["spec", "size"] == 3)

            // Again with skip: nothing changes. With update: a drifted object converges.
            let again = try await ObjectRestorer(client: client, options: .init(targetNamespace: clone, existing: .skip))
                .restore(captured, sourceNamespace: source)
            #expect(again.allSatisfy { $0.result == .skipped }, "\(again.filter { $0.result != .skipped })")
            _ = try await client.modify(ConfigMap.self, "settings", namespace: clone) { $0.data["mode"] = "drifted" }
            let converged = try await ObjectRestorer(client: client, options: .init(targetNamespace: clone, existing: .update))
                .restore(captured, sourceNamespace: source)
            #expect(converged.filter(\.failed).isEmpty, "\(converged.filter(\.failed))")
            #expect(converged.first { $0.object == "ConfigMap \(clone)/settings" }?.result == .updated)
            #expect(try await client.get(ConfigMap.self, "settings", namespace: clone).data["mode"] == "fast")

            // An object the API rejects fails alone, with the server's reason.
            let bad = try TransformSet(yaml: """
                transforms:
                  - name: invalid key
                    match: {kind: ConfigMap, name: settings}
                    patch: [{op: add, path: /data/bad~1key, value: x}]
                """)
            let partial = try await ObjectRestorer(client: client, options: .init(
                targetNamespace: broken, existing: .skip, transforms: bad)).restore(captured, sourceNamespace: source)
            let failed = partial.filter(\.failed)
            #expect(failed.map(\.object) == ["ConfigMap \(broken)/settings"])
            if case .failed(let reason) = failed.first?.result { #expect(reason.contains("a valid config key")) }
            #expect(try await client.get(Secret.self, "db", namespace: broken).data["password"] == Array("s3cret".utf8))

            // Dry-run: the plan in order, and nothing created.
            let plan = try await ObjectRestorer(client: client, options: .init(targetNamespace: planned, dryRun: true))
                .restore(captured, sourceNamespace: source)
            #expect(plan.allSatisfy { $0.result == .planned })
            #expect(plan.map(\.tier) == plan.map(\.tier).sorted())
            #expect(plan.first?.object == "CustomResourceDefinition gadgets.\(group)")
            let notCreated = await caught(KubeError.self) { _ = try await client.get(Namespace.self, planned) }
            #expect(notCreated?.code == .notFound)
        }
    }
}
