import Foundation
import Kube
import KubeTesting
import Repository
import Testing
import TestSupport

/// What the scenarios with a second cluster share: the shared S3 server, Profiles on it, tokens, PostgreSQL.
protocol TwoClusterScenario {}

extension TwoClusterScenario {
    static var endpoint: String { "http://10.254.255.1:9000" }
    static var s3Env: [String: String] { ["AWS_ACCESS_KEY_ID": "cairn", "AWS_SECRET_ACCESS_KEY": "cairn-secret", "AWS_DEFAULT_REGION": "us-east-1"] }

    func until(_ what: String, timeout: TimeInterval = 120, _ condition: () async throws -> Bool) async throws {
        try await eventually(what, timeout: .seconds(timeout), condition)
    }

    func get(_ cluster: LocalCluster, _ args: [String], _ path: String) async throws -> String {
        try await cluster.kubectlOK(["get"] + args + ["-o", "jsonpath=\(path)"])
    }

    /// The Secret and Profile objects of an S3 location (credentials: any key; moto accepts it).
    static func s3Objects(bucket: String) -> String {
        """
        apiVersion: v1
        kind: Secret
        metadata: {name: dr-s3-credentials, namespace: cairn-system}
        stringData: {AWS_ACCESS_KEY_ID: cairn, AWS_SECRET_ACCESS_KEY: cairn-secret}
        """
    }

    /// A Profile of `cluster` on the shared S3 server (bucket `bucket`), with its password in Secret `<name>-password`.
    func s3Profile(_ cluster: LocalCluster, _ name: String, bucket: String, password: String, initialize: Bool = false) async throws {
        try await cluster.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: \(name)-password, namespace: cairn-system}
            stringData: {password: "\(password)"}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: \(name), namespace: cairn-system}
            spec:
              location: {s3: {bucket: \(bucket), endpoint: "\(Self.endpoint)", insecure: true, pathStyle: true}}
              passwordSecretRef: {name: \(name)-password}
              credentialsSecretRef: {name: dr-s3-credentials}
              init: \(initialize)
            """)
    }

    /// An import Profile of `cluster` opened with `token` (kept in Secret `<name>-token`).
    func importProfile(_ cluster: LocalCluster, _ name: String, token: String, insecure: Bool = true) async throws {
        try await cluster.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: \(name)-token, namespace: cairn-system}
            stringData: {token: "\(token)"}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: \(name), namespace: cairn-system}
            spec:
              import: {tokenSecretRef: {name: \(name)-token}, insecure: \(insecure)}
              credentialsSecretRef: {name: dr-s3-credentials}
            """)
    }

    /// The receive token an export left in Secret `secret` of the controller's namespace.
    func receiveToken(_ cluster: LocalCluster, _ secret: String) async throws -> String {
        String(decoding: Data(base64Encoded: try await get(cluster, ["-n", "cairn-system", "secret", secret], "{.data.token}")) ?? Data(), as: UTF8.self)
    }

    /// Starts the cluster `name` with Cairn, and a new bucket on the shared S3 server every cluster reaches.
    func secondClusterAndBucket(name: String = "dr") async throws -> (LocalCluster, String) {
        let first = try LocalCluster.shared()
        try await CairnInstallation.ensure(first)
        try await LocalCluster.sharedS3()
        let second = LocalCluster.named(name)
        try await second.up()
        try await CairnInstallation.ensure(second)
        let bucket = "dr-\(UUID().uuidString.prefix(8).lowercased())"
        let mb = try await ChildProcess.run(["aws", "--endpoint-url", Self.endpoint, "s3", "mb", "s3://\(bucket)"], environment: Self.s3Env)
        #expect(mb.status == 0, "\(mb.stderr)")
        for cluster in [first, second] { try await cluster.apply(Self.s3Objects(bucket: bucket)) }
        return (second, bucket)
    }

    /// Stops and purges `second` (holding the thread: it runs in a `defer`; these tests run alone).
    func stop(_ second: LocalCluster) {
        try? second.downBlocking(purge: true)
        let verify = try? second.verifyDownBlocking()
        #expect(verify?.status == 0, "\(verify?.stdout ?? "")\(verify?.stderr ?? "")")
    }

    /// PostgreSQL answers `sql` in `namespace` of `cluster` (the sample database, password s3cret).
    func psql(_ cluster: LocalCluster, _ namespace: String, _ sql: String) async throws -> LocalCluster.CommandResult {
        let ip = try await cluster.kubectlOK(["-n", namespace, "get", "service", "db", "-o", "jsonpath={.spec.clusterIP}"])
        return try await cluster.execInNetwork(["psql", "-h", ip, "-U", "postgres", "-tA", "-c", sql],
                                         environment: ["PGPASSWORD": "s3cret", "PGCONNECT_TIMEOUT": "5"])
    }
}

/// Disaster recovery across two local clusters through the machine's S3 server (`scripts/local-cluster s3
/// up`, reached from inside both clusters): an application exported on the first is imported with a receive
/// token on the second and restored there — namespace created, transformed — with its data byte for byte.
/// Runs in the second phase of `scripts/test` (with the other second-cluster tests).
@Suite("disaster recovery across two clusters", .serialized)
struct SecondClusterDisasterRecoveryTests: TwoClusterScenario {
    @Test("export on one cluster, import with a token and restore with transforms on another; bad tokens refused with why")
    func exportImportRestore() async throws {
        let first = try LocalCluster.shared()
        let (second, bucket) = try await secondClusterAndBucket()
        defer { stop(second) }
        let source = try await TestProfile(first, prefix: "src")
        defer { source.remove() }
        let drPassword = "dr-\(UUID().uuidString)"
        try await s3Profile(first, "dr", bucket: bucket, password: drPassword)
        defer { _ = try? first.kubectlBlocking(["-n", "cairn-system", "delete", "profile", "dr"]) }
        let secondID = try await get(second, ["namespace", "kube-system"], "{.metadata.uid}")
        let firstID = try await get(first, ["namespace", "kube-system"], "{.metadata.uid}")

        try await first.withNamespace("shop") { ns in
            let data = try await ns.hostPathVolume(forClaim: "data")
            let fill = try await ChildProcess.run(["sh", "-c", "for i in 1 2 3 4; do head -c 2097152 /dev/urandom > '\(data)'/f$i; done; cd '\(data)' && md5sum f1 f2 f3 f4"])
            #expect(fill.status == 0)
            let sums = fill.stdout
            try await ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            try await ns.apply(ControllerClusterTests.claimAndWorkload(claim: "data", deployment: "app"))
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: nightly}
                spec: {profile: \(source.name)}
                """)
            try await until("the backup", timeout: 180) { try await get(first, ["-n", ns.name, "backupaction", "nightly"], "{.status.phase}") == "Succeeded" }
            // Two exports of it to S3: a token for the second cluster, and one for the first (wrong there).
            for (name, cluster) in [("to-dr", secondID), ("to-self", firstID)] {
                try await first.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: ExportAction
                    metadata: {name: \(name), namespace: cairn-system}
                    spec: {profile: \(source.name), destination: dr, namespace: \(ns.name), receiver: {clusterID: \(cluster), expiresAfter: 1h}}
                    """)
            }
            defer { _ = try? first.kubectlBlocking(["-n", "cairn-system", "delete", "exportaction", "to-dr", "to-self"]) }
            for name in ["to-dr", "to-self"] {
                try await until("export \(name)", timeout: 180) {
                    ["Succeeded", "Failed"].contains(try await get(first, ["-n", "cairn-system", "exportaction", name], "{.status.phase}"))
                }
                let conditions = try await get(first, ["-n", "cairn-system", "exportaction", name], "{.status.conditions}")
                #expect(try await get(first, ["-n", "cairn-system", "exportaction", name], "{.status.phase}") == "Succeeded", "\(conditions)")
            }
            func token(_ export: String) async throws -> String { try await receiveToken(first, "\(export)-receive-token") }
            let good = try await token("to-dr"), wrongCluster = try await token("to-self")
            var tampered = Array(good)
            tampered[good.count / 2] = tampered[good.count / 2] == "x" ? "y" : "x"

            // The second cluster: an import Profile per token.
            func importProfile(_ name: String, token: String, insecure: Bool = true) async throws {
                try await self.importProfile(second, name, token: token, insecure: insecure)
            }
            func readiness(_ name: String) async throws -> (String, String) {
                (try await get(second, ["-n", "cairn-system", "profile", name], "{.status.conditions[?(@.type==\"Ready\")].reason}"),
                 try await get(second, ["-n", "cairn-system", "profile", name], "{.status.conditions[?(@.type==\"Ready\")].message}"))
            }
            try await importProfile("from-first", token: good)
            try await importProfile("wrong-cluster", token: wrongCluster)
            try await importProfile("tampered", token: String(tampered))
            try await importProfile("plain-http", token: good, insecure: false)
            do {
                try await until("the import Profiles to be looked at", timeout: 120) {
                    let wanted = ["from-first": "RepositoryReady", "wrong-cluster": "TokenRejected", "tampered": "TokenRejected",
                                  "plain-http": "InsecureEndpoint"]
                    for (name, reason) in wanted where try await readiness(name).0 != reason { return false }
                    return true
                }
            } catch {
                for name in ["from-first", "wrong-cluster", "tampered", "plain-http"] { print("profile \(name): \((try? await readiness(name)) ?? ("?", "?"))") }
                print(try await second.kubectl(["-n", "cairn-system", "logs", "deploy/cairn-controller", "--tail=60"]).stdout)
                throw error
            }
            #expect(try await readiness("wrong-cluster").1.contains("issued for another cluster"))
            #expect(try await readiness("plain-http").1.contains("spec.import.insecure"), "the receiving side decides about plain http")
            #expect(try await readiness("tampered").1.contains("damaged"))

            // The catalog: the namespace does not exist on the second cluster.
            var entry = ""
            try await until("the catalog entry", timeout: 90) {
                entry = try await get(second, ["-n", "cairn-system", "restorepoints", "-l", "cairn.dev/source-namespace=\(ns.name)"], "{.items[*].metadata.name}")
                return !entry.isEmpty
            }
            #expect(!entry.contains(" "), "one entry: \(entry)")
            #expect(try await second.kubectl(["get", "namespace", ns.name]).status != 0)

            // Restore it there, transformed: the namespace is created, the data is the same byte for byte.
            try await second.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: RestoreAction
                metadata: {name: recover-shop, namespace: cairn-system}
                spec:
                  restorePoint: \(entry)
                  transforms:
                    replicas: {Deployment/app: 1}
                    transforms:
                    - name: paint
                      match: {kind: ConfigMap, name: settings}
                      patch: [{op: replace, path: /data/color, value: orange}]
                """)
            let restored = TestNamespace(cluster: second, name: ns.name)
            defer { restored.cleanUpLater() }
            try await until("the restore on the second cluster", timeout: 240) {
                ["Succeeded", "Failed"].contains(try await get(second, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.phase}"))
            }
            let restoreConditions = try await get(second, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.conditions}")
            #expect(try await get(second, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.phase}") == "Succeeded", "\(restoreConditions)")
            #expect(try await get(second, ["-n", ns.name, "configmap", "settings"], "{.data.color}") == "orange")
            try await until("the application to run on the second cluster", timeout: 180) {
                try await get(second, ["-n", ns.name, "deployment", "app"], "{.status.readyReplicas}") == "1"
            }
            let copied = try await restored.kubectlOK(["exec", "deploy/app", "--", "sh", "-c", "cd /data && md5sum f1 f2 f3 f4"])
            #expect(copied == sums, "\(copied) vs \(sums)")
            // The namespace adopted its restore points: they appear in it (read-only), the catalog entry goes.
            try await until("the imported restore point in the recovered namespace", timeout: 90) {
                let inNamespace = try await get(second, ["-n", ns.name, "restorepoints"], "{.items[*].metadata.name}")
                let inCatalog = try await get(second, ["-n", "cairn-system", "restorepoints", "-l", "cairn.dev/source-namespace=\(ns.name)"], "{.items[*].metadata.name}")
                return !inNamespace.isEmpty && inCatalog.isEmpty
            }
            #expect(try await get(second, ["-n", ns.name, "restorepoints"], "{.items[0].spec.imported}") == "true")

            // Read-only: no backup into an import Profile.
            try await restored.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: not-here}
                spec: {profile: from-first}
                """)
            try await until("the refused backup", timeout: 60) {
                try await get(second, ["-n", ns.name, "backupaction", "not-here"], "{.status.phase}") == "Failed"
            }
            #expect(try await get(second, ["-n", ns.name, "backupaction", "not-here"], "{.status.conditions[?(@.type==\"Complete\")].reason}") == "ProfileReadOnly")

            // Revoked: the key of the token removed from the repository; the Profile says so at its next look.
            let key = try await get(first, ["-n", "cairn-system", "exportaction", "to-dr"], "{.status.receiveToken.key}")
            var env = Self.s3Env
            env["CAIRN_PASSWORD"] = drPassword
            let removed = try await ChildProcess.run([CairnBinary.path, "repo", "key", "remove", key, "--repo", "s3://\(bucket)",
                                                "--s3-endpoint", Self.endpoint], environment: env)
            #expect(removed.status == 0, "\(removed.stderr)")
            try await second.kubectlOK(["-n", "cairn-system", "annotate", "profile", "from-first", "test/poke=1", "--overwrite"])
            try await second.kubectlOK(["-n", "cairn-system", "patch", "profile", "from-first", "--type=merge", "-p", #"{"spec":{"default":false}}"#])
            try await until("the revoked token to be refused", timeout: 90) { try await readiness("from-first").0 == "TokenRejected" }
            #expect(try await readiness("from-first").1.contains("revoked"))
            // No token in any status or event of either cluster.
            for cluster in [first, second] {
                let everything = try await cluster.kubectlOK(["get", "events,profiles,exportactions,restoreactions", "-A", "-o", "json"])
                #expect(!everything.contains(good) && !everything.contains(String(good.suffix(43))))
            }
        }
    }

    @Test("a warm standby: an import Policy on the second cluster restores PostgreSQL exported from the first, transformed and kept current with every export, as the Policy's author; failover is scaling it up, and it serves every row")
    func warmStandby() async throws {
        let first = try LocalCluster.shared()
        let (second, bucket) = try await secondClusterAndBucket()
        defer { stop(second) }
        let source = try await TestProfile(first, prefix: "pgsrc")
        defer { source.remove() }
        try await s3Profile(first, "standby", bucket: bucket, password: "standby-\(UUID().uuidString)")
        defer { _ = try? first.kubectlBlocking(["-n", "cairn-system", "delete", "profile", "standby"]) }
        let secondID = try await get(second, ["namespace", "kube-system"], "{.metadata.uid}")

        try await first.withNamespace("ledger") { ns in
            _ = try await ns.hostPathVolume(forClaim: "data-db-0")
            try await ns.apply("""
                apiVersion: v1
                kind: Secret
                metadata: {name: db}
                stringData: {password: s3cret}
                ---
                """ + "\n" + SampleApplication.database(namespace: ns.name))
            try await until("PostgreSQL on the first cluster", timeout: 240) { try await psql(first, ns.name, "select 1").status == 0 }
            let create = try await psql(first, ns.name, "create table ledger (seq int primary key, entry text); insert into ledger select g, md5(g::text) from generate_series(1, 1000) g")
            #expect(create.status == 0, "\(create.stderr)")
            let sum = "select count(*) || ':' || sum(seq) || ':' || md5(string_agg(entry, ',' order by seq)) from ledger"

            /// A backup (PostgreSQL stopped for it: quiesce scale) and its export to the standby's location.
            func backupAndExport(_ name: String, receiver: Bool) async throws {
                try await ns.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: BackupAction
                    metadata: {name: \(name)}
                    spec: {profile: \(source.name), quiesce: scale}
                    """)
                try await until("backup \(name)", timeout: 240) {
                    try await get(first, ["-n", ns.name, "backupaction", name], "{.status.phase}") == "Succeeded"
                }
                try await first.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: ExportAction
                    metadata: {name: \(ns.name)-\(name), namespace: cairn-system}
                    spec:
                      profile: \(source.name)
                      destination: standby
                      namespace: \(ns.name)
                      restorePoint: \(name)
                    """ + (receiver ? "\n  receiver: {clusterID: \(secondID), expiresAfter: 2h}" : ""))
                try await until("export \(name)", timeout: 240) {
                    ["Succeeded", "Failed"].contains(try await get(first, ["-n", "cairn-system", "exportaction", "\(ns.name)-\(name)"], "{.status.phase}"))
                }
                let conditions = try await get(first, ["-n", "cairn-system", "exportaction", "\(ns.name)-\(name)"], "{.status.conditions}")
                #expect(try await get(first, ["-n", "cairn-system", "exportaction", "\(ns.name)-\(name)"], "{.status.phase}") == "Succeeded", "\(conditions)")
            }
            try await backupAndExport("one", receiver: true)
            defer { _ = try? first.kubectlBlocking(["-n", "cairn-system", "delete", "exportaction", "\(ns.name)-one", "\(ns.name)-two"]) }
            let sumOne = try await psql(first, ns.name, sum).stdout

            // The second cluster: the token, a TransformSet that keeps the standby stopped and marked, the Policy.
            try await importProfile(second, "ledger-source", token: try receiveToken(first, "\(ns.name)-one-receive-token"))
            try await second.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: TransformSet
                metadata: {name: standby, namespace: cairn-system}
                spec:
                  replicas: 0
                  transforms:
                  - name: mark the standby
                    match: {kind: StatefulSet, name: db}
                    patch: [{op: add, path: /metadata/labels, value: {dr-role: standby}}]
                ---
                apiVersion: cairn.dev/v1alpha1
                kind: Policy
                metadata: {name: ledger-standby, namespace: cairn-system}
                spec:
                  schedule: "*/10 * * * * *"
                  selector: {namespaces: [\(ns.name)]}
                  import: {profile: ledger-source, restore: {transformSet: standby}}
                """)
            let standby = TestNamespace(cluster: second, name: ns.name)
            defer {
                _ = try? second.kubectlBlocking(["-n", "cairn-system", "delete", "policy", "ledger-standby"])
                standby.cleanUpLater()
            }
            /// The import Policy's restores (name → phase) of restore point `id` (its first 16 characters).
            func restores(of id: String) async throws -> [String] {
                try await get(second, ["-n", "cairn-system", "restoreactions", "-l", "cairn.dev/policy=ledger-standby,cairn.dev/restore-point-id=\(id.prefix(16))"],
                        "{range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}").split(separator: "\n").map(String.init)
            }
            // The copy's ID (a restore point in the standby's repository has its own).
            func copyID(_ name: String) async throws -> String {
                try await get(first, ["-n", "cairn-system", "exportaction", "\(ns.name)-\(name)"], "{.status.result.copyID}")
            }
            let idOne = try await copyID("one")
            do {
                try await until("the standby's first restore", timeout: 300) {
                    try await restores(of: idOne).contains { $0.hasSuffix("=Succeeded") }
                }
            } catch {
                print(try await second.kubectl(["-n", "cairn-system", "get", "importactions,restoreactions", "-o", "yaml"]).stdout.suffix(6000))
                throw error
            }
            #expect(try await get(second, ["-n", ns.name, "statefulset", "db"], "{.spec.replicas}") == "0", "the standby runs nothing")
            #expect(try await get(second, ["-n", ns.name, "statefulset", "db"], "{.metadata.labels.dr-role}") == "standby")
            // Acting for the Policy's author (the admin who wrote it), never as Cairn's controller.
            let restoreName = try await #require(restores(of: idOne).first?.split(separator: "=").first.map(String.init))
            let requester = try await get(second, ["-n", "cairn-system", "restoreaction", restoreName], "{.metadata.annotations.cairn\\.dev/requester}")
            #expect(!requester.isEmpty && !requester.contains("serviceaccount"), "\(requester)")
            #expect(try await get(second, ["-n", "cairn-system", "policy", "ledger-standby"], "{.status.conditions[?(@.type==\"Ready\")].message}").contains("next import"))

            // More rows on the first cluster, backed up and exported: the standby follows within a run or two,
            // and never restores one restore point twice.
            let more = try await psql(first, ns.name, "insert into ledger select g, md5(g::text) from generate_series(1001, 1500) g")
            #expect(more.status == 0, "\(more.stderr)")
            let sumTwo = try await psql(first, ns.name, sum).stdout
            #expect(sumTwo != sumOne)
            try await backupAndExport("two", receiver: false)
            let idTwo = try await copyID("two")
            do {
                try await until("the standby to follow", timeout: 300) { try await restores(of: idTwo).contains { $0.hasSuffix("=Succeeded") } }
            } catch {
                print(try await second.kubectl(["-n", "cairn-system", "get", "importactions,restoreactions", "-o", "yaml"]).stdout.suffix(6000))
                throw error
            }
            let onceOne = try await restores(of: idOne), onceTwo = try await restores(of: idTwo)
            #expect(onceOne.count == 1 && onceTwo.count == 1, "each restored once: \(onceOne) \(onceTwo)")
            #expect(try await get(second, ["-n", ns.name, "statefulset", "db"], "{.spec.replicas}") == "0")
            let orphans = try await second.kubectlOK(["get", "pv", "-o", "jsonpath={range .items[?(@.status.phase==\"Available\")]}{.metadata.name} {end}"])
            #expect(!orphans.contains("data-db-0"), "an update restore makes no volume it cannot bind: \(orphans)")

            // alice, who administers team-a, cannot import (nor restore) anything.
            let attempt = try await second.kubectl(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
                apiVersion: cairn.dev/v1alpha1
                kind: ImportAction
                metadata: {name: mine}
                spec: {profile: ledger-source, restore: {targetNamespace: team-a}, namespaces: [\(ns.name)]}
                """)
            if attempt.status == 0 {
                try await until("alice's import to be refused", timeout: 60) {
                    try await get(second, ["-n", "team-a", "importaction", "mine"], "{.status.phase}") == "Failed"
                }
                #expect(try await get(second, ["-n", "team-a", "importaction", "mine"], "{.status.conditions[?(@.type==\"Complete\")].reason}") == "WrongNamespace")
            } else {
                #expect(attempt.stderr.contains("forbidden"), "\(attempt.stderr)")
            }

            // Failover: the first cluster is out of the picture; the standby is scaled up and serves every row.
            let failover = Date()
            try await second.kubectlOK(["-n", ns.name, "scale", "statefulset", "db", "--replicas=1"])
            try await until("PostgreSQL on the standby", timeout: 240) { try await psql(second, ns.name, "select 1").status == 0 }
            let served = Date().timeIntervalSince(failover)
            #expect(try await psql(second, ns.name, sum).stdout == sumTwo)
            // A cold restore of the same for comparison: one ImportAction into a new namespace, until its rows are served.
            let coldStart = Date()
            try await second.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: ImportAction
                metadata: {name: cold, namespace: cairn-system}
                spec: {profile: ledger-source, namespaces: [\(ns.name)], restore: {targetNamespace: \(ns.name)-cold}}
                """)
            let cold = TestNamespace(cluster: second, name: "\(ns.name)-cold")
            defer { cold.cleanUpLater() }
            try await until("PostgreSQL restored cold", timeout: 300) {
                try await psql(second, cold.name, sum).stdout == sumTwo
            }
            let coldSeconds = Date().timeIntervalSince(coldStart)
            // Damaged data at the exported location (every pack has a flipped byte): an import's restore fails
            // with where and why; the standby that was restored before stays as it is.
            let listing = try await ChildProcess.run(["aws", "--endpoint-url", Self.endpoint, "s3", "ls", "--recursive", "s3://\(bucket)/"],
                                               environment: Self.s3Env)
            let packs = listing.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
                .filter { $0.hasPrefix("data/") }
            #expect(!packs.isEmpty, "\(listing.stdout)")
            let scratch = NSTemporaryDirectory() + "pack-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            for pack in packs {
                _ = try await ChildProcess.run(["aws", "--endpoint-url", Self.endpoint, "s3", "cp", "s3://\(bucket)/\(pack)", scratch], environment: Self.s3Env)
                var bytes = try Data(contentsOf: URL(fileURLWithPath: scratch))
                bytes[bytes.count / 2] ^= 0x20
                try bytes.write(to: URL(fileURLWithPath: scratch))
                _ = try await ChildProcess.run(["aws", "--endpoint-url", Self.endpoint, "s3", "cp", scratch, "s3://\(bucket)/\(pack)"], environment: Self.s3Env)
            }
            try await second.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: ImportAction
                metadata: {name: damaged, namespace: cairn-system}
                spec: {profile: ledger-source, namespaces: [\(ns.name)], restore: {targetNamespace: \(ns.name)-damaged}}
                """)
            let damaged = TestNamespace(cluster: second, name: "\(ns.name)-damaged")
            defer { damaged.cleanUpLater() }
            let restoreOfDamaged = "damaged.\(ns.name)-damaged"
            try await until("the restore of damaged data to fail", timeout: 240) {
                try await get(second, ["-n", "cairn-system", "restoreaction", restoreOfDamaged], "{.status.phase}") == "Failed"
            }
            let why = try await get(second, ["-n", "cairn-system", "restoreaction", restoreOfDamaged], "{.status.conditions[?(@.type==\"Complete\")].message}")
                + (try get(second, ["-n", "cairn-system", "restoreaction", restoreOfDamaged], "{.status.result.failures}"))
            #expect(why.contains("damaged") || why.contains("corrupt") || why.contains("authentic"), "\(why)")
            print("restore of damaged data: \(why.prefix(400))")
            #expect(try await get(second, ["-n", ns.name, "statefulset", "db"], "{.spec.replicas}") == "1", "the standby is untouched")
            #expect(try await psql(second, ns.name, sum).stdout == sumTwo)

            print("recovery time: warm standby \(String(format: "%.1f", served)) s (scale up), cold restore \(String(format: "%.1f", coldSeconds)) s (ImportAction → rows served)")
        }
    }
}

/// Cairn's own recovery, on a cluster of its own (`dr2`), beside the other second-cluster tests.
@Suite("recovery of Cairn on a new cluster")
struct SecondClusterRecoveryTests: TwoClusterScenario {
    @Test("the cluster is lost: on a brand-new cluster, Cairn and one Profile on the old repository show every application and restore point of the lost one, and restore Cairn's configuration (no Secret in it) and the applications, namespaces created")
    func recoverOnNewCluster() async throws {
        // `dr2` plays production: Cairn's configuration, an application, their backups; then it is destroyed.
        let (lost, bucket) = try await secondClusterAndBucket(name: "dr2")
        defer { stop(lost) }
        let password = "prod-\(UUID().uuidString)"
        let archive = "archive-\(UUID().uuidString.prefix(8).lowercased())"
        try await s3Profile(lost, "main", bucket: bucket, password: password, initialize: true)
        try await lost.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: \(archive)-password, namespace: cairn-system}
            stringData: {password: not-in-any-backup}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: archive, namespace: cairn-system}
            spec:
              location: {filesystem: {path: /var/lib/cairn/tests/\(archive)}}
              passwordSecretRef: {name: \(archive)-password}
              init: true
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: TransformSet
            metadata: {name: to-new-site, namespace: cairn-system}
            spec:
              transforms:
              - name: site
                match: {kind: ConfigMap, name: settings}
                patch: [{op: replace, path: /data/site, value: new}]
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Policy
            metadata: {name: yearly, namespace: cairn-system}
            spec:
              profile: main
              schedule: "@yearly"
              selector: {namespaces: [shop, cairn-system]}
              retention: {last: 3}
            """)
        defer { try? FileManager.default.removeItem(atPath: "/var/lib/cairn/tests/\(archive)") }
        try await until("the lost cluster's Profiles", timeout: 120) {
            for name in ["main", "archive"]
            where try await get(lost, ["-n", "cairn-system", "profile", name], "{.status.conditions[?(@.type==\"Ready\")].status}") != "True" {
                return false
            }
            return true
        }
        let app = TestNamespace(cluster: lost, name: "shop")
        try await lost.kubectlOK(["create", "namespace", "shop"])
        let data = try await app.hostPathVolume(forClaim: "data")
        let fill = try await ChildProcess.run(["sh", "-c", "for i in 1 2 3; do head -c 1048576 /dev/urandom > '\(data)'/f$i; done; cd '\(data)' && md5sum f1 f2 f3"])
        #expect(fill.status == 0)
        let sums = fill.stdout
        try await app.kubectlOK(["create", "configmap", "settings", "--from-literal=site=old"])
        try await app.apply(ControllerClusterTests.claimAndWorkload(claim: "data", deployment: "app"))
        for (namespace, name) in [("shop", "before-the-fire"), ("cairn-system", "configuration")] {
            try await lost.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: \(name), namespace: \(namespace)}
                spec: {profile: main}
                """)
        }
        for (namespace, name) in [("shop", "before-the-fire"), ("cairn-system", "configuration")] {
            try await until("backup \(namespace)/\(name)", timeout: 240) {
                try await get(lost, ["-n", namespace, "backupaction", name], "{.status.phase}") == "Succeeded"
            }
        }
        // Cairn's configuration: the two Profiles, the TransformSet, the Policy — nothing else of cairn-system.
        let detail = (try? await get(lost, ["-n", "cairn-system", "backupaction", "configuration"], "{.status.result}")) ?? ""
        #expect(try await get(lost, ["-n", "cairn-system", "backupaction", "configuration"], "{.status.result.objects}") == "4",
                "\(detail)")

        // The fire: the cluster and every byte on it are gone; only the bucket remains.
        stop(lost)
        let fresh = LocalCluster.named("dr2")
        try await fresh.up()
        try await CairnInstallation.ensure(fresh)
        try await fresh.apply(Self.s3Objects(bucket: bucket))
        try await s3Profile(fresh, "main", bucket: bucket, password: password)
        var entries: [String] = []
        try await until("the lost cluster's catalog", timeout: 180) {
            entries = try await get(fresh, ["-n", "cairn-system", "restorepoints", "-l", "cairn.dev/source-namespace"],
                              "{.items[*].metadata.name}").split(separator: " ").map(String.init).sorted()
            return entries.count == 2
        }
        #expect(entries == ["cairn-system.configuration", "shop.before-the-fire"], "\(entries)")

        // Cairn's configuration first (what exists stays), then the application, through the restored TransformSet.
        try await fresh.apply("""
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: recover-cairn, namespace: cairn-system}
            spec: {restorePoint: cairn-system.configuration, existing: skip}
            """)
        try await until("Cairn's configuration restored", timeout: 180) {
            ["Succeeded", "Failed"].contains(try await get(fresh, ["-n", "cairn-system", "restoreaction", "recover-cairn"], "{.status.phase}"))
        }
        let recoverCairn = (try? await get(fresh, ["-n", "cairn-system", "restoreaction", "recover-cairn"], "{.status.conditions}")) ?? ""
        #expect(try await get(fresh, ["-n", "cairn-system", "restoreaction", "recover-cairn"], "{.status.phase}") == "Succeeded",
                "\(recoverCairn)")
        #expect(try await get(fresh, ["-n", "cairn-system", "policy", "yearly"], "{.spec.schedule}") == "@yearly")
        #expect(try await get(fresh, ["-n", "cairn-system", "transformset", "to-new-site"], "{.metadata.name}") == "to-new-site")
        // No Secret came back: the archive Profile says which one to create.
        #expect(try await fresh.kubectl(["-n", "cairn-system", "get", "secret", "\(archive)-password"]).status != 0)
        try await until("the archive Profile to say what it misses", timeout: 90) {
            try await get(fresh, ["-n", "cairn-system", "profile", "archive"], "{.status.conditions[?(@.type==\"Ready\")].reason}") == "SecretNotFound"
        }
        try await until("the Policy to be ready again", timeout: 90) {
            try await get(fresh, ["-n", "cairn-system", "policy", "yearly"], "{.status.conditions[?(@.type==\"Ready\")].reason}") == "Scheduled"
        }
        #expect(try await get(fresh, ["-n", "cairn-system", "policy", "yearly"], "{.metadata.annotations.cairn\\.dev/requester}").contains("cairn-admin"),
                "the Policy's author is whoever restored it")

        try await fresh.apply("""
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: recover-shop, namespace: cairn-system}
            spec: {restorePoint: shop.before-the-fire, transformSet: to-new-site}
            """)
        let restored = TestNamespace(cluster: fresh, name: "shop")
        defer { restored.cleanUpLater() }
        try await until("the application restored", timeout: 240) {
            ["Succeeded", "Failed"].contains(try await get(fresh, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.phase}"))
        }
        let recoverShop = (try? await get(fresh, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.conditions}")) ?? ""
        #expect(try await get(fresh, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.phase}") == "Succeeded",
                "\(recoverShop)")
        #expect(try await get(fresh, ["-n", "shop", "configmap", "settings"], "{.data.site}") == "new")
        try await until("the application to run on the new cluster", timeout: 180) {
            try await get(fresh, ["-n", "shop", "deployment", "app"], "{.status.readyReplicas}") == "1"
        }
        let copied = try await restored.kubectlOK(["exec", "deploy/app", "--", "sh", "-c", "cd /data && md5sum f1 f2 f3"])
        #expect(copied == sums, "\(copied) vs \(sums)")
    }
}
