import Concurrent
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

    /// What one tree of a walk says: its directories, and its own files whose content is damaged or not
    /// in the index.
    struct ReadTree: Sendable {
        var directories: [(name: String, subtree: BlobID)] = []
        var files: [(path: String, reason: String)] = []
    }

    /// Walks every snapshot; reports files whose content is in `damaged` or missing from the index, and
    /// directories whose tree cannot be read. A tree shared by several snapshots is read once: what is
    /// damaged below it (usually nothing) is remembered by its ID, never the tree itself. Trees are read
    /// many at once, by their places in the packs (`loadBlobsByPlace`: one read for many), and decoded and
    /// checked on every core: the subtrees of a directory `siblingsAtOnce` at a time, and with them their own
    /// subtrees (up to `siblingsAtOnce`² — the next level is read before it is walked, so a deep tree of
    /// small directories costs a read per two levels, not one per directory). What is held is what those
    /// reads returned — each tree's subdirectories and damaged files, not its nodes — for the directories
    /// on the path being walked.
    public func damage(_ snapshots: [SnapshotManifest], damaged: Set<BlobID>, siblingsAtOnce: Int = 64) async
        -> [Damage] {
        let repository = self.repository
        // The index as the walk starts (a copy that shares its storage: nothing writes during a check), read
        // by every core without taking the repository's lock for each blob.
        let index = repository.index
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        var below: [BlobID: [(path: String, reason: String)]] = [:]
        // Trees read and not walked yet.
        var ready: [BlobID: Result<ReadTree, any Error>] = [:]
        // Reads the trees of `ids` not walked or read yet into `ready`.
        func load(_ ids: some Sequence<BlobID>) async {
            let wanted = Array(Set(ids.filter { below[$0] == nil && ready[$0] == nil && !damaged.contains($0) }))
            guard !wanted.isEmpty else { return }
            do {
                let blobs = try await repository.loadBlobsByPlace(wanted)
                let read = try await Concurrent.map(Array(blobs), width: cores) { id, blob in
                    (id, Result { try Self.read(try blob.get(), id: id, damaged: damaged, index: index) })
                }
                for (id, result) in read { ready[id] = result }
            } catch {
                for id in wanted { ready[id] = .failure(error) }
            }
        }
        func walk(_ id: BlobID) async -> [(path: String, reason: String)] {
            if let known = below[id] { return known }
            var found: [(path: String, reason: String)] = []
            do {
                if damaged.contains(id) { throw RepositoryError(.corrupt, "tree blob \(id.short) is damaged") }
                let loaded = ready.removeValue(forKey: id) ?? .failure(RepositoryError(.missing, "tree blob \(id.short) was not read"))
                let tree = try loaded.get()
                for start in stride(from: 0, to: tree.directories.count, by: siblingsAtOnce) {
                    let chunk = tree.directories[start..<min(start + siblingsAtOnce, tree.directories.count)]
                    await load(chunk.map(\.subtree))
                    let next = chunk.flatMap { (try? ready[$0.subtree]?.get())?.directories.map(\.subtree) ?? [] }
                    await load(next.prefix(siblingsAtOnce * siblingsAtOnce))
                    for directory in chunk {
                        found += await walk(directory.subtree).map { ("/" + directory.name + $0.path, $0.reason) }
                    }
                }
                found += tree.files
            } catch {
                found = [("", "directory cannot be read: \(error)")]
            }
            below[id] = found
            return found
        }
        var result: [Damage] = []
        for snapshot in snapshots {
            await load([snapshot.tree])
            for (path, reason) in await walk(snapshot.tree) {
                result.append(Damage(snapshot: snapshot.id, path: path.isEmpty ? "/" : path, reason: reason))
            }
        }
        return result
    }

    /// Reads a tree in place (`TreeCodec.scan`, no `Node` built) and checks its own files' content against
    /// `damaged` and the index: every content ID of the tree looked up together, and file by file only when
    /// one of them is damaged or missing.
    static func read(_ data: Data, id: BlobID, damaged: Set<BlobID>, index: MasterIndex) throws -> ReadTree {
        var read = ReadTree()
        var ids: [BlobID] = []
        let decodes = TreeCodec.scan(data) { node in
            if let subtree = node.subtree { read.directories.append((node.nameString, subtree)) }
            for i in 0..<(node.content?.count ?? 0) { ids.append(node.contentID(i)) }
        }
        guard decodes else { throw RepositoryError(.corrupt, "tree \(id.short) does not decode", location: id.hex) }
        guard !index.containsAll(ids) || ids.contains(where: damaged.contains) else { return read }
        _ = TreeCodec.scan(data) { node in
            guard let content = node.content else { return }
            for i in 0..<content.count {
                let blob = node.contentID(i)
                let isDamaged = damaged.contains(blob)
                guard isDamaged || !index.contains(blob) else { continue }
                read.files.append(("/" + node.nameString, "content blob \(blob.short) is \(isDamaged ? "damaged" : "missing from the index")"))
                break
            }
        }
        return read
    }
}
