import Foundation
import Kube
import KubeTesting
import Protection
import Testing

/// Backups from CSI volume snapshots on the local cluster's real CSI stack (the host-path driver, the external
/// snapshotter and provisioner, the snapshot controller; StorageClass `csi-hostpath`), as a user runs them with
/// `cairn app backup`: the application keeps running and writing, and what goes wrong leaves nothing behind.
@Suite("CSI volume snapshots on a real cluster", .serialized)
struct VolumeSnapshotClusterTests {
    let cluster: LocalCluster
    let tag = UUID().uuidString.prefix(6).lowercased()
    let repository: TemporaryDirectory
    static let shipped = LocalCluster.repositoryRootPath + "/deploy/blueprints"

    init() throws {
        cluster = try LocalCluster.shared()
        repository = try TemporaryDirectory()
    }

    func cairn(_ arguments: [String]) async throws -> ChildProcess.Result {
        try await cluster.cairn(arguments, repository: repository.path + "/repo", password: "snapshot password")
    }

    func sql(_ namespace: String, _ statement: String) async throws -> String {
        let result = try await cluster.kubectl(["-n", namespace, "exec", "db-0", "-c", "postgres", "--", "psql", "-U", "postgres", "-XtA", "-c", statement])
        guard result.status == 0 else { throw ClusterError("\(statement) in \(namespace): \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func jsonpath(_ ns: String, _ args: [String], _ path: String) async throws -> String {
        try await cluster.kubectlOK(["-n", ns, "get"] + args + ["-o", "jsonpath=\(path)"])
    }

    /// What a backup may leave in `ns`: VolumeSnapshots, temporary claims and mover pods of Cairn's, and the
    /// VolumeSnapshotContents of snapshots of the namespace.
    func leftovers(_ ns: String) async throws -> [String] {
        let made = try await cluster.kubectlOK(["-n", ns, "get", "volumesnapshots,persistentvolumeclaims,pods", "-l", "app.kubernetes.io/managed-by=cairn",
                                          "-o", "name"])
        let contents = try await cluster.kubectlOK(["get", "volumesnapshotcontents", "-o",
                                              "jsonpath={range .items[?(@.spec.volumeSnapshotRef.namespace==\"\(ns)\")]}{.metadata.name}{\"\\n\"}{end}"])
        return (made + "\n" + contents).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// A `csi-hostpath` claim `files` of `size` and a Deployment `files` that mounts it at /data and runs `command`.
    static func files(_ ns: String, size: String, command: String) -> String {
        """
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: files, namespace: \(ns)}
        spec: {accessModes: [ReadWriteOnce], storageClassName: csi-hostpath, resources: {requests: {storage: \(size)}}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: files, namespace: \(ns)}
        spec:
          selector: {matchLabels: {app: files}}
          template:
            metadata: {labels: {app: files}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: main
                image: cairn.local/busybox:1.35
                imagePullPolicy: Never
                command: [sh, -c, '\(command)']
                volumeMounts: [{name: data, mountPath: /data}]
              volumes: [{name: data, persistentVolumeClaim: {claimName: files}}]
        """
    }

    func cleanUp(_ namespaces: [String]) {
        for ns in namespaces { TestNamespace(cluster: cluster, name: ns).cleanUpLater() }
        repository.remove()
    }

    @Test("PostgreSQL on CSI claims, written to throughout, is backed up from snapshots of all its claims taken together: no write fails, no pod restarts; the restored server recovers and its indexes check; a claim without a VolumeSnapshotClass is read live with a warning; nothing is left behind")
    func writtenThroughout() async throws {
        let ns = "snap-\(tag)"
        let clone = "snap-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await cluster.kubectlOK(["create", "namespace", ns])
        let legacyPath = try await TestNamespace(cluster: cluster, name: ns).hostPathVolume(forClaim: "legacy", size: "64Mi")
        try "kept on a static volume\n".write(toFile: legacyPath + "/note.txt", atomically: true, encoding: .utf8)
        try await cluster.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: db, namespace: \(ns)}
            stringData: {password: s3cret}
            ---
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: legacy, namespace: \(ns)}
            spec: {accessModes: [ReadWriteOnce], storageClassName: cairn-hostpath, resources: {requests: {storage: 64Mi}}}
            ---
            """ + "\n" + Self.files(ns, size: "64Mi", command: "while :; do date >> /data/log; sleep 0.2; done")
            + "\n---\n" + SampleApplication.database(namespace: ns, storageClass: "csi-hostpath"))
        try await cluster.kubectlOK(["-n", ns, "annotate", "statefulset", "db", "cairn.dev/blueprint=postgresql-physical"])
        try await cluster.waitUntil("PostgreSQL of \(ns) on a csi-hostpath claim", timeout: 240) { (try? await sql(ns, "select 1")) == "1" }
        #expect(try await jsonpath(ns, ["pvc", "data-db-0"], "{.spec.volumeName}").hasPrefix("pvc-"), "provisioned by the CSI driver")
        _ = try await sql(ns, "create table t (id bigserial primary key, v text); insert into t (v) select md5(g::text) from generate_series(1, 100000) g")
        // The writer: one session that stops at its first failed statement (its pod then fails).
        try await cluster.apply(SampleApplication.writer(namespace: ns, script: """
            while :; do echo "insert into t (v) select md5(random()::text) from generate_series(1, 500);"; sleep 0.05; done | psql -h "$DB_SERVICE_HOST" -U postgres -Xq -v ON_ERROR_STOP=1
            """, env: "[{name: PGPASSWORD, value: s3cret}]"))
        try await cluster.waitUntil("the writer to write", timeout: 120) {
            guard try await jsonpath(ns, ["pod", "writer"], "{.status.phase}") == "Running" else { return false }
            return (Int(try await sql(ns, "select count(*) from t")) ?? 0) > 101_000
        }
        let dbPod = try await jsonpath(ns, ["pod", "db-0"], "{.metadata.uid}")
        let before = Int(try await sql(ns, "select count(*) from t")) ?? 0

        let init_ = try await cairn(["repo", "init"])
        #expect(init_.status == 0, "\(init_.stderr)")
        let run = try await cairn(["app", "backup", ns, "--blueprint", Self.shipped + "/postgresql-physical.yaml",
                             "--volume-access", "snapshot", "--json"])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        let backup = try JSONValue(parsing: Data(run.stdout.utf8))
        let methods = Dictionary((backup["volumes"]?.array ?? []).compactMap { v in v["claim"]?.string.map { ($0, v["method"]?.string ?? "") } },
                                 uniquingKeysWith: { a, _ in a })
        #expect(methods == ["data-db-0": "snapshot", "files": "snapshot", "legacy": "host"], "\(methods)")
        #expect((backup["warnings"]?.array ?? []).contains { $0.string?.contains("claim legacy was read live, not from a snapshot") == true },
                "\(backup["warnings"] ?? [])")
        let snapshots = backup["volumeSnapshots"]
        #expect(Set((snapshots?["snapshots"]?.array ?? []).compactMap { $0["claim"]?.string }) == ["data-db-0", "files"], "\(snapshots ?? [:])")
        let spread = snapshots?["spreadSeconds"]?.double ?? -1
        let take = snapshots?["takeSeconds"]?.double ?? -1
        #expect(spread >= 0 && spread <= take + 1, "both snapshots were taken while the fence held: spread \(spread) s, ready after \(take) s")
        let phases = backup["phases"]?.array ?? []
        #expect(phases.contains { $0["phase"]?.string == "backup-mode (end)" && $0["result"]?.string == "succeeded" }, "\(phases)")
        print("snapshots of \(ns): spread \(spread) s, ready after \(take) s; volumes \(backup["volumes"] ?? [])")

        // The application ran on: the writer never failed, the server never restarted.
        #expect(try await jsonpath(ns, ["pod", "writer"], "{.status.phase}") == "Running", "no write failed")
        #expect(try await jsonpath(ns, ["pod", "db-0"], "{.metadata.uid} {.status.containerStatuses[0].restartCount}") == "\(dbPod) 0")
        let after = Int(try await sql(ns, "select count(*) from t")) ?? 0
        #expect(after > before, "rows were written during the backup: \(before) → \(after)")
        try await cluster.waitUntil("the snapshots' contents to be deleted", timeout: 60) { try await leftovers(ns).isEmpty }
        _ = try? await cluster.kubectl(["-n", ns, "delete", "pod", "writer", "--wait=false"])

        // The static hostPath claim moves to CSI storage on the way: provisioned, not a hand-made volume.
        let transforms = repository.path + "/to-csi.yaml"
        try "storageClasses: {cairn-hostpath: csi-hostpath}\n".write(toFile: transforms, atomically: true, encoding: .utf8)
        let restore = try await cairn(["app", "restore", String((backup["restorePoint"]?.string ?? "").prefix(12)), "--to-namespace", clone,
                                 "--transform", transforms, "--json"])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        let rows = (try? JSONValue(parsing: Data(restore.stdout.utf8)))?["volumes"]?.array ?? []
        let legacyRow = rows.first { $0["object"]?.string == "volume \(clone)/legacy" }
        #expect(legacyRow?["result"]?.string == "written" && legacyRow?["volume"]?["files"]?.int == 1, "\(rows)")
        #expect(try await jsonpath(clone, ["pvc", "legacy"], "{.spec.storageClassName} {.status.phase}") == "csi-hostpath Bound")
        #expect(try await jsonpath(clone, ["pvc", "legacy"], "{.spec.volumeName}").hasPrefix("pvc-"), "provisioned by the CSI driver")
        #expect(try await cluster.kubectlOK(["get", "pv", "-l", "cairn.dev/restored-from=\(ns)-legacy", "-o", "name"]).isEmpty,
                "no hostPath volume made for it")
        try await cluster.waitUntil("PostgreSQL of \(clone)", timeout: 240) { (try? await sql(clone, "select 1")) == "1" }
        #expect(try await jsonpath(clone, ["pvc", "data-db-0"], "{.spec.storageClassName} {.status.phase}") == "csi-hostpath Bound")
        let label = try await cluster.kubectl(["-n", clone, "exec", "db-0", "-c", "postgres", "--", "cat", "/var/lib/postgresql/data/pgdata/backup_label.old"])
        #expect(label.status == 0 && label.stdout.contains("LABEL: cairn"), "\(label.stdout)\(label.stderr)")
        let restored = Int(try await sql(clone, "select count(*) from t")) ?? -1
        #expect(restored >= before && restored <= after + 1_000_000, "rows committed before the snapshot are there: \(before) ≤ \(restored)")
        _ = try await sql(clone, "create extension if not exists amcheck")
        #expect(try await sql(clone, "select bt_index_check('t_pkey', true)") == "", "amcheck")
        try await cluster.waitUntil("the files workload of \(clone)", timeout: 120) {
            try await jsonpath(clone, ["deployment", "files"], "{.status.readyReplicas}") == "1"
        }
        let log = try await cluster.kubectlOK(["-n", clone, "exec", "deploy/files", "--", "wc", "-l", "/data/log"])
        #expect((Int(log.split(separator: " ").first ?? "") ?? 0) > 0, "the files claim came back: \(log)")
    }

    @Test("a snapshot that never becomes ready fails the backup after its timeout with what to check, and leaves no VolumeSnapshot, claim or pod behind")
    func neverReady() async throws {
        let ns = "snap-stuck-\(tag)"
        defer { cleanUp([ns]) }
        try await cluster.kubectlOK(["create", "namespace", ns])
        try await cluster.apply("""
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: files, namespace: \(ns)}
            spec: {accessModes: [ReadWriteOnce], storageClassName: csi-hostpath, resources: {requests: {storage: 64Mi}}}
            """)
        try await cluster.waitUntil("the claim to be bound", timeout: 60) { try await jsonpath(ns, ["pvc", "files"], "{.status.phase}") == "Bound" }
        #expect(try await cairn(["repo", "init"]).status == 0)
        // Fault injection: the CSI snapshotter sidecar is stopped (SIGSTOP), so no snapshot is ever cut.
        let snapshotter = try await CSISidecar(cluster: cluster, container: "csi-snapshotter")
        try snapshotter.signal(SIGSTOP)
        var resumed = false
        defer { if !resumed { try? snapshotter.signal(SIGCONT) } }
        let run = try await cairn(["app", "backup", ns, "--volume-access", "snapshot", "--snapshot-timeout", "15s"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("was not ready to use within") && run.stderr.contains("CSI snapshotter"), "\(run.stderr)")
        let points = try await cairn(["snapshots", "--json"])
        #expect(!points.stdout.contains("restorepoints/\(ns)"), "no restore point: \(points.stdout)")
        try snapshotter.signal(SIGCONT)
        resumed = true
        try await cluster.waitUntil("every VolumeSnapshot and content of \(ns) to be gone", timeout: 90) { try await leftovers(ns).isEmpty }
    }
}

extension VolumeSnapshotClusterTests {
    @Test("kept snapshots are a local tier: a lost claim restored in place is made from its VolumeSnapshot; once the snapshot is gone, the same restore writes it from the repository")
    func localTier() async throws {
        let ns = "snap-tier-\(tag)"
        defer { cleanUp([ns]) }
        try await cluster.kubectlOK(["create", "namespace", ns])
        try await cluster.apply(Self.files(ns, size: "256Mi",
                                     command: "[ -f /data/big ] || head -c 67108864 /dev/urandom > /data/big; sleep 100000"))
        func digest() async throws -> String {
            try await cluster.waitUntil("the files workload of \(ns)", timeout: 180) {
                try await jsonpath(ns, ["deployment", "files"], "{.status.readyReplicas}") == "1"
            }
            var sum = ""
            try await cluster.waitUntil("the 64 MiB file", timeout: 60) {
                sum = try await cluster.kubectlOK(["-n", ns, "exec", "deploy/files", "--", "sh", "-c", "[ $(stat -c %s /data/big) = 67108864 ] && md5sum /data/big"])
                return !sum.isEmpty
            }
            return String(sum.prefix(32))
        }
        let original = try await digest()
        #expect(try await cairn(["repo", "init"]).status == 0)
        let run = try await cairn(["app", "backup", ns, "--keep-snapshots", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let backup = try JSONValue(parsing: Data(run.stdout.utf8))
        #expect(backup["volumeSnapshots"]?["kept"]?.bool == true, "\(backup["volumeSnapshots"] ?? [:])")
        let id = backup["restorePoint"]?.string ?? ""
        let kept = try await cluster.kubectlOK(["-n", ns, "get", "volumesnapshots", "-l", "cairn.dev/restorepoint-id=\(id.prefix(32))", "-o", "name"])
        #expect(kept.split(separator: "\n").count == 1, "the VolumeSnapshot stays, handed to the restore point: \(kept)")
        #expect(try await cluster.kubectlOK(["-n", ns, "get", "pvc", "-l", "cairn.dev/snapshot-for", "-o", "name"]).isEmpty, "no temporary claim")

        func lose() async throws {
            try await cluster.kubectlOK(["-n", ns, "delete", "deployment", "files", "--wait=true"])
            try await cluster.kubectlOK(["-n", ns, "delete", "pvc", "files", "--wait=true"])
        }
        func restore() async throws -> (row: JSONValue?, seconds: Double) {
            let start = Date()
            let result = try await cairn(["app", "restore", String(id.prefix(12)), "--existing", "skip", "--json"])
            #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
            let report = try JSONValue(parsing: Data(result.stdout.utf8))
            return ((report["volumes"]?.array ?? []).first { $0["object"]?.string == "volume \(ns)/files" }, Date().timeIntervalSince(start))
        }
        try await lose()
        let fromTier = try await restore()
        #expect(fromTier.row?["result"]?.string == "written" && fromTier.row?["volume"]?["method"]?.string == "snapshot",
                "made from the local tier: \(fromTier.row ?? [:])")
        #expect(try await digest() == original, "the data of the local tier")

        try await cluster.kubectlOK(["-n", ns, "delete", "volumesnapshots", "-l", "cairn.dev/restorepoint-id", "--wait=true"])
        try await lose()
        let fromRepository = try await restore()
        #expect(fromRepository.row?["result"]?.string == "written" && ["mover", "host"].contains(fromRepository.row?["volume"]?["method"]?.string ?? ""),
                "the snapshot is gone: written from the repository: \(fromRepository.row ?? [:])")
        #expect(try await digest() == original, "the data of the repository")
        print("restore of a 64 MiB claim: from the local tier \(String(format: "%.1f", fromTier.seconds)) s, from the repository \(String(format: "%.1f", fromRepository.seconds)) s")
    }
}

/// A sidecar container of the CSI host-path driver's pod, found as processes on this machine (by the pod's
/// UID in their cgroup), for fault injection by signals.
struct CSISidecar {
    let pids: [Int32]

    init(cluster: LocalCluster, container: String) async throws {
        let uid = try await cluster.kubectlOK(["-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=csi-hostpathplugin",
                                         "-o", "jsonpath={.items[0].metadata.uid}"])
        var found: [Int32] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                  let cgroup = try? String(contentsOfFile: "/proc/\(entry)/cgroup", encoding: .utf8),
                  cgroup.contains(uid) || cgroup.contains(uid.replacingOccurrences(of: "-", with: "_")),
                  let command = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                  command.trimmingCharacters(in: .whitespacesAndNewlines) == container
            else { continue }
            found.append(pid)
        }
        guard !found.isEmpty else { throw ClusterError("no process of container \(container) in pod \(uid)") }
        pids = found
    }

    func signal(_ signal: Int32) throws {
        for pid in pids where kill(pid, signal) != 0 {
            throw ClusterError("kill -\(signal) \(pid): \(String(cString: strerror(errno)))")
        }
    }
}
