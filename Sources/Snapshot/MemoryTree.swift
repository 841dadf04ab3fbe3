import Foundation
import Repository

/// A directory tree assembled in memory — files given as bytes, plus directories taken whole from other
/// snapshots — and written to a repository as snapshot trees. Restore points use it: the objects of an
/// application become small JSON files next to the trees of its volumes, in one snapshot.
///
/// Files are stored in blobs of at most 1 MiB (fixed boundaries: the files are small, and an unchanged
/// file gives the same blobs, so it costs nothing the second time). Directories get mode 0700, files
/// the mode given (0600 by default); owners are root.
///
/// What it holds can stay small however many files it gets: `storedFile` writes a file's blobs at once and
/// only its node is added, and `seal` puts a finished directory's node (`storedDirectory`, its tree written)
/// in place of its entries (an application's objects are stored so, a kind at a time, as they are listed).
public struct MemoryTree: Sendable {
    enum Entry: Sendable {
        case file(Data, mode: UInt32)
        case directory([String: Entry])
        indirect case existing(Node)
        /// A file stored in one blob, with the tree's time and owners (`fileNode`): what an application's
        /// objects are. Its name is its key, so it costs ~100 bytes where a node costs ~330.
        case stored(BlobID, size: UInt32, mode: UInt16)

        /// `node`, held as `.stored` when that says all of it.
        init(_ node: Node, time ns: Int64) {
            if node.type == .file, let content = node.content, content.count == 1, node.size <= UInt32.max,
               node.mode <= UInt16.max, node.uid == 0, node.gid == 0, node.mtime == ns, node.ctime == ns,
               node.inode == 0, node.device == 0, node.links == 1, node.linkTarget == nil, node.rdev == nil,
               node.subtree == nil {
                self = .stored(content[0], size: UInt32(node.size), mode: UInt16(node.mode))
            } else {
                self = .existing(node)
            }
        }
    }

    private var root: [String: Entry] = [:]
    public let time: Date
    /// `time` in nanoseconds since the epoch: every node's times.
    let ns: Int64

    public init(time: Date = Date()) {
        self.time = time
        ns = Int64(time.timeIntervalSince1970 * 1e9)
    }

    static func components(_ path: String) throws(SnapshotError) -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw SnapshotError(.invalidArgument, "'\(path)' is not a relative path of names", path: path)
        }
        return parts
    }

    /// Adds a file at a relative path (`objects/apps/Deployment/web.json`), creating directories.
    public mutating func addFile(_ path: String, _ data: Data, mode: UInt32 = 0o600) throws(SnapshotError) {
        try insert(.file(data, mode: mode), at: try Self.components(path), path: path)
    }

    /// Places an existing node (a directory or file from another snapshot) at `path`, renamed to its last
    /// component; its content is not copied, only referenced.
    public mutating func addExisting(_ path: String, _ node: Node) throws(SnapshotError) {
        try insert(Entry(node, time: ns), at: try Self.components(path), path: path)
    }

    /// A file's node, its blobs written now: put it in place with `addExisting` (only the node is kept).
    public func storedFile(named name: String, _ data: Data, mode: UInt32 = 0o600, in repository: Repository) async throws -> Node {
        var counts = (bytes: 0, files: 0, added: 0)
        return try await Self.fileNode(name, data, mode: mode, time: time, repository, &counts)
    }

    /// The directory at `path` written now (its files and subdirectories), as a node to `seal` it with;
    /// nil when `path` holds no directory.
    public func storedDirectory(at path: String, in repository: Repository) async throws -> Node? {
        let parts = try Self.components(path)
        guard case .directory(let children)? = entry(at: parts) else { return nil }
        var counts = (bytes: 0, files: 0, added: 0)
        return try await directoryNode(parts.last!, children, repository, &counts)
    }

    /// Replaces the directory at `path` by its stored node (`storedDirectory`), so only the node is kept.
    /// Seal a directory once it is complete: adding anything under it afterwards is refused.
    public mutating func seal(_ path: String, with node: Node) throws(SnapshotError) {
        let parts = try Self.components(path)
        remove(parts)
        try insert(.existing(node), at: parts, path: path)
    }

    /// Forgets what is at `path` (blobs already written stay in the repository, unreferenced until a prune).
    public mutating func remove(_ path: String) throws(SnapshotError) {
        remove(try Self.components(path))
    }

    private func entry(at parts: [String]) -> Entry? {
        var level = root
        for (i, name) in parts.enumerated() {
            guard let entry = level[name] else { return nil }
            if i == parts.count - 1 { return entry }
            guard case .directory(let children) = entry else { return nil }
            level = children
        }
        return nil
    }

    private mutating func remove(_ parts: [String]) {
        func drop(_ level: inout [String: Entry], _ rest: ArraySlice<String>) {
            let name = rest.first!
            if rest.count == 1 {
                level.removeValue(forKey: name)
                return
            }
            guard case .directory(var children)? = level.removeValue(forKey: name) else { return }
            drop(&children, rest.dropFirst())
            level[name] = .directory(children)
        }
        drop(&root, parts[...])
    }

    private mutating func insert(_ entry: Entry, at parts: [String], path: String) throws(SnapshotError) {
        func place(_ level: inout [String: Entry], _ rest: ArraySlice<String>) throws(SnapshotError) {
            let name = rest.first!
            if rest.count == 1 {
                guard level[name] == nil else { throw SnapshotError(.invalidArgument, "'\(path)' is both a file and a directory", path: path) }
                level[name] = entry
                return
            }
            // Taken out of the parent while it changes, so the dictionary is uniquely referenced and
            // updated in place (not copied per insertion: 50,000 objects of one kind in one directory).
            var children: [String: Entry]
            switch level.removeValue(forKey: name) {
            case nil: children = [:]
            case .directory(let existing): children = existing
            case let other?:
                level[name] = other
                throw SnapshotError(.invalidArgument, "'\(path)' is both a file and a directory", path: path)
            }
            defer { level[name] = .directory(children) }
            try place(&children, rest.dropFirst())
        }
        try place(&root, parts[...])
    }

    /// Writes every file blob and tree; returns the root tree's ID. The caller flushes the repository
    /// and writes the snapshot manifest afterwards (data first, the snapshot that refers to it last).
    /// `added` counts the bytes new to the repository (after deduplication and compression); files stored
    /// before (`storedFile`, `seal`) are not counted again.
    public func write(to repository: Repository) async throws -> (tree: BlobID, bytes: Int, files: Int, added: Int) {
        var counts = (bytes: 0, files: 0, added: 0)
        let id = try await writeDirectory(root, repository, &counts)
        return (id, counts.bytes, counts.files, counts.added)
    }

    private static func fileNode(_ name: String, _ data: Data, mode: UInt32, time: Date, _ repository: Repository,
                                 _ counts: inout (bytes: Int, files: Int, added: Int)) async throws -> Node {
        let ns = Int64(time.timeIntervalSince1970 * 1e9)
        var node = Node(name: name, type: .file, mode: mode, uid: 0, gid: 0, mtime: ns, ctime: ns, inode: 0,
                        device: 0, links: 1, size: UInt64(data.count))
        var content: [BlobID] = []
        var offset = data.startIndex
        while offset < data.endIndex {
            let end = min(offset + (1 << 20), data.endIndex)
            let saved = try await repository.saveBlob(.data, data.subdata(in: offset..<end))
            content.append(saved.id)
            counts.added += saved.added
            offset = end
        }
        node.content = content
        counts.bytes += data.count
        counts.files += 1
        return node
    }

    private func directoryNode(_ name: String, _ children: [String: Entry], _ repository: Repository,
                               _ counts: inout (bytes: Int, files: Int, added: Int)) async throws -> Node {
        var node = Node(name: name, type: .dir, mode: 0o700, uid: 0, gid: 0, mtime: ns, ctime: ns, inode: 0,
                        device: 0, links: 1, size: 0)
        node.subtree = try await writeDirectory(children, repository, &counts)
        return node
    }

    private func writeDirectory(_ entries: [String: Entry], _ repository: Repository,
                                _ counts: inout (bytes: Int, files: Int, added: Int)) async throws -> BlobID {
        var nodes: [Node] = []
        nodes.reserveCapacity(entries.count)
        for name in entries.keys.sorted() {
            switch entries[name]! {
            case .file(let data, let mode):
                nodes.append(try await Self.fileNode(name, data, mode: mode, time: time, repository, &counts))
            case .directory(let children):
                nodes.append(try await directoryNode(name, children, repository, &counts))
            case .existing(var node):
                node.name = name
                nodes.append(node)
            case .stored(let id, let size, let mode):
                var node = Node(name: name, type: .file, mode: UInt32(mode), uid: 0, gid: 0, mtime: ns, ctime: ns, inode: 0,
                                device: 0, links: 1, size: UInt64(size))
                node.content = [id]
                nodes.append(node)
            }
        }
        let saved = try await repository.saveBlob(.tree, Tree(nodes: nodes).encoded())
        counts.added += saved.added
        return saved.id
    }
}
