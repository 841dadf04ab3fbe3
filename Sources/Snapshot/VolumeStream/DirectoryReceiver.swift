import Foundation

/// The mover pod's side of a volume restore: reads a volume stream and writes the tree into a
/// directory (the mounted, usually empty, claim). Existing entries of the same name are replaced;
/// directory metadata is applied after the directory's children; the root's metadata goes to the
/// directory itself.
public struct DirectoryReceiver {
    public let root: String
    /// Remove what the directory holds beyond the stream (a volume back to a restore point's state).
    public let removeExtraneous: Bool

    public init(root: String, removeExtraneous: Bool = false) {
        self.root = root
        self.removeExtraneous = removeExtraneous
    }

    public struct Totals: Codable, Sendable {
        public var files = 0
        public var directories = 0
        public var links = 0
        public var other = 0
        public var bytes = 0
        public var errors: [String] = []
    }

    public func receive(from reader: VolumeStreamReader) async throws -> Totals {
        var totals = Totals()
        let isRoot = geteuid() == 0
        try await reader.header()
        guard case .node(let rootNode)? = try await reader.next(), rootNode.type == .dir else {
            throw SnapshotError.stream("the stream does not start with a directory")
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var stack: [(path: String, node: Node, names: Set<String>)] = [(root, rootNode, [])]
        var file: (fd: Int32, path: String, node: Node, offset: Int)?
        while let event = try await reader.next() {
            switch event {
            case .node(let node):
                guard !stack.isEmpty else { throw SnapshotError.stream("an entry after the root directory ended") }
                let parent = stack[stack.count - 1].path
                if removeExtraneous { stack[stack.count - 1].names.insert(node.name) }
                let path = parent + "/" + node.name
                switch node.type {
                case .dir:
                    var st = stat()
                    if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR { unlink(path) }
                    if let problem = NodeWriter.makeDirectory(path) { totals.errors.append("\(path): \(problem)") }
                    stack.append((path, node, []))
                    totals.directories += 1
                case .file:
                    replace(path)
                    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                    if fd < 0 { totals.errors.append("\(path): create: \(String(cString: strerror(errno)))") }
                    file = (fd, path, node, 0)
                case .symlink:
                    replace(path)
                    if let problem = NodeWriter.makeSymlink(node, at: path, asRoot: isRoot) {
                        totals.errors.append("\(path): \(problem)")
                    } else {
                        totals.links += 1
                    }
                case .fifo, .chardev, .blockdev:
                    replace(path)
                    if let problem = NodeWriter.makeSpecial(node, at: path, asRoot: isRoot) {
                        totals.errors.append("\(path): \(problem)")
                    } else {
                        totals.other += 1
                    }
                case .socket:
                    totals.other += 1
                }
            case .data(let bytes):
                guard var current = file else { throw SnapshotError.stream("data outside a file") }
                if current.fd >= 0 {
                    do {
                        try NodeWriter.writeSparse(current.fd, bytes, at: current.offset, path: current.path)
                    } catch let error as SnapshotError where error.code == .noSpace {
                        // A full claim fails every file after this one: stop and say so.
                        close(current.fd)
                        unlink(current.path)
                        throw error
                    } catch {
                        totals.errors.append("\(current.path): \(error)")
                        close(current.fd)
                        unlink(current.path)
                        current.fd = -1
                    }
                }
                current.offset += bytes.count
                file = current
            case .hole(let count):
                guard var current = file else { throw SnapshotError.stream("hole outside a file") }
                current.offset += Int(count)
                file = current
            case .fileEnd(let size):
                guard let current = file else { throw SnapshotError.stream("file end outside a file") }
                file = nil
                guard current.fd >= 0 else { continue }
                defer { close(current.fd) }
                guard UInt64(current.offset) == size, ftruncate(current.fd, off_t(size)) == 0 else {
                    totals.errors.append("\(current.path): size \(current.offset) instead of \(size)")
                    unlink(current.path)
                    continue
                }
                NodeWriter.finishFile(current.fd, node: current.node, asRoot: isRoot)
                totals.files += 1
                totals.bytes += Int(size)
            case .up:
                guard let done = stack.popLast() else { throw SnapshotError.stream("unbalanced directory end") }
                if removeExtraneous { totals.errors += ExtraneousEntries.remove(in: done.path, keeping: done.names) }
                NodeWriter.applyMetadata(done.path, node: done.node, asRoot: isRoot)
            case .unchanged(let node):
                throw SnapshotError.stream("unchanged entry \(node.name) in a restore stream")
            case .warning(let path, let message):
                totals.errors.append("\(path): \(message)")
            case .end:
                guard stack.isEmpty, file == nil else { throw SnapshotError.stream("the stream ended inside a directory") }
                return totals
            }
        }
        throw SnapshotError.stream("the stream ended before its end record: the sender stopped")
    }

    func replace(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            try? FileManager.default.removeItem(atPath: path)
        } else {
            unlink(path)
        }
    }
}
