import Foundation
import Kube
import KubeTesting
import Protection
import Repository
import Storage
import StorageTesting
import Testing

/// The main job, end to end, as a user runs it: `cairn app backup`, delete the namespace, `cairn app
/// restore`, on the local cluster with a running PostgreSQL, real volumes and Cairn's mover image.
@Suite("Whole applications: back up, lose, restore, clone", .serialized)
struct ApplicationProtectionTests {
    let cluster: LocalCluster
    let tag = UUID().uuidString.prefix(6).lowercased()
    let namespace: String
    let clone: String
    let group: String
    let volumes: String
    let repository: TemporaryDirectory

    init() throws {
        cluster = try LocalCluster.shared()
        namespace = "app-\(tag)"
        clone = "clone-\(tag)"
        group = "a\(tag).cairn.dev"
        volumes = cluster.stateDirectory + "/volumes/app-\(tag)"
        repository = try TemporaryDirectory()
    }

    func cairn(_ arguments: [String]) async throws -> ChildProcess.Result {
        try await cluster.cairn(arguments, repository: repository.path + "/repo", password: "application password")
    }

    func cairnOK(_ arguments: String...) async throws -> String {
        let result = try await cairn(arguments)
        #expect(result.status == 0, "cairn \(arguments.joined(separator: " ")): \(result.stderr)")
        guard result.status == 0 else { throw ClusterError("cairn \(arguments.first ?? "") failed: \(result.stderr)") }
        return result.stdout
    }

    func kubectlOK(_ arguments: String...) async throws -> String { try await cluster.kubectlOK(arguments) }

    func psql(_ ns: String, _ sql: String) async throws -> LocalCluster.CommandResult {
        let ip = try await cluster.kubectlOK(["-n", ns, "get", "service", "db", "-o", "jsonpath={.spec.clusterIP}"])
        return try await cluster.execInNetwork(["psql", "-h", ip, "-U", "postgres", "-tA", "-c", sql],
                                         environment: ["PGPASSWORD": "s3cret", "PGCONNECT_TIMEOUT": "5"])
    }

    func waitForDatabase(_ ns: String) async throws {
        try await cluster.waitUntil("PostgreSQL of \(ns) through its Service", timeout: 240) { try await psql(ns, "select 1").status == 0 }
    }

    static let rowsQuery = "select count(*), md5(string_agg(v, ',' order by id)) from t"

    func hostPathVolume(_ claim: String) async throws -> String {
        try await TestNamespace(cluster: cluster, name: namespace).hostPathVolume(forClaim: claim)
    }

    /// 10,000 small files in 100 directories, symlinks (to files, to a directory, dangling), modes, and a
    /// 256 MiB sparse file with three written blocks; and 96 MiB of random data in three files.
    func writeData(files: String, bulk: String) throws {
        var generator = SystemRandomNumberGenerator()
        for d in 0..<100 {
            let dir = files + "/dir\(d)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in 0..<100 {
                let size = 100 + (d * 31 + f * 17) % 1900
                try Data((0..<size).map { _ in UInt8.random(in: 32...126, using: &generator) })
                    .write(to: URL(fileURLWithPath: "\(dir)/file\(f).txt"))
            }
            chmod(dir + "/file0.txt", d % 2 == 0 ? 0o600 : 0o755)
        }
        for i in 0..<20 { symlink("dir\(i)/file\(i).txt", files + "/link\(i)") }
        symlink("dir7", files + "/dirlink")
        symlink("nowhere/at/all", files + "/dangling")
        let fd = open(files + "/sparse.img", O_CREAT | O_WRONLY, 0o644)
        ftruncate(fd, 256 << 20)
        for offset in [0, 100 << 20, (256 << 20) - 4096] {
            _ = "block at \(offset)".withCString { pwrite(fd, $0, strlen($0), off_t(offset)) }
        }
        close(fd)
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<3 {
            try random.readData(ofLength: 32 << 20).write(to: URL(fileURLWithPath: "\(bulk)/blob\(i).bin"))
        }
    }

    func deploy() async throws {
        try await cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: \(namespace)}")
        _ = try await hostPathVolume("data-db-0")
        try await writeData(files: try hostPathVolume("files"), bulk: try hostPathVolume("bulk"))
        try await cluster.apply(SampleApplication.crd(group: group))
        try await cluster.waitUntil("the CRD to be established") {
            try await cluster.kubectl(["get", "crd", "gadgets.\(group)", "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"]).stdout == "True"
        }
        let ns = namespace
        try await cluster.apply(SampleApplication.objects(namespace: ns) + """

            ---
            apiVersion: \(group)/v1
            kind: Gadget
            metadata: {name: sprocket, namespace: \(ns)}
            spec: {size: 7, colour: teal}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: \(ns)}
            spec:
              selector: {app: web}
              ports: [{port: 80, targetPort: 8080}]
            ---
            apiVersion: networking.k8s.io/v1
            kind: Ingress
            metadata: {name: web, namespace: \(ns)}
            spec:
              rules:
              - host: web.example.test
                http:
                  paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
            ---
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: files, namespace: \(ns)}
            spec: {accessModes: [ReadWriteOnce], storageClassName: cairn-hostpath, resources: {requests: {storage: 1Gi}}}
            ---
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: bulk, namespace: \(ns)}
            spec: {accessModes: [ReadWriteOnce], storageClassName: cairn-hostpath, resources: {requests: {storage: 1Gi}}}
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: worker, namespace: \(ns)}
            spec:
              replicas: 1
              selector: {matchLabels: {app: worker}}
              template:
                metadata: {labels: {app: worker}}
                spec:
                  terminationGracePeriodSeconds: 1
                  containers:
                  - {name: main, image: cairn.local/busybox:1.35, imagePullPolicy: Never, command: [sleep, "3600"],
                     volumeMounts: [{name: files, mountPath: /files}, {name: bulk, mountPath: /bulk}]}
                  volumes:
                  - {name: files, persistentVolumeClaim: {claimName: files}}
                  - {name: bulk, persistentVolumeClaim: {claimName: bulk}}
            """ + "\n---\n" + SampleApplication.database(namespace: ns))
        try await waitForDatabase(ns)
        let create = try await psql(ns, "create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 5000) g")
        #expect(create.status == 0, "\(create.stderr)")
    }

    /// The directory of the volume bound to a claim.
    func directory(ofClaim claim: String, in ns: String) async throws -> String {
        let volume = try await cluster.kubectlOK(["-n", ns, "get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}"])
        return try await cluster.kubectlOK(["get", "pv", volume, "-o", "jsonpath={.spec.hostPath.path}"])
    }

    func expectSameFiles(_ a: String, _ b: String) async throws {
        let diff = try await ChildProcess.run(["diff", "-r", "--no-dereference", a, b])
        #expect(diff.status == 0, "\(a) and \(b) differ: \(diff.stdout.prefix(2000))")
        guard FileManager.default.fileExists(atPath: a + "/sparse.img") else { return }
        var st = stat()
        #expect(lstat(b + "/sparse.img", &st) == 0 && st.st_size == 256 << 20 && st.st_blocks * 512 < 1 << 20,
                "the sparse file came back with \(st.st_blocks * 512) bytes allocated")
        #expect(lstat(b + "/dir0/file0.txt", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(lstat(b + "/dir1/file0.txt", &st) == 0 && st.st_mode & 0o777 == 0o755)
    }

    /// The restore point's objects, compared with the live ones after both are cleaned the same way.
    func expectObjectsEqual(restorePoint: String, in ns: String) async throws {
        let store = FileBlobStore(root: URL(fileURLWithPath: repository.path + "/repo"))
        let repo = try await Repository.open(store: store, password: "application password")
        try await repo.loadIndex()
        let snapshot = try await RestorePoint.list(in: repo).first { $0.id.hasPrefix(restorePoint) }!.snapshot
        let (_, objects) = try await RestorePoint.read(snapshot, from: repo)
        #expect(Set(objects.map(\.kind)).isSuperset(of: ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret",
                                                       "PersistentVolumeClaim", "Service", "Deployment", "StatefulSet", "Ingress",
                                                       "CustomResourceDefinition", "Gadget", "PersistentVolume"]))
        let connection = try ClusterConnection.resolve(kubeconfig: cluster.kubeconfig, context: "cairn-admin")
        try await KubeClient.with(connection) { client in
            let cleaner = ObjectCleaner()
            func normal(_ object: KubeObject) -> KubeObject {
                var o = cleaner.clean(object)
                o["secrets"] = nil  // a service account's token secrets are minted again
                return o
            }
            var compared = 0
            for object in objects where object.kind != "PersistentVolume" {
                let resource = try await client.resource(for: object)
                let live = try await client.get(resource, object.name, namespace: object.namespace)
                #expect(normal(live).json == normal(object).json, "\(object) differs after the restore")
                compared += 1
            }
            #expect(compared >= 16)
        }
    }

    /// `body`'s result and the most mover pods (not being deleted) that existed in `ns` at once while it ran.
    func moversAtOnce<T>(in ns: String, _ body: () async throws -> T) async throws -> (T, Int) {
        let (result, sample) = try await cluster.sampleMovers(in: ns, body)
        return (result, sample.most)
    }

    func deleteNamespaceAndCRD() async throws {
        try await cluster.kubectlOK(["delete", "namespace", namespace, "--wait=true", "--timeout=180s"])
        try await cluster.kubectlOK(["delete", "crd", "gadgets.\(group)", "--wait=true"])
        try await cluster.waitUntil("namespace \(namespace) to be gone") {
            try await cluster.kubectl(["get", "namespace", namespace]).status != 0
        }
    }

    func cleanUp() {
        repository.remove()
        let (cluster, namespace, clone, group, volumes) = (cluster, namespace, clone, group, volumes)
        Background.run {
            for ns in [namespace, clone] { _ = try? cluster.kubectlBlocking(["delete", "namespace", ns, "--wait=true", "--timeout=120s"]) }
            _ = try? cluster.kubectlBlocking(["delete", "pv", "-l", "cairn.dev/test-namespace=\(namespace)", "--wait=false"])
            _ = try? cluster.kubectlBlocking(["delete", "crd", "gadgets.\(group)", "--wait=false"])
            try? FileManager.default.removeItem(atPath: volumes)
        }
    }

    @Test("host access and mover pods: back up, delete the namespace, restore — every object, byte and row back; clone with transforms while the original runs; a rejected object fails alone; skip changes nothing, update converges")
    func wholeApplication() async throws {
        defer { cleanUp() }
        let started = Date()
        func step(_ text: String) { FileHandle.standardError.write(Data("[\(Int(Date().timeIntervalSince(started)))s] \(text)\n".utf8)) }
        try await deploy()
        let rows = try await psql(namespace, Self.rowsQuery).stdout
        #expect(rows.hasPrefix("5000|"))
        step("deployed")
        _ = try await cairnOK("repo", "init")
        let original = try #require(try? FileManager.default.contentsOfDirectory(atPath: volumes)).sorted()
        #expect(original == ["bulk", "data-db-0", "files"])
        let reference = try TemporaryDirectory()
        defer { reference.remove() }
        for claim in ["files", "bulk"] {
            let copy = try await ChildProcess.run(["cp", "-a", volumes + "/" + claim, reference.path + "/" + claim])
            #expect(copy.status == 0)
        }

        // Two restore points: volumes read on the host, then by mover pods (quiesced both times).
        let listed = try await cairnOK("app", "list")
        #expect(listed.contains(namespace))
        step("backing up by host access")
        let hostBackup = try await cairn(["app", "backup", namespace, "--quiesce", "scale", "--volume-access", "host", "--json"])
        #expect(hostBackup.status == 0, "\(hostBackup.stderr)")
        let hostPoint = try #require(try JSONValue(parsing: Array(hostBackup.stdout.utf8))["restorePoint"]?.string)
        step("backing up by mover pods")
        // The three volumes are read by their own movers at once, never more than --parallel-volumes.
        let (moverBackup, moversRunning) = try await moversAtOnce(in: namespace) {
            try await cairn(["app", "backup", namespace, "--quiesce", "scale", "--volume-access", "mover", "--parallel-volumes", "2", "--json"])
        }
        #expect(moverBackup.status == 0, "\(moverBackup.stderr)")
        #expect(moversRunning == 2, "mover pods at once during a backup with --parallel-volumes 2: \(moversRunning)")
        let moverJSON = try JSONValue(parsing: Array(moverBackup.stdout.utf8))
        let moverPoint = try #require(moverJSON["restorePoint"]?.string)
        let transfers = moverJSON["volumes"]?.array ?? []
        #expect(Set(transfers.compactMap { $0["method"]?.string }) == ["mover"])
        #expect(transfers.first { $0["claim"] == "files" }?["files"]?.int == 10_001)
        #expect(Set(moverJSON["quiesced"]?.array?.compactMap(\.string) ?? []) == ["Deployment/web", "Deployment/worker", "StatefulSet/db"])
        // Scaled back: the database answers again; the mover pods are gone.
        try await waitForDatabase(namespace)
        #expect(try await cluster.kubectlOK(["-n", namespace, "get", "pods", "-l", "cairn.dev/mover", "-o", "name"]).isEmpty)
        let points = try await cairnOK("restorepoints", namespace)
        #expect(points.contains(String(hostPoint.prefix(8))) && points.contains(String(moverPoint.prefix(8))))

        step("restoring")
        for (point, access) in [(hostPoint, "host"), (moverPoint, "mover")] {
            try await deleteNamespaceAndCRD()
            step("restoring by \(access)")
            let (restore, moversRunning) = try await moversAtOnce(in: namespace) {
                try await cairn(["app", "restore", String(point.prefix(10)), "--volume-access", access])
            }
            #expect(restore.status == 0, "restore by \(access): \(restore.stdout) \(restore.stderr)")
            // By mover: the three volumes written at once (the default is four).
            #expect(moversRunning == (access == "mover" ? 3 : 0), "mover pods at once during the \(access) restore: \(moversRunning)")
            #expect(restore.stdout.contains("Gadget \(namespace)/sprocket") && restore.stdout.contains("written"))
            try await waitForDatabase(namespace)
            #expect(try await psql(namespace, Self.rowsQuery).stdout == rows, "rows after the \(access) restore")
            for claim in ["files", "bulk"] {
                let restored = try await directory(ofClaim: claim, in: namespace)
                #expect(restored != volumes + "/" + claim, "a restored claim gets a new volume")
                try await expectSameFiles(reference.path + "/" + claim, restored)
            }
            try await expectObjectsEqual(restorePoint: point, in: namespace)
        }

        step("cloning")
        // Clone while the original runs: transforms (no web replicas; a patch the API rejects for one ConfigMap).
        let transforms = repository.path + "/transforms.yaml"
        try """
            transforms:
              - name: break the settings
                match: {kind: ConfigMap, name: settings}
                patch: [{op: add, path: /data/count, value: 5}]
            replicas: {Deployment/web: 0}
            """.write(toFile: transforms, atomically: true, encoding: .utf8)
        let originalVolume = try await directory(ofClaim: "files", in: namespace)
        let cloned = try await cairn(["app", "restore", namespace, "--to-namespace", clone, "--transform", transforms, "--json"])
        #expect(cloned.status == 3, "one object fails: exit 3 (\(cloned.stderr))")
        let report = try JSONValue(parsing: Array(cloned.stdout.utf8))
        let results = Dictionary((report["objects"]?.array ?? []).map { ($0["object"]?.string ?? "", $0["result"]?.string ?? "") },
                                 uniquingKeysWith: { a, _ in a })
        #expect(results["ConfigMap \(clone)/settings"] == "failed")
        #expect(results["StatefulSet \(clone)/db"] == "created" && results["Gadget \(clone)/sprocket"] == "created")
        #expect(results.values.filter { $0 == "failed" }.count == 1, "\(report["objects"]?.array?.filter { $0["result"] == "failed" } ?? [])")
        #expect((report["volumes"]?.array ?? []).allSatisfy { $0["result"] == "written" })
        try await waitForDatabase(clone)
        #expect(try await psql(clone, Self.rowsQuery).stdout == rows)
        #expect(try await kubectlOK("-n", clone, "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}") == "0")
        #expect(try await directory(ofClaim: "files", in: namespace) == originalVolume, "the original keeps its volume")
        try await expectSameFiles(reference.path + "/files", try directory(ofClaim: "files", in: clone))
        #expect(try await psql(namespace, Self.rowsQuery).stdout == rows, "the original still serves")

        step("skip")
        // Again with skip: nothing changes.
        let version = try await kubectlOK("-n", clone, "get", "statefulset", "db", "-o", "jsonpath={.metadata.resourceVersion}")
        let skipped = try await cairn(["app", "restore", namespace, "--to-namespace", clone, "--existing", "skip", "--json"])
        let skipReport = try JSONValue(parsing: Array(skipped.stdout.utf8))
        let skipResults = (skipReport["objects"]?.array ?? []).compactMap { $0["result"]?.string }
        #expect(skipResults.filter { $0 != "skipped" }.count == 1, "all but the missing ConfigMap skipped: \(skipResults)")
        #expect((skipReport["volumes"]?.array ?? []).allSatisfy { $0["result"] == "skipped" })
        #expect(try await kubectlOK("-n", clone, "get", "statefulset", "db", "-o", "jsonpath={.metadata.resourceVersion}") == version)

        step("update")
        // Update converges: drift is undone, the missing ConfigMap comes back.
        _ = try await kubectlOK("-n", clone, "scale", "deployment", "web", "--replicas=3")
        _ = try await kubectlOK("-n", clone, "delete", "configmap", "settings", "--ignore-not-found")
        let updated = try await cairn(["app", "restore", namespace, "--to-namespace", clone, "--existing", "update", "--no-volumes"])
        #expect(updated.status == 0, "\(updated.stdout) \(updated.stderr)")
        #expect(try await kubectlOK("-n", clone, "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}") == "1")
        #expect(try await kubectlOK("-n", clone, "get", "configmap", "settings", "-o", "jsonpath={.data.mode}") == "fast")
        try await waitForDatabase(clone)

        // A plan touches nothing; only one volume restores just its claim and data.
        let planned = try await cairn(["app", "restore", namespace, "--to-namespace", "\(clone)-plan", "--dry-run", "--json"])
        #expect(planned.status == 0, "\(planned.stderr)")
        let plan = try JSONValue(parsing: Array(planned.stdout.utf8))
        #expect((plan["objects"]?.array ?? []).allSatisfy { $0["result"] == "planned" } && plan["dryRun"] == true)
        #expect((plan["volumes"]?.array ?? []).count == 3)
        #expect(try await cluster.kubectl(["get", "namespace", "\(clone)-plan"]).status != 0, "a dry run creates nothing")
        let single = "\(clone)-one"
        defer { _ = try? cluster.kubectlBlocking(["delete", "namespace", single, "--wait=false"]) }
        let one = try await cairn(["app", "restore", namespace, "--to-namespace", single, "--volumes-only", "--volume", "files", "--json"])
        #expect(one.status == 0, "\(one.stderr)")
        let oneReport = try JSONValue(parsing: Array(one.stdout.utf8))
        #expect(Set((oneReport["objects"]?.array ?? []).compactMap { $0["object"]?.string?.split(separator: " ").first.map(String.init) })
                == ["Namespace", "PersistentVolume", "PersistentVolumeClaim"])
        #expect(try await kubectlOK("-n", single, "get", "pvc", "-o", "name").trimmingCharacters(in: .whitespacesAndNewlines) == "persistentvolumeclaim/files")
        try await expectSameFiles(reference.path + "/files", try directory(ofClaim: "files", in: single))

        // Partial: one volume's files into a local directory.
        let out = repository.path + "/out"
        _ = try await cairnOK("app", "restore", String(moverPoint.prefix(10)), "--volume", "files", "--path", "dir3", "--target", out)
        let diff = try await ChildProcess.run(["diff", "-r", reference.path + "/files/dir3", out + "/dir3"])
        #expect(diff.status == 0)
        _ = try? await cluster.kubectl(["delete", "namespace", clone, "--wait=false"])
    }

    @Test("a mover that cannot start fails the backup with what to do — no restore point, no pod left behind; a restore point that is not there is a usage error")
    func moverFailures() async throws {
        defer { cleanUp() }
        try await cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: \(namespace)}")
        let path = try await hostPathVolume("files")
        try Data("hello".utf8).write(to: URL(fileURLWithPath: path + "/a.txt"))
        try await cluster.apply("""
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: files, namespace: \(namespace)}
            spec: {accessModes: [ReadWriteOnce], storageClassName: cairn-hostpath, resources: {requests: {storage: 1Gi}}}
            """)
        try await cluster.waitUntil("the claim to be bound") {
            try await cluster.kubectlOK(["-n", namespace, "get", "pvc", "files", "-o", "jsonpath={.status.phase}"]) == "Bound"
        }
        _ = try await cairnOK("repo", "init")
        let failed = try await cairn(["app", "backup", namespace, "--volume-access", "mover", "--mover-image", "cairn.local/no-such-image:1"])
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("cairn.local/no-such-image:1") && failed.stderr.contains("scripts/build-image"), "\(failed.stderr)")
        #expect(try await cairnOK("restorepoints").contains("0 restore point(s)"))
        try await cluster.waitUntil("the mover pod to be gone", timeout: 60) {
            try await cluster.kubectlOK(["-n", namespace, "get", "pods", "-o", "name"]).isEmpty
        }
        let missing = try await cairn(["app", "restore", "no-such-namespace"])
        #expect(missing.status == 64 && missing.stderr.contains("cairn restorepoints"), "\(missing.stderr)")
        // Host access where the volume is not on this machine's disk says so.
        try FileManager.default.removeItem(atPath: path)
        let host = try await cairn(["app", "backup", namespace, "--volume-access", "host"])
        #expect(host.status == 1 && host.stderr.contains("not on this machine"), "\(host.stderr)")
    }
}
