import Foundation
import Kube
import KubeTesting
import Protection
import Testing

/// Blueprints and hooks on the local cluster, as a user runs them with `cairn app backup --blueprint/--hooks`:
/// a PostgreSQL database backed up as a pg_dumpall artifact and restored into a new server that answers
/// the same rows; and every way a phase goes wrong, each a clear error that leaves nothing behind.
@Suite("Blueprints and hooks on a real cluster", .serialized)
struct BlueprintClusterTests {
    let cluster: LocalCluster
    let tag = UUID().uuidString.prefix(6).lowercased()
    let repository: TemporaryDirectory
    static let shipped = LocalCluster.repositoryRootPath + "/deploy/blueprints"

    init() throws {
        cluster = try LocalCluster.shared()
        repository = try TemporaryDirectory()
    }

    func cairn(_ arguments: [String]) async throws -> ChildProcess.Result {
        try await cluster.cairn(arguments, repository: repository.path + "/repo", password: "blueprint password")
    }

    func cairnOK(_ arguments: String...) async throws -> String {
        let result = try await cairn(arguments)
        #expect(result.status == 0, "cairn \(arguments.joined(separator: " ")): \(result.stderr)")
        guard result.status == 0 else { throw ClusterError("cairn \(arguments.first ?? "") failed: \(result.stderr)") }
        return result.stdout
    }

    func psql(_ ns: String, _ sql: String) async throws -> LocalCluster.CommandResult {
        let ip = try await cluster.kubectlOK(["-n", ns, "get", "service", "db", "-o", "jsonpath={.spec.clusterIP}"])
        return try await cluster.execInNetwork(["psql", "-h", ip, "-U", "postgres", "-tA", "-c", sql],
                                         environment: ["PGPASSWORD": "s3cret", "PGCONNECT_TIMEOUT": "5"])
    }

    /// The sample PostgreSQL (`SampleApplication.database`, password `s3cret`) in a new namespace, on a hostPath
    /// volume, bound to `blueprint`.
    func sampleDatabase(_ ns: String, blueprint: String) async throws {
        try await cluster.kubectlOK(["create", "namespace", ns])
        try await hostPathVolume("data-db-0", namespace: ns)
        try await cluster.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: db, namespace: \(ns)}
            stringData: {password: s3cret}
            ---
            """ + "\n" + SampleApplication.database(namespace: ns))
        try await cluster.kubectlOK(["-n", ns, "annotate", "statefulset", "db", "cairn.dev/blueprint=\(blueprint)"])
    }

    /// A hostPath volume for `claim` in `namespace` (`TestNamespace`'s).
    func hostPathVolume(_ claim: String, namespace: String) async throws {
        try await TestNamespace(cluster: cluster, name: namespace).hostPathVolume(forClaim: claim)
    }

    func cleanUp(_ namespaces: [String]) {
        for ns in namespaces { TestNamespace(cluster: cluster, name: ns).cleanUpLater() }
        repository.remove()
    }

    @Test("PostgreSQL by its logical blueprint: the dump is an artifact, no volume copy; a restore into a new namespace answers the same rows from a new, empty volume")
    func postgresLogical() async throws {
        let ns = "bp-pg-\(tag)"
        let clone = "bp-pg-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await sampleDatabase(ns, blueprint: "postgresql-logical")
        try await cluster.waitUntil("PostgreSQL of \(ns)", timeout: 240) { try await psql(ns, "select 1").status == 0 }
        for sql in ["create database shop", "create role reporter login password 'r3port'"] {
            let setup = try await psql(ns, sql)
            #expect(setup.status == 0, "\(setup.stderr)")
        }
        let ip = try await cluster.kubectlOK(["-n", ns, "get", "service", "db", "-o", "jsonpath={.spec.clusterIP}"])
        let shop = try await cluster.execInNetwork(["psql", "-h", ip, "-U", "postgres", "-d", "shop", "-tA", "-c", """
            create table orders (id int primary key, item text, at timestamptz default now());
            insert into orders select g, md5(g::text) from generate_series(1, 100000) g;
            grant select on orders to reporter;
            """], environment: ["PGPASSWORD": "s3cret"])
        #expect(shop.status == 0, "\(shop.stderr)")
        func rows(_ namespace: String) async throws -> String {
            let ip = try await cluster.kubectlOK(["-n", namespace, "get", "service", "db", "-o", "jsonpath={.spec.clusterIP}"])
            return try await cluster.execInNetwork(["psql", "-h", ip, "-U", "reporter", "-d", "shop", "-tA", "-c",
                                              "select count(*), md5(string_agg(item, ',' order by id)) from orders"],
                                             environment: ["PGPASSWORD": "r3port", "PGCONNECT_TIMEOUT": "5"]).stdout
        }
        let before = try await rows(ns)
        #expect(before.hasPrefix("100000|"))

        _ = try await cairnOK("repo", "init")
        let backup = try await cairnOK("app", "backup", ns, "--blueprint", Self.shipped + "/postgresql-logical.yaml", "--json")
        let output = try JSONValue(parsing: Data(backup.utf8))
        #expect(output["volumes"]?.array?.isEmpty == true, "the claim's files are not copied: \(backup)")
        let phases = output["phases"]?.array ?? []
        #expect(phases.count == 1 && phases[0]["phase"]?.string == "dump" && phases[0]["result"]?.string == "succeeded", "\(backup)")
        let dumped = phases.first?["artifactBytes"]?.int ?? 0
        #expect(dumped > 500_000, "the dump holds the rows: \(dumped) bytes")
        // The image has zstd: the dump crossed the API server compressed and is stored decompressed.
        let streamed = phases.first?["artifactStreamedBytes"]?.int ?? 0
        #expect(streamed > 0 && streamed < dumped / 3, "compressed in transit: \(streamed) of \(dumped) bytes")
        let id = output["restorePoint"]?.string ?? ""

        // A second backup of unchanged data: the dump deduplicates but for the chunks around each database's
        // `\restrict` line (pg_dump writes a random key there every time); how much is bench/'s to measure.
        _ = try await cairnOK("app", "backup", ns, "--blueprint", Self.shipped + "/postgresql-logical.yaml", "--json")

        // Restore into a new namespace: a new, empty volume; PostgreSQL initialises it; the dump is loaded.
        let restore = try await cairn(["app", "restore", String(id.prefix(12)), "--to-namespace", clone, "--volume-access", "mover"])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        #expect(restore.stdout.contains("postgresql-logical restore/load (StatefulSet/db): succeeded"), "\(restore.stdout)")
        #expect(restore.stdout.contains("empty"), "\(restore.stdout)")
        #expect(try await rows(clone) == before, "the restored server answers the same rows, to the same role")
        // The original still runs, untouched.
        #expect(try await rows(ns) == before)
    }

    /// A namespace with a busybox Deployment whose container takes a password from a Secret.
    func application(_ ns: String) async throws {
        try await cluster.kubectlOK(["create", "namespace", ns])
        try await cluster.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: app-secret, namespace: \(ns)}
            stringData: {password: hunter2-very-secret}
            ---
            """ + "\n" + SampleApplication.web(namespace: ns, env: "[{name: PASSWORD, valueFrom: {secretKeyRef: {name: app-secret, key: password}}}]"))
        try await cluster.waitUntil("web of \(ns) ready", timeout: 120) {
            try await cluster.kubectl(["-n", ns, "get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]).stdout == "1"
        }
    }

    func file(_ name: String, _ text: String) throws -> String {
        let path = repository.path + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("a failing phase: the backup fails with the phase, its exit status and stderr (secrets redacted); deferred phases ran, the workload is scaled back, no restore point; a hook that never returns times out and its fence is released; a held session lives across the capture, and one that ends early or is never ready fails it; a missing container or Secret is named; a malformed blueprint is refused with its line")
    func failures() async throws {
        let ns = "bp-fail-\(tag)"
        defer { cleanUp([ns]) }
        try await application(ns)
        _ = try await cairnOK("repo", "init")
        func web(_ path: String) async throws -> String {
            try await cluster.kubectl(["-n", ns, "get", "deployment", "web", "-o", "jsonpath=\(path)"]).stdout
        }

        // 1. A blueprint that scales the workload down, then fails in a task pod that prints its Secret.
        try await cluster.kubectlOK(["-n", ns, "annotate", "deployment", "web", "cairn.dev/blueprint=fails"])
        let failing = try file("fails.yaml", """
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: fails}
            spec:
              actions:
                backup:
                  phases:
                  - {name: stop, scale: {replicas: 0}, timeout: 180s}
                  - name: boom
                    task:
                      image: cairn.local/busybox:1.35
                      command: [sh, -c, 'echo "connecting with $PASSWORD"; echo "relation missing"; exit 3']
                      env: [{name: PASSWORD, secretKeyRef: {name: app-secret, key: password}}]
                    timeout: 60s
                  deferred:
                  - {name: back, scale: {replicas: "{{ workload.replicas }}"}, timeout: 180s}
            """)
        let result = try await cairn(["app", "backup", ns, "--blueprint", failing])
        #expect(result.status != 0)
        #expect(result.stderr.contains("blueprint fails backup/boom for Deployment/web failed"), "\(result.stderr)")
        #expect(result.stderr.contains("exited with status 3"), "\(result.stderr)")
        #expect(result.stderr.contains("relation missing"), "\(result.stderr)")
        #expect(result.stderr.contains("connecting with [redacted]"), "\(result.stderr)")
        #expect(!result.stderr.contains("hunter2"), "a Secret's value reached the output")
        #expect(result.stderr.contains("deferred phases ran: back succeeded"), "\(result.stderr)")
        #expect(try await web("{.spec.replicas}/{.status.readyReplicas}") == "1/1", "scaled back and ready")
        // The pod stopped by the blueprint may take a while to go on a loaded machine: the steps below look
        // for "the" pod of web.
        try await cluster.waitUntil("web's old pod to be gone", timeout: 180) {
            try await cluster.kubectlOK(["-n", ns, "get", "pods", "-l", "app=web", "-o", "name"]).split(separator: "\n").count == 1
        }
        #expect(try await cluster.kubectl(["-n", ns, "get", "pods", "-l", "cairn.dev/task", "-o", "name"]).stdout.isEmpty, "task pods are deleted")
        #expect(try await cairnOK("restorepoints", ns).contains("0 restore point(s)"), "no restore point after a failed phase")
        try await cluster.kubectlOK(["-n", ns, "annotate", "deployment", "web", "cairn.dev/blueprint-"])

        // 2. An exec hook that prints the container's Secret and fails.
        let leaky = try file("leaky.yaml", """
            beforeCapture:
            - name: leak
              exec: {workload: Deployment/web, container: main, command: [sh, -c, 'echo "password is $PASSWORD" >&2; exit 4']}
            """)
        let leak = try await cairn(["app", "backup", ns, "--hooks", leaky])
        #expect(leak.status != 0)
        #expect(leak.stderr.contains("exited with status 4") && leak.stderr.contains("password is [redacted]"), "\(leak.stderr)")
        #expect(!leak.stderr.contains("hunter2"))

        // 3. A hook that never returns: timed out; the afterCapture hook (the fence's release) still runs.
        let hanging = try file("hanging.yaml", """
            beforeCapture:
            - name: hang
              exec: {selector: app=web, command: [sleep, "600"]}
              timeout: 3s
            afterCapture:
            - name: release
              exec: {selector: app=web, command: [touch, /tmp/released]}
            """)
        let started = Date()
        let hang = try await cairn(["app", "backup", ns, "--hooks", hanging])
        #expect(hang.status != 0)
        #expect(hang.stderr.contains("hook beforeCapture/hang failed") && hang.stderr.contains("did not finish within 3s"), "\(hang.stderr)")
        #expect(Date().timeIntervalSince(started) < 60)
        let pod = try await cluster.kubectlOK(["-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"])
        #expect(try await cluster.kubectl(["-n", ns, "exec", pod, "--", "test", "-f", "/tmp/released"]).status == 0, "the release ran")

        // 3b. A session held across the capture: alive while the next fence runs, ended before the release;
        //     one that ends before its release fails the backup (its fence did not hold); one that never
        //     says it is ready times out.
        let held = try file("held.yaml", """
            beforeCapture:
            - name: lock
              exec:
                selector: app=web
                command: [sh]
                session: {start: "touch /tmp/held; echo locked", ready: locked, end: "rm /tmp/held; exit 0"}
            - {name: alive, exec: {selector: app=web, command: [test, -e, /tmp/held]}}
            afterCapture:
            - {name: ended, exec: {selector: app=web, command: [sh, -c, 'test ! -e /tmp/held']}}
            """)
        let holding = try await cairn(["app", "backup", ns, "--hooks", held, "--json"])
        #expect(holding.status == 0, "\(holding.stderr)")
        let heldPhases = (try? JSONValue(parsing: Data(holding.stdout.utf8)))?["phases"]?.array ?? []
        #expect(heldPhases.map { $0["phase"]?.string ?? "" } == ["lock", "alive", "lock (end)", "ended"], "\(heldPhases)")
        #expect(heldPhases.allSatisfy { $0["result"]?.string == "succeeded" }, "\(heldPhases)")
        let early = try file("early.yaml", """
            beforeCapture:
            - name: lock
              exec: {selector: app=web, command: [sh], session: {start: "echo locked; sleep 1; exit 5", ready: locked, end: "exit 0"}}
            - {name: meanwhile, exec: {selector: app=web, command: [sleep, "4"]}}
            """)
        let broken = try await cairn(["app", "backup", ns, "--hooks", early])
        #expect(broken.status != 0)
        #expect(broken.stderr.contains("ended (exit status 5) before it was released: its fence did not hold"), "\(broken.stderr)")
        let silent = try file("silent.yaml", """
            beforeCapture:
            - name: lock
              exec: {selector: app=web, command: [sh], session: {start: "echo not yet", ready: locked, end: "exit 0"}}
              timeout: 3s
            """)
        let mute = try await cairn(["app", "backup", ns, "--hooks", silent])
        #expect(mute.status != 0)
        #expect(mute.stderr.contains("did not print 'locked' within 3s"), "\(mute.stderr)")
        #expect(try await cairnOK("restorepoints", ns).contains("1 restore point(s)"), "only the backup whose session held wrote a restore point")

        // 4. A container that is not there, a Secret that is not there.
        let missing = try file("missing.yaml", """
            beforeCapture:
            - {name: nocontainer, exec: {workload: Deployment/web, container: postgres, command: ["true"]}}
            """)
        let noContainer = try await cairn(["app", "backup", ns, "--hooks", missing])
        #expect(noContainer.stderr.contains("has no container postgres (it has: main)"), "\(noContainer.stderr)")
        let noSecret = try file("nosecret.yaml", """
            afterCapture:
            - name: notify
              task: {image: cairn.local/busybox:1.35, command: ["true"], env: [{name: TOKEN, secretKeyRef: {name: webhook, key: token}}]}
            """)
        let secretless = try await cairn(["app", "backup", ns, "--hooks", noSecret])
        #expect(secretless.status != 0)
        #expect(secretless.stderr.contains("Secret webhook (for TOKEN) does not exist in namespace \(ns)"), "\(secretless.stderr)")

        // 5. A malformed blueprint: refused before anything runs, with its line.
        let malformed = try file("malformed.yaml", """
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: malformed}
            spec:
              actions:
                backup:
                  phases:
                  - name: dump
                    exec: {command: [pg_dumpall]}
                    output: artefact
            """)
        let check = try await cairn(["blueprint", "check", malformed])
        #expect(check.status == 64)
        #expect(check.stderr.contains("malformed.yaml:10: spec.actions.backup.phases[0].output: 'artefact' must be text"), "\(check.stderr)")
        let refused = try await cairn(["app", "backup", ns, "--blueprint", malformed])
        #expect(refused.status == 64 && refused.stderr.contains("malformed.yaml:10:"), "\(refused.stderr)")
        #expect(try await cairnOK("restorepoints", ns).contains("1 restore point(s)"))
        #expect(try await cairnOK("blueprint", "check", Self.shipped + "/postgresql-logical.yaml").contains("is valid"))
    }

}

extension BlueprintClusterTests {
    /// A one-replica StatefulSet `db` of `image` with its data on a hostPath volume made for its claim (or on a
    /// claim `storageClass` provisions), and a Service `db`; `env` in the container.
    func statefulSet(_ ns: String, image: String, container: String, mountPath: String, blueprint: String,
                     storageClass: String = "cairn-hostpath", env: [String: String] = [:]) async throws {
        try await cluster.kubectlOK(["create", "namespace", ns])
        if storageClass == "cairn-hostpath" { try await hostPathVolume("data-db-0", namespace: ns) }
        let environment = env.sorted { $0.key < $1.key }.map { "{name: \($0.key), value: \($0.value)}" }.joined(separator: ", ")
        try await cluster.apply("""
            apiVersion: v1
            kind: Service
            metadata: {name: db, namespace: \(ns)}
            spec: {selector: {app: db}, ports: [{port: 3306}]}
            ---
            apiVersion: apps/v1
            kind: StatefulSet
            metadata: {name: db, namespace: \(ns), annotations: {cairn.dev/blueprint: \(blueprint)}}
            spec:
              serviceName: db
              replicas: 1
              selector: {matchLabels: {app: db}}
              template:
                metadata: {labels: {app: db}}
                spec:
                  terminationGracePeriodSeconds: 5
                  containers:
                  - name: \(container)
                    image: \(image)
                    imagePullPolicy: Never
                    env: [\(environment)]
                    volumeMounts: [{name: data, mountPath: \(mountPath)}]
              volumeClaimTemplates:
              - metadata: {name: data}
                spec:
                  accessModes: [ReadWriteOnce]
                  storageClassName: \(storageClass)
                  resources: {requests: {storage: 1Gi}}
            """)
    }

    /// Runs a command in the database's pod; its stdout.
    func inPod(_ ns: String, _ container: String, _ command: [String]) async throws -> LocalCluster.CommandResult {
        try await cluster.kubectl(["-n", ns, "exec", "db-0", "-c", container, "--"] + command)
    }

    @Test("MariaDB by its logical blueprint: one-transaction dump as an artifact; restored into a new namespace, the same rows, users and grants")
    func mariadbLogical() async throws {
        let ns = "bp-maria-\(tag)"
        let clone = "bp-maria-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await statefulSet(ns, image: "cairn.local/mariadb:10.11", container: "mariadb", mountPath: "/var/lib/mysql",
                        blueprint: "mariadb-logical")
        func sql(_ namespace: String, _ statement: String) async throws -> LocalCluster.CommandResult {
            try await inPod(namespace, "mariadb", ["mariadb", "-uroot", "-N", "-B", "-e", statement])
        }
        try await cluster.waitUntil("MariaDB of \(ns)", timeout: 180) { try await sql(ns, "select 1").status == 0 }
        let setup = try await sql(ns, """
            create database shop; create table shop.orders (id int primary key, item varchar(64)) engine=InnoDB;
            insert into shop.orders select seq, md5(seq) from shop.seq_1_to_50000;
            create user 'reporter'@'%' identified by 'r3port'; grant select on shop.* to 'reporter'@'%';
            """)
        #expect(setup.status == 0, "\(setup.stderr)")
        let query = "select count(*), md5(group_concat(item order by id separator ',')) from shop.orders"
        _ = try await sql(ns, "set global group_concat_max_len = 64000000")
        let before = try await sql(ns, "set session group_concat_max_len = 64000000; " + query).stdout
        #expect(before.hasPrefix("50000\t"), "\(before)")

        _ = try await cairnOK("repo", "init")
        let backup = try await JSONValue(parsing: Data(try cairnOK("app", "backup", ns, "--blueprint", Self.shipped + "/mariadb-logical.yaml", "--json").utf8))
        let id = backup["restorePoint"]?.string ?? ""
        #expect(backup["volumes"]?.array?.isEmpty == true)
        #expect((backup["phases"]?.array?.first?["artifactBytes"]?.int ?? 0) > 1_000_000, "\(backup)")

        let restore = try await cairn(["app", "restore", String(id.prefix(12)), "--to-namespace", clone])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        #expect(restore.stdout.contains("mariadb-logical restore/load (StatefulSet/db): succeeded"), "\(restore.stdout)")
        #expect(try await sql(clone, "set session group_concat_max_len = 64000000; " + query).stdout == before)
        // The user and its grant came back with the data.
        let grants = try await sql(clone, "show grants for 'reporter'@'%'").stdout
        #expect(grants.contains("GRANT SELECT ON `shop`.* TO `reporter`@`%`"), "\(grants)")
    }

    @Test("MariaDB by its physical blueprint: a writer commits a ledger row and a counter in one transaction throughout; the CSI snapshot is taken while FLUSH TABLES WITH READ LOCK holds; the restored server recovers to a counter equal to its last ledger row, no gap, tables checked; the writer never failed; without a snapshot the backup is refused before the lock")
    func mariadbPhysical() async throws {
        let ns = "bp-mariap-\(tag)"
        let clone = "bp-mariap-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await statefulSet(ns, image: "cairn.local/mariadb:10.11", container: "mariadb", mountPath: "/var/lib/mysql",
                        blueprint: "mariadb-physical", storageClass: "csi-hostpath", env: ["MARIADB_ROOT_PASSWORD": "r00t"])
        func sql(_ namespace: String, _ statement: String) async throws -> String {
            let result = try await inPod(namespace, "mariadb", ["mariadb", "-uroot", "-pr00t", "-N", "-B", "-e", statement])
            guard result.status == 0 else { throw ClusterError("mariadb in \(namespace): \(result.stderr)") }
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try await cluster.waitUntil("MariaDB of \(ns)", timeout: 180) { (try? await sql(ns, "select 1")) == "1" }
        _ = try await sql(ns, """
            create database shop;
            create table shop.ledger (seq int primary key, at datetime(6) not null) engine=InnoDB;
            insert into shop.ledger select seq, now(6) from shop.seq_1_to_50000;
            create table shop.counter (id int primary key, last int not null) engine=InnoDB;
            insert into shop.counter values (1, 50000);
            create table shop.notes (id int primary key, body varchar(64)) engine=Aria;
            insert into shop.notes select seq, md5(seq) from shop.seq_1_to_1000;
            """)
        // The writer: each transaction adds the next ledger row and moves the counter to it; the client stops at
        // its first error (its pod then fails).
        try await cluster.apply(SampleApplication.writer(namespace: ns, script: """
            i=50000; while :; do i=$((i+1)); echo "begin; insert into ledger values ($i, now(6)); update counter set last = $i where id = 1; commit;"; sleep 0.01; done | mariadb -h "$DB_SERVICE_HOST" -uroot -pr00t shop
            """))
        func counter(_ namespace: String) async throws -> Int { Int(try await sql(namespace, "select last from shop.counter")) ?? -1 }
        try await cluster.waitUntil("the writer to write", timeout: 120) { (try? await counter(ns)) ?? 0 > 50_200 }

        // Refused before the lock: host access cannot capture the claim at one instant.
        #expect(try await cairn(["repo", "init"]).status == 0)
        let refused = try await cairn(["app", "backup", ns, "--blueprint", Self.shipped + "/mariadb-physical.yaml", "--volume-access", "host"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("claim data-db-0 of StatefulSet/db (blueprint mariadb-physical) must be captured by a CSI snapshot")
                && refused.stderr.contains("volume access is host"), "\(refused.stderr)")
        #expect(!refused.stdout.contains("read-lock"), "no phase ran: \(refused.stdout)")
        #expect(try await cairnOK("restorepoints", ns).contains("0 restore point(s)"))

        let before = try await counter(ns)
        let run = try await cairn(["app", "backup", ns, "--blueprint", Self.shipped + "/mariadb-physical.yaml", "--exclude", "Pod/writer", "--json"])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        let backup = try JSONValue(parsing: Data(run.stdout.utf8))
        #expect(backup["volumes"]?.array?.map { $0["method"]?.string ?? "" } == ["snapshot"], "\(backup["volumes"] ?? [])")
        let phases = backup["phases"]?.array ?? []
        #expect(phases.map { $0["phase"]?.string ?? "" } == ["read-lock", "read-lock (end)"], "\(phases)")
        #expect(phases.allSatisfy { $0["result"]?.string == "succeeded" }, "\(phases)")
        let snapshots = backup["volumeSnapshots"]
        print("mariadb-physical: snapshot ready after \(snapshots?["takeSeconds"]?.double ?? -1) s; phases \(phases)")
        let after = try await counter(ns)
        #expect(after > before, "commits went on before and after the lock: \(before) → \(after)")
        #expect(try await cluster.kubectlOK(["-n", ns, "get", "pod", "writer", "-o", "jsonpath={.status.phase}"]) == "Running", "no write failed")
        // The lock was released: a commit goes through now.
        _ = try await sql(ns, "insert into shop.notes values (100000, 'after the backup')")
        // The longest pause between two of the writer's commits: the lock. Its last commit before it is the
        // restored server's last one (below).
        let pause = try await sql(ns, """
            select a.seq, timestampdiff(microsecond, a.at, b.at) / 1e6 from shop.ledger a join shop.ledger b on b.seq = a.seq + 1
            where a.seq > 50000 order by 2 desc limit 1
            """).split(separator: "\t")
        print("mariadb-physical: longest pause between two commits after row \(pause.first ?? "?"): \(pause.last ?? "?") s")

        let id = String((backup["restorePoint"]?.string ?? "").prefix(12))
        let restore = try await cairn(["app", "restore", id, "--to-namespace", clone])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        #expect(restore.stdout.contains("mariadb-physical restore/ready (StatefulSet/db): succeeded"), "\(restore.stdout)")
        let state = try await sql(clone, "select count(*), min(seq), max(seq), (select last from shop.counter) from shop.ledger")
            .split(separator: "\t").map { Int($0) ?? -1 }
        #expect(state.count == 4 && state[0] == state[2] && state[1] == 1 && state[2] == state[3],
                "every transaction whole, no gap: count, min, max, counter = \(state)")
        #expect(state.count == 4 && state[3] >= before && state[3] <= after, "as of the lock: \(before) ≤ \(state) ≤ \(after)")
        // A row's time is its insert's; the transaction whose insert came just before the lock commits after it.
        let lockedAfter = pause.first.flatMap { Int($0) } ?? -1
        #expect(state.count == 4 && (state[3] == lockedAfter || state[3] == lockedAfter - 1),
                "the snapshot holds every commit before the lock and none after: restored \(state), lock after row \(pause)")
        let checks = try await sql(clone, "check table shop.ledger, shop.counter, shop.notes")
        #expect(checks.split(separator: "\n").allSatisfy { $0.hasSuffix("OK") }, "\(checks)")
        #expect(try await sql(clone, "select count(*), md5(group_concat(body order by id)) from shop.notes")
                == (try sql(ns, "select count(*), md5(group_concat(body order by id)) from shop.notes where id <= 1000")))
    }

    @Test("Redis by its RDB blueprint: SAVE as the backup begins, then the volume is read; the restored server loads every key")
    func redisRDB() async throws {
        let ns = "bp-redis-\(tag)"
        let clone = "bp-redis-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await statefulSet(ns, image: "cairn.local/redis:7.0", container: "redis", mountPath: "/data", blueprint: "redis-rdb")
        func redis(_ namespace: String, _ arguments: String...) async throws -> String {
            try await inPod(namespace, "redis", ["redis-cli"] + arguments).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try await cluster.waitUntil("Redis of \(ns)", timeout: 120) { (try? await redis(ns, "PING")) == "PONG" }
        let fill = try await inPod(ns, "redis", ["sh", "-c", "for i in $(seq 1 2000); do echo SET key:$i value-$i; done | redis-cli > /dev/null && redis-cli SET last 2000"])
        #expect(fill.status == 0, "\(fill.stderr)")
        #expect(try await redis(ns, "DBSIZE") == "2001")
        // Automatic snapshots are off: before the backup, nothing of this is on disk.
        #expect(try await inPod(ns, "redis", ["test", "-e", "/data/dump.rdb"]).status != 0)

        _ = try await cairnOK("repo", "init")
        let backup = try await JSONValue(parsing: Data(try cairnOK("app", "backup", ns, "--blueprint", Self.shipped + "/redis-rdb.yaml", "--json").utf8))
        let phases = backup["phases"]?.array ?? []
        #expect(phases.first?["action"]?.string == "backup" && phases.first?["result"]?.string == "succeeded", "\(backup)")
        #expect(backup["volumes"]?.array?.first?["files"]?.int == 1, "the volume holds dump.rdb: \(backup)")
        let id = backup["restorePoint"]?.string ?? ""
        // Written after the backup: not in the restore point.
        _ = try await redis(ns, "SET", "later", "x")

        let restore = try await cairn(["app", "restore", String(id.prefix(12)), "--to-namespace", clone, "--volume-access", "mover"])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        try await cluster.waitUntil("Redis of \(clone)", timeout: 120) { (try? await redis(clone, "PING")) == "PONG" }
        #expect(try await redis(clone, "DBSIZE") == "2001")
        #expect(try await redis(clone, "GET", "key:1234") == "value-1234")
        #expect(try await redis(clone, "GET", "later") == "")
    }

    @Test("PostgreSQL with a streaming standby: the dump is read from the pod that answers pg_is_in_recovery() = t; one copy in the restore point; the restore loads the primary and the standby re-seeds and replays it; no standby answering is a clear error")
    func postgresStandby() async throws {
        let ns = "bp-pgsb-\(tag)"
        let clone = "bp-pgsb-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await cluster.kubectlOK(["create", "namespace", ns])
        for claim in ["data-pg-0", "data-pg-1"] { try await hostPathVolume(claim, namespace: ns) }
        try await cluster.apply(SampleApplication.replicatedDatabase(namespace: ns, blueprint: "postgresql-standby"))
        func sql(_ namespace: String, _ pod: String, _ statement: String) async throws -> String {
            let result = try await cluster.kubectl(["-n", namespace, "exec", pod, "-c", "postgres", "--", "psql", "-U", "postgres", "-XtA", "-c", statement])
            guard result.status == 0 else { throw ClusterError("\(statement) in \(namespace)/\(pod): \(result.stderr)") }
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let rows = "select count(*) || ' ' || md5(string_agg(item, ',' order by id)) from orders"
        try await cluster.waitUntil("the standby of \(ns)", timeout: 300) { (try? await sql(ns, "pg-1", "select pg_is_in_recovery()")) == "t" }
        _ = try await sql(ns, "pg-0", "create table orders (id int primary key, item text); insert into orders select g, md5(g::text) from generate_series(1, 50000) g")
        let before = try await sql(ns, "pg-0", rows)
        try await cluster.waitUntil("the standby replays the rows", timeout: 60) { (try? await sql(ns, "pg-1", rows)) == before }

        _ = try await cairnOK("repo", "init")
        let blueprint = Self.shipped + "/postgresql-standby.yaml"
        let backup = try await JSONValue(parsing: Data(try cairnOK("app", "backup", ns, "--blueprint", blueprint, "--json").utf8))
        let dump = backup["phases"]?.array?.first
        #expect(dump?["pod"]?.string == "pg-1", "the dump is read from the standby: \(backup)")
        #expect(backup["volumes"]?.array?.isEmpty == true, "one copy of the data, no claim of either replica: \(backup)")
        #expect((dump?["artifactBytes"]?.int ?? 0) > 1_000_000, "\(backup)")
        let id = backup["restorePoint"]?.string ?? ""

        let restore = try await cairn(["app", "restore", String(id.prefix(12)), "--to-namespace", clone])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        for phase in ["load", "standbys"] {
            #expect(restore.stdout.contains("postgresql-standby restore/\(phase) (StatefulSet/pg): succeeded"), "\(restore.stdout)")
        }
        #expect(try await sql(clone, "pg-0", "select pg_is_in_recovery()") == "f")
        #expect(try await sql(clone, "pg-0", rows) == before, "the restored primary answers the same rows")
        #expect(try await sql(clone, "pg-1", "select pg_is_in_recovery()") == "t", "the restored standby is a standby again")
        #expect(try await sql(clone, "pg-1", rows) == before, "and it re-seeded from the primary")

        // A probe no pod answers as asked: the phase fails and says what each pod answered.
        let wrong = try String(contentsOfFile: blueprint, encoding: .utf8)
            .replacingOccurrences(of: "stdout: t\n", with: "stdout: maybe\n")
            .replacingOccurrences(of: "        output: artifact\n        timeout: 6h", with: "        output: artifact\n        timeout: 5s")
        let failing = try await cairn(["app", "backup", ns, "--blueprint", try file("postgresql-standby.yaml", wrong)])
        #expect(failing.status != 0)
        #expect(failing.stderr.contains("answers 'maybe'") && failing.stderr.contains("pg-0: f") && failing.stderr.contains("pg-1: t"),
                "\(failing.stderr)")
    }

    @Test("PostgreSQL by its physical blueprint: the data directory is copied inside pg_backup_start/pg_backup_stop held in one session while rows are written; the restored server starts with backup_label and the WAL put in place before it, recovers, and its data and indexes check")
    func postgresPhysical() async throws {
        let ns = "bp-pgph-\(tag)"
        let clone = "bp-pgph-clone-\(tag)"
        defer { cleanUp([ns, clone]) }
        try await sampleDatabase(ns, blueprint: "postgresql-physical")
        func sql(_ namespace: String, _ statement: String) async throws -> String {
            let result = try await cluster.kubectl(["-n", namespace, "exec", "db-0", "-c", "postgres", "--", "psql", "-U", "postgres", "-XtA", "-c", statement])
            guard result.status == 0 else { throw ClusterError("\(statement) in \(namespace): \(result.stderr)") }
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try await cluster.waitUntil("PostgreSQL of \(ns)", timeout: 240) { (try? await sql(ns, "select 1")) == "1" }
        _ = try await sql(ns, "create table t (id bigserial primary key, v text); insert into t (v) select md5(g::text) from generate_series(1, 200000) g")
        // A writer inside the pod, for the whole backup.
        try await cluster.kubectlOK(["-n", ns, "exec", "db-0", "-c", "postgres", "--", "sh", "-c",
                               "nohup sh -c 'while :; do psql -U postgres -Xq -c \"insert into t (v) select md5(random()::text) from generate_series(1, 2000)\"; done' > /dev/null 2>&1 &"])
        let before = Int(try await sql(ns, "select count(*) from t")) ?? 0

        _ = try await cairnOK("repo", "init")
        let backup = try await JSONValue(parsing: Data(try cairnOK("app", "backup", ns, "--blueprint", Self.shipped + "/postgresql-physical.yaml",
                                                             "--volume-access", "mover", "--json").utf8))
        let phases = backup["phases"]?.array ?? []
        func phase(_ action: String, _ name: String) -> JSONValue? {
            phases.first { $0["action"]?.string == action && $0["phase"]?.string == name }
        }
        for (action, name) in [("beforeCapture", "mark"), ("beforeCapture", "backup-mode"), ("beforeCapture", "backup-mode (end)"), ("afterCapture", "wal")] {
            #expect(phase(action, name)?["result"]?.string == "succeeded", "\(action)/\(name): \(phases)")
        }
        #expect((phase("beforeCapture", "backup-mode (end)")?["artifactBytes"]?.int ?? 0) > 100, "the backup_label is kept: \(phases)")
        #expect((phase("afterCapture", "wal")?["artifactBytes"]?.int ?? 0) > 1_000_000, "the WAL since the start is kept: \(phases)")
        #expect(backup["volumes"]?.array?.count == 1, "the data directory's volume is copied: \(backup)")
        let after = Int(try await sql(ns, "select count(*) from t")) ?? 0
        #expect(after > before, "rows were written during the backup: \(before) → \(after)")
        _ = try? await cluster.kubectl(["-n", ns, "exec", "db-0", "-c", "postgres", "--", "pkill", "-f", "while :"])

        let restore = try await cairn(["app", "restore", String((backup["restorePoint"]?.string ?? "").prefix(12)), "--to-namespace", clone,
                                 "--volume-access", "mover"])
        #expect(restore.status == 0, "\(restore.stdout)\n\(restore.stderr)")
        for name in ["label", "wal"] {
            #expect(restore.stdout.contains("postgresql-physical beforeStart/\(name)") && !restore.stdout.contains("beforeStart/\(name): failed"),
                    "\(restore.stdout)")
        }
        try await cluster.waitUntil("PostgreSQL of \(clone)", timeout: 240) { (try? await sql(clone, "select 1")) == "1" }
        // The server found backup_label at its first start, recovered from the backup's start, and set it aside.
        let label = try await cluster.kubectl(["-n", clone, "exec", "db-0", "-c", "postgres", "--", "cat", "/var/lib/postgresql/data/pgdata/backup_label.old"])
        #expect(label.status == 0 && label.stdout.contains("LABEL: cairn"), "\(label.stdout)\(label.stderr)")
        let restored = Int(try await sql(clone, "select count(*) from t")) ?? -1
        let now = Int(try await sql(ns, "select count(*) from t")) ?? 0
        #expect(restored >= before && restored <= now, "rows as of the backup: \(before) ≤ \(restored) ≤ \(now)")
        // Every row is where its index says, and the index holds every row.
        _ = try await sql(clone, "create extension if not exists amcheck")
        #expect(try await sql(clone, "select bt_index_check('t_pkey', true)") == "", "amcheck")
        #expect(try await sql(clone, "select pg_is_in_recovery()") == "f")
    }
}
