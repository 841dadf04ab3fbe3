import Foundation
import KubeTesting
import Testing

@Suite("The local cluster: real API server, kubelet, pods, volumes, RBAC")
struct LocalClusterTests {
    @Test("a busybox pod writes to a hostPath volume; kubectl logs, kubectl exec and the file on the host agree")
    func hostPathPod() async throws {
        let cluster = try LocalCluster.shared()
        try await cluster.withNamespace { ns in
            let dir = ns.volumesDirectory + "/scratch"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let token = UUID().uuidString
            try await ns.apply("""
                apiVersion: v1
                kind: Pod
                metadata: {name: writer}
                spec:
                  containers:
                  - name: main
                    image: cairn.local/busybox:1.35
                    imagePullPolicy: Never
                    command: [sh, -c, "echo \(token) > /data/token; cat /data/token; sleep 3600"]
                    volumeMounts: [{name: data, mountPath: /data}]
                  volumes:
                  - name: data
                    hostPath: {path: \(dir), type: Directory}
                  terminationGracePeriodSeconds: 1
                """)
            try await ns.waitForPodReady("writer")
            try await cluster.waitUntil("the pod's log", timeout: 30) {
                try await ns.kubectl(["logs", "writer"]).stdout.contains(token)
            }
            let exec = try await ns.kubectlOK(["exec", "writer", "--", "cat", "/data/token"])
            let host = try String(contentsOfFile: dir + "/token", encoding: .utf8)
            #expect(exec == token + "\n")
            #expect(host == token + "\n")
            let status = try await ns.kubectl(["exec", "writer", "--", "sh", "-c", "exit 7"])
            #expect(status.status == 7)
        }
    }

    @Test("a PostgreSQL StatefulSet on a hostPath volume takes rows through its ClusterIP and keeps them across pod deletion")
    func postgres() async throws {
        let cluster = try LocalCluster.shared()
        try await cluster.withNamespace { ns in
            try await ns.hostPathVolume(forClaim: "data-db-0", size: "1Gi")
            try await ns.apply("""
                apiVersion: v1
                kind: Secret
                metadata: {name: db}
                stringData: {password: s3cret-for-tests}
                """ + "\n---\n" + SampleApplication.database(namespace: ns.name))
            try await ns.waitForPodReady("db-0", timeout: 240)
            let ip = try await ns.kubectlOK(["get", "service", "db", "-o", "jsonpath={.spec.clusterIP}"])
            func psql(_ sql: String) async throws -> LocalCluster.CommandResult {
                try await cluster.execInNetwork(["psql", "-h", ip, "-U", "postgres", "-tA", "-c", sql],
                                          environment: ["PGPASSWORD": "s3cret-for-tests", "PGCONNECT_TIMEOUT": "5"])
            }
            try await cluster.waitUntil("PostgreSQL through the Service", timeout: 60) { try await psql("select 1").status == 0 }
            let create = try await psql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 1000) g")
            #expect(create.status == 0, "\(create.stderr)")
            let before = try await psql("select count(*), md5(string_agg(v, ',' order by id)) from t").stdout
            #expect(before.hasPrefix("1000|"))

            let uid = try await ns.kubectlOK(["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"])
            try await ns.kubectlOK(["delete", "pod", "db-0", "--wait=true"])
            try await cluster.waitUntil("a new db-0", timeout: 60) {
                let now = try await ns.kubectl(["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"]).stdout
                return !now.isEmpty && now != uid
            }
            try await ns.waitForPodReady("db-0", timeout: 240)
            try await cluster.waitUntil("PostgreSQL after the restart", timeout: 60) { try await psql("select 1").status == 0 }
            #expect(try await psql("select count(*), md5(string_agg(v, ',' order by id)) from t").stdout == before)
            let onHost = try FileManager.default.contentsOfDirectory(atPath: ns.volumesDirectory + "/data-db-0/pgdata")
            #expect(onHost.contains("PG_VERSION"))
        }
    }

    @Test("deleting a namespace finishes; a namespace-scoped user is Forbidden outside its namespace")
    func namespacesAndRBAC() async throws {
        let cluster = try LocalCluster.shared()
        // alice administers team-a only.
        let name = "cm-\(UUID().uuidString.prefix(6).lowercased())"
        try await cluster.kubectlOK(["-n", "team-a", "create", "configmap", name, "--from-literal=k=v"], as: .alice)
        try await cluster.kubectlOK(["-n", "team-a", "delete", "configmap", name], as: .alice)
        let inB = try await cluster.kubectl(["-n", "team-b", "get", "configmaps"], as: .alice)
        #expect(inB.status != 0)
        #expect(inB.stderr.contains("Forbidden") || inB.stderr.contains("forbidden"))
        #expect(inB.stderr.contains("alice"))
        let clusterScoped = try await cluster.kubectl(["get", "nodes"], as: .alice)
        #expect(clusterScoped.status != 0 && clusterScoped.stderr.contains("forbidden"))
        #expect(try await cluster.kubectl(["-n", "team-b", "get", "configmaps"], as: .bob).status == 0)
        #expect(try await cluster.kubectl(["-n", "team-a", "get", "pods"], as: .bob).status != 0)

        let ns = "gone-\(UUID().uuidString.prefix(6).lowercased())"
        try await cluster.kubectlOK(["create", "namespace", ns])
        try await cluster.kubectlOK(["-n", ns, "create", "configmap", "c", "--from-literal=a=b"])
        try await cluster.kubectlOK(["-n", ns, "run", "p", "--image=cairn.local/busybox:1.35", "--image-pull-policy=Never",
                               "--restart=Never", "--command", "--", "sleep", "3600"])
        try await cluster.kubectlOK(["delete", "namespace", ns, "--wait=true", "--timeout=120s"])
        #expect(try await cluster.kubectl(["get", "namespace", ns]).status != 0)
    }
}

@Suite("A second, independent cluster", .serialized)
struct SecondClusterTests {
    @Test("a second cluster runs beside the first, and down leaves no process, mount, bridge or chain behind")
    func secondClusterUpAndDown() async throws {
        let first = try LocalCluster.shared()
        let second = LocalCluster.named("second")
        try await second.up()
        do {
            try await second.kubectlOK(["-n", "default", "run", "hello", "--image=cairn.local/busybox:1.35",
                                  "--image-pull-policy=Never", "--restart=Never", "--command", "--", "echo", "hi"])
            try await second.waitUntil("the pod in the second cluster", timeout: 90) {
                try await second.kubectl(["-n", "default", "get", "pod", "hello", "-o", "jsonpath={.status.phase}"]).stdout
                    == "Succeeded"
            }
            // Independent: objects of one are not in the other.
            #expect(try await first.kubectl(["-n", "default", "get", "pod", "hello"]).status != 0)
        } catch {
            try? await second.down(purge: true)
            throw error
        }
        try await second.down(purge: true)
        let verify = try await second.verifyDown()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        // The first cluster is unaffected.
        #expect(try await first.kubectl(["get", "--raw", "/readyz"]).status == 0)
    }
}
