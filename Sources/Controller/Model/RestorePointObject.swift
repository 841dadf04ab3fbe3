import Foundation
import Kube
import Protection
import Snapshot

/// The RestorePoint object of a restore point in a repository. Its name comes from the snapshot's
/// `name=` tag (the BackupAction that made it), so a restore point mirrored back after its namespace
/// was recreated gets its old name; restore points made by the CLI are named `rp-<short id>`.
enum RestorePointObject {
    static func tag(_ key: String, of snapshot: SnapshotManifest) -> String? {
        snapshot.tags.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    static func name(of snapshot: SnapshotManifest) -> String {
        tag("name", of: snapshot) ?? "rp-\(snapshot.shortID)"
    }

    static func make(for snapshot: SnapshotManifest, namespace: String, profile: String,
                     metadata: RestorePoint.Metadata? = nil) -> KubeObject {
        var object = KubeObject(apiVersion: CairnKind.apiVersion, kind: CairnKind.restorePoint.rawValue,
                                name: name(of: snapshot), namespace: namespace)
        var labels = [CairnLabel.profile: profile]
        if let policy = tag("policy", of: snapshot) { labels[CairnLabel.policy] = policy }
        object.labels = labels
        object["metadata", "finalizers"] = [.string(CairnLabel.dataFinalizer)]
        var spec: JSONValue = ["profile": .string(profile), "id": .string(snapshot.id),
                               "time": .string(Timestamp.format(snapshot.time))]
        if let policy = tag("policy", of: snapshot) { spec["policy"] = .string(policy) }
        if tag("action", of: snapshot) != nil, let action = tag("name", of: snapshot) { spec["backupAction"] = .string(action) }
        object["spec"] = spec
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
}
