import Foundation
import Kube
import Protection

/// The phase of a BackupAction or RestoreAction (`status.phase`), the one spelling of each.
public enum ActionPhase: String, Sendable, CaseIterable {
    /// Not looked at yet (no phase written).
    case new = ""
    /// Waiting: for its Profile to be ready, or for its next attempt after a transient failure.
    case pending = "Pending"
    /// Waiting for a free slot (`ActionSlots`).
    case queued = "Queued"
    case running = "Running"
    case succeeded = "Succeeded"
    case failed = "Failed"

    public var isFinished: Bool { self == .succeeded || self == .failed }
}

extension KubeObject {
    /// An action's `status.phase`; text Cairn did not write reads as `.new`. Written only by
    /// `ActionTransition`.
    var phase: ActionPhase {
        get { ActionPhase(rawValue: self["status", "phase"]?.string ?? "") ?? .new }
        set { self["status", "phase"] = newValue == .new ? nil : .string(newValue.rawValue) }
    }

    /// The status of an action's runs, as `ActionTransition` writes it.
    /// Runs started so far.
    var attempts: Int { Int(self["status", "attempts"]?.int ?? 0) }
    /// The identity of the controller process that runs it.
    var runID: String? { self["status", "runID"]?.string }
    /// The Profile a BackupAction's run writes to.
    var runProfile: String? { self["status", "profile"]?.string }
    var startTime: Date? { Timestamp.parse(self["status", "startTime"]?.string) }
    /// When a run that stopped for a transient reason is tried again.
    var nextAttemptTime: Date? { Timestamp.parse(self["status", "nextAttemptTime"]?.string) }
}

/// A BackupAction's spec, read and checked once (`InvalidSpec` names the field).
struct BackupActionSpec: Sendable, Equatable {
    var profile: String?
    var labelSelector: String?
    var quiesce: ApplicationBackup.Quiesce
    var volumes: Bool
    /// Keep the CSI snapshots as the restore point's local tier (a Policy with `localSnapshots.keep` sets it).
    var keepSnapshots: Bool
    /// `expiresAfter` as a period, when given.
    var expiresAfter: TimeInterval?
    var consistency: ConsistencySpec

    init(_ action: KubeObject) throws(ControllerError) {
        let spec = action["spec"] ?? .emptyObject
        profile = spec["profile"]?.string
        labelSelector = spec["labelSelector"]?.string
        let quiesceText = spec["quiesce"]?.string ?? "none"
        guard let quiesce = ApplicationBackup.Quiesce(rawValue: quiesceText) else {
            throw ControllerError("InvalidSpec", "spec.quiesce '\(quiesceText)' must be none or scale")
        }
        self.quiesce = quiesce
        volumes = spec["volumes"]?.bool ?? true
        keepSnapshots = spec["keepSnapshots"]?.bool ?? false
        if let text = spec["expiresAfter"]?.string {
            guard let period = ProfileSpec.period(text) else {
                throw ControllerError("InvalidSpec", "spec.expiresAfter '\(text)' is not a period such as 30m, 12h or 7d")
            }
            expiresAfter = period
        }
        consistency = try ConsistencySpec(spec)
    }
}

/// The consistency settings of a Policy or BackupAction: `hooks` (beforeCapture, afterCapture),
/// `blueprintBindings` (blueprints for workloads by labels) and `consistencyGroup`, checked once.
struct ConsistencySpec: Sendable, Equatable {
    var hooks: [String: [Blueprint.Phase]] = [:]
    var bindings: [BlueprintBinding] = []
    /// Workloads captured at one instant.
    var consistencyGroup: ConsistencyGroup?
    /// As written, for a Policy to copy into its BackupActions.
    var json: [String: JSONValue] = [:]

    init(_ spec: JSONValue, hookNames: [String] = ["beforeCapture", "afterCapture"]) throws(ControllerError) {
        if let hooks = spec["hooks"] {
            do {
                self.hooks = try Blueprint.hooks(hooks, field: "spec.hooks", allowed: hookNames)
            } catch {
                throw ControllerError("InvalidHooks", error.description, cause: error)
            }
            json["hooks"] = hooks
        }
        if let list = spec["blueprintBindings"] {
            for (i, entry) in (list.array ?? []).enumerated() {
                guard let name = entry["blueprint"]?.string, let labels = entry["matchLabels"]?.object, !labels.isEmpty else {
                    throw ControllerError("InvalidSpec", "spec.blueprintBindings[\(i)] needs a blueprint and matchLabels")
                }
                bindings.append(BlueprintBinding(blueprint: name, matchLabels: labels.compactMapValues(\.string)))
            }
            json["blueprintBindings"] = list
        }
        if let group = spec["consistencyGroup"] {
            do {
                consistencyGroup = try ConsistencyGroup(json: group, field: "spec.consistencyGroup")
            } catch {
                throw ControllerError("InvalidSpec", error.description, cause: error)
            }
            json["consistencyGroup"] = group
        }
    }
}

/// A RestoreAction's spec, read and checked once. Who may restore what is decided by the reconciler (it
/// needs the cluster); this is the shape.
struct RestoreActionSpec: Sendable {
    var restorePoint: String
    var restorePointNamespace: String?
    var targetNamespace: String?
    var transformSet: String?
    var transforms: TransformSet?
    var existing: ObjectRestorer.ExistingPolicy
    var only: [CaptureRules.Selector]
    var volumes: Set<String>?
    var volumesOnly: Bool
    var volumeData: Bool
    var keepExtraFiles: Bool
    var hooks: [String: [Blueprint.Phase]]

    init(_ action: KubeObject) throws(ControllerError) {
        let spec = action["spec"] ?? .emptyObject
        guard let point = spec["restorePoint"]?.string, !point.isEmpty else {
            throw ControllerError("InvalidSpec", "spec.restorePoint is required: the name of a RestorePoint")
        }
        restorePoint = point
        restorePointNamespace = spec["restorePointNamespace"]?.string
        targetNamespace = spec["targetNamespace"]?.string
        transformSet = spec["transformSet"]?.string
        if let inline = spec["transforms"] {
            guard transformSet == nil else {
                throw ControllerError("InvalidSpec", "give spec.transformSet or spec.transforms, not both")
            }
            do {
                transforms = try TransformSet(json: inline)
            } catch {
                throw ControllerError("InvalidTransform", "spec.transforms: \(error.description)", cause: error)
            }
        }
        let existingText = spec["existing"]?.string ?? "fail"
        guard let existing = ObjectRestorer.ExistingPolicy(rawValue: existingText) else {
            throw ControllerError("InvalidSpec", "spec.existing '\(existingText)' must be fail, skip, update or recreate")
        }
        self.existing = existing
        only = []
        for text in spec["only"]?.array?.compactMap(\.string) ?? [] {
            guard let selector = CaptureRules.Selector(text) else {
                throw ControllerError("InvalidSpec", "spec.only '\(text)' is not a selector such as Kind, Kind/name or group/Kind")
            }
            only.append(selector)
        }
        volumes = spec["volumes"]?.array.map { Set($0.compactMap(\.string)) }
        volumesOnly = spec["volumesOnly"]?.bool ?? false
        volumeData = spec["volumeData"]?.bool ?? true
        keepExtraFiles = spec["keepExtraFiles"]?.bool ?? false
        hooks = try ConsistencySpec(spec, hookNames: ["afterRestore"]).hooks
    }
}
