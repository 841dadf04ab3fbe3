import Foundation
import Kube
import Protection
import Snapshot

/// Which namespace a restore point belongs to: the namespace *object* it was taken of (its UID), not
/// any namespace that happens to carry the name. When a namespace is deleted and someone creates one with
/// the same name, the old restore points do not appear there — until an administrator adopts them by
/// listing the old UID in the namespace's annotation `cairn.dev/adopt-restore-points` (only those who may
/// update Namespaces can: a namespace's own users cannot).
///
/// Restore points written before the UID tag existed belong to a namespace of their name created before
/// they were taken (a namespace created later is another one).
enum RestorePointOwnership {
    static let adoptAnnotation = "cairn.dev/adopt-restore-points"

    /// The UIDs whose restore points `namespace` owns: its own and those it adopted.
    static func uids(of namespace: KubeObject) -> Set<String> {
        var uids = Set((namespace.annotations[adoptAnnotation] ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        if let uid = namespace.uid { uids.insert(uid) }
        return uids
    }

    static func belongs(_ snapshot: SnapshotManifest, to namespace: KubeObject) -> Bool {
        guard RestorePointObject.tag("namespace", of: snapshot) == namespace.name else { return false }
        if let uid = RestorePoint.namespaceUID(of: snapshot) { return uids(of: namespace).contains(uid) }
        guard let created = Timestamp.parse(namespace.creationTimestamp) else { return false }
        return created <= snapshot.time
    }
}
