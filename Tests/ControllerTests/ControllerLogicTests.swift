import Foundation
import Kube
import Protection
import Repository
import Snapshot
import Storage
import Testing
@testable import Controller

func utc(_ text: String) -> Date {
    let f = ISO8601DateFormatter()
    return f.date(from: text)!
}

@Suite("Controller logic without a cluster: schedules, queue, lease, specs, retention")
struct ControllerLogicTests {
    @Test("action specs are read and checked once: each wrong field is named; phases have one spelling")
    func actionSpecs() throws {
        func action(_ spec: JSONValue) -> KubeObject {
            KubeObject(["apiVersion": "cairn.dev/v1alpha1", "kind": "X", "metadata": ["name": "a", "namespace": "n"],
                        "spec": spec])
        }
        let backup = try BackupActionSpec(action(["profile": "main", "quiesce": "scale", "expiresAfter": "7d"]))
        #expect(backup.profile == "main" && backup.quiesce == .scale && backup.volumes && backup.expiresAfter == 7 * 86_400)
        #expect(try BackupActionSpec(action([:])).quiesce == ApplicationBackup.Quiesce.none)
        for (spec, field) in [(["quiesce": "freeze"], "spec.quiesce"), (["expiresAfter": "soon"], "spec.expiresAfter")] as [(JSONValue, String)] {
            let error = #expect(throws: ControllerError.self) { try BackupActionSpec(action(spec)) }
            #expect(error?.reason == "InvalidSpec" && error?.message.contains(field) == true, "\(String(describing: error))")
        }

        let restore = try RestoreActionSpec(action(["restorePoint": "p1", "existing": "skip", "only": ["ConfigMap"],
                                                    "volumes": ["data"], "keepExtraFiles": true]))
        #expect(restore.restorePoint == "p1" && restore.existing == .skip && restore.only.count == 1)
        #expect(restore.volumes == ["data"] && restore.keepExtraFiles && restore.volumeData && !restore.volumesOnly)
        for (spec, reason, field) in [
            ([:], "InvalidSpec", "spec.restorePoint"),
            (["restorePoint": "p", "existing": "merge"], "InvalidSpec", "spec.existing"),
            (["restorePoint": "p", "only": ["a/b/c/d"]], "InvalidSpec", "spec.only"),
            (["restorePoint": "p", "transformSet": "t", "transforms": ["transforms": []]], "InvalidSpec", "not both"),
            (["restorePoint": "p", "transforms": ["replica": 1]], "InvalidTransform", "spec.transforms"),
        ] as [(JSONValue, String, String)] {
            let error = #expect(throws: ControllerError.self) { try RestoreActionSpec(action(spec)) }
            #expect(error?.reason == reason && error?.message.contains(field) == true, "\(String(describing: error))")
        }

        var object = action([:])
        #expect(object.phase == .new)
        for phase in ActionPhase.allCases {
            object.phase = phase
            #expect(object.phase == phase)
            #expect(object["status", "phase"]?.string == (phase == .new ? nil : phase.rawValue))
        }
        object["status", "phase"] = "Whatever"
        #expect(object.phase == .new)
        #expect(ActionPhase.allCases.filter(\.isFinished) == [.succeeded, .failed])
    }

    @Test("errors of every module become one condition reason, and only transient ones are tried again")
    func errorClassification() {
        func check(_ error: any Error, _ reason: String, transient: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
            let classified = ControllerError.classify(error, fallback: "BackupFailed")
            #expect(classified.reason == reason, sourceLocation: sourceLocation)
            #expect(classified.isTransient == transient, "\(error)", sourceLocation: sourceLocation)
            #expect(classified.cause != nil || error is ControllerError, sourceLocation: sourceLocation)
        }
        check(RepositoryError(StorageError(.unavailable, "no answer", location: "s3://b")), "RepositoryUnavailable", transient: true)
        check(RepositoryError(StorageError(.noSpace, "full", location: "/repo")), "RepositoryFull", transient: false)
        check(RepositoryError(StorageError(.permissionDenied, "denied", location: "/repo")), "RepositoryAccessDenied", transient: false)
        check(RepositoryError(.locked, "the repository is locked"), "RepositoryLocked", transient: true)
        check(RepositoryError.corrupt("pack", "data/ab"), "RepositoryDamaged", transient: false)
        check(SnapshotError(.noSpace, "no space left on the target"), "NoSpace", transient: false)
        check(SnapshotError(.malformedStream, "volume stream: ended"), "MoverFailed", transient: false)
        check(ProtectionError(.moverFailed, "the mover pod stopped"), "MoverFailed", transient: true)
        check(ProtectionError(.invalidTransform, "bad"), "InvalidTransform", transient: false)
        check(KubeError(.unavailable, "down"), "APIUnavailable", transient: true)
        check(KubeError(.forbidden, "no"), "Forbidden", transient: false)
        check(ControllerError("ProfileNotFound", "gone"), "ProfileNotFound", transient: false)
        #expect(ControllerError.classify(CancellationError(), fallback: "RestoreFailed").reason == "RestoreFailed")
    }

    @Test("cron: macros, five and six fields, names, steps, ranges; next times in UTC")
    func cronNext() throws {
        let hourly = try Schedule("@hourly")
        #expect(hourly.next(after: utc("2026-11-22T10:00:00Z")) == utc("2026-11-22T11:00:00Z"))
        #expect(hourly.next(after: utc("2026-11-22T10:59:59Z")) == utc("2026-11-22T11:00:00Z"))
        let daily = try Schedule("@daily")
        #expect(daily.next(after: utc("2026-12-31T23:00:00Z")) == utc("2027-01-01T00:00:00Z"))
        let weekdays = try Schedule("30 2 * * mon-fri")
        // 2026-11-21 is a Saturday: next is Monday 23rd.
        #expect(weekdays.next(after: utc("2026-11-21T03:00:00Z")) == utc("2026-11-23T02:30:00Z"))
        let seconds = try Schedule("*/15 * * * * *")
        #expect(seconds.next(after: utc("2026-11-22T10:00:07Z")) == utc("2026-11-22T10:00:15Z"))
        #expect(seconds.next(after: utc("2026-11-22T10:00:45Z")) == utc("2026-11-22T10:01:00Z"))
        let monthly = try Schedule("0 0 31 * *")
        #expect(monthly.next(after: utc("2026-11-01T00:00:00Z")) == utc("2026-12-31T00:00:00Z"))
        let either = try Schedule("0 0 1 * sun")   // the 1st or any Sunday, as cron does
        #expect(either.next(after: utc("2026-11-22T01:00:00Z")) == utc("2026-11-29T00:00:00Z"))
        let list = try Schedule("0 6,18 * jan,jul *")
        #expect(list.next(after: utc("2026-11-22T00:00:00Z")) == utc("2027-01-01T06:00:00Z"))
        #expect(try Schedule("0 0 30 2 *").next(after: utc("2026-01-01T00:00:00Z")) == nil)
    }

    @Test("cron in a time zone: local midnight, and the skipped hour of a DST change is skipped")
    func cronTimeZone() throws {
        let berlin = try Schedule("@daily", timeZone: "Europe/Berlin")
        #expect(berlin.next(after: utc("2026-11-22T12:00:00Z")) == utc("2026-11-22T23:00:00Z"))
        // 2027-03-28 02:30 does not exist in Berlin (clocks jump 02:00 → 03:00).
        let early = try Schedule("30 2 * * *", timeZone: "Europe/Berlin")
        #expect(early.next(after: utc("2027-03-27T02:00:00Z")) == utc("2027-03-29T00:30:00Z"))
    }

    @Test("invalid schedules and zones are refused with where the mistake is")
    func cronErrors() {
        #expect(throws: ControllerError.self) { try Schedule("* * *") }
        #expect((try? Schedule("61 * * * *")) == nil)
        #expect((try? Schedule("@fortnightly")) == nil)
        #expect((try? Schedule("5-1 * * * *")) == nil)
        #expect((try? Schedule("*/0 * * * *")) == nil)
        do {
            _ = try Schedule("0 25 * * *")
            Issue.record("accepted hour 25")
        } catch {
            #expect(error.description.contains("hour '25' is not in 0–23"))
        }
        do {
            _ = try Schedule("@daily", timeZone: "Mars/Olympus")
            Issue.record("accepted a made-up zone")
        } catch {
            #expect(error.description.contains("unknown time zone 'Mars/Olympus'"))
        }
    }

    @Test("missed runs after downtime fold into one run of the latest time; on time: no run until due")
    func missedRuns() throws {
        let hourly = try Schedule("@hourly")
        let plan = SchedulePlan.plan(hourly, lastRun: utc("2026-11-22T10:00:00Z"), now: utc("2026-11-22T13:30:00Z"))
        #expect(plan.due == utc("2026-11-22T13:00:00Z"))
        #expect(plan.missed == 2)   // 11:00 and 12:00 passed unrun; 13:00 runs
        #expect(plan.next == utc("2026-11-22T14:00:00Z"))
        let onTime = SchedulePlan.plan(hourly, lastRun: utc("2026-11-22T13:00:00Z"), now: utc("2026-11-22T13:30:00Z"))
        #expect(onTime.due == nil)
        #expect(onTime.next == utc("2026-11-22T14:00:00Z"))
        let exact = SchedulePlan.plan(hourly, lastRun: utc("2026-11-22T13:00:00Z"), now: utc("2026-11-22T14:00:00Z"))
        #expect(exact.due == utc("2026-11-22T14:00:00Z") && exact.missed == 0)
        // A week down with a per-second schedule still plans one run, quickly.
        let fast = try Schedule("* * * * * *")
        let long = SchedulePlan.plan(fast, lastRun: utc("2026-11-15T00:00:00Z"), now: utc("2026-11-22T00:00:00Z"))
        #expect(long.due == utc("2026-11-22T00:00:00Z"))
    }

    @Test("work queue: dedupes, never hands one key to two workers, re-queues keys added while processed")
    func workQueue() async throws {
        let queue = WorkQueue<String>()
        await queue.add("a")
        await queue.add("b")
        await queue.add("a")
        #expect(await queue.count == 2)
        let first = await queue.next()
        #expect(first == "a")
        await queue.add("a")   // while a worker has it
        let second = await queue.next()
        #expect(second == "b")
        #expect(await queue.count == 0)
        await queue.done("a")   // now it comes back
        #expect(await queue.next() == "a")
        await queue.done("a")
        await queue.done("b")
        // Delayed adds arrive; the earliest request wins.
        await queue.add("later", after: .seconds(30))
        await queue.add("later", after: .milliseconds(50))
        let due = await queue.due("later")
        #expect(due != nil && due! < ContinuousClock.now + .seconds(1))
        #expect(await queue.next() == "later")
        await queue.done("later")
        // Shutting down wakes waiting workers with nil.
        async let waiting = queue.next()
        try await Task.sleep(for: .milliseconds(50))
        await queue.shutDown()
        #expect(await waiting == nil)
    }

    @Test("lease decisions: free, held, expired, released, renewed")
    func leaseDecisions() {
        let now = utc("2026-11-22T10:00:00Z")
        var record = LeaseRecord(holder: "a", durationSeconds: 15, acquireTime: now.addingTimeInterval(-60),
                                 renewTime: now.addingTimeInterval(-5), transitions: 3)
        #expect(record.decide(for: "a", now: now) == .renew)
        #expect(record.decide(for: "b", now: now) == .wait(until: now.addingTimeInterval(10)))
        record.renewTime = now.addingTimeInterval(-16)
        #expect(record.decide(for: "b", now: now) == .acquire(transition: true))
        record.holder = ""
        record.renewTime = now
        #expect(record.decide(for: "b", now: now) == .acquire(transition: true))
        // MicroTime round trip.
        let text = LeaseRecord.microTime(utc("2026-11-22T10:00:00Z").addingTimeInterval(0.25))
        #expect(text == "2026-11-22T10:00:00.250000Z")
        #expect(LeaseRecord.parse(text) == utc("2026-11-22T10:00:00Z").addingTimeInterval(0.25))
    }

    @Test("policy specs: selector, schedule, zone and retention problems name the field")
    func policySpecs() throws {
        func policy(_ spec: JSONValue) -> KubeObject {
            var o = KubeObject(apiVersion: "cairn.dev/v1alpha1", kind: "Policy", name: "p", namespace: "cairn-system")
            o["spec"] = spec
            return o
        }
        let good = try PolicySpec(policy(["selector": ["namespaces": ["shop"]], "schedule": "@daily",
                                          "retention": ["daily": 7, "weekly": 4]]))
        #expect(good.retention == ForgetPolicy(daily: 7, weekly: 4))
        #expect(good.namespaces == ["shop"])
        func reason(_ spec: JSONValue) -> String? {
            do { _ = try PolicySpec(policy(spec)); return nil } catch { return error.reason + ": " + error.message }
        }
        #expect(reason(["selector": ["namespaces": ["a"]], "schedule": "every day"])?.hasPrefix("InvalidSchedule") == true)
        #expect(reason(["selector": ["namespaces": ["a"]], "schedule": "@daily", "timeZone": "Nowhere"])?
            .hasPrefix("InvalidTimeZone") == true)
        #expect(reason(["selector": [:], "schedule": "@daily"])?.hasPrefix("InvalidSelector") == true)
        #expect(reason(["selector": ["namespaces": ["a"]], "schedule": "@daily", "retention": ["daily": -1]])?
            .contains("spec.retention.daily") == true)
        #expect(reason(["selector": ["namespaces": ["a"]], "schedule": "@daily", "localSnapshots": ["keep": -1]])?
            .contains("spec.localSnapshots.keep") == true)
        #expect(try PolicySpec(policy(["selector": ["namespaces": ["a"]], "schedule": "@daily", "localSnapshots": ["keep": 2]])).localSnapshots == 2)
        #expect(good.localSnapshots == 0)
        // Import Policies: source applications by name (or all), no backup fields, one target for one application.
        let standby = try PolicySpec(policy(["schedule": "*/5 * * * *", "selector": ["namespaces": ["shop"]],
                                             "import": ["profile": "from-first", "restore": ["transformSet": "standby", "targetNamespace": "shop-dr"]]]))
        #expect(standby.import?.profile == "from-first")
        #expect(standby.import?.restore?.transformSet == "standby" && standby.import?.restore?.targetNamespace == "shop-dr")
        #expect(try PolicySpec(policy(["schedule": "@hourly", "import": ["profile": "from-first"]])).import?.restore == nil)
        #expect(reason(["schedule": "@hourly", "import": [:]])?.contains("spec.import.profile") == true)
        #expect(reason(["schedule": "@hourly", "import": ["profile": "p"], "retention": ["daily": 3]])?.contains("spec.retention") == true)
        #expect(reason(["schedule": "@hourly", "import": ["profile": "p"], "export": ["profile": "q"]])?.contains("spec.export") == true)
        #expect(reason(["schedule": "@hourly", "selector": ["namespaceSelector": ["matchLabels": ["a": "b"]]], "import": ["profile": "p"]])?
            .hasPrefix("InvalidSelector") == true)
        #expect(reason(["schedule": "@hourly", "selector": ["namespaces": ["a", "b"]],
                        "import": ["profile": "p", "restore": ["targetNamespace": "c"]]])?.contains("exactly one source namespace") == true)
        // Exports on their own schedule (in the policy's time zone).
        let nightlyExport = try PolicySpec(policy(["selector": ["namespaces": ["a"]], "schedule": "@hourly", "timeZone": "Europe/Berlin",
                                                  "export": ["profile": "dr", "schedule": "30 2 * * *"]]))
        #expect(nightlyExport.export?.schedule?.timeZone.identifier == "Europe/Berlin")
        #expect(try PolicySpec(policy(["selector": ["namespaces": ["a"]], "schedule": "@hourly", "export": ["profile": "dr"]])).export?.schedule == nil)
        #expect(reason(["selector": ["namespaces": ["a"]], "schedule": "@hourly", "export": ["profile": "dr", "schedule": "sometimes"]])?
            .contains("spec.export.schedule") == true)
        var importAction = KubeObject(apiVersion: "cairn.dev/v1alpha1", kind: "ImportAction", name: "i", namespace: "cairn-system")
        importAction["spec"] = ImportActionSpec(profile: "p", namespaces: ["shop"], restore: standby.import?.restore).json
        #expect(try ImportActionSpec(importAction) == ImportActionSpec(profile: "p", namespaces: ["shop"], restore: standby.import?.restore))
        importAction["spec"] = ["namespaces": ["shop"]]
        #expect(throws: ControllerError.self) { try ImportActionSpec(importAction) }
        let selector = try LabelSelector(["matchLabels": ["tier": "gold"],
                                          "matchExpressions": [["key": "env", "operator": "NotIn", "values": ["dev"]]]])
        #expect(selector.matches(["tier": "gold", "env": "prod"]))
        #expect(!selector.matches(["tier": "gold", "env": "dev"]))
        #expect(!selector.matches(["env": "prod"]))
    }

    @Test("profile specs: exactly one location, password reference, S3 credentials, immutability period")
    func profileSpecs() throws {
        func profile(_ spec: JSONValue) -> KubeObject {
            var o = KubeObject(apiVersion: "cairn.dev/v1alpha1", kind: "Profile", name: "p", namespace: "cairn-system")
            o["spec"] = spec
            return o
        }
        let fs = try ProfileSpec(profile(["location": ["filesystem": ["path": "/var/lib/cairn/r"]],
                                          "passwordSecretRef": ["name": "pw"], "immutability": "7d"]))
        #expect(fs.location == .filesystem(path: "/var/lib/cairn/r"))
        #expect(fs.immutability == TimeInterval(7 * 86_400))
        #expect(fs.passwordKey == "password")
        #expect(throws: ControllerError.self) {
            try ProfileSpec(profile(["location": ["s3": ["bucket": "b"]], "passwordSecretRef": ["name": "pw"]]))
        }
        #expect(throws: ControllerError.self) {
            try ProfileSpec(profile(["location": ["filesystem": ["path": "relative"]], "passwordSecretRef": ["name": "pw"]]))
        }
        #expect(throws: ControllerError.self) { try ProfileSpec(profile(["location": ["filesystem": ["path": "/x"]]])) }
        // Plain http only when the Profile says so; a repository only when asked; the namespaces it serves.
        let s3: JSONValue = ["bucket": "b", "endpoint": "http://127.0.0.1:5000"]
        let creds: JSONValue = ["name": "s3"]
        let plain = #expect(throws: ControllerError.self) {
            try ProfileSpec(profile(["location": ["s3": s3], "passwordSecretRef": ["name": "pw"], "credentialsSecretRef": creds]))
        }
        #expect(plain?.reason == "InsecureEndpoint")
        #expect(plain?.message == "spec.location.s3.endpoint uses plain http: credentials and data would cross the network readable; use https, or set spec.location.s3.insecure: true for a test endpoint")
        var insecure = s3
        insecure["insecure"] = true
        let test = try ProfileSpec(profile(["location": ["s3": insecure], "passwordSecretRef": ["name": "pw"],
                                            "credentialsSecretRef": creds, "init": true]))
        #expect(test.initialize && !fs.initialize)
        #expect(fs.admits(namespaceLabels: [:]) == false, "a Profile that is not the default serves no namespace by itself")
        let offered = try ProfileSpec(profile(["location": ["filesystem": ["path": "/x"]], "passwordSecretRef": ["name": "pw"],
                                               "namespaceSelector": ["matchLabels": ["team": "a"]], "defaultExpiresAfter": "30d"]))
        #expect(offered.admits(namespaceLabels: ["team": "a"]) && !offered.admits(namespaceLabels: ["team": "b"]))
        #expect(offered.defaultExpiresAfter == TimeInterval(30 * 86_400))
        let byDefault = try ProfileSpec(profile(["location": ["filesystem": ["path": "/x"]], "passwordSecretRef": ["name": "pw"], "default": true]))
        #expect(byDefault.admits(namespaceLabels: [:]))
        // An import Profile: a token's Secret instead of a location and password; never both, never init.
        let imported = try ProfileSpec(profile(["import": ["tokenSecretRef": ["name": "prod-token"]], "credentialsSecretRef": creds]))
        #expect(imported.isImport && imported.location == nil && imported.importToken == .init(secret: "prod-token", key: "token"))
        #expect(!fs.isImport)
        // The token's location is the issuer's: plain http only when the receiving Profile accepts it.
        let http = ReceiveToken.Location(s3: .init(bucket: "b", prefix: nil, endpoint: "http://10.0.0.1:9000", region: nil,
                                                   pathStyle: true, insecure: true))
        let refused = #expect(throws: ControllerError.self) { try imported.location(http) }
        #expect(refused?.reason == "InsecureEndpoint")
        let accepting = try ProfileSpec(profile(["import": ["tokenSecretRef": ["name": "t"], "insecure": true], "credentialsSecretRef": creds]))
        #expect(try accepting.location(http) == .s3(bucket: "b", prefix: "", endpoint: "http://10.0.0.1:9000", region: nil, pathStyle: true))
        for bad: JSONValue in [["import": ["tokenSecretRef": ["name": "t"]], "location": ["filesystem": ["path": "/x"]]],
                               ["import": ["tokenSecretRef": ["name": "t"]], "init": true],
                               ["import": [:]]] {
            let error = #expect(throws: ControllerError.self) { try ProfileSpec(profile(bad)) }
            #expect(error?.reason == "InvalidSpec")
        }
    }

    @Test("retention on restore points: GFS per rule, newest kept, union of rules")
    func retention() {
        struct Point { var name: String; var time: Date }
        let base = utc("2026-11-22T00:00:00Z")
        // One restore point every 6 hours for 10 days.
        let points = (0..<40).map { Point(name: "rp\($0)", time: base.addingTimeInterval(Double(-$0) * 6 * 3600)) }
        let kept = ForgetPolicy(last: 2, daily: 3).keep(points, time: \.time, id: \.name).filter { !$0.1.isEmpty }
        #expect(kept.map(\.0.name) == ["rp0", "rp1", "rp5"])
        #expect(kept.first?.1 == ["last", "daily"])
    }

    @Test("action names from policy and scheduled time are stable")
    func actionNames() {
        #expect(PolicyReconciler.actionName(policy: "nightly", slot: utc("2026-11-22T03:04:05Z")) == "nightly-20261122-030405")
    }
}
