import Concurrent
import Foundation
import Repository

/// Copies snapshots (restore points, file backups) from one repository into a paired one
/// (`Repository.initialize(pairedWith:)`): the engine of `cairn repo copy` and of the controller's exports.
///
/// - Only what the destination lacks is read and sent: the source's trees are read to find the snapshot's
///   blobs, each data blob the destination's index does not list is read (runs stored back to back in one
///   request) and sealed again under the destination's key.
/// - Nothing partial becomes visible: the snapshot file is written last, after every blob it needs is
///   durable and indexed. An interrupted copy leaves indexed blobs that the next one does not send again.
/// - A snapshot copied before (a destination snapshot whose `original` is it) is not copied again.
public struct SnapshotCopier: Sendable {
    public let source: Repository
    public let destination: Repository
    /// Blob runs read and written at once.
    public var width = 4

    public init(source: Repository, destination: Repository) throws {
        try destination.requirePaired(with: source)
        self.source = source
        self.destination = destination
    }

    /// Where a copy stands, for progress reports.
    public struct Progress: Sendable, Equatable, Codable {
        public var snapshots = 0
        public var snapshotsDone = 0
        /// Uncompressed bytes of everything the snapshots hold, and of what was sent so far.
        public var totalBytes: Int64 = 0
        /// Stored (sealed) bytes read from the source and added to the destination.
        public var readBytes: Int64 = 0
        public var transferredBytes: Int64 = 0
        /// Volumes (`volumes/<claim>` of restore points) in the snapshots, and those copied or found there.
        public var volumes = 0
        public var volumesDone = 0
        public var seconds = 0.0

        public var bytesPerSecond: Int64 { seconds > 0 ? Int64(Double(transferredBytes) / seconds) : 0 }

        public init() {}
    }

    /// One snapshot's copy.
    public struct Copied: Sendable, Codable, Equatable {
        public var original: String
        public var copy: String
        /// Whether the destination already had it (nothing was sent).
        public var existed: Bool
    }

    public struct Report: Sendable {
        public var copied: [Copied] = []
        public var progress = Progress()
        public var treesRead = 0
        public var blobsSent = 0
    }

    /// The destination's copies of source snapshots: original ID → copy.
    public func existingCopies() async throws -> [String: SnapshotManifest] {
        let (all, _) = try await SnapshotFiles.all(in: destination)
        var result: [String: SnapshotManifest] = [:]
        for snapshot in all where snapshot.originalRepository == source.config.id {
            if let original = snapshot.original { result[original] = snapshot }
        }
        return result
    }

    /// Copies `snapshots` (of the source) in order; calls `progress` after each run of blobs. The caller
    /// holds the repositories' locks (shared on both); both indexes are (re)loaded first.
    public func copy(_ snapshots: [SnapshotManifest],
                     progress report: (@Sendable (Progress) async -> Void)? = nil) async throws -> Report {
        let started = ContinuousClock.now
        // The indexes as they are now, under the caller's locks: what the destination has, where the source's
        // blobs are.
        _ = try await source.loadIndex()
        _ = try await destination.loadIndex()
        let existing = try await existingCopies()
        var result = Report()
        result.progress.snapshots = snapshots.count
        var idMap = existing.mapValues(\.id)
        for snapshot in snapshots {
            if let copy = idMap[snapshot.id] {
                result.copied.append(Copied(original: snapshot.id, copy: copy, existed: true))
                result.progress.snapshotsDone += 1
                continue
            }
            let walk = try await walk(snapshot.tree)
            result.treesRead += walk.trees.count
            result.progress.totalBytes += walk.rawBytes
            result.progress.volumes += walk.volumes.count
            // One unit of work per snapshot: a pack lost meanwhile fails it at once.
            try await destination.work { mark in
                // Trees: already read (and decoded) for the walk; saving the plaintext again must give the same
                // ID — a last check that the repositories really are paired.
                for (id, plain) in walk.trees where !destination.hasBlob(id) {
                    let (saved, added) = try await destination.saveBlob(.tree, plain)
                    guard saved == id else {
                        throw RepositoryError(.notPaired, "tree \(id.short) has another ID in the destination: the repositories are not paired")
                    }
                    result.progress.transferredBytes += Int64(added)
                    result.progress.readBytes += Int64(source.location(of: id)?.location.length ?? 0)
                }
                // Data, one unit (a volume, or the rest) after another so that volumes complete in order.
                for unit in walk.units {
                    let batches = stride(from: 0, to: unit.blobs.count, by: 64).map {
                        Array(unit.blobs[$0..<min($0 + 64, unit.blobs.count)])
                    }
                    let source = self.source, destination = self.destination
                    try await Concurrent.forEach(batches, width: width, { batch in
                        try await destination.copyBlobs(batch, from: source)
                    }, collect: { counts in
                        result.blobsSent += counts.blobsRead
                        result.progress.readBytes += Int64(counts.bytesRead)
                        result.progress.transferredBytes += Int64(counts.bytesWritten)
                        result.progress.seconds = (ContinuousClock.now - started).seconds
                        if let report { await report(result.progress) }
                    })
                    if unit.volume != nil { result.progress.volumesDone += 1 }
                }
                // Everything the snapshot refers to durable and indexed, then the snapshot: never a partial one.
                try await destination.flush(since: mark)
            }
            var copy = snapshot
            copy.original = snapshot.id
            copy.originalRepository = source.config.id
            copy.parent = snapshot.parent.flatMap { idMap[$0] }
            let id = try await SnapshotFiles.save(copy, to: destination)
            idMap[snapshot.id] = id
            result.copied.append(Copied(original: snapshot.id, copy: id, existed: false))
            result.progress.snapshotsDone += 1
            result.progress.seconds = (ContinuousClock.now - started).seconds
            if let report { await report(result.progress) }
        }
        result.progress.seconds = (ContinuousClock.now - started).seconds
        return result
    }

    /// A snapshot's trees and data blobs, data grouped by volume.
    struct Walk {
        var trees: [(BlobID, Data)] = []
        var units: [(volume: String?, blobs: [BlobID])] = []
        var volumes: [String] = []
        var rawBytes: Int64 = 0
    }

    /// Reads a snapshot's trees level by level (many at once: each is one request on object storage).
    func walk(_ root: BlobID) async throws -> Walk {
        var walk = Walk()
        var seenTrees = Set<BlobID>()
        var seenData = Set<BlobID>()
        var rest: [BlobID] = []
        var byVolume: [String: [BlobID]] = [:]
        // (tree, path components) of the current level.
        var level: [(BlobID, [String])] = [(root, [])]
        seenTrees.insert(root)
        let source = self.source
        while !level.isEmpty {
            let loaded = try await Concurrent.map(level, width: 8) { item in
                let plain = try await source.loadBlob(item.0)
                return (item.0, item.1, plain, try Tree.decode(plain, id: item.0))
            }
            var next: [(BlobID, [String])] = []
            for (id, path, plain, tree) in loaded {
                walk.trees.append((id, plain))
                for node in tree.nodes {
                    let nodePath = path + [node.name]
                    if let content = node.content {
                        walk.rawBytes += Int64(node.size)
                        let volume = Self.volume(of: nodePath)
                        for blob in content where seenData.insert(blob).inserted {
                            if let volume { byVolume[volume, default: []].append(blob) } else { rest.append(blob) }
                        }
                    }
                    if let subtree = node.subtree {
                        if node.type == .dir, let volume = Self.volume(of: nodePath), nodePath.count == 2 {
                            walk.volumes.append(volume)
                            byVolume[volume, default: []] = byVolume[volume] ?? []
                        }
                        if seenTrees.insert(subtree).inserted { next.append((subtree, nodePath)) }
                    }
                }
            }
            level = next
        }
        walk.units = [(nil, rest)] + walk.volumes.sorted().map { ($0, byVolume[$0] ?? []) }
        return walk
    }

    /// The claim a path of a restore point's tree belongs to: its root tree holds `volumes/<claim>/…`.
    static func volume(of path: [String]) -> String? {
        guard path.count >= 2, path[0] == "volumes" else { return nil }
        return path[1]
    }
}
