import Foundation
import Storage

/// The mover pod's side of a volume backup: walks a directory (the mounted claim) and writes it as a
/// volume stream. Files that match the parent listing (same size, mtime, ctime and inode) are sent as
/// unchanged, without their content; holes of sparse files are sent as holes, not zeros.
public struct DirectorySender {
    public let root: String
    public let unchanged: ParentListing
    /// Paths under `root` not sent.
    public let exclude: PathExclusion

    public init(root: String, parent: [VolumeStream.ListedFile] = [], exclude: PathExclusion = PathExclusion([])) {
        self.init(root: root, unchanged: ParentListing(parent), exclude: exclude)
    }

    /// `unchanged`: the parent listing (`VolumeStreamReader.listing(_:)` hands it over entry by entry).
    public init(root: String, unchanged: ParentListing, exclude: PathExclusion = PathExclusion([])) {
        self.root = root
        self.unchanged = unchanged
        self.exclude = exclude
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
        let entries: [DirectoryEntry]
        do {
            entries = try await DirectoryEntry.read(path)
        } catch let error as SnapshotError where error.code == .unreadable {
            try await writer.warning(path: relative.isEmpty ? "/" : relative, message: error.description)
            totals.warnings += 1
            return
        }
        for entry in entries {
            let full = entry.path
            let rel = relative.isEmpty ? entry.name : relative + "/" + entry.name
            if exclude.excludes(rel) { continue }
            guard var node = entry.node else {
                try await writer.warning(path: rel, message: SnapshotError.unreadable(full, errno: entry.errno, operation: "lstat").description)
                totals.warnings += 1
                continue
            }
            switch node.type {
            case .dir:
                try await writer.node(node)
                try await sendDirectory(full, relative: rel, writer: writer, buffer: buffer, totals: &totals)
                try await writer.up()
            case .file:
                if unchanged.unchanged(rel, node) {
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

    /// Sends a file's data extents and holes (`FileIO.nextData`). If the file changes while it is read, what
    /// was read is sent and its size recorded.
    func sendContent(_ fd: Int32, path: String, writer: VolumeStreamWriter,
                     buffer: UnsafeMutableRawBufferPointer) async throws -> UInt64 {
        let end = max(0, Int(lseek(fd, 0, SEEK_END)))
        var offset = 0
        while offset < end {
            let data = FileIO.nextData(fd, from: offset, size: end)
            if data.start > offset {
                try await writer.hole(UInt64(data.start - offset))
                offset = data.start
            }
            while offset < data.end {
                let want = min(buffer.count, data.end - offset)
                let n = pread(fd, buffer.baseAddress!, want, off_t(offset))
                if n < 0 {
                    if errno == EINTR { continue }
                    // Reported; the file is recorded with what could be read.
                    try await writer.warning(path: path, message: SnapshotError.unreadable(path, errno: errno, operation: "read").description)
                    return UInt64(offset)
                }
                if n == 0 { return UInt64(offset) }  // truncated while reading
                try await writer.data(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                offset += n
            }
        }
        return UInt64(offset)
    }
}
