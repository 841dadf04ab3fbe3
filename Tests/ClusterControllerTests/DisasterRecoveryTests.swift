import Foundation
import Kube
import KubeTesting
import Repository
import Testing
import TestSupport

/// Disaster recovery across two local clusters through the machine's S3 server (`scripts/local-cluster s3
/// up`, reached from inside both clusters): an application exported on the first is imported with a receive
/// token on the second and restored there — namespace created, transformed — with its data byte for byte.
/// Runs in the second phase of `scripts/test` (with the other second-cluster tests).
@Suite("disaster recovery across two clusters", .serialized)
struct SecondClusterDisasterRecoveryTests {
    static let endpoint = "http://10.254.255.1:9000"
    static let s3Env = ["AWS_ACCESS_KEY_ID": "cairn", "AWS_SECRET_ACCESS_KEY": "cairn-secret", "AWS_DEFAULT_REGION": "us-east-1"]

    func until(_ what: String, timeout: TimeInterval = 120, _ condition: () async throws -> Bool) async throws {
        try await eventually(what, timeout: .seconds(timeout), condition)
    }

    func get(_ cluster: LocalCluster, _ args: [String], _ path: String) throws -> String {
        try cluster.kubectlOK(["get"] + args + ["-o", "jsonpath=\(path)"])
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

    @Test("export on one cluster, import with a token and restore with transforms on another; bad tokens refused with why")
    func exportImportRestore() async throws {
        let first = try LocalCluster.shared()
        try CairnInstallation.ensure(first)
        try LocalCluster.sharedS3()
        let second = LocalCluster.named("dr")
        try second.up()
        defer {
            try? second.down(purge: true)
            if let verify = try? second.verifyDown() { #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)") }
        }
        try CairnInstallation.ensure(second)
        let bucket = "dr-\(UUID().uuidString.prefix(8).lowercased())"
        let mb = try ChildProcess.run(["aws", "--endpoint-url", Self.endpoint, "s3", "mb", "s3://\(bucket)"], environment: Self.s3Env)
        #expect(mb.status == 0, "\(mb.stderr)")
        let source = try await TestProfile(first, prefix: "src")
        defer { source.remove() }
        let drPassword = "dr-\(UUID().uuidString)"
        for cluster in [first, second] { try cluster.apply(Self.s3Objects(bucket: bucket)) }
        try first.apply("""
            apiVersion: v1
            kind: Secret
            metadata: {name: dr-password, namespace: cairn-system}
            stringData: {password: "\(drPassword)"}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: dr, namespace: cairn-system}
            spec:
              location: {s3: {bucket: \(bucket), endpoint: "\(Self.endpoint)", insecure: true, pathStyle: true}}
              passwordSecretRef: {name: dr-password}
              credentialsSecretRef: {name: dr-s3-credentials}
            """)
        defer { _ = try? first.kubectl(["-n", "cairn-system", "delete", "profile", "dr"]) }
        let secondID = try get(second, ["namespace", "kube-system"], "{.metadata.uid}")
        let firstID = try get(first, ["namespace", "kube-system"], "{.metadata.uid}")

        try await first.withNamespace("shop") { ns in
            let data = try ns.hostPathVolume(forClaim: "data")
            let fill = try ChildProcess.run(["sh", "-c", "for i in 1 2 3 4; do head -c 2097152 /dev/urandom > '\(data)'/f$i; done; cd '\(data)' && md5sum f1 f2 f3 f4"])
            #expect(fill.status == 0)
            let sums = fill.stdout
            try ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            try ns.apply(ControllerClusterTests.claimAndWorkload(claim: "data", deployment: "app"))
            try ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: nightly}
                spec: {profile: \(source.name)}
                """)
            try await until("the backup", timeout: 180) { try get(first, ["-n", ns.name, "backupaction", "nightly"], "{.status.phase}") == "Succeeded" }
            // Two exports of it to S3: a token for the second cluster, and one for the first (wrong there).
            for (name, cluster) in [("to-dr", secondID), ("to-self", firstID)] {
                try first.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: ExportAction
                    metadata: {name: \(name), namespace: cairn-system}
                    spec: {profile: \(source.name), destination: dr, namespace: \(ns.name), receiver: {clusterID: \(cluster), expiresAfter: 1h}}
                    """)
            }
            defer { _ = try? first.kubectl(["-n", "cairn-system", "delete", "exportaction", "to-dr", "to-self"]) }
            for name in ["to-dr", "to-self"] {
                try await until("export \(name)", timeout: 180) {
                    ["Succeeded", "Failed"].contains(try get(first, ["-n", "cairn-system", "exportaction", name], "{.status.phase}"))
                }
                let conditions = try get(first, ["-n", "cairn-system", "exportaction", name], "{.status.conditions}")
                #expect(try get(first, ["-n", "cairn-system", "exportaction", name], "{.status.phase}") == "Succeeded", "\(conditions)")
            }
            func token(_ export: String) throws -> String {
                String(decoding: Data(base64Encoded: try get(first, ["-n", "cairn-system", "secret", "\(export)-receive-token"], "{.data.token}")) ?? Data(),
                       as: UTF8.self)
            }
            let good = try token("to-dr"), wrongCluster = try token("to-self")
            var tampered = Array(good)
            tampered[good.count / 2] = tampered[good.count / 2] == "x" ? "y" : "x"

            // The second cluster: an import Profile per token.
            func importProfile(_ name: String, token: String, insecure: Bool = true) throws {
                try second.apply("""
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
            func readiness(_ name: String) throws -> (String, String) {
                (try get(second, ["-n", "cairn-system", "profile", name], "{.status.conditions[?(@.type==\"Ready\")].reason}"),
                 try get(second, ["-n", "cairn-system", "profile", name], "{.status.conditions[?(@.type==\"Ready\")].message}"))
            }
            try importProfile("from-first", token: good)
            try importProfile("wrong-cluster", token: wrongCluster)
            try importProfile("tampered", token: String(tampered))
            try importProfile("plain-http", token: good, insecure: false)
            do {
                try await until("the import Profiles to be looked at", timeout: 120) {
                    try readiness("from-first").0 == "RepositoryReady" && readiness("wrong-cluster").0 == "TokenRejected"
                        && readiness("tampered").0 == "TokenRejected" && readiness("plain-http").0 == "InsecureEndpoint"
                }
            } catch {
                for name in ["from-first", "wrong-cluster", "tampered", "plain-http"] { print("profile \(name): \((try? readiness(name)) ?? ("?", "?"))") }
                print(try second.kubectl(["-n", "cairn-system", "logs", "deploy/cairn-controller", "--tail=60"]).stdout)
                throw error
            }
            #expect(try readiness("wrong-cluster").1.contains("issued for another cluster"))
            #expect(try readiness("plain-http").1.contains("spec.import.insecure"), "the receiving side decides about plain http")
            #expect(try readiness("tampered").1.contains("altered or damaged") || readiness("tampered").1.contains("damaged"))

            // The catalog: the namespace does not exist on the second cluster.
            var entry = ""
            try await until("the catalog entry", timeout: 90) {
                entry = try get(second, ["-n", "cairn-system", "restorepoints", "-l", "cairn.dev/source-namespace=\(ns.name)"], "{.items[*].metadata.name}")
                return !entry.isEmpty
            }
            #expect(!entry.contains(" "), "one entry: \(entry)")
            #expect(try second.kubectl(["get", "namespace", ns.name]).status != 0)

            // Restore it there, transformed: the namespace is created, the data is the same byte for byte.
            try second.apply("""
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
            defer { restored.cleanUp() }
            try await until("the restore on the second cluster", timeout: 240) {
                ["Succeeded", "Failed"].contains(try get(second, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.phase}"))
            }
            let restoreConditions = try get(second, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.conditions}")
            #expect(try get(second, ["-n", "cairn-system", "restoreaction", "recover-shop"], "{.status.phase}") == "Succeeded", "\(restoreConditions)")
            #expect(try get(second, ["-n", ns.name, "configmap", "settings"], "{.data.color}") == "orange")
            try await until("the application to run on the second cluster", timeout: 180) {
                try get(second, ["-n", ns.name, "deployment", "app"], "{.status.readyReplicas}") == "1"
            }
            let copied = try restored.kubectlOK(["exec", "deploy/app", "--", "sh", "-c", "cd /data && md5sum f1 f2 f3 f4"])
            #expect(copied == sums, "\(copied) vs \(sums)")
            // The namespace adopted its restore points: they appear in it (read-only), the catalog entry goes.
            try await until("the imported restore point in the recovered namespace", timeout: 90) {
                let inNamespace = try get(second, ["-n", ns.name, "restorepoints"], "{.items[*].metadata.name}")
                let inCatalog = try get(second, ["-n", "cairn-system", "restorepoints", "-l", "cairn.dev/source-namespace=\(ns.name)"], "{.items[*].metadata.name}")
                return !inNamespace.isEmpty && inCatalog.isEmpty
            }
            #expect(try get(second, ["-n", ns.name, "restorepoints"], "{.items[0].spec.imported}") == "true")

            // Read-only: no backup into an import Profile.
            try restored.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: not-here}
                spec: {profile: from-first}
                """)
            try await until("the refused backup", timeout: 60) {
                try get(second, ["-n", ns.name, "backupaction", "not-here"], "{.status.phase}") == "Failed"
            }
            #expect(try get(second, ["-n", ns.name, "backupaction", "not-here"], "{.status.conditions[?(@.type==\"Complete\")].reason}") == "ProfileReadOnly")

            // Revoked: the key of the token removed from the repository; the Profile says so at its next look.
            let key = try get(first, ["-n", "cairn-system", "exportaction", "to-dr"], "{.status.receiveToken.key}")
            var env = Self.s3Env
            env["CAIRN_PASSWORD"] = drPassword
            let removed = try ChildProcess.run([CairnBinary.path, "repo", "key", "remove", key, "--repo", "s3://\(bucket)",
                                                "--s3-endpoint", Self.endpoint], environment: env)
            #expect(removed.status == 0, "\(removed.stderr)")
            try second.kubectlOK(["-n", "cairn-system", "annotate", "profile", "from-first", "test/poke=1", "--overwrite"])
            try second.kubectlOK(["-n", "cairn-system", "patch", "profile", "from-first", "--type=merge", "-p", #"{"spec":{"default":false}}"#])
            try await until("the revoked token to be refused", timeout: 90) { try readiness("from-first").0 == "TokenRejected" }
            #expect(try readiness("from-first").1.contains("revoked"))
            // No token in any status or event of either cluster.
            for cluster in [first, second] {
                let everything = try cluster.kubectlOK(["get", "events,profiles,exportactions,restoreactions", "-A", "-o", "json"])
                #expect(!everything.contains(good) && !everything.contains(String(good.suffix(43))))
            }
        }
    }
}
