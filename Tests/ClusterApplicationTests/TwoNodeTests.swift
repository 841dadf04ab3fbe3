import Foundation
import Kube
import KubeTesting
import Testing

/// Kubernetes is the distributed engine: an application whose volumes live on two nodes is backed up by a
/// mover on each node at once, and restored so that each volume comes back on a node its workload can run
/// on. A cluster of its own (`local-cluster up --nodes 2`): its kubelets share the machine's fixed paths
/// with the suite's cluster, so it runs in the suite's second phase (`scripts/test`). Its state is kept
/// between runs like the suite's cluster's (a fresh one imports every image into both nodes: ~3 min).
@Suite("Two nodes: volumes on both, a mover on each", .serialized)
struct TwoNodeClusterTests {
    static let name = "nodes2"
    let cluster = LocalCluster.named(Self.name)
    let nodes = ["cairn-\(Self.name)-node", "cairn-\(Self.name)-node2"]
    let namespace = "spread"
    /// Deployment → the node it is pinned to.
    var workloads: [String: String] { ["left": nodes[0], "right": nodes[1]] }

    func manifest() -> String {
        workloads.sorted(by: { $0.key < $1.key }).map { name, node in
            """
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: data-\(name), namespace: \(namespace)}
            spec:
              accessModes: [ReadWriteOnce]
              storageClassName: csi-hostpath-local
              resources: {requests: {storage: 256Mi}}
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: \(name), namespace: \(namespace)}
            spec:
              replicas: 1
              strategy: {type: Recreate}
              selector: {matchLabels: {app: \(name)}}
              template:
                metadata: {labels: {app: \(name)}}
                spec:
                  nodeSelector: {kubernetes.io/hostname: \(node)}
                  terminationGracePeriodSeconds: 1
                  containers:
                  - name: main
                    image: cairn.local/busybox:1.35
                    imagePullPolicy: Never
                    command: [sh, -c, "[ -f /data/done ] || { mkdir -p /data/small; i=0; while [ $i -lt 300 ]; do head -c $((i * 37 + 1)) /dev/urandom > /data/small/f$i; i=$((i + 1)); done; head -c 48000000 /dev/urandom > /data/big; touch /data/done; }; exec sleep 36000"]
                    readinessProbe: {exec: {command: [test, -f, /data/done]}, periodSeconds: 1, timeoutSeconds: 10}
                    volumeMounts: [{name: data, mountPath: /data}]
                  volumes: [{name: data, persistentVolumeClaim: {claimName: data-\(name)}}]
            """
        }.joined(separator: "\n---\n")
    }

    func kubectlOK(_ arguments: String...) async throws -> String { try await cluster.kubectlOK(arguments) }

    /// The node a claim's volume was made on (the CSI driver's topology in the PersistentVolume).
    func volumeNode(_ claim: String) async throws -> String {
        let volume = try await kubectlOK("-n", namespace, "get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}")
        return try await kubectlOK("get", "pv", volume, "-o",
                             "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}")
    }

    /// Workload → (node of its pod, checksums of every file of its volume).
    func observe() async throws -> [String: (node: String, sums: String)] {
        var seen: [String: (node: String, sums: String)] = [:]
        for name in workloads.keys {
            try await cluster.waitUntil("deployment \(namespace)/\(name) to be available", timeout: 240) {
                try await cluster.kubectl(["-n", namespace, "get", "deployment", name, "-o", "jsonpath={.status.availableReplicas}"]).stdout == "1"
            }
            let pod = try await kubectlOK("-n", namespace, "get", "pods", "-l", "app=\(name)", "-o", "jsonpath={.items[0].metadata.name}")
            let node = try await kubectlOK("-n", namespace, "get", "pod", pod, "-o", "jsonpath={.spec.nodeName}")
            let sums = try await kubectlOK("-n", namespace, "exec", pod, "--", "sh", "-c", "cd /data && find . -type f | sort | xargs md5sum")
            seen[name] = (node, sums)
        }
        return seen
    }

    @Test("an application with a volume on each of two nodes: backed up by two movers at once, each on its volume's node; restored with each volume made on its workload's node again; every byte back")
    func volumesOnBothNodes() async throws {
        let started = Date()
        func step(_ text: String) { FileHandle.standardError.write(Data("[two nodes \(Int(Date().timeIntervalSince(started)))s] \(text)\n".utf8)) }
        try await cluster.up(nodes: 2)
        step("cluster up")
        let repository = try TemporaryDirectory()
        defer {
            repository.remove()
            try? cluster.downBlocking()
        }
        // What an interrupted run left.
        _ = try await kubectlOK("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=180s")
        let ready = try await kubectlOK("get", "nodes", "-o", #"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#)
        #expect(ready.split(separator: " ").sorted() == nodes.map { "\($0)=True" }.sorted())

        _ = try await kubectlOK("create", "namespace", namespace)
        try await cluster.apply(manifest())
        let before = try await observe()
        step("deployed")
        for (name, node) in workloads {
            #expect(before[name]?.node == node, "the scheduler placed \(name) on its node")
            #expect(try await volumeNode("data-\(name)") == node, "the volume of \(name) was made on its pod's node")
            #expect(before[name]?.sums.split(separator: "\n").count == 302)
        }

        func cairn(_ arguments: String...) async throws -> String {
            let result = try await cluster.cairn(arguments, repository: repository.path + "/repo", password: "two nodes")
            #expect(result.status == 0, "cairn \(arguments.joined(separator: " ")): \(result.stderr)")
            guard result.status == 0 else { throw ClusterError("cairn \(arguments.first ?? "") failed: \(result.stderr)") }
            return result.stdout
        }
        _ = try await cairn("repo", "init")
        let (backup, backupMovers) = try await cluster.sampleMovers(in: namespace) {
            try await cairn("app", "backup", namespace, "--volume-access", "mover", "--json")
        }
        step("backed up")
        let point = try #require(try JSONValue(parsing: Array(backup.utf8))["restorePoint"]?.string)
        #expect(backupMovers.most == 2, "both volumes read at once: \(backupMovers.most) movers at most")
        for (name, node) in workloads {
            #expect(backupMovers.nodes["data-\(name)"] == [node], "the mover of data-\(name) ran on \(node): \(backupMovers.nodes)")
        }

        _ = try await kubectlOK("delete", "namespace", namespace, "--wait=true", "--timeout=180s")
        try await cluster.waitUntil("namespace \(namespace) to be gone") {
            try await cluster.kubectl(["get", "namespace", namespace]).status != 0
        }
        let (_, restoreMovers) = try await cluster.sampleMovers(in: namespace) {
            try await cairn("app", "restore", String(point.prefix(12)), "--volume-access", "mover")
        }
        step("restored")
        // The claims wait for their first consumer: the movers are that consumer, placed like the workloads.
        #expect(restoreMovers.most == 2, "both volumes written at once: \(restoreMovers.most) movers at most")
        let after = try await observe()
        for (name, node) in workloads {
            #expect(restoreMovers.nodes["data-\(name)"] == [node], "the restore's mover of data-\(name) ran on \(node): \(restoreMovers.nodes)")
            #expect(try await volumeNode("data-\(name)") == node, "the restored volume of \(name) was made on its workload's node")
            #expect(after[name]?.node == node)
            #expect(after[name]?.sums == before[name]?.sums, "every file of \(name)'s volume is back")
        }

        _ = try await kubectlOK("delete", "namespace", namespace, "--wait=true", "--timeout=180s")
        try await cluster.down()
        let verify = try await cluster.verifyDown()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        step("down")
    }
}
