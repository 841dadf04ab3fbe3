import Foundation
import Kube
import KubeTesting
import Repository
import Storage
import StorageTesting
import Testing

/// Cairn's controller as users meet it: installed from deploy/ into the local cluster, driven with
/// kubectl only (as the admin, and as alice, who is bound to cairn-basic in team-a).
@Suite("controller in the local cluster, driven through kubectl", .serialized)
struct ControllerClusterTests {
    let cluster: LocalCluster

    init() async throws {
        cluster = try LocalCluster.shared()
        try await CairnInstallation.ensure(cluster)
    }

    /// Polls `condition` every half second without holding a thread (errors count as "not yet").
    func until(_ what: String, timeout: TimeInterval = 120, explain: (() async -> String)? = nil,
               _ condition: () async throws -> Bool) async throws {
        try await eventually(what, timeout: .seconds(timeout), explain: explain, condition)
    }

    func jsonpath(_ ns: TestNamespace?, _ args: [String], _ path: String) async throws -> String {
        let base = ["get"] + args + ["-o", "jsonpath=\(path)"]
        if let ns { return try await ns.kubectlOK(base) }
        return try await cluster.kubectlOK(base)
    }

    func names(_ ns: TestNamespace, _ kind: String, selector: String? = nil) async throws -> [String] {
        var args = [kind]
        if let selector { args += ["-l", selector] }
        return try await jsonpath(ns, args, "{.items[*].metadata.name}").split(separator: " ").map(String.init)
    }

    @Test("deploy/ passes server-side validation; bad specs are refused at admission with the field named")
    func admission() async throws {
        let dry = try await cluster.kubectl(["apply", "-R", "-f", LocalCluster.repositoryRootPath + "/deploy/", "--dry-run=server"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let badPolicy = try await cluster.kubectl(["apply", "--validate=false", "-f", "-"], stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: Policy
            metadata: {name: bad, namespace: cairn-system}
            spec: {selector: {namespaces: [x]}, schedule: "@daily", retention: {daily: -1}, quiesce: freeze}
            """)
        #expect(badPolicy.status != 0)
        #expect(badPolicy.stderr.contains("spec.retention.daily"), "\(badPolicy.stderr)")
        #expect(badPolicy.stderr.contains("spec.quiesce"), "\(badPolicy.stderr)")
        let badProfile = try await cluster.kubectl(["apply", "--validate=false", "-f", "-"], stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: bad, namespace: cairn-system}
            spec: {location: {filesystem: {path: relative/path}}}
            """)
        #expect(badProfile.status != 0)
        #expect(badProfile.stderr.contains("spec.passwordSecretRef"), "\(badProfile.stderr)")
        #expect(badProfile.stderr.contains("spec.location.filesystem.path"), "\(badProfile.stderr)")
        // Printer columns.
        let header = try await cluster.kubectlOK(["get", "restorepoints", "-A"])
        #expect(header.isEmpty || header.contains("OBJECTS"))
    }

    @Test("a Policy with an invalid cron or a missing Profile says exactly that in its Ready condition")
    func policyConditions() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.apply("""
            apiVersion: cairn.dev/v1alpha1
            kind: Policy
            metadata: {name: \(profile.name)-badcron, namespace: cairn-system}
            spec: {profile: \(profile.name), selector: {namespaces: [nothing-here]}, schedule: "61 * * * *"}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Policy
            metadata: {name: \(profile.name)-noprofile, namespace: cairn-system}
            spec: {profile: no-such-profile, selector: {namespaces: [nothing-here]}, schedule: "@daily"}
            ---
            apiVersion: cairn.dev/v1alpha1
            kind: Policy
            metadata: {name: \(profile.name)-badzone, namespace: cairn-system}
            spec: {profile: \(profile.name), selector: {namespaces: [nothing-here]}, schedule: "@daily", timeZone: Mars/Olympus}
            """)
        defer {
            for suffix in ["badcron", "noprofile", "badzone"] {
                _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", "\(profile.name)-\(suffix)"])
            }
        }
        func ready(_ name: String) async throws -> (String, String, String) {
            let text = try await cluster.kubectlOK(["-n", "cairn-system", "get", "policy", name, "-o",
                                              "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}|{.status.conditions[?(@.type==\"Ready\")].reason}|{.status.conditions[?(@.type==\"Ready\")].message}"])
            let parts = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            return (parts[0], parts.count > 1 ? parts[1] : "", parts.count > 2 ? parts[2] : "")
        }
        try await until("the policies' conditions", timeout: 60) {
            for name in ["badcron", "noprofile", "badzone"] where try await ready("\(profile.name)-\(name)").0 != "False" {
                return false
            }
            return true
        }
        let cron = try await ready("\(profile.name)-badcron")
        #expect(cron.1 == "InvalidSchedule")
        #expect(cron.2.contains("minute '61' is not in 0–59"), "\(cron.2)")
        let missing = try await ready("\(profile.name)-noprofile")
        #expect(missing.1 == "ProfileNotFound")
        #expect(missing.2 == "Profile 'no-such-profile' does not exist in namespace cairn-system", "\(missing.2)")
        let zone = try await ready("\(profile.name)-badzone")
        #expect(zone.1 == "InvalidTimeZone")
        #expect(zone.2.contains("Mars/Olympus"))
        let events = try await cluster.kubectlOK(["-n", "cairn-system", "get", "events", "--field-selector",
                                            "involvedObject.name=\(profile.name)-badcron", "-o", "jsonpath={.items[*].reason}"])
        #expect(events.contains("InvalidSchedule"))

        // A Profile on an empty location makes no repository unless it asks (init: true).
        let empty = "/var/lib/cairn/tests/\(profile.name)-empty"
        try await cluster.apply("""
            apiVersion: cairn.dev/v1alpha1
            kind: Profile
            metadata: {name: \(profile.name)-empty, namespace: cairn-system}
            spec: {location: {filesystem: {path: \(empty)}}, passwordSecretRef: {name: \(profile.name)-password}}
            """)
        defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "profile", "\(profile.name)-empty"]) }
        try await until("the Profile without a repository to say so", timeout: 60) {
            try await cluster.kubectlOK(["-n", "cairn-system", "get", "profile", "\(profile.name)-empty", "-o",
                                   #"jsonpath={.status.conditions[?(@.type=="Ready")].reason}"#]) == "RepositoryNotFound"
        }
        #expect(!FileManager.default.fileExists(atPath: empty + "/config"))
    }

    @Test("scheduled backups appear on time, retention trims them, a RestoreAction brings the app back; restore points return with a recreated namespace")
    func scheduleRetentionRestore() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("sched") { ns in
            let data = try await ns.hostPathVolume(forClaim: "data")
            try "first version\n".write(toFile: data + "/state.txt", atomically: true, encoding: .utf8)
            try await ns.apply("""
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: settings}
                data: {color: teal}
                ---
                \(Self.claimAndWorkload(claim: "data", deployment: "app"))
                """)
            try await until("the app to run", timeout: 120) {
                try await jsonpath(ns, ["deployment", "app"], "{.status.readyReplicas}") == "1"
            }
            let policy = "\(profile.name)-every10s"
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: Policy
                metadata: {name: \(policy), namespace: cairn-system}
                spec:
                  profile: \(profile.name)
                  selector: {namespaces: [\(ns.name)]}
                  schedule: "*/10 * * * * *"
                  retention: {last: 2}
                """)
            defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", policy]) }
            // Three runs succeed; at most two restore points stay, and only two remain in the repository.
            try await until("three scheduled backups to succeed", timeout: 150) {
                let phases = try await jsonpath(ns, ["backupactions", "-l", "cairn.dev/policy=\(policy)"], "{.items[*].status.phase}")
                return phases.split(separator: " ").filter { $0 == "Succeeded" }.count >= 3
            }
            try await cluster.kubectlOK(["-n", "cairn-system", "patch", "policy", policy, "--type", "merge", "-p", #"{"spec":{"paused":true}}"#])
            try await until("the policy to pause", timeout: 30) {
                try await jsonpath(nil, ["-n", "cairn-system", "policy", policy], "{.status.conditions[0].reason}") == "Paused"
            }
            try await until("running actions to finish", timeout: 120) {
                let phases = try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ")
                return phases.allSatisfy { $0 == "Succeeded" || $0 == "Failed" }
            }
            try await until("retention to leave two restore points", timeout: 60) {
                guard try await names(ns, "restorepoints").count == 2 else { return false }
                return try await profile.restorePointIDs(namespace: ns.name).count == 2
            }
            let actions = try await names(ns, "backupactions")
            #expect(actions.allSatisfy { $0.hasPrefix(policy + "-") }, "\(actions)")
            // On time: each action was created within seconds of the scheduled time in its name.
            let created = try await jsonpath(ns, ["backupactions"], "{range .items[*]}{.metadata.name} {.metadata.creationTimestamp}{\"\\n\"}{end}")
            for line in created.split(separator: "\n") {
                let parts = line.split(separator: " ")
                guard parts.count == 2, let slot = Self.slot(of: String(parts[0])), let at = ISO8601DateFormatter().date(from: String(parts[1]))
                else { Issue.record("unexpected action line \(line)"); continue }
                #expect(at.timeIntervalSince(slot) < 5 && at.timeIntervalSince(slot) > -1, "\(line)")
            }
            let failed = try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ").filter { $0 != "Succeeded" }
            #expect(failed.isEmpty, "\(failed)")
            // Every remaining restore point object names data that is in the repository.
            let ids = try await jsonpath(ns, ["restorepoints"], "{.items[*].spec.id}").split(separator: " ").map(String.init)
            #expect(Set(ids) == Set(try await profile.restorePointIDs(namespace: ns.name)))
            let policyStatus = try await jsonpath(nil, ["-n", "cairn-system", "policy", policy], "{.status.applications[0].restorePoints}")
            #expect(policyStatus == "2")
            // No new run while paused. Not proven by waiting a while (a slow controller would pass that too):
            // a witness policy on the same schedule, in another namespace, shows a scheduled time came and the
            // controller acted on it — and the paused policy did not.
            let count = try await names(ns, "backupactions").count
            let pausedAt = Date()
            try await cluster.withNamespace("witness") { witness in
                let witnessPolicy = "\(profile.name)-witness"
                try await cluster.apply("""
                    apiVersion: cairn.dev/v1alpha1
                    kind: Policy
                    metadata: {name: \(witnessPolicy), namespace: cairn-system}
                    spec:
                      profile: \(profile.name)
                      selector: {namespaces: [\(witness.name)]}
                      schedule: "*/10 * * * * *"
                    """)
                defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", witnessPolicy]) }
                try await until("the witness policy to run for a time after the pause", timeout: 60) {
                    try await names(witness, "backupactions").contains { (Self.slot(of: $0) ?? .distantPast) > pausedAt }
                }
            }
            #expect(try await names(ns, "backupactions").count == count)

            // Break the application; a RestoreAction brings back what is missing.
            try await ns.kubectlOK(["delete", "configmap", "settings"])
            try await ns.kubectlOK(["delete", "deployment", "app"])
            let newest = try await jsonpath(ns, ["restorepoints", "--sort-by=.spec.time"], "{.items[-1:].metadata.name}")
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: RestoreAction
                metadata: {name: bring-back}
                spec: {restorePoint: \(newest), existing: skip}
                """)
            try await until("the restore to finish", timeout: 120) {
                ["Succeeded", "Failed"].contains(try await jsonpath(ns, ["restoreaction", "bring-back"], "{.status.phase}"))
            }
            let detail = (try? await jsonpath(ns, ["restoreaction", "bring-back"], "{.status}")) ?? ""
            #expect(try await jsonpath(ns, ["restoreaction", "bring-back"], "{.status.phase}") == "Succeeded",
                    "\(detail)")
            #expect(try await jsonpath(ns, ["configmap", "settings"], "{.data.color}") == "teal")
            #expect(try await Int(jsonpath(ns, ["restoreaction", "bring-back"], "{.status.result.objects.created}")) ?? 0 >= 2)
            #expect(try await jsonpath(ns, ["restoreaction", "bring-back"], "{.status.conditions[?(@.type==\"Complete\")].message}")
                .contains("objects created"))
            try await until("the restored deployment to run", timeout: 120) {
                try await jsonpath(ns, ["deployment", "app"], "{.status.readyReplicas}") == "1"
            }

            // The namespace is deleted: the data stays in the repository. A namespace created again under
            // the name is another namespace (someone else's, perhaps): the restore points stay away until an
            // administrator adopts them; then they restore the application with its volume.
            let oldUID = try await jsonpath(nil, ["namespace", ns.name], "{.metadata.uid}")
            try await cluster.kubectlOK(["delete", "namespace", ns.name, "--timeout=150s"])
            #expect(try await profile.restorePointIDs(namespace: ns.name).count == 2)
            try await cluster.kubectlOK(["create", "namespace", ns.name])
            // The controller looked at the new namespace: it reports the restore points it withholds from it.
            try await until("the Profile to withhold the earlier namespace's restore points", timeout: 60) {
                try await jsonpath(nil, ["-n", "cairn-system", "profile", profile.name],
                             "{.status.withheld[?(@.namespace==\"\(ns.name)\")].earlierUIDs[*]}") == oldUID
            }
            #expect(try await names(ns, "restorepoints").isEmpty, "restore points of the deleted namespace appeared in a new one")
            try await cluster.kubectlOK(["annotate", "namespace", ns.name, "cairn.dev/adopt-restore-points=\(oldUID)"])
            try await until("the restore points to come back", timeout: 60) {
                Set(try await jsonpath(ns, ["restorepoints"], "{.items[*].spec.id}").split(separator: " ").map(String.init)) == Set(ids)
            }
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: RestoreAction
                metadata: {name: after-disaster}
                spec: {restorePoint: \(newest)}
                """)
            try await until("the whole-application restore to finish", timeout: 180) {
                ["Succeeded", "Failed"].contains(try await jsonpath(ns, ["restoreaction", "after-disaster"], "{.status.phase}"))
            }
            let afterDisaster = (try? await jsonpath(ns, ["restoreaction", "after-disaster"], "{.status}")) ?? ""
            #expect(try await jsonpath(ns, ["restoreaction", "after-disaster"], "{.status.phase}") == "Succeeded",
                    "\(afterDisaster)")
            try await until("the application with its data", timeout: 120) {
                try await jsonpath(ns, ["deployment", "app"], "{.status.readyReplicas}") == "1"
            }
            let pod = try await jsonpath(ns, ["pods", "-l", "app=app"], "{.items[0].metadata.name}")
            #expect(try await ns.kubectlOK(["exec", pod, "--", "cat", "/data/state.txt"]) == "first version\n")
        }
    }

    /// A hostPath claim and a one-replica Deployment that keeps it mounted at /<claim>.
    static func claimAndWorkload(claim: String, deployment: String, storageClass: String = "cairn-hostpath") -> String {
        """
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: \(claim)}
        spec:
          storageClassName: \(storageClass)
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Gi}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: \(deployment)}
        spec:
          replicas: 1
          selector: {matchLabels: {app: \(deployment)}}
          template:
            metadata: {labels: {app: \(deployment)}}
            spec:
              containers:
              - name: main
                image: cairn.local/busybox:1.35
                imagePullPolicy: Never
                command: [sleep, "100000"]
                volumeMounts: [{name: \(claim), mountPath: /\(claim)}]
              volumes: [{name: \(claim), persistentVolumeClaim: {claimName: \(claim)}}]
        """
    }

    /// The scheduled time in a policy action's name (`<policy>-yyyyMMdd-HHmmss`, UTC).
    static func slot(of name: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.date(from: String(name.suffix(15)))
    }

    /// The count and slot of a MissedRuns event: "6 scheduled run(s) passed while the controller was not
    /// running; ran once for 2026-11-30T15:49:40Z".
    static func missedRuns(in message: Substring) -> (missed: Int, slot: Date)? {
        guard let count = message.split(separator: " ").first.flatMap({ Int($0) }),
              let slotText = message.components(separatedBy: "ran once for ").last,
              let slot = ISO8601DateFormatter().date(from: slotText.trimmingCharacters(in: .whitespaces))
        else { return nil }
        return (count, slot)
    }

    @Test("runs missed while the controller was down are made up once, not once per missed time; a graceful stop releases the Lease")
    func missedRunsAfterDowntime() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("missed") { ns in
            try await ns.kubectlOK(["create", "configmap", "c", "--from-literal=a=b"])
            let policy = "\(profile.name)-often"
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: Policy
                metadata: {name: \(policy), namespace: cairn-system}
                spec:
                  profile: \(profile.name)
                  selector: {namespaces: [\(ns.name)]}
                  schedule: "*/5 * * * * *"
                """)
            defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", policy]) }
            try await until("a first scheduled backup", timeout: 60) { !(try await names(ns, "backupactions")).isEmpty }
            // Stop the controller (SIGTERM): it hands the Lease back.
            try await cluster.kubectlOK(["-n", "cairn-system", "scale", "deployment", "cairn-controller", "--replicas=0"])
            try await until("the controller to stop", timeout: 60) {
                try await jsonpath(nil, ["-n", "cairn-system", "pods", "-l", "app.kubernetes.io/component=controller"], "{.items[*].metadata.name}").isEmpty
            }
            let stopped = Date()
            #expect(try await jsonpath(nil, ["-n", "cairn-system", "lease", "cairn-controller"], "{.spec.holderIdentity}").isEmpty,
                    "a graceful stop releases the Lease")
            let before = Set(try await names(ns, "backupactions"))
            // Downtime is the subject: it lasts until two scheduled times (every 5 s) have passed.
            let secondSlot = (stopped.timeIntervalSince1970 / 5).rounded(.down) * 5 + 10
            try await Task.sleep(for: .seconds(max(0, secondSlot - Date().timeIntervalSince1970) + 0.5))
            try await cluster.kubectlOK(["-n", "cairn-system", "scale", "deployment", "cairn-controller", "--replicas=1"])
            // "Down" lasts until the new controller made up the missed runs: how long it takes to start
            // (seconds, on a loaded machine) is not the subject. Its MissedRuns event names the one slot
            // it ran for.
            var madeUp: (missed: Int, slot: Date)?
            try await until("the missed runs to be made up", timeout: 90) {
                let events = try await cluster.kubectlOK(["-n", "cairn-system", "get", "events", "--field-selector",
                                                    "involvedObject.name=\(policy),reason=MissedRuns", "-o",
                                                    "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}"])
                madeUp = events.split(separator: "\n").compactMap(Self.missedRuns(in:)).first { $0.slot > stopped }
                return madeUp != nil
            }
            try await cluster.kubectlOK(["-n", "cairn-system", "patch", "policy", policy, "--type", "merge", "-p", #"{"spec":{"paused":true}}"#])
            let (missed, slot) = try #require(madeUp)
            #expect(missed >= 2, "at least two scheduled times passed while it was down")
            // A policy keeps only its newest finished actions (`actionHistory`): on a loaded machine the
            // made-up one may be trimmed before this test looks. Its RestorePoint, named after it, stays (the
            // policy keeps every restore point), so the runs are counted by both.
            func made() async throws -> Set<String> {
                Set(try await names(ns, "backupactions")).union(try await names(ns, "restorepoints")).subtracting(before)
            }
            try await until("the made-up run's restore point", timeout: 60) {
                try await names(ns, "restorepoints").contains { Self.slot(of: $0) == slot }
            }
            let runs = try await made()
            // Of the scheduled times from the stop up to the made-up one, exactly one got a run: that one.
            let duringDowntime = Set(runs.compactMap(Self.slot(of:)).filter { $0 > stopped && $0 <= slot })
            #expect(duringDowntime == [slot], "\(runs.sorted())")
        }
        try await until("the controller to lead again", timeout: 60) {
            try await cluster.kubectlOK(["-n", "cairn-system", "get", "deployment", "cairn-controller", "-o", "jsonpath={.status.readyReplicas}"]) == "1"
        }
    }

    @Test("a backup that meets a locked repository waits and runs again instead of failing for good")
    func transientFailureRetried() async throws {
        let profile = try await TestProfile(cluster, prefix: "locked")
        defer { profile.remove() }
        // Someone else's exclusive lock — a prune run by hand — held by this process.
        let repository = try await Repository.open(store: FileBlobStore(root: URL(fileURLWithPath: profile.path)),
                                                   password: profile.password)
        let lock = try await RepositoryLock.acquire(repository, exclusive: true, operation: "prune (by hand)")
        var released = false
        defer { if !released { Task { await lock.release() } } }
        try await cluster.withNamespace("locked") { ns in
            try await ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: behind-prune}
                spec: {profile: \(profile.name)}
                """)
            // The backup waits 30 s for the lock before it gives up for now; with the whole suite running, the
            // controller's action slots (8 at once) may hold it queued first.
            try await until("the backup to wait for the lock", timeout: 240, explain: {
                let action = (try? await ns.kubectl(["get", "backupaction", "behind-prune", "-o", "jsonpath={.status}"]).stdout) ?? "?"
                let pods = (try? await cluster.kubectl(["-n", "cairn-system", "get", "pods", "-o", "wide"]).stdout) ?? "?"
                let logs = (try? await cluster.kubectl(["-n", "cairn-system", "logs", "deployment/cairn-controller", "--tail", "40"]).stdout) ?? "?"
                return "the action's status: \(action)\ncontroller pods:\n\(pods)\nthe controller's last log lines:\n\(logs)"
            }) {
                try await jsonpath(ns, ["backupaction", "behind-prune"],
                             "{.status.phase} {.status.conditions[?(@.type==\"Running\")].reason}") == "Pending RepositoryLocked"
            }
            let message = try await jsonpath(ns, ["backupaction", "behind-prune"], "{.status.conditions[?(@.type==\"Running\")].message}")
            #expect(message.contains("prune (by hand)") && message.contains("trying again at"), "\(message)")
            #expect(try await jsonpath(ns, ["backupaction", "behind-prune"], "{.status.nextAttemptTime}") != "")
            await lock.release()
            released = true
            try await until("the backup to succeed on its next run", timeout: 240) {
                try await jsonpath(ns, ["backupaction", "behind-prune"], "{.status.phase}") == "Succeeded"
            }
            // At least one more run after the locked one (on a loaded machine the retry can meet the lock again
            // before the test releases it).
            let attempts = try await jsonpath(ns, ["backupaction", "behind-prune"], "{.status.attempts}")
            #expect((Int(attempts) ?? 0) >= 2, "attempts: \(attempts)")
            #expect(try await profile.restorePointIDs(namespace: ns.name).count == 1)
        }
    }

    @Test("immutable restore points outlive a delete until their period ends; TransformSets are checked; an administrator clones an application with one")
    func immutabilityTransformsClone() async throws {
        let profile = try await TestProfile(cluster, immutability: "1h")
        defer { profile.remove() }
        let namespace = try await cluster.withNamespace("immut") { ns -> String in
            try await ns.kubectlOK(["create", "configmap", "settings", "--from-literal=color=teal"])
            try await ns.kubectlOK(["create", "deployment", "web", "--image=cairn.local/busybox:1.35", "--replicas=2", "--", "sleep", "100000"])
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: keep-me}
                spec: {profile: \(profile.name)}
                """)
            try await until("the backup", timeout: 120) {
                try await jsonpath(ns, ["backupaction", "keep-me"], "{.status.phase}") == "Succeeded"
            }
            try await ns.kubectlOK(["delete", "restorepoint", "keep-me", "--wait=false"])
            try await until("the deletion to be held", timeout: 60) {
                try await jsonpath(ns, ["restorepoint", "keep-me"], "{.status.conditions[?(@.type==\"Deletable\")].reason}") == "Immutable"
            }
            #expect(try await jsonpath(ns, ["restorepoint", "keep-me"], "{.status.conditions[?(@.type==\"Deletable\")].message}")
                .contains("keeps restore points for 1 h"))
            #expect(try await profile.restorePointIDs(namespace: ns.name).count == 1)

            // TransformSets: a broken one is reported, a good one is used by an administrator's clone.
            let clone = "\(ns.name)-clone"
            defer { _ = try? cluster.kubectlBlocking(["delete", "namespace", clone, "--wait=false"]) }
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: TransformSet
                metadata: {name: \(profile.name)-broken, namespace: cairn-system}
                spec:
                  transforms:
                  - {name: nowhere, patch: [{op: replace, path: "no-slash", value: 1}]}
                ---
                apiVersion: cairn.dev/v1alpha1
                kind: TransformSet
                metadata: {name: \(profile.name)-staging, namespace: cairn-system}
                spec:
                  replicas: {Deployment/web: 1}
                  transforms:
                  - name: paint
                    match: {kind: ConfigMap, name: settings}
                    patch: [{op: replace, path: /data/color, value: orange}]
                """)
            defer {
                _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "transformset", "\(profile.name)-broken", "\(profile.name)-staging"])
            }
            try await until("the transform sets to be checked", timeout: 60) {
                guard try await jsonpath(nil, ["-n", "cairn-system", "transformset", "\(profile.name)-broken"], "{.status.conditions[0].reason}") == "InvalidTransform"
                else { return false }
                return try await jsonpath(nil, ["-n", "cairn-system", "transformset", "\(profile.name)-staging"], "{.status.conditions[0].status}") == "True"
            }
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: RestoreAction
                metadata: {name: \(clone), namespace: cairn-system}
                spec: {restorePoint: keep-me, restorePointNamespace: \(ns.name), targetNamespace: \(clone), transformSet: \(profile.name)-staging}
                """)
            defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "restoreaction", clone]) }
            try await until("the clone", timeout: 120) {
                ["Succeeded", "Failed"].contains(try await jsonpath(nil, ["-n", "cairn-system", "restoreaction", clone], "{.status.phase}"))
            }
            #expect(try await jsonpath(nil, ["-n", "cairn-system", "restoreaction", clone], "{.status.phase}") == "Succeeded")
            #expect(try await jsonpath(nil, ["-n", clone, "configmap", "settings"], "{.data.color}") == "orange")
            #expect(try await jsonpath(nil, ["-n", clone, "deployment", "web"], "{.spec.replicas}") == "1")
            #expect(try await jsonpath(ns, ["configmap", "settings"], "{.data.color}") == "teal")
            return ns.name
        }
        // The namespace is gone; its deletion let the held restore point go without touching the data.
        #expect(try await profile.restorePointIDs(namespace: namespace).count == 1)
    }

    @Test("a user bound to cairn-basic backs up and restores her namespace and is Forbidden elsewhere")
    func selfServiceRBAC() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        let suffix = String(UUID().uuidString.prefix(6).lowercased())
        let backup = """
            apiVersion: cairn.dev/v1alpha1
            kind: BackupAction
            metadata: {name: mine-\(suffix)}
            spec: {profile: \(profile.name)}
            """
        // Administering team-a does not include Cairn: without the binding, alice may not back up. (The binding
        // an interrupted run of a test of this suite left is removed first.)
        _ = try await cluster.kubectl(["-n", "team-a", "delete", "rolebinding", "alice-cairn-basic", "--ignore-not-found"])
        let before = try await cluster.kubectl(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: backup)
        #expect(before.status != 0 && before.stderr.contains("forbidden"), "\(before.stderr)")
        let unbind = try await bindCairnBasic(.alice, in: "team-a")
        defer {
            unbind()
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "configmap", "alice-\(suffix)"])
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "backupaction,restoreaction", "--all"])
            _ = try? cluster.kubectlBlocking(["-n", "team-a", "delete", "restorepoints", "--all"])
        }
        try await cluster.kubectlOK(["-n", "team-a", "create", "configmap", "alice-\(suffix)", "--from-literal=k=v"], as: .alice)
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: backup)
        try await until("alice's backup", timeout: 120) {
            try await cluster.kubectlOK(["-n", "team-a", "get", "backupaction", "mine-\(suffix)", "-o", "jsonpath={.status.phase}"],
                                  as: .alice) == "Succeeded"
        }
        let point = try await cluster.kubectlOK(["-n", "team-a", "get", "restorepoint", "mine-\(suffix)", "-o", "jsonpath={.spec.id}"],
                                          as: .alice)
        #expect(point.count == 64)
        try await cluster.kubectlOK(["-n", "team-a", "delete", "configmap", "alice-\(suffix)"], as: .alice)
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: undo-\(suffix)}
            spec: {restorePoint: mine-\(suffix), existing: skip, only: [ConfigMap]}
            """)
        try await until("alice's restore", timeout: 120) {
            try await cluster.kubectlOK(["-n", "team-a", "get", "restoreaction", "undo-\(suffix)", "-o", "jsonpath={.status.phase}"],
                                  as: .alice) == "Succeeded"
        }
        #expect(try await cluster.kubectlOK(["-n", "team-a", "get", "configmap", "alice-\(suffix)", "-o", "jsonpath={.data.k}"], as: .alice) == "v")

        // A whole-namespace restore by alice brings back her namespace's objects only: the Namespace object
        // and the RoleBindings (who may do what) are left to administrators. (The ClusterRole her RoleBinding
        // names was not even captured: her backup read as her, and she may not read ClusterRoles.)
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: whole-\(suffix)}
            spec: {restorePoint: mine-\(suffix), existing: skip}
            """)
        try await until("alice's whole restore", timeout: 120) {
            try await cluster.kubectlOK(["-n", "team-a", "get", "restoreaction", "whole-\(suffix)", "-o", "jsonpath={.status.phase}"],
                                  as: .alice) == "Succeeded"
        }
        let excluded = try await cluster.kubectlOK(["-n", "team-a", "get", "restoreaction", "whole-\(suffix)", "-o",
                                              "jsonpath={.status.result.objects.excluded}"], as: .alice)
        #expect((Int(excluded) ?? 0) >= 3, "the Namespace and two RoleBindings: \(excluded)")

        // Elsewhere: Forbidden by the API server (real RBAC, real tokens).
        let other = try await cluster.kubectl(["-n", "team-b", "create", "-f", "-"], as: .alice, stdin: backup)
        #expect(other.status != 0)
        #expect(other.stderr.contains("forbidden") && other.stderr.contains("team-b"), "\(other.stderr)")
        let peek = try await cluster.kubectl(["-n", "team-b", "get", "restorepoints"], as: .alice)
        #expect(peek.status != 0 && peek.stderr.contains("forbidden"))
        let delete = try await cluster.kubectl(["-n", "team-a", "delete", "restorepoint", "mine-\(suffix)"], as: .alice)
        #expect(delete.status != 0 && delete.stderr.contains("forbidden"), "cairn-basic may not delete restore points")
        let policy = try await cluster.kubectl(["-n", "cairn-system", "get", "profiles"], as: .alice)
        #expect(policy.status != 0 && policy.stderr.contains("forbidden"))
        // And by the controller: a RestoreAction in team-a cannot write into team-b.
        try await cluster.kubectlOK(["-n", "team-a", "create", "-f", "-"], as: .alice, stdin: """
            apiVersion: cairn.dev/v1alpha1
            kind: RestoreAction
            metadata: {name: escape-\(suffix)}
            spec: {restorePoint: mine-\(suffix), targetNamespace: team-b}
            """)
        try await until("the escape attempt to be refused", timeout: 60) {
            try await cluster.kubectlOK(["-n", "team-a", "get", "restoreaction", "escape-\(suffix)", "-o",
                                   "jsonpath={.status.conditions[?(@.type==\"Complete\")].reason}"], as: .alice) == "Forbidden"
        }
        #expect(try await cluster.kubectl(["-n", "team-b", "get", "configmap", "alice-\(suffix)"]).status != 0)
    }

    @Test("killing the controller mid-backup leaves one complete restore point or a failed action with a reason, never a half one")
    func killMidBackup() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("kill") { ns in
            let data = try await ns.hostPathVolume(forClaim: "bulk")
            // 384 MiB of incompressible data: long enough to kill the controller while the mover reads.
            let fill = try await ChildProcess.run(["sh", "-c", "head -c \(96 * 4 << 20) /dev/urandom > '\(data)/random.bin'"])
            #expect(fill.status == 0, "\(fill.stderr)")
            try await ns.apply(Self.claimAndWorkload(claim: "bulk", deployment: "worker"))
            try await until("the worker to run", timeout: 120) {
                try await jsonpath(ns, ["deployment", "worker"], "{.status.readyReplicas}") == "1"
            }
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: interrupted}
                spec: {profile: \(profile.name), quiesce: scale}
                """)
            // Queued behind other suites' actions or waiting for the worker to stop, the backup may take a
            // while to reach the volume; if it ever ends first, the test says so instead of timing out.
            do {
                try await until("the backup to be reading the volume", timeout: 300) {
                    let phase = try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.phase}")
                    if phase == "Succeeded" || phase == "Failed" {
                        throw GiveUp("the backup ended \(phase) before the controller could be killed mid-read")
                    }
                    guard phase == "Running" else { return false }
                    return try await !names(ns, "pods", selector: "cairn.dev/mover").isEmpty
                }
            } catch {
                let status = (try? await jsonpath(ns, ["backupaction", "interrupted"], "{.status}")) ?? "?"
                let pods = (try? await ns.kubectlOK(["get", "pods", "-o", "wide"])) ?? "?"
                Issue.record("\(error)\nstatus: \(status)\npods:\n\(pods)")
                return
            }
            let victim = try await CairnInstallation.controllerPod(cluster)
            try await cluster.kubectlOK(["-n", "cairn-system", "delete", "pod", victim, "--force", "--grace-period=0"])
            try await until("the action to end", timeout: 300) {
                ["Succeeded", "Failed"].contains(try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.phase}"))
            }
            let phase = try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.phase}")
            print("killed mid-backup: the action ended \(phase) after \(try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.attempts}")) run(s): \(try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.conditions[?(@.type==\"Complete\")].message}"))")
            let repoPoints = try await profile.restorePointIDs(namespace: ns.name)
            let objects = try await names(ns, "restorepoints")
            if phase == "Succeeded" {
                #expect(repoPoints.count == 1)
                #expect(objects == ["interrupted"])
                #expect(try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.attempts}") == "2")
                #expect(try await jsonpath(ns, ["restorepoint", "interrupted"], "{.spec.id}") == repoPoints.first)
                #expect(try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.result.bytes}") == "\(96 * 4 << 20)")
            } else {
                #expect(repoPoints.isEmpty && objects.isEmpty)
                #expect(!(try await jsonpath(ns, ["backupaction", "interrupted"], "{.status.conditions[?(@.type==\"Complete\")].message}").isEmpty))
            }
            // Nothing left behind: no mover pod, the worker scaled back, the repository whole.
            try await until("mover pods to be gone", timeout: 60) { try await names(ns, "pods", selector: "cairn.dev/mover").isEmpty }
            #expect(try await jsonpath(ns, ["deployment", "worker"], "{.spec.replicas}") == "1")
            #expect(try await jsonpath(ns, ["deployment", "worker"], "{.metadata.annotations.cairn\\.dev/quiesced-replicas}").isEmpty)
            let check = try await profile.cairn(["repo", "check"])
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
            // The new controller holds the lease.
            let holder = try await jsonpath(nil, ["-n", "cairn-system", "lease", "cairn-controller"], "{.spec.holderIdentity}")
            #expect(!holder.hasPrefix(victim + "_"))
        }
    }

    @Test("a BackupAction reads CSI claims from snapshots with Cairn's identity; killed while a snapshot is read, the resumed run removes what the first made and ends whole, leaving no VolumeSnapshot, claim or mover pod")
    func snapshotKilledMidExport() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("snapkill") { ns in
            try await ns.apply(Self.claimAndWorkload(claim: "bulk", deployment: "worker", storageClass: "csi-hostpath"))
            try await until("the worker to run", timeout: 120) {
                try await jsonpath(ns, ["deployment", "worker"], "{.status.readyReplicas}") == "1"
            }
            // 256 MiB of incompressible data, written by the application on its CSI volume.
            try await ns.kubectlOK(["exec", "deploy/worker", "--", "sh", "-c", "head -c \(256 << 20) /dev/urandom > /bulk/random.bin"])
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: from-snapshot}
                spec: {profile: \(profile.name)}
                """)
            try await until("the backup to be reading the snapshot", timeout: 180) {
                guard try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.phase}") == "Running" else { return false }
                return try await !names(ns, "pods", selector: "cairn.dev/mover").isEmpty
            }
            let made = try await cluster.kubectlOK(["-n", ns.name, "get", "volumesnapshots,pvc", "-l", "cairn.dev/snapshot-for", "-o", "name"])
            #expect(made.contains("volumesnapshot") && made.contains("persistentvolumeclaim"), "a snapshot and a claim from it: \(made)")
            let victim = try await CairnInstallation.controllerPod(cluster)
            try await cluster.kubectlOK(["-n", "cairn-system", "delete", "pod", victim, "--force", "--grace-period=0"])
            try await until("the action to end", timeout: 300) {
                ["Succeeded", "Failed"].contains(try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.phase}"))
            }
            let phase = try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.phase}")
            let message = try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.conditions[?(@.type==\"Complete\")].message}")
            print("killed mid-export: the action ended \(phase) after \(try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.attempts}")) run(s): \(message)")
            if phase == "Succeeded" {
                #expect(try await profile.restorePointIDs(namespace: ns.name).count == 1)
                #expect(try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.result.bytes}") == "\(256 << 20)")
                #expect(try await jsonpath(ns, ["backupaction", "from-snapshot"], "{.status.result.volumeSnapshots.claims[*]}") == "bulk")
            } else {
                #expect(try await profile.restorePointIDs(namespace: ns.name).isEmpty && !message.isEmpty)
            }
            // The first run's snapshot and claim are gone (removed by the second), and the second's own.
            var left = ""
            do {
                try await until("every VolumeSnapshot, temporary claim and mover pod to be gone", timeout: 90) {
                    left = try await cluster.kubectlOK(["-n", ns.name, "get", "volumesnapshots,pvc,pods", "-l", "app.kubernetes.io/managed-by=cairn",
                                                  "-o", "jsonpath={range .items[*]}{.kind}/{.metadata.name} {.metadata.finalizers} {.status}{\"\\n\"}{end}"])
                    return left.isEmpty
                }
            } catch {
                Issue.record("left behind: \(left)")
                throw error
            }
            #expect(try await names(ns, "pvc") == ["bulk"])
            let check = try await profile.cairn(["repo", "check"])
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        }
    }

    @Test("a Policy's retention and localSnapshots apply to both tiers: of its newest two restore points only the newest keeps VolumeSnapshots; deleting that RestorePoint deletes them and nothing it did not make")
    func policyLocalTier() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("tier") { ns in
            try await ns.apply(Self.claimAndWorkload(claim: "files", deployment: "worker", storageClass: "csi-hostpath"))
            try await until("the worker to run", timeout: 120) {
                try await jsonpath(ns, ["deployment", "worker"], "{.status.readyReplicas}") == "1"
            }
            let policy = "\(profile.name)-tier"
            try await cluster.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: Policy
                metadata: {name: \(policy), namespace: cairn-system}
                spec:
                  profile: \(profile.name)
                  selector: {namespaces: [\(ns.name)]}
                  schedule: "*/15 * * * * *"
                  retention: {last: 2}
                  localSnapshots: {keep: 1}
                """)
            defer { _ = try? cluster.kubectlBlocking(["-n", "cairn-system", "delete", "policy", policy]) }
            try await until("three scheduled backups", timeout: 200) {
                try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ").filter { $0 == "Succeeded" }.count >= 3
            }
            try await cluster.kubectlOK(["-n", "cairn-system", "patch", "policy", policy, "--type", "merge", "-p", #"{"spec":{"paused":true}}"#])
            try await until("the running backup to end", timeout: 120) {
                try await jsonpath(ns, ["backupactions"], "{.items[*].status.phase}").split(separator: " ").allSatisfy { $0 == "Succeeded" || $0 == "Failed" }
            }
            // Retention keeps two restore points — in the cluster and in the repository; the tier, one.
            try await until("retention to leave two restore points, their data too", timeout: 90) {
                guard try await names(ns, "restorepoints").count == 2 else { return false }
                return try await profile.restorePointIDs(namespace: ns.name).count == 2
            }
            // Newest first, by the restore points' own times.
            let points = try await cluster.kubectlOK(["-n", ns.name, "get", "restorepoints", "--sort-by=.spec.time", "-o",
                                                "jsonpath={range .items[*]}{.spec.id}{\"\\n\"}{end}"])
                .split(separator: "\n").map(String.init).reversed()
            let newest = try #require(points.first)
            var kept = ""
            try await until("only the newest restore point's VolumeSnapshot to be left", timeout: 60) {
                kept = try await ns.kubectlOK(["get", "volumesnapshots", "-o", "jsonpath={.items[*].metadata.labels.cairn\\.dev/restorepoint-id}"])
                return kept == String(newest.prefix(32))
            }
            #expect(try await jsonpath(ns, ["backupactions"], "{.items[*].spec.keepSnapshots}").contains("true"))
            // Someone's own snapshot, labelled to pass for that restore point's local tier: Cairn deletes with its
            // own identity, so a label alone must not make it delete (or restore from) what it did not make.
            try await ns.apply("""
                apiVersion: snapshot.storage.k8s.io/v1
                kind: VolumeSnapshot
                metadata: {name: precious, labels: {cairn.dev/restorepoint-id: "\(newest.prefix(32))"}}
                spec: {source: {persistentVolumeClaimName: files}}
                """)
            let name = try await cluster.kubectlOK(["-n", ns.name, "get", "restorepoints", "-o",
                                              "jsonpath={.items[?(@.spec.id==\"\(newest)\")].metadata.name}"])
            try await ns.kubectlOK(["delete", "restorepoint", name, "--wait=true"])
            var left = ""
            do {
                try await until("its VolumeSnapshot to go with it, and only it", timeout: 60) {
                    left = try await ns.kubectlOK(["get", "volumesnapshots", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.finalizers} {.metadata.deletionTimestamp}{\"\\n\"}{end}"])
                    return left.split(separator: "\n").map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["precious"]
                }
            } catch {
                Issue.record("VolumeSnapshots left: \(left)")
                throw error
            }
        }
    }

    @Test("/metrics reports actions and the last successful backup per application; probes answer; no secret in metrics or logs")
    func metricsAndProbes() async throws {
        let profile = try await TestProfile(cluster)
        defer { profile.remove() }
        try await cluster.withNamespace("metrics") { ns in
            try await ns.kubectlOK(["create", "configmap", "c", "--from-literal=a=b"])
            try await ns.apply("""
                apiVersion: cairn.dev/v1alpha1
                kind: BackupAction
                metadata: {name: once}
                spec: {profile: \(profile.name)}
                """)
            try await until("the backup", timeout: 120) {
                try await jsonpath(ns, ["backupaction", "once"], "{.status.phase}") == "Succeeded"
            }
            let pod = try await CairnInstallation.controllerPod(cluster)
            func get(_ path: String) async throws -> String {
                try await cluster.kubectlOK(["get", "--raw", "/api/v1/namespaces/cairn-system/pods/\(pod):9464/proxy\(path)"])
            }
            /// /metrics straight from the host-network controller, with a bearer token: status code and body.
            func metrics(as user: LocalCluster.User?) async throws -> (Int, String) {
                var args = ["curl", "-s", "-w", "\n%{http_code}", "http://127.0.0.1:9464/metrics"]
                if let user { args += ["-H", "Authorization: Bearer \(try await cluster.token(of: user))"] }
                let r = try await cluster.execInNetwork(args)
                let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
                return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
            }
            // Only identities allowed to get /metrics read it (its labels name every application).
            #expect(try await metrics(as: nil).0 == 401)
            #expect(try await metrics(as: .alice).0 == 403)
            #expect(try await cluster.kubectl(["get", "--raw", "/api/v1/namespaces/cairn-system/pods/\(pod):9464/proxy/metrics"]).status != 0)
            let (code, metrics) = try await metrics(as: .admin)
            #expect(code == 200)
            #expect(metrics.contains(#"cairn_actions_total{kind="backup",result="succeeded"}"#), "\(metrics.prefix(2000))")
            #expect(metrics.contains(#"cairn_last_successful_backup_timestamp_seconds{namespace="\#(ns.name)",policy=""}"#))
            #expect(metrics.contains("cairn_action_duration_seconds_bucket"))
            #expect(metrics.contains("cairn_controller_leader 1"))
            #expect(try await get("/healthz") == "ok\n")
            #expect(try await get("/readyz") == "leading\n")
            #expect(!metrics.contains(profile.password))
            let logs = try await cluster.kubectlOK(["-n", "cairn-system", "logs", pod])
            #expect(!logs.contains(profile.password))
            // JSON lines.
            let line = logs.split(separator: "\n").first { $0.contains("backup.step") } ?? ""
            #expect(line.hasPrefix("{\"time\":"))
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil)
            let status = try await jsonpath(ns, ["backupaction", "once"], "{.status}")
            #expect(!status.contains(profile.password))
        }
    }
}
