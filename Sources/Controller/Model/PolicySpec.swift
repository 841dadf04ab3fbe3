import Foundation
import Kube
import Snapshot

/// A Policy's spec, checked: what it protects, when, how long restore points are kept.
public struct PolicySpec: Sendable {
    public var profile: String?
    public var namespaces: [String]
    public var namespaceSelector: LabelSelector?
    public var objectSelector: String?
    public var schedule: Schedule
    public var retention: ForgetPolicy
    public var quiesce: String
    public var volumes: Bool
    public var paused: Bool
    /// How many of an application's newest restore points keep their CSI snapshots (`spec.localSnapshots.keep`);
    /// 0: none.
    public var localSnapshots: Int
    var consistency: ConsistencySpec

    public init(_ object: KubeObject) throws(ControllerError) {
        let spec = object["spec"] ?? .emptyObject
        profile = spec["profile"]?.string
        let selector = spec["selector"] ?? .emptyObject
        namespaces = selector["namespaces"]?.array?.compactMap(\.string) ?? []
        if let labels = selector["namespaceSelector"] {
            do {
                namespaceSelector = try LabelSelector(labels)
            } catch {
                throw ControllerError(error.reason, "spec.selector.namespaceSelector: \(error.message)")
            }
        }
        if let body = spec["import"] {
            guard let source = body["profile"]?.string, !source.isEmpty else {
                throw ControllerError("InvalidSpec", "spec.import.profile is required: the Profile (an import Profile) whose restore points are imported")
            }
            guard namespaceSelector == nil else {
                throw ControllerError("InvalidSelector", "an import Policy selects the source's applications by name (spec.selector.namespaces): they need not exist in this cluster, so a namespaceSelector cannot find them")
            }
            for field in ["export", "retention", "localSnapshots"] where spec[field] != nil {
                throw ControllerError("InvalidSpec", "spec.\(field) is for backups; an import Policy mirrors the restore points (and retention) of the source: remove spec.\(field)")
            }
            self.import = Import(profile: source,
                                 restore: try ImportActionSpec.Restore(body["restore"], field: "spec.import.restore",
                                                                       namespaces: namespaces))
        } else if namespaces.isEmpty && namespaceSelector == nil {
            throw ControllerError("InvalidSelector", "spec.selector needs namespaces or a namespaceSelector: which applications to protect")
        }
        objectSelector = selector["objectSelector"]?.string
        guard let expression = spec["schedule"]?.string else {
            throw ControllerError("InvalidSchedule", "spec.schedule is required (@hourly, @daily, … or a cron expression)")
        }
        do {
            schedule = try Schedule(expression, timeZone: spec["timeZone"]?.string)
        } catch {
            throw ControllerError(error.reason, "spec.schedule '\(expression)': \(error.message)")
        }
        retention = try Self.retention(spec["retention"] ?? .emptyObject, field: "spec.retention")
        quiesce = spec["quiesce"]?.string ?? "none"
        volumes = spec["volumes"]?.bool ?? true
        paused = spec["paused"]?.bool ?? false
        let keep = spec["localSnapshots", "keep"] ?? 0
        guard let kept = keep.int, kept >= 0 else {
            throw ControllerError("InvalidSpec", "spec.localSnapshots.keep must be a count of 0 or more")
        }
        localSnapshots = Int(kept)
        consistency = try ConsistencySpec(spec)
        if let export = spec["export"] {
            guard let destination = export["profile"]?.string, !destination.isEmpty else {
                throw ControllerError("InvalidSpec", "spec.export.profile is required: the Profile every restore point is copied to")
            }
            guard destination != profile else {
                throw ControllerError("InvalidSpec", "spec.export.profile is the Profile the policy backs up into: export into another")
            }
            var exportSchedule: Schedule?
            if let expression = export["schedule"]?.string {
                do {
                    exportSchedule = try Schedule(expression, timeZone: spec["timeZone"]?.string)
                } catch {
                    throw ControllerError(error.reason, "spec.export.schedule '\(expression)': \(error.message)")
                }
            }
            self.export = Export(profile: destination,
                                 retention: try Self.retention(export["retention"] ?? .emptyObject, field: "spec.export.retention"),
                                 receiver: try ExportActionSpec.Receiver(export["receiver"], field: "spec.export.receiver"),
                                 schedule: exportSchedule)
        }
    }

    /// `spec.export`: after every backup — or at the times of its own `schedule` (say, nightly for hourly
    /// backups), the newest restore point of each application then — the restore point is copied to another
    /// Profile (an ExportAction), where the export's own retention keeps it.
    public struct Export: Sendable {
        public var profile: String
        public var retention: ForgetPolicy
        var receiver: ExportActionSpec.Receiver?
        public var schedule: Schedule?
    }
    public var export: Export?

    /// `spec.import`: at each scheduled time an ImportAction reads the import Profile's repository and shows its
    /// restore points here; with `restore`, the newest of each application is restored (a warm standby kept
    /// current) with the Policy author's rights. `spec.selector.namespaces`: the source applications (all when
    /// empty).
    public struct Import: Sendable {
        public var profile: String
        var restore: ImportActionSpec.Restore?
    }
    public var `import`: Import?

    /// A GFS retention (`last`, `hourly`, … counts).
    static func retention(_ r: JSONValue, field: String) throws(ControllerError) -> ForgetPolicy {
        func count(_ key: String) throws(ControllerError) -> Int {
            guard let value = r[key] else { return 0 }
            guard let n = value.int, n >= 0 else {
                throw ControllerError("InvalidRetention", "\(field).\(key) must be a count of 0 or more")
            }
            return Int(n)
        }
        return ForgetPolicy(last: try count("last"), hourly: try count("hourly"), daily: try count("daily"),
                            weekly: try count("weekly"), monthly: try count("monthly"), yearly: try count("yearly"))
    }
}

/// A `metav1.LabelSelector` (matchLabels and matchExpressions), evaluated locally.
public struct LabelSelector: Sendable, Equatable {
    struct Requirement: Sendable, Equatable {
        var key: String
        var op: String
        var values: [String]
    }

    var requirements: [Requirement] = []

    public init(_ json: JSONValue) throws(ControllerError) {
        for (key, value) in json["matchLabels"]?.object ?? [:] {
            guard let v = value.string else { throw ControllerError("InvalidSelector", "matchLabels.\(key) must be a string") }
            requirements.append(Requirement(key: key, op: "In", values: [v]))
        }
        for entry in json["matchExpressions"]?.array ?? [] {
            guard let key = entry["key"]?.string, let op = entry["operator"]?.string,
                  ["In", "NotIn", "Exists", "DoesNotExist"].contains(op) else {
                throw ControllerError("InvalidSelector", "matchExpressions entries need a key and an operator In, NotIn, Exists or DoesNotExist")
            }
            let values = entry["values"]?.array?.compactMap(\.string) ?? []
            if (op == "In" || op == "NotIn") && values.isEmpty {
                throw ControllerError("InvalidSelector", "matchExpressions \(key) \(op) needs values")
            }
            requirements.append(Requirement(key: key, op: op, values: values))
        }
    }

    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { r in
            switch r.op {
            case "In": return labels[r.key].map(r.values.contains) ?? false
            case "NotIn": return !(labels[r.key].map(r.values.contains) ?? false)
            case "Exists": return labels[r.key] != nil
            default: return labels[r.key] == nil
            }
        }
    }
}
