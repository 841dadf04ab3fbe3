import Foundation
import Kube
import KubeTesting
import Testing

/// A hostile namespace user against Cairn, on the real cluster with real tokens: alice holds `admin` and
/// `cairn-basic` in team-a and nothing else. Every attempt must fail with a clear reason in the action's
/// status (or at admission), and nothing outside her rights may change — checked with kubectl as admin.
extension ControllerClusterTests {
    /// Binds `cairn-basic` to `user` in `namespace` and waits until the API server applies it; the returned
    /// closure removes the binding.
    func bindCairnBasic(_ user: LocalCluster.User, in namespace: String) async throws -> @Sendable () -> Void {
        let binding = "\(user.rawValue)-cairn-basic"
        let cluster = self.cluster
        try await cluster.apply("""
            apiVersion: rbac.authorization.k8s.io/v1
            kind: RoleBinding
            metadata: {name: \(binding), namespace: \(namespace)}
            roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cairn-basic}
            subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: \(user.rawValue)}]
            """)
        try await until("\(user.rawValue)'s binding in \(namespace) to take effect", timeout: 30) {
            try await cluster.kubectl(["-n", namespace, "auth", "can-i", "create", "restoreactions.cairn.dev"], as: user).stdout.hasPrefix("yes")
        }
        return { _ = try? cluster.kubectlBlocking(["-n", namespace, "delete", "rolebinding", binding]) }
    }

    /// Creates a RestoreAction as alice in team-a and waits until it ends; its status.
    func aliceRestore(_ name: String, _ spec: String) async throws -> (phase: String, failures: String, message: String) {
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: \(name)}
            spec: \(spec)
            """)
        func get(_ path: String) async throws -> String {
            try await cluster.kubectlOK(["-n", "team-a", "get", "restoreaction", name, "-o", "jsonpath=\(path)"], as: .alice)
        }
        try await until("restore \(name) to end", timeout: 120) { ["Succeeded", "Failed"].contains(try await get("{.status.phase}")) }
        return (try await get("{.status.phase}"), try await get("{.status.result.failures}"),
                try await get("{.status.conditions[?(@.type==\"Complete\")].message}"))
    }

    @Test("tenancy: transforms cannot turn a restore into cluster-admin, another namespace, Cairn's own kinds or a hostPath volume; quotas and namespace labels stay the administrators'")
    func hostileRestores() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        let s = String(UUID().uuidString.prefix(6).lowercased())
        let unbind = try await bindCairnBasic(.alice, in: "team-a")
        try await cluster.apply("""
            apiVersion: v1
            kind: ResourceQuota
            metadata: {name: quota-\(s), namespace: team-a}
            spec: {hard: {configmaps: "40"}}
            """)
        try await cluster.kubectlOK(["label", "namespace", "team-a", "cairn-test/level=privileged", "--overwrite"])
        defer {
            unbind()
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "resourcequota", "quota-\(s)"])
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "configmap", "settings-\(s)"])
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "backupaction,restoreaction", "--all"])
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "restorepoints", "--all"])
            _ = try? cluster.kubectlBlocking(["label", "namespace", "team-a", "cairn-test/level-"])
            _ = try? cluster.kubectlBlocking(["delete", "clusterrolebinding", "settings-\(s)", "pwn-\(s)"])
            _ = try? cluster.kubectlBlocking(["delete", "pv", "settings-\(s)"])
        }
        try await cluster.kubectlOK(["-n", "team-a", "create", "configmap", "settings-\(s)", "--from-literal=color=teal"], as: .alice)
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: base-\(s)}
            spec: {profile: \(profile.name)}
            """)
        try await until("alice's backup", timeout: 120) {
            try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", "base-\(s)", "-o", "jsonpath={.status.phase}"], as: .alice) == "Succeeded"
        }
        // The record of who asked: alice, whatever she claimed.
        let requester = try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", "base-\(s)", "-o",
                                               #"jsonpath={.metadata.annotations.cairn\.dev/requester}"#])
        #expect(requester.contains(#""username":"alice""#), "\(requester)")
        // The administrator tightens what alice may do after the backup.
        try await cluster.kubectlOK(["-n", "team-a", "patch", "resourcequota", "quota-\(s)", "--type", "merge", "-p", #"{"spec":{"hard":{"configmaps":"30"}}}"#])
        try await cluster.kubectlOK(["label", "namespace", "team-a", "cairn-test/level=restricted", "--overwrite"])

        let only = "[ConfigMap/settings-\(s)]"
        let attacks: [(String, String)] = [
            ("crb", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: replace, path: /apiVersion, value: rbac.authorization.k8s.io/v1}, {op: replace, path: /kind, value: ClusterRoleBinding}, {op: remove, path: /metadata/namespace}, {op: add, path: /roleRef, value: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}, {op: add, path: /subjects, value: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]}]}]}}"#),
            ("whole", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: replace, path: "", value: {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: pwn-\#(s)}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]}}]}]}}"#),
            ("rolebinding", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: replace, path: /apiVersion, value: rbac.authorization.k8s.io/v1}, {op: replace, path: /kind, value: RoleBinding}, {op: remove, path: /data}, {op: add, path: /roleRef, value: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}, {op: add, path: /subjects, value: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]}]}]}}"#),
            ("elsewhere", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: replace, path: /metadata/namespace, value: team-b}]}]}}"#),
            ("moved", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: copy, from: /data/color, path: /metadata/namespace}]}]}}"#),
            ("admin-action", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: replace, path: "", value: {apiVersion: cairn.dev/v1alpha1, kind: RestoreAction, metadata: {name: pwn-\#(s), namespace: cairn-system}, spec: {restorePoint: base-\#(s), restorePointNamespace: team-a, targetNamespace: kube-system}}}]}]}}"#),
            ("hostpath", #"{restorePoint: base-\#(s), existing: skip, only: \#(only), transforms: {transforms: [{name: x, patch: [{op: replace, path: /kind, value: PersistentVolume}, {op: remove, path: /metadata/namespace}, {op: add, path: /spec, value: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /}}}]}]}}"#),
        ]
        for (name, spec) in attacks {
            let result = try await aliceRestore("\(name)-\(s)", spec)
            #expect(result.phase == "Failed", "\(name): \(result)")
            // Refused after the transform — or, replacing the whole object, already by the JSON patch.
            #expect(result.failures.contains("forbidden") || result.failures.contains("cannot remove the whole document"),
                    "\(name): \(result.failures)")
        }
        // Nothing outside alice's rights changed.
        #expect(try await cluster.kubectl(["get", "clusterrolebinding", "settings-\(s)"]).status != 0)
        #expect(try await cluster.kubectl(["-n", "team-a", "get", "rolebinding", "settings-\(s)"]).status != 0)
        #expect(try await cluster.kubectl(["get", "clusterrolebinding", "pwn-\(s)"]).status != 0)
        #expect(try await cluster.kubectl(["-n", "team-b", "get", "configmap", "settings-\(s)"]).status != 0)
        #expect(try await cluster.kubectl(["-n", "cairn-system", "get", "restoreaction", "pwn-\(s)"]).status != 0)
        #expect(try await cluster.kubectl(["get", "pv", "settings-\(s)"]).status != 0)
        #expect(try await cluster.kubectl(["auth", "can-i", "get", "secrets", "-n", "kube-system"], as: .alice).stdout.hasPrefix("no"))

        // existing: update re-applies only what alice may write herself: the quota and the namespace's labels
        // are the administrator's and keep their new values.
        let update = try await aliceRestore("update-\(s)", "{restorePoint: base-\(s), existing: update}")
        #expect(try await cluster.kubectlOK(["-n", "team-a", "get", "resourcequota", "quota-\(s)", "-o", "jsonpath={.spec.hard.configmaps}"]) == "30",
                "\(update)")
        #expect(try await cluster.kubectlOK(["get", "namespace", "team-a", "-o", #"jsonpath={.metadata.labels.cairn-test/level}"#]) == "restricted")
        #expect(update.failures.contains("ResourceQuota team-a/quota-\(s)") && update.failures.contains("forbidden"), "\(update.failures)")
        // A transform that only changes content is alice's to make.
        try await cluster.kubectlOK(["-n", "team-a", "delete", "configmap", "settings-\(s)"], as: .alice)
        let painted = try await aliceRestore("paint-\(s)", #"{restorePoint: base-\#(s), only: \#(only), transforms: {transforms: [{name: paint, patch: [{op: replace, path: /data/color, value: orange}]}]}}"#)
        #expect(painted.phase == "Succeeded", "\(painted)")
        #expect(try await cluster.kubectlOK(["-n", "team-a", "get", "configmap", "settings-\(s)", "-o", "jsonpath={.data.color}"]) == "orange")
    }

    @Test("tenancy: forged policy labels, a policy's next slot, a forged requester and spec edits are refused at admission; foreign RestorePoints are refused")
    func hostileActions() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        let s = String(UUID().uuidString.prefix(6).lowercased())
        let unbind = try await bindCairnBasic(.alice, in: "team-a")
        defer {
            unbind()
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "backupaction,restoreaction", "--all"])
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "restorepoints", "--all"])
        }
        func aliceCreates(_ manifest: String) async throws -> LocalCluster.CommandResult {
            try await cluster.kubectl(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: manifest)
        }
        let labelled = try await aliceCreates("""
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: fake-\(s), labels: {cairn.dev/policy: nightly}}
            spec: {profile: \(profile.name)}
            """)
        #expect(labelled.status != 0 && labelled.stderr.contains("cairn.dev/policy"), "\(labelled.stderr)")
        let slot = try await aliceCreates("""
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: nightly-20991231-020000}
            spec: {profile: \(profile.name)}
            """)
        #expect(slot.status != 0 && slot.stderr.contains("scheduled runs"), "\(slot.stderr)")
        // A forged requester is replaced by the real one; the record cannot be changed afterwards.
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata:
              name: forged-\(s)
              annotations: {cairn.dev/requester: '{"username":"cairn-admin","groups":["system:masters"]}'}
            spec: {profile: \(profile.name)}
            """)
        let stamped = try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", "forged-\(s)", "-o", #"jsonpath={.metadata.annotations.cairn\.dev/requester}"#])
        #expect(stamped.contains(#""username":"alice""#) && !stamped.contains("system:masters"), "\(stamped)")
        let overwrite = try await cluster.kubectl(["-n", "team-a", "annotate", "backupaction", "forged-\(s)", "--overwrite",
                                             #"cairn.dev/requester={"username":"cairn-admin","groups":["system:masters"]}"#])
        #expect(overwrite.status != 0 && overwrite.stderr.contains("cannot be changed"), "\(overwrite.stderr)")
        let respec = try await cluster.kubectl(["-n", "team-a", "patch", "backupaction", "forged-\(s)", "--type", "merge", "-p", #"{"spec":{"quiesce":"scale"}}"#])
        #expect(respec.status != 0 && respec.stderr.contains("spec"), "\(respec.stderr)")
        try await until("alice's backup", timeout: 120) {
            try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", "forged-\(s)", "-o", "jsonpath={.status.phase}"]) == "Succeeded"
        }

        // A Profile that is not offered to team-a: alice may not name it; an administrator (who may `use`
        // any Profile) may. The refusal does not show where the Profile keeps data.
        let reserved = try await TestProfile(cluster, prefix: "reserved", namespaceSelector: "{matchLabels: {cairn-test/never: \"true\"}}")
        defer { reserved.remove() }
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: foreign-profile-\(s)}
            spec: {profile: \(reserved.name)}
            """)
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: admin-profile-\(s)}
            spec: {profile: \(reserved.name)}
            """)
        func phase(_ name: String) async throws -> String {
            try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", name, "-o", "jsonpath={.status.phase}"])
        }
        try await until("both profile choices to be judged", timeout: 120) {
            guard try await phase("foreign-profile-\(s)") == "Failed" else { return false }
            return ["Succeeded", "Failed"].contains(try await phase("admin-profile-\(s)"))
        }
        let refusal = try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", "foreign-profile-\(s)", "-o",
                                             #"jsonpath={.status.conditions[?(@.type=="Complete")].reason} {.status.conditions[?(@.type=="Complete")].message}"#])
        #expect(refusal.hasPrefix("ProfileNotAllowed "), "\(refusal)")
        #expect(!refusal.contains(reserved.path), "\(refusal)")
        #expect(try await phase("admin-profile-\(s)") == "Succeeded")

        // bob, who owns team-b, reaches nothing of team-a: not its restore points, not through a restore.
        let unbindBob = try await bindCairnBasic(.bob, in: "team-b")
        defer {
            unbindBob()
            _ = try? cluster.kubectlBlocking(["-n", "team-b", "delete", "restoreaction", "--all"])
        }
        let peek = try await cluster.kubectl(["-n", "team-a", "get", "restorepoints"], as: .bob)
        #expect(peek.status != 0 && peek.stderr.contains("forbidden"), "\(peek.stderr)")
        try await cluster.kubectlOK(["-n", "team-b", "create", "-f", "-"], as: .bob, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: take-\(s)}
            spec: {restorePoint: forged-\(s), restorePointNamespace: team-a, existing: skip}
            """)
        try await until("bob's attempt to be refused", timeout: 60) {
            try await cluster.kubectlOK(["-n", "team-b", "get", "restoreaction", "take-\(s)", "-o",
                                   #"jsonpath={.status.conditions[?(@.type=="Complete")].reason}"#], as: .bob) == "Forbidden"
        }

        // A RestorePoint (written by someone who may) naming another application's data is refused, and its
        // deletion leaves that data alone.
        try await cluster.withNamespace("other") { other in
            try await other.kubectlOK(["create", "secret", "generic", "theirs", "--from-literal=token=t0p"])
            try await other.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: theirs}
                spec: {profile: \(profile.name)}
                """)
            try await until("the other application's backup", timeout: 120) {
                try await jsonpath(other, ["backupaction", "theirs"], "{.status.phase}") == "Succeeded"
            }
            let foreignID = try await jsonpath(other, ["restorepoint", "theirs"], "{.spec.id}")
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: RestorePoint
                metadata: {name: planted-\(s), namespace: team-a}
                spec: {profile: \(profile.name), id: \(foreignID), time: "2026-01-01T00:00:00Z"}
                """)
            let result = try await aliceRestore("planted-\(s)", "{restorePoint: planted-\(s), existing: skip}")
            #expect(result.phase == "Failed")
            #expect(try await cluster.kubectlOK(["-n", "team-a", "get", "restoreaction", "planted-\(s)", "-o",
                                           #"jsonpath={.status.conditions[?(@.type=="Complete")].reason}"#]) == "ForeignRestorePoint")
            #expect(try await cluster.kubectl(["-n", "team-a", "get", "secret", "theirs"]).status != 0)
            try await until("the planted RestorePoint to be marked", timeout: 60) {
                try await cluster.kubectlOK(["-n", "team-a", "get", "restorepoint", "planted-\(s)", "-o",
                                       #"jsonpath={.status.conditions[?(@.type=="Ready")].reason}"#]) == "ForeignRestorePoint"
            }
            try await cluster.kubectlOK(["-n", "team-a", "delete", "restorepoint", "planted-\(s)", "--timeout=60s"])
            #expect(try await profile.restorePointIDs(namespace: other.name).contains(foreignID))
        }
    }

    @Test("limits: a namespace runs at most two actions at once; the others are Queued with their place, then run")
    func queuedActions() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("queue") { ns in
            try await ns.kubectlOK(["create", "configmap", "c", "--from-literal=a=b"])
            // Three at once, in one request.
            try await ns.apply((1...3).map { i in """
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: at-once-\(i)}
                spec: {profile: \(profile.name)\(i == 3 ? ", expiresAfter: 20s" : "")}
                """ }.joined(separator: "\n---\n"))
            try await until("all three backups", timeout: 180) {
                try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ")
                    .filter { $0 == "Succeeded" }.count == 3
            }
            let queued = try await ns.kubectlOK(["get", "events", "--field-selector", "reason=Queued", "-o",
                                           "jsonpath={range .items[*]}{.involvedObject.name} {.message}{\"\\n\"}{end}"])
            #expect(queued.contains("at-once-") && queued.contains("already run in namespace \(ns.name)")
                    && queued.contains("place in line: 1"), "\(queued)")
            // The restore point made to expire goes, with its data; the others stay.
            #expect(!(try await jsonpath(ns, ["restorepoint", "at-once-3"], "{.spec.expireTime}")).isEmpty)
            try await until("the expired restore point to go", timeout: 90) {
                try await names(ns, "restorepoints").sorted() == ["at-once-1", "at-once-2"]
            }
            #expect(try await profile.restorePointIDs(namespace: ns.name).count == 2)
        }
    }

    @Test("existing: update brings a volume back to the restore point's state (files made since are removed) unless keepExtraFiles")
    func exactVolumeRestore() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("exact") { ns in
            let data = try await ns.hostPathVolume(forClaim: "data")
            try "kept\n".write(toFile: data + "/state.txt", atomically: true, encoding: .utf8)
            try await ns.apply(Self.claimAndWorkload(claim: "data", deployment: "app"))
            try await until("the app to run", timeout: 120) {
                try await jsonpath(ns, ["deployment", "app"], "{.status.readyReplicas}") == "1"
            }
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: before}
                spec: {profile: \(profile.name)}
                """)
            try await until("the backup", timeout: 120) { try await jsonpath(ns, ["backupaction", "before"], "{.status.phase}") == "Succeeded" }
            func restore(_ name: String, keep: Bool) async throws {
                try await ns.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: RestoreAction
                    metadata: {name: \(name)}
                    spec: {restorePoint: before, existing: update, only: [PersistentVolumeClaim], keepExtraFiles: \(keep)}
                    """)
                try await until("restore \(name)", timeout: 120) {
                    ["Succeeded", "Failed"].contains(try await jsonpath(ns, ["restoreaction", name], "{.status.phase}"))
                }
                let detail = (try? await jsonpath(ns, ["restoreaction", name], "{.status}")) ?? ""
                #expect(try await jsonpath(ns, ["restoreaction", name], "{.status.phase}") == "Succeeded",
                        "\(detail)")
            }
            try "made later\n".write(toFile: data + "/later.txt", atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: data + "/later-dir/sub", withIntermediateDirectories: true)
            try "changed\n".write(toFile: data + "/state.txt", atomically: true, encoding: .utf8)
            try await restore("exact", keep: false)
            #expect(try String(contentsOfFile: data + "/state.txt", encoding: .utf8) == "kept\n")
            #expect(!FileManager.default.fileExists(atPath: data + "/later.txt"))
            #expect(!FileManager.default.fileExists(atPath: data + "/later-dir"))
            try "made later\n".write(toFile: data + "/later.txt", atomically: true, encoding: .utf8)
            try await restore("keep", keep: true)
            #expect(FileManager.default.fileExists(atPath: data + "/later.txt"))
            #expect(try String(contentsOfFile: data + "/state.txt", encoding: .utf8) == "kept\n")
        }
    }
}

extension ControllerClusterTests {
    @Test("tenancy: a hook or a blueprint never runs with more rights than whoever wrote it — bob, who may only view a namespace, cannot exec into its pods through a BackupAction's hook, nor through a Blueprint an administrator's backup uses; rewritten by the administrator, the same blueprint runs")
    func hooksActAsTheirAuthor() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        let s = String(UUID().uuidString.prefix(6).lowercased())
        let ns = "hooks-\(s)"
        try await cluster.kubectlOK(["create", "namespace", ns])
        defer { _ = try? cluster.kubectlBlocking(["delete", "namespace", ns, "--wait=false"]) }
        try await cluster.apply(SampleApplication.web(namespace: ns) + "\n---\n" + Self.bobViewsAndWritesBlueprints(in: ns))
        let unbind = try await bindCairnBasic(.bob, in: ns)
        defer { unbind() }
        #expect(try await cluster.kubectl(["-n", ns, "auth", "can-i", "create", "pods/exec"], as: .bob).stdout.hasPrefix("no"))
        try await until("web to run", timeout: 120) {
            try await cluster.kubectl(["-n", ns, "get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]).stdout == "1"
        }
        func ended(_ name: String) async throws -> (phase: String, reason: String, message: String) {
            func get(_ path: String) async throws -> String {
                try await cluster.kubectlOK(["-n", ns, "get", "backupaction", name, "-o", "jsonpath=\(path)"])
            }
            try await until("backup \(name) to end", timeout: 120) { ["Succeeded", "Failed"].contains(try await get("{.status.phase}")) }
            return (try await get("{.status.phase}"), try await get("{.status.conditions[?(@.type==\"Complete\")].reason}"),
                    try await get("{.status.conditions[?(@.type==\"Complete\")].message}"))
        }
        func marker(_ file: String) async throws -> Bool {
            let pod = try await cluster.kubectlOK(["-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"])
            return try await cluster.kubectl(["-n", ns, "exec", pod, "--", "test", "-e", file]).status == 0
        }

        // 1. bob's own BackupAction with a hook that execs into the pod: Cairn may exec, bob may not.
        try await cluster.kubectlOK(["-n", ns, "create", "-f", "-"], as: .bob, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: hook-\(s)}
            spec:
              profile: \(profile.name)
              hooks:
                beforeCapture:
                - {name: sneak, exec: {workload: Deployment/web, command: [touch, /tmp/by-hook]}}
            """)
        let hooked = try await ended("hook-\(s)")
        #expect(hooked.phase == "Failed" && hooked.reason == "PhaseFailed", "\(hooked)")
        #expect(hooked.message.contains("hook beforeCapture/sneak failed") && hooked.message.contains("permission denied"), "\(hooked.message)")
        #expect(try await !marker("/tmp/by-hook"), "the hook ran with Cairn's rights")
        // The failed action's status shows the phase, how it ended and why.
        let failedPhase = try await cluster.kubectlOK(["-n", ns, "get", "backupaction", "hook-\(s)", "-o",
                                                 "jsonpath={.status.result.phases[0].phase} {.status.result.phases[0].result}"])
        #expect(failedPhase == "sneak failed", "\(failedPhase)")

        // 2. bob writes a Blueprint; an administrator's backup of the namespace uses it: it runs as bob.
        let blueprint = """
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: sneaky, namespace: \(ns)}
            spec:
              actions:
                backup:
                  phases:
                  - {name: plant, exec: {command: [touch, /tmp/by-blueprint]}}
            """
        try await cluster.kubectlOK(["-n", ns, "apply", "-f", "-"], as: .bob, stdin: blueprint)
        try await until("the Blueprint to be checked", timeout: 60) {
            try await cluster.kubectl(["-n", ns, "get", "blueprint", "sneaky", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == "True"
        }
        let author = try await cluster.kubectlOK(["-n", ns, "get", "blueprint", "sneaky", "-o", #"jsonpath={.metadata.annotations.cairn\.dev/requester}"#])
        #expect(author.contains(#""username":"bob""#), "\(author)")
        let listed = try await profile.cairn(["blueprint", "list", "-n", ns])
        #expect(listed.status == 0 && listed.stdout.contains("sneaky") && listed.stdout.contains("backup"), "\(listed.stdout)\(listed.stderr)")
        try await cluster.kubectlOK(["-n", ns, "annotate", "deployment", "web", "cairn.dev/blueprint=sneaky"])
        let action = { (name: String) in """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: \(name)}
            spec: {profile: \(profile.name)}
            """ }
        try await cluster.kubectlOK(["-n", ns, "create", "-f", "-"], stdin: action("admin-\(s)"))
        let borrowed = try await ended("admin-\(s)")
        #expect(borrowed.phase == "Failed" && borrowed.reason == "PhaseFailed", "\(borrowed)")
        #expect(borrowed.message.contains("blueprint sneaky backup/plant") && borrowed.message.contains("permission denied"), "\(borrowed.message)")
        #expect(try await !marker("/tmp/by-blueprint"), "bob's blueprint ran with the administrator's rights")

        // 3. The administrator writes the same spec again (a label alone would keep bob as the author):
        //    now it is theirs, and it runs — the phase is real, only its rights were missing.
        try await cluster.kubectlOK(["-n", ns, "apply", "-f", "-"], stdin: blueprint.replacingOccurrences(of: "/tmp/by-blueprint", with: "/tmp/by-admin"))
        try await cluster.kubectlOK(["-n", ns, "create", "-f", "-"], stdin: action("admin2-\(s)"))
        let own = try await ended("admin2-\(s)")
        #expect(own.phase == "Succeeded", "\(own)")
        #expect(try await marker("/tmp/by-admin"))
        let phases = try await cluster.kubectlOK(["-n", ns, "get", "backupaction", "admin2-\(s)", "-o", "jsonpath={.status.result.phases[0].result}"])
        #expect(phases == "succeeded")
    }
}

extension ControllerClusterTests {
    @Test("a blueprint's delete action runs when its restore point is deleted, as the blueprint's author, with the backup's artifact on stdin: what the backup kept outside the repository goes with it; bob's delete action cannot exec as Cairn — the restore point stays, Deletable false with why")
    func deleteActionAsItsAuthor() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        let s = String(UUID().uuidString.prefix(6).lowercased())
        let ns = "bpdel-\(s)"
        try await cluster.kubectlOK(["create", "namespace", ns])
        defer {
            // A restore point held by a failed delete action: let it go (its data stays in the test's repository).
            _ = try? cluster.kubectlBlocking(["-n", ns, "patch", "restorepoint", "bob-\(s)", "--type=merge", "-p", #"{"metadata":{"finalizers":[]}}"#])
            _ = try? cluster.kubectlBlocking(["delete", "namespace", ns, "--wait=false"])
        }
        try await cluster.apply(SampleApplication.web(namespace: ns) + "\n---\n" + Self.bobViewsAndWritesBlueprints(in: ns) + """

            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: ticketed, namespace: \(ns)}
            spec:
              actions:
                backup:
                  phases:
                  - name: ticket
                    exec: {command: [sh, -c, 'id=t$(date +%s%N)-{{ workload.pods }}; echo kept > /tmp/external-$id; printf %s $id']}
                    output: artifact
                delete:
                  phases:
                  - name: drop
                    exec: {command: [sh, -c, 'id=$(cat); test -n "$id" && rm /tmp/external-$id']}
                    input: ticket
            """)
        try await until("web to run", timeout: 120) {
            try await cluster.kubectl(["-n", ns, "get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]).stdout == "1"
        }
        func inWeb(_ command: String) async throws -> LocalCluster.CommandResult {
            let pod = try await cluster.kubectlOK(["-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"])
            return try await cluster.kubectl(["-n", ns, "exec", pod, "--", "sh", "-c", command])
        }
        func backUp(_ name: String) async throws {
            try await cluster.kubectlOK(["-n", ns, "create", "-f", "-"], stdin: """
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: \(name)}
                spec: {profile: \(profile.name)}
                """)
            try await until("backup \(name)", timeout: 120) {
                let phase = try await cluster.kubectlOK(["-n", ns, "get", "backupaction", name, "-o", "jsonpath={.status.phase}"])
                if phase == "Failed" { throw ClusterError("backup \(name) failed") }
                return phase == "Succeeded"
            }
        }
        try await until("the Blueprint to be checked", timeout: 60) {
            try await cluster.kubectl(["-n", ns, "get", "blueprint", "ticketed", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == "True"
        }
        try await cluster.kubectlOK(["-n", ns, "annotate", "deployment", "web", "cairn.dev/blueprint=ticketed"])

        // 1. The backup keeps something outside the repository and its ID as an artifact; deleting the restore
        //    point runs the delete action with that ID, and the thing is gone.
        try await backUp("kept-\(s)")
        let external = try await inWeb("ls /tmp | grep '^external-'").stdout.split(separator: "\n")
        let web = try await cluster.kubectlOK(["-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"])
        #expect(external.count == 1 && external.first?.hasSuffix("-" + web) == true, "named after {{ workload.pods }}: \(external)")
        try await cluster.kubectlOK(["-n", ns, "delete", "restorepoint", "kept-\(s)", "--wait=false"])
        try await until("the restore point to be deleted", timeout: 120) {
            try await cluster.kubectl(["-n", ns, "get", "restorepoint", "kept-\(s)"]).status != 0
        }
        #expect(try await inWeb("ls /tmp | grep -c '^external-'").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0",
                "the delete action removed what the backup kept")
        let ran = try await cluster.kubectlOK(["-n", ns, "get", "events", "--field-selector", "reason=DeleteActionRan", "-o", "jsonpath={.items[*].message}"])
        #expect(ran.contains("ticketed delete/drop: succeeded"), "\(ran)")

        // 2. bob (view, may write Blueprints) writes one whose delete action execs into the pod. The backup records
        //    him as its author; deleting the restore point runs it as bob: denied, nothing ran, the restore point stays.
        try await cluster.kubectlOK(["-n", ns, "apply", "-f", "-"], as: .bob, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: bobs, namespace: \(ns)}
            spec:
              actions:
                delete:
                  phases:
                  - {name: plant, exec: {command: [touch, /tmp/by-bob]}}
            """)
        try await until("bob's Blueprint to be checked", timeout: 60) {
            try await cluster.kubectl(["-n", ns, "get", "blueprint", "bobs", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == "True"
        }
        try await cluster.kubectlOK(["-n", ns, "annotate", "deployment", "web", "cairn.dev/blueprint=bobs", "--overwrite"])
        try await backUp("bob-\(s)")
        try await cluster.kubectlOK(["-n", ns, "delete", "restorepoint", "bob-\(s)", "--wait=false"])
        func deletable() async throws -> String {
            try await cluster.kubectlOK(["-n", ns, "get", "restorepoint", "bob-\(s)", "-o",
                                   "jsonpath={.status.conditions[?(@.type==\"Deletable\")].reason}|{.status.conditions[?(@.type==\"Deletable\")].message}"])
        }
        try await until("the delete action to fail", timeout: 120) { try await deletable().hasPrefix("PhaseFailed|") }
        let reason = try await deletable()
        #expect(reason.contains("blueprint bobs delete/plant") && reason.contains("permission denied") && reason.contains("the restore point stays"), "\(reason)")
        #expect(try await inWeb("test -e /tmp/by-bob").status != 0, "bob's delete action ran with Cairn's rights")
        #expect(try await cluster.kubectl(["-n", ns, "get", "restorepoint", "bob-\(s)"]).status == 0, "the restore point stays")
    }
}

extension ControllerClusterTests {
    /// bob may view `ns` and write its Blueprints, nothing more (no exec, no Cairn actions without cairn-basic).
    static func bobViewsAndWritesBlueprints(in ns: String) -> String {
        """
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: bob-view, namespace: \(ns)}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
        subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: blueprint-writer, namespace: \(ns)}
        rules: [{apiGroups: [cairn.dev], resources: [blueprints], verbs: [create, update, patch, get, list]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: bob-blueprints, namespace: \(ns)}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: blueprint-writer}
        subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
        """
    }
}
