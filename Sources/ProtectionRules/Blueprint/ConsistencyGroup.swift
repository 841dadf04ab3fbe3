import Foundation
import KubeModel

/// Workloads whose state one backup captures at one instant: the `consistencyGroup` of a Policy or
/// BackupAction (`cairn app backup --group`). Every member is bound to a blueprint; the backup takes every
/// member's fence (`beforeCapture`) at once, starts each member's consistent point while all hold (its
/// `backup` action up to the phase marked `point`, or the volume read), and releases them all as soon as
/// every point exists. How it runs: `ConsistencyPlan`; what it guarantees: docs/operations.md.
///
/// ```yaml
/// consistencyGroup:
///   workloads: [Deployment/orders, StatefulSet/postgres, StatefulSet/redis]
///   fenceTimeout: 30s      # every fence must hold within it, else all are released and the backup fails
/// ```
public struct ConsistencyGroup: Sendable, Equatable {
    /// `Kind/name` of each member, in the order given.
    public var workloads: [String]
    public var fenceTimeout: TimeInterval

    public static let defaultFenceTimeout: TimeInterval = 60

    public init(workloads: [String], fenceTimeout: TimeInterval = defaultFenceTimeout) {
        self.workloads = workloads
        self.fenceTimeout = fenceTimeout
    }

    /// Reads and checks `consistencyGroup`; mistakes name their field (under `field`).
    public init(json: JSONValue, field: String) throws(ProtectionError) {
        guard json.object != nil else {
            throw ProtectionError(.invalidBlueprint, "a mapping with workloads (and fenceTimeout)", field: field)
        }
        try Blueprint.known(json, ["workloads", "fenceTimeout"], at: field)
        guard let list = json["workloads"]?.array, list.count >= 1 else {
            throw ProtectionError(.invalidBlueprint, "workloads lists the members, such as [StatefulSet/postgres, Deployment/writer]",
                                  field: "\(field).workloads")
        }
        var workloads: [String] = []
        for (i, item) in list.enumerated() {
            guard let text = item.string else {
                throw ProtectionError(.invalidBlueprint, "must be a string such as StatefulSet/postgres", field: "\(field).workloads[\(i)]")
            }
            let (kind, name) = try Blueprint.workloadName(text, field: "\(field).workloads[\(i)]")
            guard !workloads.contains("\(kind)/\(name)") else {
                throw ProtectionError(.invalidBlueprint, "\(text) is listed twice", field: "\(field).workloads[\(i)]")
            }
            workloads.append("\(kind)/\(name)")
        }
        var timeout = Self.defaultFenceTimeout
        if let value = json["fenceTimeout"] {
            guard let text = value.string, let seconds = Period.seconds(text), seconds > 0 else {
                throw ProtectionError(.invalidBlueprint, "a period such as 30s or 2m", field: "\(field).fenceTimeout")
            }
            timeout = seconds
        }
        self.init(workloads: workloads, fenceTimeout: timeout)
    }

    /// The group as it is written in a spec.
    public var json: JSONValue {
        ["workloads": .array(workloads.map { .string($0) }), "fenceTimeout": .string("\(Int(fenceTimeout))s")]
    }
}
