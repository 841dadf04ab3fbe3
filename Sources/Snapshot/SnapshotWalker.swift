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
    /// damaged below it (usually nothing) is remembered by its ID, never the tree itself. The subtrees of a
    /// directory are read together, by their places in the packs (`loadBlobsByPlace`: one read for many),
    /// up to `siblingsAtOnce` of them: memory stays with that many trees per level however many files the
    /// snapshots hold.
    public func damage(_ snapshots: [SnapshotManifest], damaged: Set<BlobID>, siblingsAtOnce: Int = 64) async
        -> [Damage] {
        let repository = self.repository
        var below: [BlobID: [(path: String, reason: String)]] = [:]
        // The trees of `ids` not walked yet; each decoded, or why it cannot be.
        func load(_ ids: [BlobID]) async -> [BlobID: Result<Tree, any Error>] {
            let wanted = ids.filter { below[$0] == nil && !damaged.contains($0) }
            guard !wanted.isEmpty else { return [:] }
            do {
                return try await repository.loadBlobsByPlace(wanted).reduce(into: [:]) { trees, loaded in
                    trees[loaded.key] = Result { try Tree.decode(try loaded.value.get(), id: loaded.key) }
                }
            } catch {
                return Dictionary(wanted.map { ($0, .failure(error)) }, uniquingKeysWith: { a, _ in a })
            }
        }
        func walk(_ id: BlobID, _ loaded: Result<Tree, any Error>?) async -> [(path: String, reason: String)] {
            if let known = below[id] { return known }
            var found: [(path: String, reason: String)] = []
            do {
                if damaged.contains(id) { throw RepositoryError(.corrupt, "tree blob \(id.short) is damaged") }
                let tree = try (loaded ?? .failure(RepositoryError(.missing, "tree blob \(id.short) was not read"))).get()
                let directories = tree.nodes.filter { $0.subtree != nil }
                for start in stride(from: 0, to: directories.count, by: siblingsAtOnce) {
                    let chunk = directories[start..<min(start + siblingsAtOnce, directories.count)]
                    let subtrees = await load(chunk.compactMap(\.subtree))
                    for node in chunk {
                        let subtree = node.subtree!
                        found += await walk(subtree, subtrees[subtree]).map { ("/" + node.name + $0.path, $0.reason) }
                    }
                }
                for node in tree.nodes {
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
            let root = await load([snapshot.tree])
            for (path, reason) in await walk(snapshot.tree, root[snapshot.tree]) {
                result.append(Damage(snapshot: snapshot.id, path: path.isEmpty ? "/" : path, reason: reason))
            }
        }
        return result
    }
}
