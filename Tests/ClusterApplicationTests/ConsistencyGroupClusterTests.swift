import Foundation
import Kube
import KubeTesting
import Protection
import Testing

/// A consistency group on the local cluster: an application that commits the same sequence number to
/// PostgreSQL, MariaDB and Redis, one after the other, in a loop, while it is backed up again and again. Each
/// restore point, restored, holds the same last number in all three: no torn state across services.
@Suite("Consistency groups on a real cluster", .serialized)
struct ConsistencyGroupClusterTests {
    let cluster: LocalCluster
    let tag = UUID().uuidString.prefix(6).lowercased()
    let repository: TemporaryDirectory
    static let shipped = LocalCluster.repositoryRootPath + "/deploy/blueprints"

    init() throws {
        cluster = try LocalCluster.shared()
        repository = try TemporaryDirectory()
    }

    func cairn(_ arguments: [String]) async throws -> ChildProcess.Result {
        try await cluster.cairn(arguments, repository: repository.path + "/repo", password: "group password")
    }

    /// A one-replica StatefulSet with its data on a hostPath volume made for its claim, behind a Service.
    func dataService(_ ns: String, name: String, image: String, port: Int, mountPath: String, blueprint: String, env: String,
                     config: (path: String, text: String)? = nil) async throws {
        try await TestNamespace(cluster: cluster, name: ns).hostPathVolume(forClaim: "data-\(name)-0")
        if let config {
            try await cluster.apply("""
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: \(name)-config, namespace: \(ns)}
                data:
                  config: |
                \(config.text.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
                """)
        }
        try await cluster.apply("""
            apiVersion: v1
            kind: Service
            metadata: {name: \(name), namespace: \(ns)}
            spec:
              selector: {app: \(name)}
              ports: [{port: \(port), targetPort: \(port)}]
            ---
            apiVersion: apps/v1
            kind: StatefulSet
            metadata: {name: \(name), namespace: \(ns), annotations: {cairn.dev/blueprint: \(blueprint)}}
            spec:
              serviceName: \(name)
              replicas: 1
              selector: {matchLabels: {app: \(name)}}
              template:
                metadata: {labels: {app: \(name)}}
                spec:
                  terminationGracePeriodSeconds: 5
                  containers:
                  - name: \(name == "pg" ? "postgres" : name)
                    image: \(image)
                    imagePullPolicy: Never
                    env: \(env)
                    volumeMounts: [{name: data, mountPath: \(mountPath)}\(config.map { ", {name: config, mountPath: \($0.path), subPath: config}" } ?? "")]
                  volumes: [\(config.map { _ in "{name: config, configMap: {name: \(name)-config}}" } ?? "")]
              volumeClaimTemplates:
              - metadata: {name: data}
                spec:
                  accessModes: [ReadWriteOnce]
                  storageClassName: cairn-hostpath
                  resources: {requests: {storage: 1Gi}}
            """)
    }

    func inPod(_ ns: String, _ pod: String, _ command: [String]) async throws -> String {
        let result = try await cluster.kubectl(["-n", ns, "exec", pod, "--"] + command)
        guard result.status == 0 else { throw ClusterError("\(command.joined(separator: " ")) in \(ns)/\(pod): \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The last sequence number each service holds.
    func lastNumbers(_ ns: String) async throws -> (pg: String, mariadb: String, redis: String) {
        (try await inPod(ns, "pg-0", ["psql", "-U", "postgres", "-tA", "-c", "select coalesce(max(n), 0) || '/' || count(*) from seq"]),
         try await inPod(ns, "mariadb-0", ["mariadb", "-uroot", "-ppw", "-N", "-B", "-e", "select concat(coalesce(max(n), 0), '/', count(*)) from app.seq"]),
         try await inPod(ns, "redis-0", ["redis-cli", "GET", "seq"]))
    }

    @Test("a writer commits one sequence number to PostgreSQL, MariaDB and Redis in turn; ten backups as one consistency group, each restored: the three hold the same last number every time; the writer waits only for the fence window")
    func threeServicesOneInstant() async throws {
        let ns = "cg-\(tag)"
        var restored: [String] = []
        defer {
            for name in [ns] + restored { TestNamespace(cluster: cluster, name: name).cleanUpLater() }
            repository.remove()
        }
        try await cluster.kubectlOK(["create", "namespace", ns])
        try await dataService(ns, name: "pg", image: "cairn.local/postgres:15", port: 5432, mountPath: "/var/lib/postgresql/data",
                        blueprint: "postgresql-logical",
                        env: "[{name: POSTGRES_PASSWORD, value: pw}, {name: PGDATA, value: /var/lib/postgresql/data/pgdata}]")
        try await dataService(ns, name: "mariadb", image: "cairn.local/mariadb:10.11", port: 3306, mountPath: "/var/lib/mysql",
                        blueprint: "mariadb-logical", env: "[{name: MARIADB_ROOT_PASSWORD, value: pw}]",
                        // No cluster DNS here: without it, every connection waits for a reverse lookup to time out.
                        config: ("/etc/mysql/mariadb.conf.d/99-test.cnf", "[mysqld]\nskip-name-resolve"))
        try await dataService(ns, name: "redis", image: "cairn.local/redis:7.0", port: 6379, mountPath: "/data",
                        blueprint: "redis-rdb", env: "[]")
        try await cluster.waitUntil("the three services of \(ns)", timeout: 300) {
            guard (try? await inPod(ns, "pg-0", ["psql", "-U", "postgres", "-tA", "-c", "create table if not exists seq (n int primary key)"])) != nil,
                  (try? await inPod(ns, "mariadb-0", ["mariadb", "-uroot", "-ppw", "-e",
                                                      "create database if not exists app; create table if not exists app.seq (n int primary key)"])) != nil
            else { return false }
            return (try? await inPod(ns, "redis-0", ["redis-cli", "PING"])) == "PONG"
        }
        // The writer: one number to each service in turn; between two numbers it honours a pause (its fence).
        try await cluster.apply("""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: writer, namespace: \(ns), annotations: {cairn.dev/blueprint: writer-pause}}
            spec:
              replicas: 1
              selector: {matchLabels: {app: writer}}
              template:
                metadata: {labels: {app: writer}}
                spec:
                  terminationGracePeriodSeconds: 1
                  containers:
                  - name: writer
                    image: cairn.local/dbclients:1
                    imagePullPolicy: Never
                    env: [{name: PGPASSWORD, value: pw}]
                    command:
                    - sh
                    - -c
                    - |
                      set -e
                      n=$(psql -h "$PG_SERVICE_HOST" -U postgres -tA -c "select coalesce(max(n), 0) from seq")
                      while :; do
                        if [ -e /tmp/pause ]; then touch /tmp/paused; sleep 0.02; continue; fi
                        n=$((n + 1))
                        psql -h "$PG_SERVICE_HOST" -U postgres -q -c "insert into seq values ($n)"
                        mariadb -h "$MARIADB_SERVICE_HOST" -uroot -ppw app -e "insert into seq values ($n)"
                        test "$(redis-cli -h "$REDIS_SERVICE_HOST" SET seq $n)" = OK
                      done
            """)
        let writerPause = repository.path + "/writer-pause.yaml"
        try """
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: writer-pause}
            spec:
              actions:
                beforeCapture:
                  phases:
                  - name: pause
                    exec:
                      command: [sh, -c, 'rm -f /tmp/paused; touch /tmp/pause; for i in $(seq 1 1000); do [ -e /tmp/paused ] && exit 0; sleep 0.02; done; exit 1']
                    timeout: 30s
                afterCapture:
                  phases:
                  - name: resume
                    exec: {command: [rm, -f, /tmp/pause, /tmp/paused]}
            """.write(toFile: writerPause, atomically: true, encoding: .utf8)
        func redisSeq() async -> Int { Int((try? await inPod(ns, "redis-0", ["redis-cli", "GET", "seq"])) ?? "") ?? 0 }
        try await cluster.waitUntil("the writer writes", timeout: 120) { await redisSeq() >= 20 }

        let initialized = try await cairn(["repo", "init"])
        #expect(initialized.status == 0, "\(initialized.stderr)")
        var points: [(id: String, window: Double, fenced: Double, seconds: Double)] = []
        var previous = 0
        for run in 1...10 {
            let backup = try await cairn(["app", "backup", ns, "--json",
                                    "--blueprint", writerPause, "--blueprint", Self.shipped + "/postgresql-logical.yaml",
                                    "--blueprint", Self.shipped + "/mariadb-logical.yaml", "--blueprint", Self.shipped + "/redis-rdb.yaml",
                                    "--group", "Deployment/writer", "--group", "StatefulSet/pg", "--group", "StatefulSet/mariadb",
                                    "--group", "StatefulSet/redis", "--fence-timeout", "30s"])
            #expect(backup.status == 0, "run \(run): \(backup.stderr)")
            guard backup.status == 0 else { return }
            let output = try JSONValue(parsing: Data(backup.stdout.utf8))
            let group = output["consistencyGroup"]
            #expect(group?["workloads"]?.array?.count == 4, "\(backup.stdout)")
            let window = group?["windowSeconds"]?.double ?? group?["windowSeconds"]?.int.map(Double.init) ?? -1
            #expect(window > 0 && window < 60, "run \(run): the fence window is reported: \(group ?? .null)")
            #expect(group?["volumesInWindow"]?.bool == true, "Redis's volume is read while the fences hold")
            #expect(group?["pointSeconds"]?.object?.count == 4, "every member's point is reported: \(group ?? .null)")
            let phases = output["phases"]?.array ?? []
            for (action, phase) in [("beforeCapture", "pause"), ("afterCapture", "resume"), ("backup", "dump"), ("backup", "save")] {
                #expect(phases.contains { $0["action"]?.string == action && $0["phase"]?.string == phase && $0["result"]?.string == "succeeded" },
                        "run \(run): \(action)/\(phase) ran: \(phases)")
            }
            points.append((output["restorePoint"]?.string ?? "", window, group?["fencedSeconds"]?.double ?? -1,
                           output["seconds"]?.double ?? -1))
            print("consistency group run \(run): points \((group?["pointSeconds"]?.object ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.double ?? -1) s" }.joined(separator: ", "))")
            // The fences were released: the writer goes on.
            try await cluster.waitUntil("the writer goes on after run \(run)", timeout: 60) { await redisSeq() > previous + 3 }
            previous = await redisSeq()
        }

        for (run, point) in points.enumerated() {
            let target = "cg-r\(run + 1)-\(tag)"
            restored.append(target)
            // The data services only: a restored writer would go on writing.
            let started = Date()
            let restore = try await cairn(["app", "restore", String(point.id.prefix(12)), "--to-namespace", target, "--volume-access", "mover",
                                     "--only", "StatefulSet", "--only", "Service", "--only", "PersistentVolumeClaim", "--only", "ConfigMap"])
            #expect(restore.status == 0, "restore \(run + 1): \(restore.stdout)\n\(restore.stderr)")
            try await cluster.waitUntil("Redis of \(target)", timeout: 180) { (try? await inPod(target, "redis-0", ["redis-cli", "PING"])) == "PONG" }
            let (pg, mariadb, redis) = try await lastNumbers(target)
            // max/count: the last number, and no gap before it.
            let last = pg.split(separator: "/").first.map(String.init) ?? ""
            #expect(pg == mariadb && last == redis && pg == "\(last)/\(last)",
                    "restore point \(run + 1) (fence window \(point.window) s): PostgreSQL \(pg), MariaDB \(mariadb), Redis \(redis)")
            #expect((Int(last) ?? 0) >= 20)
            print(String(format: "consistency group run %2d: backup %.1f s, fences held after %.3f s, window %.3f s; restore %.1f s; last number %@ in all three",
                         run + 1, point.seconds, point.fenced, point.window, Date().timeIntervalSince(started), last))
            _ = try? await cluster.kubectl(["delete", "namespace", target, "--wait=false"])
        }
    }
}
