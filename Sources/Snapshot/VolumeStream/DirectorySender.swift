import Foundation

// Linux's lseek whence values (not exported by Glibc's module without _GNU_SOURCE).
let seekData: Int32 = 3
let seekHole: Int32 = 4

/// The mover pod's side of a volume backup: walks a directory (the mounted claim) and writes it as a
/// volume stream. Files that match the parent listing (same size, mtime, ctime and inode) are sent as
/// unchanged, without their content; holes of sparse files are sent as holes, not zeros.
public struct DirectorySender {
    public let root: String
    public let unchanged: [String: VolumeStream.ListedFile]

    public init(root: String, parent: [VolumeStream.ListedFile] = []) {
        self.root = root
        self.unchanged = Dictionary(parent.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public struct Totals: Sendable {
        public var files: UInt64 = 0
        public var bytes: UInt64 = 0
        public var warnings = 0
    }

    public func send(to writer: VolumeStreamWriter) async throws -> Totals {
        var totals = Totals()
        var st = stat()
        guard lstat(root, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SnapshotError(.invalidArgument, "\(root) is not a directory", path: root)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: VolumeStream.dataRecordSize, alignment: 64)
        defer { buffer.deallocate() }
        try await writer.header()
        var rootNode = Node(name: "root", stat: st)
        rootNode.links = 1
        try await writer.node(rootNode)
        try await sendDirectory(root, relative: "", writer: writer, buffer: buffer, totals: &totals)
        try await writer.up()
        try await writer.end(files: totals.files, bytes: totals.bytes)
        return totals
    }

    func sendDirectory(_ path: String, relative: String, writer: VolumeStreamWriter,
                       buffer: UnsafeMutableRawBufferPointer, totals: inout Totals) async throws {
        let names: [String]
        do {
            names = try Archiver.listDirectory(path)
        } catch let error as SnapshotError where error.code == .unreadable {
            try await writer.warning(path: relative.isEmpty ? "/" : relative, message: error.description)
            totals.warnings += 1
            return
        }
        for name in names {
            let full = path + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard lstat(full, &st) == 0 else {
                try await writer.warning(path: rel, message: SnapshotError.unreadable(full, errno: errno, operation: "lstat").description)
                totals.warnings += 1
                continue
            }
            var node = Node(name: name, stat: st)
            switch node.type {
            case .dir:
                try await writer.node(node)
                try await sendDirectory(full, relative: rel, writer: writer, buffer: buffer, totals: &totals)
                try await writer.up()
            case .file:
                if let listed = unchanged[rel], listed.size == node.size, listed.mtime == node.mtime,
                   listed.ctime == node.ctime, listed.inode == node.inode {
                    try await writer.node(node, unchanged: true)
                    totals.files += 1
                    totals.bytes += node.size
                    continue
                }
                let fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else {
                    try await writer.warning(path: rel, message: SnapshotError.unreadable(full, errno: errno, operation: "open").description)
                    totals.warnings += 1
                    continue
                }
                defer { close(fd) }
                try await writer.node(node)
                let size = try await sendContent(fd, path: full, writer: writer, buffer: buffer)
                try await writer.fileEnd(size: size)
                totals.files += 1
                totals.bytes += size
            case .symlink:
                var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlink(full, &target, target.count - 1)
                guard n >= 0 else {
                    try await writer.warning(path: rel, message: SnapshotError.unreadable(full, errno: errno, operation: "readlink").description)
                    totals.warnings += 1
                    continue
                }
                node.linkTarget = String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                try await writer.node(node)
            default:
                try await writer.node(node)
            }
        }
    }

    /// Sends a file's data extents and holes. Where SEEK_DATA is not supported the whole file is data.
    /// If the file changes while it is read, what was read is sent and its size recorded.
    func sendContent(_ fd: Int32, path: String, writer: VolumeStreamWriter,
                     buffer: UnsafeMutableRawBufferPointer) async throws -> UInt64 {
        var offset: off_t = 0
        var end = lseek(fd, 0, SEEK_END)
        if end < 0 { end = 0 }
        var sparseAware = true
        while offset < end {
            var dataStart = offset
            if sparseAware {
                let found = lseek(fd, offset, seekData)
                if found < 0 {
                    if errno == ENXIO {  // only a hole up to the end
                        try await writer.hole(UInt64(end - offset))
                        offset = end
                        break
                    }
                    sparseAware = false
                } else {
                    dataStart = found
                }
            }
            if dataStart > offset {
                try await writer.hole(UInt64(dataStart - offset))
                offset = dataStart
            }
            var dataEnd = end
            if sparseAware {
                let hole = lseek(fd, offset, seekHole)
                if hole > offset { dataEnd = min(hole, end) }
            }
            while offset < dataEnd {
                let want = min(buffer.count, Int(dataEnd - offset))
                let n = pread(fd, buffer.baseAddress!, want, offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    // Reported; the file is recorded with what could be read.
                    try await writer.warning(path: path, message: SnapshotError.unreadable(path, errno: errno, operation: "read").description)
                    return UInt64(offset)
                }
                if n == 0 { return UInt64(offset) }  // truncated while reading
                try await writer.data(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                offset += off_t(n)
            }
        }
        return UInt64(offset)
    }
}

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
                    if mkdir(path, 0o700) != 0 && errno != EEXIST {
                        totals.errors.append("\(path): mkdir: \(String(cString: strerror(errno)))")
                    }
                    stack.append((path, node, []))
                    totals.directories += 1
                case .file:
                    replace(path)
                    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                    if fd < 0 { totals.errors.append("\(path): create: \(String(cString: strerror(errno)))") }
                    file = (fd, path, node, 0)
                case .symlink:
                    replace(path)
                    if symlink(node.linkTarget ?? "", path) != 0 {
                        totals.errors.append("\(path): symlink: \(String(cString: strerror(errno)))")
                    } else {
                        if isRoot { lchown(path, node.uid, node.gid) }
                        Restorer.setTimes(path, node: node, followLinks: false)
                        totals.links += 1
                    }
                case .fifo, .chardev, .blockdev:
                    replace(path)
                    let kind: mode_t = node.type == .fifo ? S_IFIFO : node.type == .chardev ? S_IFCHR : S_IFBLK
                    if mknod(path, kind | mode_t(node.mode), dev_t(node.rdev ?? 0)) != 0 {
                        totals.errors.append("\(path): mknod: \(String(cString: strerror(errno)))")
                    } else {
                        Restorer.applyMetadata(path, node: node, asRoot: isRoot)
                        totals.other += 1
                    }
                case .socket:
                    totals.other += 1
                }
            case .data(let bytes):
                guard var current = file else { throw SnapshotError.stream("data outside a file") }
                if current.fd >= 0 {
                    do {
                        try Restorer.writeSparse(current.fd, bytes, at: current.offset, path: current.path)
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
                if isRoot { fchown(current.fd, current.node.uid, current.node.gid) }
                fchmod(current.fd, mode_t(current.node.mode))
                var times = [Restorer.timespec(ns: current.node.mtime), Restorer.timespec(ns: current.node.mtime)]
                futimens(current.fd, &times)
                totals.files += 1
                totals.bytes += Int(size)
            case .up:
                guard let done = stack.popLast() else { throw SnapshotError.stream("unbalanced directory end") }
                if removeExtraneous { totals.errors += ExtraneousEntries.remove(in: done.path, keeping: done.names) }
                Restorer.applyMetadata(done.path, node: done.node, asRoot: isRoot)
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
