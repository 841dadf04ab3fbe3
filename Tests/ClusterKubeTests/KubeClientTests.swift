import Foundation
import Kube
import KubeTesting
import Testing

@Suite("The Kubernetes client against the local cluster", .serialized)
struct KubeClientTests {
    @Test("create, read, update and delete core kinds; kubectl reads back exactly what the client wrote")
    func crud() async throws {
        let cluster = try LocalCluster.shared()
        try await TestCluster.withNamespace { client, ns in
            // ConfigMap
            var cm = try await client.create(TestCluster.configMap("settings", ns, data: ["mode": "fast", "unicode": "ü\n"],
                                                                   labels: ["app": "demo"]))
            #expect(cm.uid != nil && cm.resourceVersion != nil)
            cm.data["extra"] = "1"
            cm = try await client.update(cm)
            #expect(try await client.get(ConfigMap.self, "settings", namespace: ns).data
                    == ["mode": "fast", "unicode": "ü\n", "extra": "1"])
            let duplicate = await TestCluster.kubeError {
                _ = try await client.create(TestCluster.configMap("settings", ns))
            }
            #expect(duplicate?.code == .alreadyExists)

            // Secret with binary data
            var secret = Secret(name: "creds", namespace: ns)
            let bytes: [UInt8] = (0...255).map(UInt8.init)
            secret.data = ["blob": bytes, "password": Array("s3cret".utf8)]
            secret = try await client.create(secret)
            #expect(try await client.get(Secret.self, "creds", namespace: ns).data["blob"] == bytes)

            // A claim and a Deployment through their typed views; unknown fields survive an update.
            var claim = PersistentVolumeClaim(name: "data", namespace: ns)
            claim.accessModes = ["ReadWriteOnce"]
            claim.requestedStorage = "1Gi"
            claim.storageClassName = "cairn-hostpath"
            claim = try await client.create(claim)
            #expect(claim.phase == "Pending")
            var deployment = Deployment(name: "web", namespace: ns)
            deployment.object["spec"] = [
                "replicas": 0,
                "selector": ["matchLabels": ["app": "web"]],
                "template": [
                    "metadata": ["labels": ["app": "web"]],
                    "spec": ["containers": [["name": "main", "image": "cairn.local/busybox:1.35",
                                             "command": ["sleep", "3600"]]]],
                ],
            ]
            deployment = try await client.create(deployment)
            #expect(deployment.object["spec", "strategy", "type"]?.string == "RollingUpdate")  // defaulted by the server
            // The deployment controller writes to the object too: read-modify-write retries on Conflict.
            deployment = try await client.modify(Deployment.self, "web", namespace: ns) { $0.replicas = 2 }
            #expect(deployment.replicas == 2)
            #expect(deployment.object["spec", "strategy", "type"]?.string == "RollingUpdate")
            #expect(deployment.images == ["cairn.local/busybox:1.35"])

            // kubectl sees the same objects.
            for (kind, name, object) in [("configmap", "settings", cm.object), ("secret", "creds", secret.object),
                                         ("deployment", "web", deployment.object)] {
                let text = try await cluster.kubectlOK(["-n", ns, "get", kind, name, "-o", "json"])
                let fromKubectl = try JSONValue(parsing: text)
                #expect(fromKubectl["data"] == object["data"], "\(kind)")
                #expect(fromKubectl["metadata", "labels"] == object["metadata", "labels"], "\(kind)")
                #expect(fromKubectl["metadata", "uid"] == object["metadata", "uid"], "\(kind)")
                if kind == "deployment" { #expect(fromKubectl["spec"] == object["spec"]) }
            }
            #expect(try await cluster.kubectlOK(["-n", ns, "get", "cm", "settings", "-o", "jsonpath={.data.unicode}"]) == "ü\n")

            // Delete; then it is NotFound.
            try await client.delete(ConfigMap.self, "settings", namespace: ns)
            let gone = await TestCluster.kubeError { _ = try await client.get(ConfigMap.self, "settings", namespace: ns) }
            #expect(gone?.code == .notFound)
            #expect(gone?.description.contains("settings") == true)
            try await client.delete(Deployment.self, "web", namespace: ns, options: DeleteOptions(propagationPolicy: .foreground))
        }
    }

    @Test("list pagination over 2,000 ConfigMaps; label and field selectors")
    func pagination() async throws {
        try await TestCluster.withNamespace { client, ns in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<2000 {
                    if i >= 32 { try await group.next() }
                    group.addTask {
                        _ = try await client.create(TestCluster.configMap(
                            String(format: "cm-%04d", i), ns, data: ["i": "\(i)"],
                            labels: ["parity": i % 2 == 0 ? "even" : "odd"]))
                    }
                }
                try await group.waitForAll()
            }
            var pages = 0
            var names: [String] = []
            for try await page in client.pages(ConfigMap.resource, namespace: ns, pageSize: 250) {
                pages += 1
                names += page.items.map(\.name)
                #expect(page.items.allSatisfy { $0.kind == "ConfigMap" && $0.apiVersion == "v1" })
            }
            #expect(pages >= 8)
            let expected = Set((0..<2000).map { String(format: "cm-%04d", $0) })
            let listed = names.filter { $0.hasPrefix("cm-") }
            #expect(listed.count == 2000)  // no duplicates across pages
            #expect(Set(listed) == expected, "missing: \(expected.subtracting(listed).sorted().prefix(5))")

            let even = try await client.listAll(ConfigMap.resource, namespace: ns,
                                                options: ListOptions(labelSelector: "parity=even"), pageSize: 300)
            #expect(even.items.count == 1000)
            let one = try await client.list(ConfigMap.self, namespace: ns,
                                            options: ListOptions(fieldSelector: "metadata.name=cm-0042"))
            #expect(one.map(\.name) == ["cm-0042"])
            let kubectlCount = try await LocalCluster.shared().kubectlOK(["-n", ns, "get", "cm", "-l", "parity", "-o", "name"])
                .split(separator: "\n").count
            #expect(kubectlCount == 2000)
        }
    }

    @Test("a stale update is a Conflict; delete preconditions are honoured")
    func optimisticConcurrency() async throws {
        try await TestCluster.withNamespace { client, ns in
            _ = try await client.create(TestCluster.configMap("c", ns, data: ["v": "0"]))
            var first = try await client.get(ConfigMap.self, "c", namespace: ns)
            var second = try await client.get(ConfigMap.self, "c", namespace: ns)
            first.data["v"] = "1"
            _ = try await client.update(first)
            second.data["v"] = "2"
            let conflict = await TestCluster.kubeError { _ = try await client.update(second) }
            #expect(conflict?.code == .conflict)
            #expect(conflict?.description.contains("read it again") == true)
            #expect(try await client.get(ConfigMap.self, "c", namespace: ns).data["v"] == "1")
            let stale = await TestCluster.kubeError {
                try await client.delete(ConfigMap.self, "c", namespace: ns,
                                        options: DeleteOptions(preconditionResourceVersion: second.resourceVersion))
            }
            #expect(stale?.code == .conflict)
            let current = try await client.get(ConfigMap.self, "c", namespace: ns)
            try await client.delete(ConfigMap.self, "c", namespace: ns,
                                    options: DeleteOptions(preconditionUID: current.uid))
        }
    }

    @Test("merge, JSON and strategic-merge patches; server-side apply with field ownership conflicts")
    func patches() async throws {
        try await TestCluster.withNamespace { client, ns in
            _ = try await client.create(TestCluster.configMap("p", ns, data: ["a": "1", "b": "2"]))
            var cm = try await client.patch(ConfigMap.resource, "p", namespace: ns,
                                            .merge(["metadata": ["labels": ["x": "y"]], "data": ["b": nil, "c": "3"]]))
            #expect(cm.labels == ["x": "y"])
            #expect(ConfigMap(cm).data == ["a": "1", "c": "3"])
            cm = try await client.patch(ConfigMap.resource, "p", namespace: ns, .json([
                ["op": "test", "path": "/data/a", "value": "1"],
                ["op": "replace", "path": "/data/a", "value": "10"],
            ]))
            #expect(ConfigMap(cm).data["a"] == "10")
            let failedTest = await TestCluster.kubeError {
                _ = try await client.patch(ConfigMap.resource, "p", namespace: ns,
                                           .json([["op": "test", "path": "/data/a", "value": "wrong"]]))
            }
            #expect(failedTest != nil && failedTest?.code != .transport)

            // Strategic merge: containers merge by name, so patching one keeps the other.
            var deployment = Deployment(name: "two", namespace: ns)
            deployment.object["spec"] = [
                "replicas": 0, "selector": ["matchLabels": ["app": "two"]],
                "template": ["metadata": ["labels": ["app": "two"]], "spec": ["containers": [
                    ["name": "a", "image": "cairn.local/busybox:1.35"],
                    ["name": "b", "image": "cairn.local/busybox:1.35"],
                ]]],
            ]
            _ = try await client.create(deployment)
            let patched = try await client.patch(Deployment.resource, "two", namespace: ns, .strategicMerge([
                "spec": ["template": ["spec": ["containers": [["name": "b", "env": [["name": "MODE", "value": "x"]]]]]]],
            ]))
            let containers = patched["spec", "template", "spec", "containers"]?.array ?? []
            #expect(containers.compactMap { $0["name"]?.string } == ["a", "b"])
            #expect(containers.last?["env"] == [["name": "MODE", "value": "x"]])

            // Server-side apply: create, converge, conflict with another manager, force.
            var intent = KubeObject(apiVersion: "v1", kind: "ConfigMap", name: "applied", namespace: ns)
            intent["data"] = ["owner": "cairn"]
            let created = try await client.apply(intent, fieldManager: "cairn")
            #expect(created["data", "owner"]?.string == "cairn")
            let again = try await client.apply(intent, fieldManager: "cairn")
            #expect(again.resourceVersion == created.resourceVersion)  // no change, no write
            var other = intent
            other["data"] = ["owner": "someone-else"]
            let conflict = await TestCluster.kubeError { _ = try await client.apply(other, fieldManager: "other") }
            #expect(conflict?.code == .conflict)
            #expect(conflict?.message.contains("cairn") == true)
            let forced = try await client.apply(other, fieldManager: "other", force: true)
            #expect(forced["data", "owner"]?.string == "someone-else")
            let managers = (forced["metadata", "managedFields"]?.array ?? []).compactMap { $0["manager"]?.string }
            #expect(managers.contains("other"))
        }
    }

    @Test("the server's refusals are typed errors: Invalid with field causes, Forbidden naming the user, Unauthorized")
    func refusals() async throws {
        try await TestCluster.withNamespace { client, ns in
            let invalid = await TestCluster.kubeError { _ = try await client.create(TestCluster.configMap("Bad_Name", ns)) }
            #expect(invalid?.code == .invalid)
            #expect(invalid?.causes.contains { $0.field == "metadata.name" } == true)
        }
        try await TestCluster.withClient("cairn-alice") { alice in
            // alice administers team-a only.
            _ = try await alice.list(ConfigMap.self, namespace: "team-a")
            let forbidden = await TestCluster.kubeError { _ = try await alice.list(ConfigMap.self, namespace: "team-b") }
            #expect(forbidden?.code == .forbidden)
            #expect(forbidden?.description.contains("\"alice\"") == true)
            #expect(forbidden?.description.contains("team-b") == true)
            let clusterWide = await TestCluster.kubeError { _ = try await alice.list(Namespace.self) }
            #expect(clusterWide?.code == .forbidden)
        }
        var wrong = try TestCluster.connection()
        wrong.auth = .bearer("not-a-valid-token")
        try await KubeClient.with(wrong) { client in
            let error = await TestCluster.kubeError { _ = try await client.list(ConfigMap.self, namespace: "default") }
            #expect(error?.code == .unauthorized)
            #expect(error?.description.contains("not-a-valid-token") == false)
        }
    }

    @Test("a CRD registered at runtime is found through discovery and its custom resources are served")
    func customResources() async throws {
        let group = "t\(UUID().uuidString.prefix(6).lowercased()).cairn.dev"
        try await TestCluster.withNamespace { client, ns in
            _ = try await client.discovery.all(using: client)  // cached before the CRD exists
            var crd = CustomResourceDefinition(name: "widgets.\(group)")
            crd.object["spec"] = [
                "group": .string(group), "scope": "Namespaced",
                "names": ["plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]],
                "versions": [[
                    "name": "v1", "served": true, "storage": true,
                    "schema": ["openAPIV3Schema": ["type": "object", "properties": [
                        "spec": ["type": "object", "properties": ["size": ["type": "integer"]]],
                    ]]],
                ]],
            ]
            _ = try await client.create(crd)
            defer { Task { try? await TestCluster.withClient { try await $0.delete(CustomResourceDefinition.self, "widgets.\(group)") } } }
            try await TestCluster.waitUntil("the CRD to be established", timeout: .seconds(60)) {
                try await client.get(CustomResourceDefinition.self, "widgets.\(group)").isEstablished
            }
            let resource = try await client.resource(apiVersion: "\(group)/v1", kind: "Widget")
            #expect(resource.namespaced && resource.name == "widgets")
            #expect(try await client.resource(named: "wdg").kind == "Widget")
            var widget = KubeObject(apiVersion: "\(group)/v1", kind: "Widget", name: "w1", namespace: ns)
            widget["spec"] = ["size": 3, "note": "unknown fields are pruned by the schema"]
            let created = try await client.create(widget)
            #expect(created["spec", "size"] == .int(3))
            #expect(created["spec", "note"] == nil)
            let listed = try await client.listAll(resource, namespace: ns)
            #expect(listed.items.map(\.name) == ["w1"])
            let invalid = await TestCluster.kubeError {
                var bad = KubeObject(apiVersion: "\(group)/v1", kind: "Widget", name: "w2", namespace: ns)
                bad["spec"] = ["size": "three"]
                _ = try await client.create(bad)
            }
            #expect(invalid?.code == .invalid)
            let unknown = await TestCluster.kubeError { _ = try await client.resource(apiVersion: "\(group)/v1", kind: "Gadget") }
            #expect(unknown?.code == .unknownResource)
        }
    }

    @Test("a client certificate signed by the cluster CA authenticates; its groups decide what it may do")
    func clientCertificate() async throws {
        let cluster = try LocalCluster.shared()
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pki = cluster.stateDirectory + "/pki"
        for command in [
            ["openssl", "genrsa", "-out", dir.sub("carol.key"), "2048"],
            ["openssl", "req", "-new", "-key", dir.sub("carol.key"), "-subj", "/O=cairn:team-a/CN=carol", "-out", dir.sub("carol.csr")],
            ["openssl", "x509", "-req", "-in", dir.sub("carol.csr"), "-CA", pki + "/ca.crt", "-CAkey", pki + "/ca.key",
             "-CAcreateserial", "-CAserial", dir.sub("ca.srl"), "-days", "1", "-out", dir.sub("carol.crt")],
        ] {
            let result = try await cluster.execInNetwork(command)
            #expect(result.status == 0, "\(result.stderr)")
        }
        let base = try TestCluster.connection()
        let kubeconfig = """
            clusters: [{name: c, cluster: {server: "\(base.server)", certificate-authority: \(pki)/ca.crt}}]
            users: [{name: carol, user: {client-certificate: carol.crt, client-key: carol.key}}]
            contexts: [{name: carol, context: {cluster: c, user: carol, namespace: team-a}}]
            current-context: carol
            """
        try kubeconfig.write(toFile: dir.sub("config"), atomically: true, encoding: .utf8)
        let connection = try ClusterConnection.resolve(kubeconfig: dir.sub("config"))
        try await KubeClient.with(connection) { carol in
            _ = try await carol.list(ConfigMap.self, namespace: "team-a")
            let forbidden = await TestCluster.kubeError { _ = try await carol.list(ConfigMap.self, namespace: "team-b") }
            #expect(forbidden?.code == .forbidden)
            #expect(forbidden?.description.contains("\"carol\"") == true)
        }
        // A server certificate from another CA is refused.
        var untrusted = connection
        untrusted.certificateAuthorityPEM = Array(try String(contentsOfFile: dir.sub("carol.crt"), encoding: .utf8).utf8)
        try await KubeClient.with(untrusted) { client in
            let error = await TestCluster.kubeError { _ = try await client.serverVersion() }
            #expect(error?.code == .tls)
            #expect(error?.description.contains("certificate is not trusted") == true)
        }
    }

    @Test("a service account's in-cluster configuration works, and a rotated token file is read again")
    func serviceAccountTokenRotation() async throws {
        let cluster = try LocalCluster.shared()
        try await TestCluster.withNamespace { client, ns in
            _ = try await client.create(KubeObject(apiVersion: "v1", kind: "ServiceAccount", name: "robot", namespace: ns))
            var binding = KubeObject(apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", name: "robot-view", namespace: ns)
            binding["roleRef"] = ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"]
            binding["subjects"] = [["kind": "ServiceAccount", "name": "robot", "namespace": .string(ns)]]
            _ = try await client.create(binding)
            var token = ""
            try await TestCluster.waitUntil("the service account's token secret", timeout: .seconds(60)) {
                let secrets = try await client.list(Secret.self, namespace: ns)
                guard let secret = secrets.first(where: {
                    $0.type == "kubernetes.io/service-account-token" && $0.annotations["kubernetes.io/service-account.name"] == "robot"
                }), let bytes = secret.data["token"] else { return false }
                token = String(decoding: bytes, as: UTF8.self)
                return true
            }
            let dir = try TemporaryDirectory()
            defer { dir.remove() }
            try "not-yet-a-token".write(toFile: dir.sub("token"), atomically: true, encoding: .utf8)
            try FileManager.default.copyItem(atPath: cluster.stateDirectory + "/pki/ca.crt", toPath: dir.sub("ca.crt"))
            try ns.write(toFile: dir.sub("namespace"), atomically: true, encoding: .utf8)
            let base = try TestCluster.connection()
            let connection = try ClusterConnection.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": base.host, "KUBERNETES_SERVICE_PORT": "\(base.port)"],
                directory: dir.path)
            #expect(connection.namespace == ns)
            try await KubeClient.with(connection) { robot in
                let before = await TestCluster.kubeError { _ = try await robot.list(ConfigMap.self, namespace: ns) }
                #expect(before?.code == .unauthorized)
                // The kubelet rotates the file in place; the next request reads it again after the 401.
                try token.write(toFile: dir.sub("token"), atomically: true, encoding: .utf8)
                _ = try await robot.list(ConfigMap.self, namespace: ns)
                let forbidden = await TestCluster.kubeError { _ = try await robot.list(ConfigMap.self, namespace: "default") }
                #expect(forbidden?.description.contains("system:serviceaccount:\(ns):robot") == true)
            }
        }
    }

    @Test("requests are retried across dropped connections when idempotent; a create whose answer was lost is not repeated")
    func retriesThroughFaults() async throws {
        let base = try TestCluster.connection()
        let proxy = try TCPProxy(targetHost: base.host, targetPort: base.port)
        defer { proxy.stop() }
        var connection = base
        connection.host = "127.0.0.1"
        connection.port = proxy.port
        try await TestCluster.withNamespace { admin, ns in
            try await KubeClient.with(connection) { client in
                _ = try await client.serverVersion()
                proxy.refuse = true
                proxy.dropAll()
                // The network comes back once the client has met it down (not after a fixed time: on a
                // loaded machine the client's first retry may come later than any fixed delay).
                let flip = Task {
                    let deadline = ContinuousClock.now + .seconds(30)
                    while proxy.refusedConnections == 0 && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    try await Task.sleep(for: .milliseconds(200))
                    proxy.refuse = false
                }
                // A GET is retried until the network is back.
                _ = try await client.list(ConfigMap.self, namespace: ns)
                try await flip.value
                #expect(proxy.refusedConnections > 0)
                // A POST whose answer is lost may have been executed: it is not sent again.
                let before = proxy.connectionsAccepted
                proxy.loseNextResponse()
                let error = await TestCluster.kubeError { _ = try await client.create(TestCluster.configMap("once", ns)) }
                #expect(error?.code == .transport)
                #expect(proxy.connectionsAccepted == before)
                // The same loss on a GET is retried on a new connection.
                proxy.loseNextResponse()
                #expect(try await client.get(ConfigMap.self, "once", namespace: ns).name == "once")
                #expect(proxy.connectionsAccepted > before)
            }
            // The create was executed exactly once.
            let created = try await admin.list(ConfigMap.self, namespace: ns).filter { $0.name == "once" }
            #expect(created.count == 1)
        }
    }
}
