import Foundation
import Kube
import Protection

/// Policies: validate, then at each scheduled time create one BackupAction per selected application
/// (named after the policy and the scheduled time, so a time is never run twice — not even across a
/// controller restart). Runs missed while the controller was down are folded into one run.
/// Retention is applied by the BackupAction reconciler after each successful backup.
struct PolicyReconciler {
    let context: ControllerContext

    static func actionName(policy: String, slot: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return "\(policy)-\(f.string(from: slot))"
    }

    func reconcile(_ key: ObjectKey, now: Date = Date()) async throws -> Duration? {
        guard let policy = try await context.fetch(key) else { return nil }
        guard key.namespace == context.namespace else {
            try await context.setCondition(Condition("Ready", false, reason: "WrongNamespace",
                                                     message: "Policies are read in namespace \(context.namespace) only, where the controller runs"),
                                           on: policy)
            return nil
        }
        let spec: PolicySpec
        let profile: String
        do {
            spec = try PolicySpec(policy)
            profile = try await context.profileName(spec.import?.profile ?? spec.profile)
            _ = try await context.readyProfile(profile)
            if spec.import?.restore != nil, UserInfo.requester(of: policy) == nil {
                throw ControllerError("RequesterUnknown", "Cairn does not know who wrote this Policy (it was written while Cairn's admission webhook was not serving), and its restores act for that person: apply it again")
            }
        } catch let error as ControllerError {
            var updated = policy
            updated["status", "nextScheduleTime"] = nil
            Conditions.set(Condition("Ready", false, reason: error.reason, message: error.message), on: &updated)
            if updated["status"] != policy["status"] {
                try await context.writeStatus(updated)
                await context.events.record(policy, warning: true, reason: error.reason, message: error.message)
            }
            return .seconds(30)   // a missing Profile may appear
        }
        var updated = policy
        let lastRun = Timestamp.parse(policy["status", "lastScheduleTime"]?.string)
            ?? Timestamp.parse(policy.creationTimestamp) ?? now
        let plan = SchedulePlan.plan(spec.schedule, lastRun: lastRun, now: now)
        var requeue: Duration? = .seconds(300)
        if spec.paused {
            updated["status", "nextScheduleTime"] = nil
            Conditions.set(Condition("Ready", true, reason: "Paused", message: "paused: no backups are scheduled until spec.paused is false"),
                           on: &updated)
            // Resuming starts from now: the runs of the pause are not made up.
            updated["status", "lastScheduleTime"] = .string(Timestamp.format(plan.due ?? lastRun))
        } else {
            if let due = plan.due, let source = spec.import {
                try await createImport(policy: policy, spec: source, namespaces: spec.namespaces, slot: due)
                updated["status", "lastScheduleTime"] = .string(Timestamp.format(due))
            } else if let due = plan.due {
                let namespaces = try await selectedNamespaces(spec)
                for namespace in namespaces {
                    try await createAction(policy: policy, spec: spec, profile: profile, namespace: namespace, slot: due)
                }
                updated["status", "lastScheduleTime"] = .string(Timestamp.format(due))
                if plan.missed > 0 {
                    await context.events.record(policy, warning: true, reason: "MissedRuns",
                                                message: "\(plan.missed) scheduled run(s) passed while the controller was not running; ran once for \(Timestamp.format(due))")
                }
                context.logger.info("policy.run", metadata: ["cairn.policy": "\(key.name)", "cairn.applications": "\(namespaces.count)",
                                                            "cairn.missed": "\(plan.missed)"])
            }
            var wake = plan.next
            if let export = spec.export, let schedule = export.schedule {
                let exportPlan = try await scheduledExports(policy: policy, spec: spec, export: export, schedule: schedule,
                                                            profile: profile, now: now, status: &updated)
                wake = [wake, exportPlan].compactMap { $0 }.min()
            }
            if let next = plan.next {
                updated["status", "nextScheduleTime"] = .string(Timestamp.format(next))
            }
            if let wake {
                requeue = .milliseconds(max(100, Int64(wake.timeIntervalSince(now) * 1000) + 50))
            }
            let what = spec.import == nil ? "backup" : "import"
            Conditions.set(Condition("Ready", true, reason: "Scheduled",
                                     message: plan.next.map { "next \(what) at \(Timestamp.format($0))" } ?? "the schedule never fires again"),
                           on: &updated)
        }
        updated["status", "applications"] = try await applicationStatus(policy: key.name)
        if updated["status"] != policy["status"] {
            try await context.writeStatus(updated)
        }
        return requeue
    }

    func selectedNamespaces(_ spec: PolicySpec) async throws -> [String] {
        var names: Set<String> = []
        for object in try await context.client.listAll(Namespace.resource).items where Namespace(object).phase == "Active" {
            if spec.namespaces.contains(object.name) || spec.namespaceSelector?.matches(object.labels) == true {
                names.insert(object.name)
            }
        }
        return names.sorted()
    }

    func createAction(policy: KubeObject, spec: PolicySpec, profile: String, namespace: String, slot: Date) async throws {
        var action = KubeObject(apiVersion: CairnKind.apiVersion, kind: CairnKind.backupAction.rawValue,
                                name: Self.actionName(policy: policy.name, slot: slot), namespace: namespace)
        action.labels = [CairnLabel.policy: policy.name]
        var body: JSONValue = ["profile": .string(profile), "quiesce": .string(spec.quiesce), "volumes": .bool(spec.volumes)]
        if spec.localSnapshots > 0 { body["keepSnapshots"] = true }
        if let selector = spec.objectSelector { body["labelSelector"] = .string(selector) }
        for (key, value) in spec.consistency.json { body[key] = value }
        action["spec"] = body
        do {
            _ = try await context.client.create(action, as: CairnKind.backupAction.resource, namespace: namespace)
        } catch let error as KubeError where error.code == .alreadyExists {
            return   // this time already ran (or runs): never twice
        }
    }

    /// `spec.export.schedule`: at each of its times, the newest restore point of each selected application in
    /// the policy's Profile is exported (`<namespace>.<policy>-export-<yyyyMMdd-HHmmss>`); one the destination
    /// holds already sends nothing. Writes `status.lastExportTime`/`nextExportTime`; returns the next time.
    func scheduledExports(policy: KubeObject, spec: PolicySpec, export: PolicySpec.Export, schedule: Schedule, profile: String,
                          now: Date, status updated: inout KubeObject) async throws -> Date? {
        let lastRun = Timestamp.parse(policy["status", "lastExportTime"]?.string) ?? Timestamp.parse(policy.creationTimestamp) ?? now
        let plan = SchedulePlan.plan(schedule, lastRun: lastRun, now: now)
        if let due = plan.due {
            var options = ListOptions()
            options.labelSelector = "\(CairnLabel.policy)=\(policy.name)"
            for namespace in try await selectedNamespaces(spec) {
                let points = try await context.client.listAll(CairnKind.restorePoint.resource, namespace: namespace, options: options).items
                    .filter { $0.deletionTimestamp == nil && RestorePointSpec($0).profile == profile }
                guard let newest = points.max(by: { (RestorePointSpec($0).time ?? .distantPast) < (RestorePointSpec($1).time ?? .distantPast) })
                else { continue }
                try await context.requestExport(export, policy: policy.name, namespace: namespace, profile: profile,
                                                restorePoint: newest.name,
                                                name: "\(namespace).\(Self.actionName(policy: policy.name + "-export", slot: due))")
            }
            updated["status", "lastExportTime"] = .string(Timestamp.format(due))
        }
        updated["status", "nextExportTime"] = plan.next.map { .string(Timestamp.format($0)) }
        return plan.next
    }

    /// An import Policy's run: one ImportAction in the controller's namespace, carrying the Policy's author
    /// (its restores act for them).
    func createImport(policy: KubeObject, spec: PolicySpec.Import, namespaces: [String], slot: Date) async throws {
        var action = KubeObject(apiVersion: CairnKind.apiVersion, kind: CairnKind.importAction.rawValue,
                                name: Self.actionName(policy: policy.name, slot: slot), namespace: context.namespace)
        action.labels = [CairnLabel.policy: policy.name]
        if let author = policy.annotations[ActionAdmission.requesterAnnotation] {
            action["metadata", "annotations"] = [ActionAdmission.requesterAnnotation: .string(author)]
        }
        action["spec"] = ImportActionSpec(profile: spec.profile, namespaces: namespaces, restore: spec.restore).json
        do {
            _ = try await context.client.create(action, as: CairnKind.importAction.resource, namespace: context.namespace)
        } catch let error as KubeError where error.code == .alreadyExists {
            return
        }
    }

    /// Per application: restore points by this policy and the newest one's time.
    func applicationStatus(policy: String) async throws -> JSONValue {
        var options = ListOptions()
        options.labelSelector = "\(CairnLabel.policy)=\(policy)"
        let points = try await context.client.listAll(CairnKind.restorePoint.resource, options: options).items
        var byNamespace: [String: (Int, String)] = [:]
        for point in points where point.deletionTimestamp == nil {
            let ns = point.namespace ?? ""
            let time = RestorePointSpec(point).time.map { Timestamp.format($0) } ?? ""
            let current = byNamespace[ns] ?? (0, "")
            byNamespace[ns] = (current.0 + 1, max(current.1, time))
        }
        return .array(byNamespace.keys.sorted().map { ns in
            ["namespace": .string(ns), "restorePoints": .int(Int64(byNamespace[ns]!.0)),
             "lastBackupTime": .string(byNamespace[ns]!.1)]
        })
    }
}
