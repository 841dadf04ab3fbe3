import Foundation
import Kube
import KubeTesting
import Protection
import Testing

@Suite("Capturing an application from the local cluster", .serialized)
struct ApplicationCaptureTests {
    @Test("every namespaced type through discovery, custom resources included, regenerated objects left out, cluster-scoped dependencies added")
    func capture() async throws {
        let cluster = try LocalCluster.shared()
        let connection = try ClusterConnection.resolve(kubeconfig: cluster.kubeconfig, context: "cairn-admin")
        let tag = UUID().uuidString.prefix(6).lowercased()
        let ns = "cap-\(tag)"
        let group = "g\(tag).cairn.dev"
        try await KubeClient.with(connection) { client in
            _ = try await client.create(Namespace(name: ns))
            defer {
                _ = try? cluster.kubectlBlocking(["delete", "namespace", ns, "--wait=false"])
                for object in ["storageclass/cairn-\(tag)", "pv/cairn-\(tag)", "crd/gadgets.\(group)",
                               "clusterrole/cairn-\(tag)", "clusterrolebinding/cairn-\(tag)"] {
                    _ = try? cluster.kubectlBlocking(["delete", object, "--wait=false"])
                }
            }
            let manifests = """
                apiVersion: storage.k8s.io/v1
                kind: StorageClass
                metadata: {name: cairn-\(tag)}
                provisioner: kubernetes.io/no-provisioner
                ---
                apiVersion: v1
                kind: PersistentVolume
                metadata: {name: cairn-\(tag)}
                spec:
                  capacity: {storage: 1Gi}
                  accessModes: [ReadWriteOnce]
                  storageClassName: cairn-\(tag)
                  claimRef: {namespace: \(ns), name: data}
                  hostPath: {path: /tmp/cairn-capture-\(tag), type: DirectoryOrCreate}
                ---
                apiVersion: v1
                kind: PersistentVolumeClaim
                metadata: {name: data, namespace: \(ns), labels: {app: web}}
                spec:
                  accessModes: [ReadWriteOnce]
                  storageClassName: cairn-\(tag)
                  resources: {requests: {storage: 1Gi}}
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRole
                metadata: {name: cairn-\(tag)}
                rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRoleBinding
                metadata: {name: cairn-\(tag)}
                roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cairn-\(tag)}
                subjects: [{kind: ServiceAccount, name: app, namespace: \(ns)}]
                """
            try await cluster.apply(manifests + "\n---\n" + SampleApplication.objects(namespace: ns) + "\n---\n"
                              + SampleApplication.crd(group: group))
            var seen = ""
            try await eventually("the claim to bind and the pod to exist", explain: {
                seen + "\n" + ((try? await cluster.kubectl(["-n", ns, "get", "pvc,pods,events", "-o", "wide"]).stdout) ?? "")
                    + ((try? await cluster.kubectl(["get", "pv/cairn-\(tag)", "crd/gadgets.\(group)", "-o", "yaml"]).stdout) ?? "")
            }) {
                let claim = try await client.get(PersistentVolumeClaim.self, "data", namespace: ns)
                let pods = try await client.list(Pod.self, namespace: ns)
                let crd = try await client.get(CustomResourceDefinition.self, "gadgets.\(group)")
                seen = "claim \(claim.phase ?? "-"), \(pods.count) pods, CRD established \(crd.isEstablished)"
                return claim.phase == "Bound" && !pods.isEmpty && crd.isEstablished
            }
            var gadget = KubeObject(apiVersion: "\(group)/v1", kind: "Gadget", name: "g1", namespace: ns)
            gadget["spec"] = ["size": 3]
            _ = try await client.create(gadget)

            let all = ApplicationCapture.Collector()
            let result = try await ApplicationCapture(client: client).capture(namespace: ns, into: all)
            let objects = await all.ordered
            let names = Set(objects.map { "\($0.kind)/\($0.name)" })
            for expected in ["ConfigMap/settings", "Secret/db", "ServiceAccount/app", "Role/reader", "RoleBinding/reader",
                             "Deployment/web", "PersistentVolumeClaim/data", "PersistentVolume/cairn-\(tag)",
                             "StorageClass/cairn-\(tag)", "CustomResourceDefinition/gadgets.\(group)", "Gadget/g1",
                             "ClusterRole/cairn-\(tag)", "ClusterRoleBinding/cairn-\(tag)"] {
                #expect(names.contains(expected), "\(expected) not captured")
            }
            #expect(!names.contains("ConfigMap/kube-root-ca.crt"))
            #expect(!objects.contains { $0.kind == "Pod" || $0.kind == "ReplicaSet" || $0.kind == "Event" })
            #expect(!objects.contains { Secret($0).type == "kubernetes.io/service-account-token" })
            #expect(result.skipped.contains { $0.object.hasPrefix("ReplicaSet \(ns)/web-") && $0.reason == "recreated by its Deployment web" })
            #expect(result.skipped.contains { $0.object == "ConfigMap \(ns)/kube-root-ca.crt" })
            #expect(objects.count == Set(objects.compactMap(\.uid)).count)  // each object once
            #expect(result.count == objects.count && result.byKind["ConfigMap"] == objects.filter { $0.kind == "ConfigMap" }.count)
            // Restore order: the CRD first, the Gadget last.
            #expect(objects.first?.kind == "CustomResourceDefinition")
            #expect(objects.last?.kind == "Gadget")
            // Kept in memory for planning: claims, volumes, classes, workloads, CRDs, the Namespace — not the rest.
            #expect(result.objects.allSatisfy(ApplicationCapture.planned))
            #expect(Set(result.objects.map { "\($0.kind)/\($0.name)" }).isSuperset(of: [
                "PersistentVolumeClaim/data", "PersistentVolume/cairn-\(tag)", "Deployment/web", "CustomResourceDefinition/gadgets.\(group)"]))
            #expect(result.resourceTypes > 20)

            let web = ApplicationCapture.Collector()
            _ = try await ApplicationCapture(client: client, labelSelector: "app=web").capture(namespace: ns, into: web)
            let webNames = Set(await web.objects.filter { $0.namespace == ns }.map { "\($0.kind)/\($0.name)" })
            #expect(webNames == ["ConfigMap/settings", "Deployment/web", "PersistentVolumeClaim/data"], "\(webNames)")
            #expect(await web.objects.contains { $0.kind == "PersistentVolume" })
        }
        // A user who may not read everything gets what they may read, and warnings for the rest.
        try await KubeClient.with(try ClusterConnection.resolve(kubeconfig: cluster.kubeconfig, context: "cairn-alice")) { alice in
            let result = try await ApplicationCapture(client: alice).capture(namespace: "team-a", into: ApplicationCapture.Collector())
            #expect(result.warnings.contains { $0.contains("custom resource definitions not captured") })
        }
    }
}
