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
    /// directories whose tree cannot be read.
    public func damage(_ snapshots: [SnapshotManifest], damaged: Set<BlobID>) async -> [Damage] {
        var result: [Damage] = []
        var treeCache: [BlobID: Result<Tree, Error>] = [:]
        for snapshot in snapshots {
            var stack: [(BlobID, String)] = [(snapshot.tree, "")]
            while let (id, prefix) = stack.popLast() {
                let loaded: Result<Tree, Error>
                if let cached = treeCache[id] {
                    loaded = cached
                } else if damaged.contains(id) {
                    loaded = .failure(RepositoryError(.corrupt, "tree blob \(id.short) is damaged"))
                } else {
                    do { loaded = .success(try await repository.loadTree(id)) } catch { loaded = .failure(error) }
                }
                treeCache[id] = loaded
                switch loaded {
                case .failure(let error):
                    result.append(Damage(snapshot: snapshot.id, path: prefix.isEmpty ? "/" : prefix,
                                         reason: "directory cannot be read: \(error)"))
                case .success(let tree):
                    for node in tree.nodes {
                        let path = prefix + "/" + node.name
                        if let subtree = node.subtree { stack.append((subtree, path)) }
                        guard let content = node.content else { continue }
                        if let bad = content.first(where: { damaged.contains($0) || repository.location(of: $0) == nil }) {
                            let why = damaged.contains(bad) ? "damaged" : "missing from the index"
                            result.append(Damage(snapshot: snapshot.id, path: path,
                                                 reason: "content blob \(bad.short) is \(why)"))
                        }
                    }
                }
            }
        }
        return result
    }
}
