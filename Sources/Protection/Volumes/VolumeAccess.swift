import Foundation
import Kube
import Repository
import Snapshot

/// How a claim's files are read and written back.
public enum VolumeAccessMode: String, Sendable, CaseIterable, Codable {
    /// Backup: a CSI snapshot where the claim's driver has a VolumeSnapshotClass (`SnapshotVolumeAccess`);
    /// otherwise, and for restores, host access where it works (a hostPath/local volume whose directory is
    /// on this machine, i.e. Cairn runs on the volume's node), a mover pod otherwise.
    case auto
    /// Backup: a CSI snapshot of every claim; a claim whose driver has no VolumeSnapshotClass is read live
    /// (as `auto` would), with a warning in the restore point. Restores write as `auto`.
    case snapshot
    /// Read and write the volume's directory on this machine (hostPath and local volumes).
    case host
    /// A pod of Cairn's image mounts the claim and streams its files through the API server.
    case mover
}

extension VolumeAccessMode {
    /// The accessor for a volume: `auto` takes host access when `HostVolumeAccess.canServe` says so.
    /// `creating`: the volume is about to be written and its directory may not exist yet.
    public func accessor(for volume: ClaimVolume, client: KubeClient, repository: Repository, moverImage: String,
                         creating: Bool = false) async -> any VolumeAccess {
        switch self {
        case .host: return HostVolumeAccess(repository: repository)
        case .mover: return MoverVolumeAccess(client: client, repository: repository, image: moverImage)
        case .auto, .snapshot:
            return await HostVolumeAccess.canServe(volume, client: client, creating: creating)
                ? HostVolumeAccess(repository: repository)
                : MoverVolumeAccess(client: client, repository: repository, image: moverImage)
        }
    }
}

/// A claim and what is known about where its data lives.
public struct ClaimVolume: Sendable {
    public var namespace: String
    public var claim: String
    /// The PersistentVolume bound to the claim (or, on restore, made for it).
    public var volume: KubeObject?
    /// The node of a running pod that mounts the claim: a mover must run there (ReadWriteOnce).
    public var node: String?
    /// That pod's tolerations: a mover tolerates what the workload tolerates, nothing more.
    public var tolerations: JSONValue?
    /// The claim object itself, when known (its storage class and size).
    public var claimObject: KubeObject?
    /// The claim a mover mounts when it is not `claim` itself: a temporary claim made from a snapshot of it.
    /// The data is stored under `claim`'s name either way.
    public var source: String?
    /// Where the pods that will use the claim may run (`WorkloadPlacement`: node selector, node affinity,
    /// tolerations), for a volume not made yet: a claim that waits for its first consumer is made on the
    /// node its first pod is scheduled to — a mover must be placed like the workload, or the workload could
    /// not run next to its restored data.
    public var placement: JSONValue?
    /// Paths under the claim's root a backup leaves out (`PathExclusion`; a blueprint's `exclude`).
    public var exclude: [String] = []

    public init(namespace: String, claim: String, volume: KubeObject?, node: String? = nil, tolerations: JSONValue? = nil) {
        self.namespace = namespace
        self.claim = claim
        self.volume = volume
        self.node = node
        self.tolerations = tolerations
    }

    /// The directory of a hostPath or local volume, on its node.
    public var directory: String? {
        volume?["spec", "hostPath", "path"]?.string ?? volume?["spec", "local", "path"]?.string
    }
}

/// What one volume transfer did, for reports and restore point metadata.
public struct VolumeTransfer: Sendable, Codable, Equatable {
    public var claim: String
    /// `host`, `mover` or `snapshot` (a CSI snapshot, read through a mover).
    public var method: String
    public var files: Int
    public var bytes: Int
    /// Bytes new to the repository (backup only).
    public var bytesAdded: Int?
    public var seconds: Double
    /// Files that could not be read or written, with the reason.
    public var problems: [String]

    public init(claim: String, method: String, files: Int = 0, bytes: Int = 0, bytesAdded: Int? = nil,
                seconds: Double = 0, problems: [String] = []) {
        self.claim = claim
        self.method = method
        self.files = files
        self.bytes = bytes
        self.bytesAdded = bytesAdded
        self.seconds = seconds
        self.problems = problems
    }
}

/// Reads a volume's files into the repository and writes them back.
///
/// Backup gives a directory node (named after the claim) for the restore point's `volumes/`; the
/// caller holds a repository lock and has loaded the index. Restore writes a node's contents into the
/// volume, replacing entries of the same name.
public protocol VolumeAccess: Sendable {
    var method: String { get }
    func backup(_ volume: ClaimVolume, previous: Node?) async throws -> (Node, VolumeTransfer)
    /// Writes `data` into the volume; `exact` removes what the volume holds beyond it.
    func restore(_ data: Node, into volume: ClaimVolume, exact: Bool) async throws -> VolumeTransfer
}

/// Direct access on the host: the volume's directory is read and written in place. For hostPath and
/// local volumes when Cairn runs on their node (the local cluster, a DaemonSet, a single-node cluster).
public struct HostVolumeAccess: VolumeAccess {
    public let repository: Repository
    public var method: String { "host" }

    public init(repository: Repository) {
        self.repository = repository
    }

    func directory(of volume: ClaimVolume) throws -> String {
        guard let directory = volume.directory else {
            throw ProtectionError(.volumeUnreachable, "claim \(volume.namespace)/\(volume.claim) is not on a hostPath or local volume; move its data through a mover pod instead")
        }
        return directory
    }

    public func backup(_ volume: ClaimVolume, previous: Node?) async throws -> (Node, VolumeTransfer) {
        let path = try directory(of: volume)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ProtectionError(.volumeUnreachable, "the directory \(path) of claim \(volume.namespace)/\(volume.claim) is not on this machine; run Cairn on the volume's node or move its data through a mover pod")
        }
        let start = Date()
        let (node, summary, errors) = try await Archiver(repository: repository)
            .archiveDirectory(path, name: volume.claim, previous: previous, exclude: PathExclusion(volume.exclude))
        return (node, VolumeTransfer(claim: volume.claim, method: method,
                                     files: summary.filesNew + summary.filesChanged + summary.filesUnmodified,
                                     bytes: summary.bytesTotal, bytesAdded: summary.bytesAdded,
                                     seconds: Date().timeIntervalSince(start), problems: errors))
    }

    public func restore(_ data: Node, into volume: ClaimVolume, exact: Bool) async throws -> VolumeTransfer {
        let path = try directory(of: volume)
        let start = Date()
        let report = try await Restorer(repository: repository)
            .restoreDirectory(data, options: RestoreOptions(target: path, existing: .overwrite, removeExtraneous: exact))
        return VolumeTransfer(claim: volume.claim, method: method, files: report.files, bytes: report.bytes,
                              seconds: Date().timeIntervalSince(start), problems: report.errors)
    }

    /// Whether host access can serve this volume from here: a hostPath/local volume whose directory
    /// exists on this machine, and this machine is the volume's node — the node of the pod using it, a
    /// local volume's node affinity, or the only node of the cluster — told by the node's boot ID
    /// (`status.nodeInfo.bootID`, the kernel's `/proc/sys/kernel/random/boot_id`), not by its name.
    /// For a volume about to be written (`creating`), its directory's parent must exist instead.
    public static func canServe(_ volume: ClaimVolume, client: KubeClient, creating: Bool = false) async -> Bool {
        guard let path = volume.directory,
              FileManager.default.fileExists(atPath: creating ? (path as NSString).deletingLastPathComponent : path),
              let bootID = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)
                  .trimmingCharacters(in: .whitespacesAndNewlines),
              let nodes = try? await client.list(clusterNodes).items
        else { return false }
        let affinity = volume.volume?["spec", "nodeAffinity", "required", "nodeSelectorTerms"]?.array ?? []
        let pinned = affinity.flatMap { $0["matchExpressions"]?.array ?? [] }
            .filter { $0["key"]?.string == "kubernetes.io/hostname" }
            .flatMap { $0["values"]?.array ?? [] }.compactMap(\.string)
        let candidates: [KubeObject]
        if let node = volume.node {
            candidates = nodes.filter { $0.name == node }
        } else if !pinned.isEmpty {
            candidates = nodes.filter { pinned.contains($0.name) || pinned.contains($0.labels["kubernetes.io/hostname"] ?? "") }
        } else {
            candidates = nodes.count == 1 ? nodes : []
        }
        return !candidates.isEmpty && candidates.allSatisfy { $0["status", "nodeInfo", "bootID"]?.string == bootID }
    }
}

/// The cluster's nodes (core/v1), to tell whether Cairn runs on one.
let clusterNodes = APIResource(group: "", version: "v1", name: "nodes", kind: "Node", namespaced: false)
