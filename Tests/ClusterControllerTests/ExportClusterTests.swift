import Foundation
import Kube
import KubeTesting
import Repository
import Storage
import Testing

extension ControllerClusterTests {
    /// A destination holding a repository that was not made for copies, and an export into it.
    func exportRefusedUnpaired(source: TestProfile, namespace: String) async throws {
        let unpaired = try await TestProfile(cluster, prefix: "unpaired")
        defer { unpaired.remove() }
        let name = "refused-\(unpaired.name)"
        try await cluster.apply("""
            apiVersion: cairn.dev/v1alpha1
            kind: ExportAction
            metadata: {name: \(name), namespace: cairn-system}
            spec: {profile: \(source.name), destination: \(unpaired.name), namespace: \(namespace)}
            """)
        defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "exportaction", name]) }
        try await until("the refused export to end", timeout: 120) {
            try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.phase}") == "Failed"
        }
        #expect(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.conditions[?(@.type==\"Complete\")].reason}")
                == "DestinationNotPaired")
        #expect(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.conditions[?(@.type==\"Complete\")].message}")
            .contains("empty location"))
        #expect(try await unpaired.restorePointIDs(namespace: namespace).isEmpty)
    }

    @Test("an ExportAction copies a restore point into another Profile's repository: whole, re-encrypted, then only what changed; it hands out a receive token in a Secret only")
    func exportAction() async throws {
        let source = try await TestProfile(cluster, prefix: "src")
        defer { source.remove() }
        let destination = try await TestProfile(cluster, prefix: "dst", exportDestination: true)
        defer { destination.remove() }
        try await cluster.withNamespace("export") { ns in
            let data = try await ns.hostPathVolume(forClaim: "data")
            // 8 MiB of incompressible data in 8 files.
            let fill = try await ChildProcess.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do head -c 1048576 /dev/urandom > '\(data)'/f$i; done"])
            #expect(fill.status == 0, "\(fill.stderr)")
            try await ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            try await ns.apply(Self.claimAndWorkload(claim: "data", deployment: "app"))
            func backup(_ name: String) async throws {
                try await ns.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: BackupAction
                    metadata: {name: \(name)}
                    spec: {profile: \(source.name)}
                    """)
                try await until("backup \(name)", timeout: 180) {
                    try await jsonpath(ns, ["backupaction", name], "{.status.phase}") == "Succeeded"
                }
            }
            func export(_ name: String, _ extra: String = "") async throws {
                try await cluster.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: ExportAction
                    metadata: {name: \(name), namespace: cairn-system}
                    spec: {profile: \(source.name), destination: \(destination.name), namespace: \(ns.name)\(extra)}
                    """)
                try await until("export \(name)", timeout: 180) {
                    ["Succeeded", "Failed"].contains(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.phase}"))
                }
                let conditions = try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.conditions}")
                #expect(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.phase}") == "Succeeded", "\(conditions)")
            }
            func status(_ name: String, _ path: String) async throws -> Int64 {
                Int64(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", name], "{.status.\(path)}")) ?? -1
            }
            try await backup("first")
            let clusterID = try await jsonpath(nil, ["namespace", "kube-system"], "{.metadata.uid}")
            let first = "\(ns.name)-1"
            defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "exportaction", first, "\(ns.name)-2", "\(ns.name)-3"]) }
            try await export(first, ", receiver: {clusterID: \(clusterID), expiresAfter: 2h}")
            #expect(try await status(first, "progress.transferredBytes") > 8 << 20)
            #expect(try await status(first, "progress.volumes") == 1)
            #expect(try await status(first, "progress.volumesDone") == 1)
            #expect(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", first], "{.status.result.restorePointID}")
                    == jsonpath(ns, ["restorepoint", "first"], "{.spec.id}"))

            // The destination: its own repository, created paired, opened with its own password only; the copy
            // restores byte for byte.
            let copies = try await destination.restorePointIDs(namespace: ns.name)
            #expect(copies.count == 1)
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(ns.name)").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            let restored = try await destination.cairn(["restore", copies[0], "--target", out])
            #expect(restored.status == 0, "\(restored.stderr)")
            let compare = try await ChildProcess.run(["sh", "-c", "cd '\(data)' && for f in f*; do cmp \"$f\" '\(out)/volumes/data/'\"$f\" || exit 1; done"])
            #expect(compare.status == 0, "\(compare.stdout)\(compare.stderr)")
            let check = try await destination.cairn(["repo", "check", "--read-data"])
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
            let wrong = try await ChildProcess.run([CairnBinary.path, "snapshots", "--repo", destination.path],
                                             environment: ["CAIRN_PASSWORD": source.password])
            #expect(wrong.status != 0 && wrong.stderr.contains("wrong password"))

            // The receive token: in its Secret, never in the status; it opens the destination here and only here.
            let secret = "\(first)-receive-token"
            let text = String(decoding: Data(base64Encoded: try await jsonpath(nil, ["-n", "cairn-system", "secret", secret], "{.data.token}")) ?? Data(),
                              as: UTF8.self)
            let token = try ReceiveToken.decode(text)
            let statusJSON = try await cluster.kubectlOK(["-n", "cairn-system", "get", "exportaction", first, "-o", "json"])
            let events = try await cluster.kubectlOK(["-n", "cairn-system", "get", "events", "-o", "json"])
            #expect(!statusJSON.contains(token.password) && !statusJSON.contains(text) && !events.contains(token.password))
            #expect(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", first], "{.status.receiveToken.secret}") == secret)
            let store = FileBlobStore(root: URL(fileURLWithPath: destination.path))
            let opened = try await token.open(store: store, clusterID: clusterID)
            #expect(try await opened.listFiles(.snapshots).count == 1)
            await #expect(throws: RepositoryError.self) { _ = try await token.open(store: store, clusterID: "another-cluster") }

            // The same restore point again: nothing sent. Then 1 MiB of 8 changed: about that much is sent.
            let again = "\(ns.name)-2"
            try await export(again, ", restorePoint: first")
            #expect(try await jsonpath(nil, ["-n", "cairn-system", "exportaction", again], "{.status.result.alreadyThere}") == "true")
            #expect(try await status(again, "progress.transferredBytes") == 0)
            let change = try await ChildProcess.run(["sh", "-c", "head -c 1048576 /dev/urandom > '\(data)'/f3"])
            #expect(change.status == 0)
            try await backup("second")
            let incremental = "\(ns.name)-3"
            try await export(incremental)
            let sent = try await status(incremental, "progress.transferredBytes"), total = try await status(incremental, "progress.totalBytes")
            print("export after 1 MiB of 8 changed: sent \(sent) of \(total) bytes, read \(try await status(incremental, "progress.readBytes"))")
            #expect(sent > 1 << 20 && sent < 3 << 19, "sent \(sent)")
            #expect(try await destination.restorePointIDs(namespace: ns.name).count == 2)

            // The destination Profile mirrors its copies as RestorePoints of the namespace.
            try await until("the copies to appear as RestorePoints", timeout: 60) {
                try await names(ns, "restorepoints", selector: "cairn.dev/profile=\(destination.name)").count == 2
            }
            try await exportRefusedUnpaired(source: source, namespace: ns.name)
        }
    }

    @Test("a Policy with export copies every backup to its export Profile, keeps the export's own retention there and one receive token")
    func policyExport() async throws {
        let source = try await TestProfile(cluster, prefix: "psrc")
        defer { source.remove() }
        let destination = try await TestProfile(cluster, prefix: "pdst", exportDestination: true)
        defer { destination.remove() }
        try await cluster.withNamespace("pexport") { ns in
            try await ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            let policy = "\(source.name)-dr"
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: Policy
                metadata: {name: \(policy), namespace: cairn-system}
                spec:
                  profile: \(source.name)
                  selector: {namespaces: [\(ns.name)]}
                  schedule: "*/10 * * * * *"
                  retention: {last: 3}
                  export:
                    profile: \(destination.name)
                    retention: {last: 1}
                    receiver: {expiresAfter: 1h}
                """)
            defer {
                _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", policy])
                _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "exportactions", "-l", "cairn.dev/policy=\(policy)"])
            }
            try await until("three exports to succeed", timeout: 180) {
                let phases = try await jsonpath(nil, ["-n", "cairn-system", "exportactions", "-l", "cairn.dev/policy=\(policy)"], "{.items[*].status.phase}")
                return phases.split(separator: " ").filter { $0 == "Succeeded" }.count >= 3
            }
            try await cluster.kubectlOK(["-n", "cairn-system", "patch", "policy", policy, "--type", "merge", "-p", #"{"spec":{"paused":true}}"#])
            try await until("running actions to finish", timeout: 120) {
                let backups = try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ")
                let exports = try await jsonpath(nil, ["-n", "cairn-system", "exportactions", "-l", "cairn.dev/policy=\(policy)"], "{.items[*].status.phase}")
                    .split(separator: " ")
                return (backups + exports).allSatisfy { $0 == "Succeeded" || $0 == "Failed" }
            }
            // Each export names its policy's restore point; the export retention keeps one copy there.
            let exports = try await names(ns, "restorepoints", selector: "cairn.dev/profile=\(source.name)")
            #expect(!exports.isEmpty && exports.count <= 3)
            try await until("the export retention to leave one copy", timeout: 90) {
                guard try await names(ns, "restorepoints", selector: "cairn.dev/profile=\(destination.name)").count == 1 else { return false }
                return try await destination.restorePointIDs(namespace: ns.name).count == 1
            }
            #expect(try await source.restorePointIDs(namespace: ns.name).count >= 2, "the source keeps its own retention")
            // One token for the policy, issued once: one receive key in the destination.
            let secret = "\(policy)-receive-token"
            #expect(!(try await jsonpath(nil, ["-n", "cairn-system", "secret", secret], "{.data.token}")).isEmpty)
            let keys = try await destination.cairn(["repo", "key", "list", "--json"])
            #expect(keys.status == 0, "\(keys.stderr)")
            let rows = (try JSONSerialization.jsonObject(with: Data(keys.stdout.utf8)) as? [[String: Any]]) ?? []
            #expect(rows.count == 2, "the Profile's key and one receive key: \(keys.stdout)")
        }
    }

    @Test("a Policy's export on its own schedule copies each application's newest restore point at its times, not every backup")
    func scheduledExport() async throws {
        let source = try await TestProfile(cluster, prefix: "ssrc")
        defer { source.remove() }
        let destination = try await TestProfile(cluster, prefix: "sdst", exportDestination: true)
        defer { destination.remove() }
        try await cluster.withNamespace("sexport") { ns in
            try await ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            let policy = "\(source.name)-nightly"
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: Policy
                metadata: {name: \(policy), namespace: cairn-system}
                spec:
                  profile: \(source.name)
                  selector: {namespaces: [\(ns.name)]}
                  schedule: "*/5 * * * * *"
                  export: {profile: \(destination.name), schedule: "*/20 * * * * *"}
                """)
            defer {
                _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", policy])
                _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "exportactions", "-l", "cairn.dev/policy=\(policy)"])
            }
            func exports() async throws -> [(name: String, phase: String)] {
                try await jsonpath(nil, ["-n", "cairn-system", "exportactions", "-l", "cairn.dev/policy=\(policy)"],
                             "{range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}")
                    .split(separator: "\n").map { line in
                        let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                        return (parts[0], parts.count > 1 ? parts[1] : "")
                    }
            }
            try await until("two scheduled exports to succeed", timeout: 150) {
                try await exports().filter { $0.phase == "Succeeded" }.count >= 2
            }
            #expect(!(try await jsonpath(nil, ["-n", "cairn-system", "policy", policy], "{.status.nextExportTime}")).isEmpty)
            try await cluster.kubectlOK(["-n", "cairn-system", "patch", "policy", policy, "--type", "merge", "-p", #"{"spec":{"paused":true}}"#])
            try await until("running actions to finish", timeout: 120) {
                let backups = try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ")
                return try await (backups + exports().map { Substring($0.phase) }).allSatisfy { $0 == "Succeeded" || $0 == "Failed" }
            }
            let made = try await exports()
            let backups = try await names(ns, "restorepoints", selector: "cairn.dev/profile=\(source.name)")
            #expect(made.allSatisfy { $0.name.hasPrefix("\(ns.name).\(policy)-export-") }, "at the export's times only: \(made)")
            #expect(backups.count > made.count, "\(backups.count) backups, \(made.count) exports")
            // Each export copied the restore point that was newest at its time: a restore point of the policy.
            for export in made where export.phase == "Succeeded" {
                let point = try await jsonpath(nil, ["-n", "cairn-system", "exportaction", export.name], "{.spec.restorePoint}")
                #expect(backups.contains(point), "\(export.name) exported \(point)")
            }
            #expect(try await destination.restorePointIDs(namespace: ns.name).count >= 2)
        }
    }
}
