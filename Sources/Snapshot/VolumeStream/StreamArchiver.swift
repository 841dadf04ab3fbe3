import Concurrent
import Foundation
import Repository

/// Cairn's side of a volume backup through a mover pod: reads the volume stream and stores it in the
/// repository exactly as a backup of the same directory on the host would (same chunks, same trees), so
/// the two ways of reading a volume deduplicate against each other.
///
/// The caller holds a repository lock and has loaded the index.
public final class StreamArchiver {
    let repository: Repository
    /// The previous backup of this volume (its root directory): what the sender reports unchanged is
    /// looked up there, one directory's tree at a time as the stream enters it.
    let previous: Node?

    public struct Result: Sendable {
        public var root: Node
        public var files = 0
        public var unchangedFiles = 0
        public var bytes = 0
        public var bytesAdded = 0
        public var warnings: [String] = []
    }

    public init(repository: Repository, previous: Node? = nil) {
        self.repository = repository
        self.previous = previous
    }

    /// Writes the parent listing for the mover: the files below `node` (a directory of an earlier
    /// snapshot) whose blobs are all stored, by relative path, as the trees are walked (nothing of it is
    /// kept here). Returns how many were listed.
    @discardableResult
    public static func writeListing(of node: Node?, in repository: Repository, to writer: VolumeStreamWriter) async throws -> Int {
        writer.listingStart()
        var count = 0
        func walk(_ id: BlobID, _ prefix: String) async throws {
            for child in try await repository.loadTree(id).nodes {
                let path = prefix.isEmpty ? child.name : prefix + "/" + child.name
                if child.type == .dir, let subtree = child.subtree {
                    try await walk(subtree, path)
                } else if child.type == .file, (child.content ?? []).allSatisfy({ repository.hasBlob($0) }) {
                    try await writer.listed(VolumeStream.ListedFile(path: path, size: child.size, mtime: child.mtime,
                                                                     ctime: child.ctime, inode: child.inode))
                    count += 1
                }
            }
        }
        if let node, node.type == .dir, let subtree = node.subtree { try await walk(subtree, "") }
        try await writer.listingEnd()
        return count
    }

    /// The children of an earlier directory node by name (nil: no such directory before).
    func children(of node: Node?) async throws -> [String: Node]? {
        guard let node, node.type == .dir, let subtree = node.subtree else { return nil }
        return Dictionary(try await repository.loadTree(subtree).nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Reads a whole stream; the root directory becomes a node called `name`.
    public func archive(_ reader: VolumeStreamReader, name: String) async throws -> Result {
        try await reader.header()
        guard case .node(var rootNode)? = try await reader.next(), rootNode.type == .dir else {
            throw SnapshotError.stream("the stream does not start with a directory")
        }
        rootNode.name = name
        var result = Result(root: rootNode)
        // Each open directory: its node, path, the children received so far, and what it held before.
        var stack: [(node: Node, path: String, children: [Node], before: [String: Node]?)] =
            [(rootNode, "", [], try await children(of: previous))]
        while let event = try await reader.next() {
            switch event {
            case .node(var node):
                guard let parent = stack.last else { throw SnapshotError.stream("an entry after the root directory ended") }
                let path = parent.path.isEmpty ? node.name : parent.path + "/" + node.name
                switch node.type {
                case .dir:
                    stack.append((node, path, [], try await children(of: parent.before?[node.name])))
                    continue
                case .file:
                    node = try await archiveFile(node, path: path, reader: reader, result: &result)
                default:
                    break
                }
                stack[stack.count - 1].children.append(node)
            case .unchanged(var node):
                guard let parent = stack.last else { throw SnapshotError.stream("an entry after the root directory ended") }
                let path = parent.path.isEmpty ? node.name : parent.path + "/" + node.name
                guard let before = parent.before?[node.name], before.sameFile(as: node),
                      (before.content ?? []).allSatisfy({ repository.hasBlob($0) }) else {
                    throw SnapshotError.stream("the mover reported \(path) unchanged, but the earlier backup has no such file")
                }
                node.content = before.content
                result.files += 1
                result.unchangedFiles += 1
                result.bytes += Int(node.size)
                stack[stack.count - 1].children.append(node)
            case .up:
                guard var done = stack.popLast() else { throw SnapshotError.stream("unbalanced directory end") }
                let saved = try await repository.saveBlob(.tree, try Tree(nodes: done.children).encoded())
                result.bytesAdded += saved.added
                done.node.subtree = saved.id
                if stack.isEmpty {
                    result.root = done.node
                } else {
                    stack[stack.count - 1].children.append(done.node)
                }
            case .warning(let path, let message):
                result.warnings.append("\(path): \(message)")
            case .end(let files, let bytes):
                guard stack.isEmpty else { throw SnapshotError.stream("the stream ended inside a directory") }
                guard files == UInt64(result.files), bytes == UInt64(result.bytes) else {
                    throw SnapshotError.stream("the mover sent \(files) files and \(bytes) bytes, Cairn received \(result.files) and \(result.bytes)")
                }
                return result
            case .data, .hole, .fileEnd:
                throw SnapshotError.stream("file content outside a file")
            }
        }
        throw SnapshotError.stream("the stream ended before its end record: the mover stopped")
    }

    /// Chunks and stores one file's content as it arrives (`StreamContent`).
    func archiveFile(_ node: Node, path: String, reader: VolumeStreamReader, result: inout Result) async throws -> Node {
        var node = node
        var warnings: [String] = []
        var size: UInt64 = 0
        let stored = try await StreamContent.store(in: repository) {
            while true {
                guard let event = try await reader.next() else {
                    throw SnapshotError.stream("the stream ended inside \(path)")
                }
                switch event {
                case .data(let bytes): return .bytes(bytes)
                case .hole(let count): return .zeros(Int(count))
                case .fileEnd(let total):
                    size = total
                    return nil
                case .warning(let where_, let message):
                    warnings.append("\(where_): \(message)")
                default:
                    throw SnapshotError.stream("unexpected record inside \(path)")
                }
            }
        }
        guard stored.size == size else {
            throw SnapshotError.stream("\(path): \(stored.size) bytes received, the mover says \(size)")
        }
        node.size = size
        node.content = stored.content
        result.files += 1
        result.bytes += Int(size)
        result.bytesAdded += stored.added
        result.warnings += warnings
        return node
    }
}

/// Cairn's side of a volume restore through a mover pod: streams a directory of a snapshot, contents
/// read from the repository; blobs of zeros go as holes. Small files (as the restorer batches them:
/// `Restorer.batchedFileSize`) are gathered in stream order, up to `Restorer.batchFiles` files or
/// `Restorer.batchBytes` bytes, and their blobs read together (`Repository.readBlobs`: one request per pack
/// share, on object storage one GET, not one per file), then sent in order. A larger file is read as stored
/// (`Repository.readContent`: blobs stored back to back read together, the next ones decrypted while the
/// current one is sent).
public struct TreeSender {
    let repository: Repository

    public init(repository: Repository) {
        self.repository = repository
    }

    public func send(_ root: Node, to writer: VolumeStreamWriter) async throws -> (files: UInt64, bytes: UInt64) {
        guard root.type == .dir else { throw SnapshotError(.invalidArgument, "\(root.name) is not a directory") }
        var totals: (files: UInt64, bytes: UInt64) = (0, 0)
        try await writer.header()
        var node = root
        node.name = "root"
        try await send(node, writer: writer, totals: &totals)
        try await writer.end(files: totals.files, bytes: totals.bytes)
        return totals
    }

    func send(_ node: Node, writer: VolumeStreamWriter, totals: inout (files: UInt64, bytes: UInt64)) async throws {
        try await writer.node(node)
        switch node.type {
        case .dir:
            if let subtree = node.subtree {
                var small: [Node] = []
                var smallBytes: UInt64 = 0
                for child in try await repository.loadTree(subtree).nodes {
                    if child.type == .file, child.size <= Restorer.batchedFileSize {
                        small.append(child)
                        smallBytes += child.size
                        if small.count >= Restorer.batchFiles || smallBytes >= UInt64(Restorer.batchBytes) {
                            try await sendSmall(small, writer: writer, totals: &totals)
                            small = []
                            smallBytes = 0
                        }
                        continue
                    }
                    if !small.isEmpty {
                        try await sendSmall(small, writer: writer, totals: &totals)
                        small = []
                        smallBytes = 0
                    }
                    try await send(child, writer: writer, totals: &totals)
                }
                if !small.isEmpty { try await sendSmall(small, writer: writer, totals: &totals) }
            }
            try await writer.up()
        case .file:
            var size: UInt64 = 0
            // Read as stored (one request for the file's share of each pack, streamed), decrypted ahead on
            // every core while the stream is written.
            try await repository.readContent(node.content ?? [], { data, _ in data }, collect: { data in
                size += try await Self.send(data, writer: writer)
            })
            try await writer.fileEnd(size: size)
            totals.files += 1
            totals.bytes += size
        default:
            break
        }
    }

    /// Small files of one directory, in stream order: their blobs read together, then each file sent.
    func sendSmall(_ files: [Node], writer: VolumeStreamWriter, totals: inout (files: UInt64, bytes: UInt64)) async throws {
        var blobs: [BlobID: Data] = [:]
        try await repository.readBlobs(files.lazy.flatMap { $0.content ?? [] }, maxGap: Restorer.batchGap, width: 2,
                                       { id, read in (id, try read.get()) }, collect: { blobs[$0.0] = $0.1 })
        for file in files {
            try await writer.node(file)
            var size: UInt64 = 0
            for id in file.content ?? [] {
                guard let data = blobs[id] else { throw Repository.notIndexed(id) }
                size += try await Self.send(data, writer: writer)
            }
            try await writer.fileEnd(size: size)
            totals.files += 1
            totals.bytes += size
        }
    }

    /// One blob of a file's content: a hole if it is all zeros; its size.
    static func send(_ data: Data, writer: VolumeStreamWriter) async throws -> UInt64 {
        if data.withUnsafeBytes({ NodeWriter.isZero($0, 0, $0.count) }) {
            try await writer.hole(UInt64(data.count))
        } else {
            try await writer.data(data)
        }
        return UInt64(data.count)
    }
}
