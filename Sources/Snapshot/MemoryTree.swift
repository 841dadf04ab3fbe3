import Foundation
import Repository

/// A directory tree assembled in memory — files given as bytes, plus directories taken whole from other
/// snapshots — and written to a repository as snapshot trees. Restore points use it: the objects of an
/// application become small JSON files next to the trees of its volumes, in one snapshot.
///
/// Files are stored in blobs of at most 1 MiB (fixed boundaries: the files are small, and an unchanged
/// file gives the same blobs, so it costs nothing the second time). Directories get mode 0700, files
/// the mode given (0600 by default); owners are root.
public struct MemoryTree: Sendable {
    indirect enum Entry: Sendable {
        case file(Data, mode: UInt32)
        case directory([String: Entry])
        case existing(Node)
    }

    private var root: [String: Entry] = [:]
    public let time: Date

    public init(time: Date = Date()) {
        self.time = time
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
        try insert(.existing(node), at: try Self.components(path), path: path)
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
    /// `added` counts the bytes new to the repository (after deduplication and compression).
    public func write(to repository: Repository) async throws -> (tree: BlobID, bytes: Int, files: Int, added: Int) {
        var counts = (bytes: 0, files: 0, added: 0)
        let id = try await writeDirectory(root, repository, &counts)
        return (id, counts.bytes, counts.files, counts.added)
    }

    private func writeDirectory(_ entries: [String: Entry], _ repository: Repository,
                                _ counts: inout (bytes: Int, files: Int, added: Int)) async throws -> BlobID {
        let ns = Int64(time.timeIntervalSince1970 * 1e9)
        var nodes: [Node] = []
        for name in entries.keys.sorted() {
            switch entries[name]! {
            case .file(let data, let mode):
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
                nodes.append(node)
                counts.bytes += data.count
                counts.files += 1
            case .directory(let children):
                var node = Node(name: name, type: .dir, mode: 0o700, uid: 0, gid: 0, mtime: ns, ctime: ns, inode: 0,
                                device: 0, links: 1, size: 0)
                node.subtree = try await writeDirectory(children, repository, &counts)
                nodes.append(node)
            case .existing(var node):
                node.name = name
                nodes.append(node)
            }
        }
        let saved = try await repository.saveBlob(.tree, Tree(nodes: nodes).encoded())
        counts.added += saved.added
        return saved.id
    }
}
