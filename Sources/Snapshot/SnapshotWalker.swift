import Foundation
import Repository

/// Walks snapshot trees: the blobs they use (for prune) and the files that damaged blobs affect (for
/// check). Each tree is read once however many snapshots share it.
public struct SnapshotWalker: Sendable {
    let repository: Repository

    public init(repository: Repository) {
        self.repository = repository
    }

    /// Every blob (trees and data) reachable from the snapshots. Throws if a tree cannot be read: prune
    /// must not delete anything when it cannot see everything that is used.
    public func usedBlobs(_ snapshots: [SnapshotManifest]) async throws -> Set<BlobID> {
        var used: Set<BlobID> = []
        var stack = snapshots.map(\.tree)
        while let id = stack.popLast() {
            guard used.insert(id).inserted else { continue }
            let tree = try await repository.loadTree(id)
            for node in tree.nodes {
                if let content = node.content { used.formUnion(content) }
                if let subtree = node.subtree { stack.append(subtree) }
            }
        }
        return used
    }

    /// A problem found while walking: a file or directory of a snapshot that cannot be restored intact.
    public struct Damage: Sendable, Codable {
        public var snapshot: String
        public var path: String
        public var reason: String
    }

    /// Walks every snapshot; reports files whose content is in `damaged` or missing from the index, and
    /// directories whose tree cannot be read. A tree shared by several snapshots is read once: what is
    /// damaged below it (usually nothing) is remembered by its ID, never the tree itself, so memory stays
    /// with one tree per level however many files the snapshots hold.
    public func damage(_ snapshots: [SnapshotManifest], damaged: Set<BlobID>) async -> [Damage] {
        var below: [BlobID: [(path: String, reason: String)]] = [:]
        func walk(_ id: BlobID) async -> [(path: String, reason: String)] {
            if let known = below[id] { return known }
            var found: [(path: String, reason: String)] = []
            do {
                if damaged.contains(id) { throw RepositoryError(.corrupt, "tree blob \(id.short) is damaged") }
                let tree = try await repository.loadTree(id)
                for node in tree.nodes {
                    if let subtree = node.subtree {
                        found += await walk(subtree).map { ("/" + node.name + $0.path, $0.reason) }
                    }
                    guard let content = node.content else { continue }
                    if let bad = content.first(where: { damaged.contains($0) || repository.location(of: $0) == nil }) {
                        let why = damaged.contains(bad) ? "damaged" : "missing from the index"
                        found.append(("/" + node.name, "content blob \(bad.short) is \(why)"))
                    }
                }
            } catch {
                found = [("", "directory cannot be read: \(error)")]
            }
            below[id] = found
            return found
        }
        var result: [Damage] = []
        for snapshot in snapshots {
            for (path, reason) in await walk(snapshot.tree) {
                result.append(Damage(snapshot: snapshot.id, path: path.isEmpty ? "/" : path, reason: reason))
            }
        }
        return result
    }
}
