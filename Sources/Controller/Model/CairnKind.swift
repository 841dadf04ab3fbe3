import Kube

/// The kinds of Cairn's CRDs (`deploy/crds/`, group `cairn.dev`, version `v1alpha1`).
public enum CairnKind: String, Sendable, CaseIterable, Hashable {
    case profile = "Profile"
    case policy = "Policy"
    case backupAction = "BackupAction"
    case restoreAction = "RestoreAction"
    case restorePoint = "RestorePoint"
    case transformSet = "TransformSet"
    case blueprint = "Blueprint"
    case exportAction = "ExportAction"
    case importAction = "ImportAction"

    public static let group = "cairn.dev"
    public static let version = "v1alpha1"
    public static let apiVersion = "\(group)/\(version)"

    public var plural: String {
        switch self {
        case .policy: return "policies"
        default: return rawValue.lowercased() + "s"
        }
    }

    /// The resource type, known without discovery (the CRDs are Cairn's own).
    public var resource: APIResource {
        APIResource(group: Self.group, version: Self.version, name: plural, kind: rawValue, namespaced: true,
                    subresources: ["status"])
    }
}

/// One object a reconciler is asked about.
public struct ObjectKey: Hashable, Sendable, CustomStringConvertible {
    public var kind: CairnKind
    public var namespace: String
    public var name: String

    public init(_ kind: CairnKind, _ namespace: String, _ name: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    public init(_ kind: CairnKind, _ object: KubeObject) {
        self.init(kind, object.namespace ?? "", object.name)
    }

    public var description: String { "\(kind.rawValue) \(namespace)/\(name)" }
}

/// Labels and annotations Cairn writes.
public enum CairnLabel {
    public static let policy = "cairn.dev/policy"
    public static let profile = "cairn.dev/profile"
    public static let action = "cairn.dev/action"
    /// On catalog entries (RestorePoints in the controller's namespace): the namespace they were taken of.
    public static let sourceNamespace = "cairn.dev/source-namespace"
    /// On RestoreActions an ImportAction made: the ImportAction, and the restore point (its ID's first 16
    /// characters) and namespace restored, by which the next import knows it was restored already.
    public static let importAction = "cairn.dev/import-action"
    public static let restorePointID = "cairn.dev/restore-point-id"
    public static let targetNamespace = "cairn.dev/target-namespace"
    /// The finalizer that removes a RestorePoint's data from the repository when it is deleted.
    public static let dataFinalizer = "cairn.dev/repository-data"
}
