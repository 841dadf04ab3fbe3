import Foundation
import Kube
import Protection
import Repository
import Snapshot

/// A RestorePoint's spec, read once: what the reconcilers, retention, policies and the Profile's mirror look at.
/// The controller writes it (`RestorePointObject.make`); admission keeps it immutable.
struct RestorePointSpec: Sendable, Equatable {
    var profile: String
    /// The snapshot's ID in the Profile's repository.
    var id: String
    var time: Date?
    /// When a hand-made restore point expires.
    var expireTime: Date?
    var policy: String?
    var backupAction: String?
    /// A catalog entry's (in the controller's namespace): the namespace the restore point was taken of.
    var sourceNamespace: String?
    /// In a read-only (imported) Profile: deleting the object never touches the data.
    var imported: Bool

    init(profile: String, id: String, time: Date?, expireTime: Date? = nil, policy: String? = nil,
         backupAction: String? = nil, sourceNamespace: String? = nil, imported: Bool = false) {
        self.profile = profile
        self.id = id
        self.time = time
        self.expireTime = expireTime
        self.policy = policy
        self.backupAction = backupAction
        self.sourceNamespace = sourceNamespace
        self.imported = imported
    }

    init(_ object: KubeObject) {
        let spec = object["spec"] ?? .emptyObject
        self.init(profile: spec["profile"]?.string ?? "", id: spec["id"]?.string ?? "",
                  time: Timestamp.parse(spec["time"]?.string), expireTime: Timestamp.parse(spec["expireTime"]?.string),
                  policy: spec["policy"]?.string, backupAction: spec["backupAction"]?.string,
                  sourceNamespace: spec["sourceNamespace"]?.string, imported: spec["imported"]?.bool ?? false)
    }

    /// Whether deleting the object removes the data: not for catalog entries nor imported restore points.
    var ownsData: Bool { sourceNamespace == nil && !imported }

    var json: JSONValue {
        var spec: JSONValue = ["profile": .string(profile), "id": .string(id)]
        if let time { spec["time"] = .string(Timestamp.format(time)) }
        if let expireTime { spec["expireTime"] = .string(Timestamp.format(expireTime)) }
        if let policy { spec["policy"] = .string(policy) }
        if let backupAction { spec["backupAction"] = .string(backupAction) }
        if let sourceNamespace { spec["sourceNamespace"] = .string(sourceNamespace) }
        if imported { spec["imported"] = true }
        return spec
    }
}

/// The RestorePoint object of a restore point in a repository. Its name comes from the snapshot's
/// `name=` tag (the BackupAction that made it), so a restore point mirrored back after its namespace
/// was recreated gets its old name; restore points made by the CLI are named `rp-<short id>`. A copy (an
/// export's, in another Profile) adds that Profile's name: `<name>-<profile>`, beside the original.
enum RestorePointObject {
    static func tag(_ key: String, of snapshot: SnapshotManifest) -> String? {
        snapshot.tags.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    /// The snapshot tag of a hand-made restore point's expiry (RFC 3339), mirrored as `spec.expireTime`.
    static let expiresTag = "expires"

    static func name(of snapshot: SnapshotManifest, profile: String) -> String {
        guard let original = snapshot.original else { return tag("name", of: snapshot) ?? "rp-\(snapshot.shortID)" }
        let base = tag("name", of: snapshot) ?? "rp-\(original.prefix(8))"
        return String("\(base)-\(profile)".prefix(253))
    }

    /// The object of `snapshot` in `namespace`; with `catalog`, the catalog entry in the controller's
    /// namespace `namespace` (named `<source namespace>.<name>`, no data finalizer).
    static func make(for snapshot: SnapshotManifest, namespace: String, profile: String, imported: Bool = false,
                     catalogOf source: String? = nil) -> KubeObject {
        let base = name(of: snapshot, profile: profile)
        var object = KubeObject(apiVersion: CairnKind.apiVersion, kind: CairnKind.restorePoint.rawValue,
                                name: source.map { String("\($0).\(base)".prefix(253)) } ?? base, namespace: namespace)
        var labels = [CairnLabel.profile: profile]
        if let policy = tag("policy", of: snapshot) { labels[CairnLabel.policy] = policy }
        if let source { labels[CairnLabel.sourceNamespace] = source }
        object.labels = labels
        let spec = RestorePointSpec(
            profile: profile, id: snapshot.id, time: snapshot.time,
            expireTime: tag(expiresTag, of: snapshot).flatMap { Timestamp.parse($0) }, policy: tag("policy", of: snapshot),
            backupAction: tag("action", of: snapshot) != nil ? tag("name", of: snapshot) : nil,
            sourceNamespace: source, imported: imported)
        if spec.ownsData { object["metadata", "finalizers"] = [.string(CairnLabel.dataFinalizer)] }
        object["spec"] = spec.json
        return object
    }

    /// The status fields a RestorePoint shows from its metadata.
    static func status(from metadata: RestorePoint.Metadata) -> JSONValue {
        let volumes = metadata.volumes ?? []
        var status: JSONValue = ["objects": .int(Int64(metadata.objects)), "volumes": .int(Int64(volumes.count)),
                                 "bytes": .int(Int64(volumes.reduce(0) { $0 + $1.bytes })),
                                 "warnings": .int(Int64(metadata.warnings.count))]
        if !metadata.warnings.isEmpty {
            status["warningMessages"] = .array(metadata.warnings.prefix(10).map { .string($0) })
        }
        return status
    }

    /// The repository's snapshot a RestorePoint object names — only if it is a restore point of the
    /// object's own namespace (`RestorePointOwnership`): a RestorePoint is a claim made by whoever wrote it,
    /// and the repository says whose data a snapshot holds.
    /// - Parameter namespace: the RestorePoint's namespace object.
    /// - Throws: `ControllerError` `DataMissing` when the repository has no such snapshot, `ForeignRestorePoint`
    ///   when it holds another namespace's data (or is not a restore point).
    static func snapshot(of object: KubeObject, in repository: Repository, profile: String,
                         namespace: KubeObject) async throws -> SnapshotManifest {
        try await snapshot(of: object, in: repository, profile: profile, owner: .namespace(namespace))
    }

    /// Whose restore point an object may name: its namespace's (by UID), or — a catalog entry in the
    /// controller's namespace, which only administrators write — any restore point of its `sourceNamespace`.
    enum Owner {
        case namespace(KubeObject)
        case catalog(sourceNamespace: String)
    }

    static func snapshot(of object: KubeObject, in repository: Repository, profile: String,
                         owner: Owner) async throws -> SnapshotManifest {
        let id = RestorePointSpec(object).id
        guard id.count == 64, id.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            throw ControllerError("InvalidRestorePoint", "RestorePoint \(object.name) has no valid spec.id (64 hexadecimal digits)")
        }
        let snapshot: SnapshotManifest
        do {
            snapshot = try await SnapshotFiles.load(id, from: repository)
        } catch let error as RepositoryError where error.code == .missing || error.code == .invalidArgument {
            throw ControllerError("DataMissing", "the data of RestorePoint \(object.name) is not in the repository of Profile '\(profile)'")
        }
        let belongs: Bool
        switch owner {
        case .namespace(let namespace):
            belongs = namespace.name == object.namespace && RestorePointOwnership.belongs(snapshot, to: namespace)
        case .catalog(let source):
            belongs = tag("namespace", of: snapshot) == source
        }
        guard snapshot.tags.contains(RestorePoint.tag), belongs else {
            throw ControllerError("ForeignRestorePoint", "RestorePoint \(object.name) names data that is not a restore point of namespace \(object.namespace ?? "") (this namespace object, not an earlier one of the same name); it is never restored or deleted through this object. An administrator can adopt an earlier namespace's restore points with the annotation \(RestorePointOwnership.adoptAnnotation)")
        }
        return snapshot
    }
}
