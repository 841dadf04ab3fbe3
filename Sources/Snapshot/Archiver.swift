import Foundation
import Logging
import Concurrent
import Repository
import Storage
import Synchronization

/// What to back up.
public struct BackupOptions: Sendable {
    public var paths: [String]
    /// The snapshot to compare against: unchanged files are not read again.
    public var parent: SnapshotManifest?
    public var tags: [String]
    public var hostname: String
    /// How many files are read at once. Each file's chunks are also processed in parallel.
    public var fileConcurrency: Int

    /// Files in flight by default. A file holds its slot from opening to stored, so the slots must outnumber
    /// the files being compressed for reads to keep coming: with 8, a cold tree of small files (the bench's
    /// 20k) left the cores a fifth idle; 32 backs it up 20–25% faster cold, the same warm, in the same memory
    /// (a small file is at most the chunker's minimum, 256 KiB; files larger than that are also bounded by
    /// `Archiver.largeFileSlots`).
    public static let defaultFileConcurrency = 32

    public init(paths: [String], parent: SnapshotManifest? = nil, tags: [String] = [],
                hostname: String = ProcessInfo.processInfo.hostName, fileConcurrency: Int = defaultFileConcurrency) {
        self.paths = paths
        self.parent = parent
        self.tags = tags
        self.hostname = hostname
        self.fileConcurrency = fileConcurrency
    }
}

/// Live counters of a running backup, readable from another task for a progress display.
public final class BackupProgress: Sendable {
    struct Counters {
        var files = 0
        var bytes = 0
        var totalFiles = 0
        var totalBytes = 0
        var scanDone = false
    }

    let counters = Mutex(Counters())

    public init() {}

    public var snapshot: (files: Int, bytes: Int, totalFiles: Int, totalBytes: Int, scanDone: Bool) {
        counters.withLock { ($0.files, $0.bytes, $0.totalFiles, $0.totalBytes, $0.scanDone) }
    }

    func add(files: Int = 0, bytes: Int = 0) {
        counters.withLock {
            $0.files += files
            $0.bytes += bytes
        }
    }
}

/// The result of a backup.
public struct BackupResult: Sendable {
    public var snapshot: SnapshotManifest
    /// Source files that could not be read; the snapshot does not contain them.
    public var errors: [String]
}

/// Walks source paths and stores them as a snapshot.
///
/// Pipeline: the walk runs in directory order; up to `fileConcurrency` files are read at once (bounded
/// by a semaphore, so memory does not grow with the input); each file is read and chunked in its task,
/// and up to three of its chunks are hashed, compressed and encrypted in parallel; packs are written as
/// they fill. Unchanged files (same size, mtime, ctime, inode as in the parent) are not read.
public final class Archiver: Sendable {
    let repository: Repository
    let progress: BackupProgress
    let logger: Logger
    let errors = Mutex<[String]>([])
    let summary = Mutex(BackupSummary())
    let buffers: BufferPool
    /// Chunks being hashed, compressed and encrypted at once, across all files: one per core plus one, so
    /// the cores stay busy and memory does not grow with the number of large files read at once.
    let chunkSlots = AsyncSemaphore(permits: ProcessInfo.processInfo.activeProcessorCount + 1)
    /// Files large enough to be chunked, read at once: two keep the cores busy (their chunks are processed
    /// in parallel); more would only add buffers.
    let largeFileSlots = AsyncSemaphore(permits: 2)
    /// Subdirectories walked beside their parent's remaining entries, across the whole tree: so the files in
    /// flight do not drain to none at every directory's end (cold small files then keep the disk busy). A
    /// directory that finds none free is walked in line, so no walk ever waits for another.
    let directorySlots = AsyncSemaphore(permits: 4)

    static let chunkWindow = 3

    public init(repository: Repository, progress: BackupProgress = BackupProgress(),
                logger: Logger = Logger(label: "cairn.archiver")) {
        self.repository = repository
        self.progress = progress
        self.logger = logger
        self.buffers = BufferPool(size: repository.chunker.parameters.maxSize + FileChunker.readSize)
    }

    /// Runs the backup under a shared repository lock and writes the snapshot once all data is durable.
    public func run(_ options: BackupOptions) async throws -> BackupResult {
        guard !options.paths.isEmpty else {
            throw SnapshotError(.invalidArgument, "nothing to back up: give at least one path")
        }
        let start = Date()
        let paths = options.paths.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let names = paths.map { $0 == "/" ? "root" : ($0 as NSString).lastPathComponent }
        guard Set(names).count == names.count else {
            throw SnapshotError(.invalidArgument, "two paths end in the same name; back them up in separate snapshots")
        }
        return try await RepositoryLock.with(repository, exclusive: false, operation: "backup", wait: 30) {
            try await repository.loadIndex()
            return try await repository.work { mark in
                try await self.archive(paths, names: names, options: options, start: start, mark: mark)
            }
        }
    }

    /// The backup of `paths` (as `names`) as one unit of work from `mark`; the caller holds the lock.
    func archive(_ paths: [String], names: [String], options: BackupOptions, start: Date,
                 mark: Repository.WriteMark) async throws -> BackupResult {
        // Counting runs beside the backup, through BlockingIO (it is all lstat), and stops with it.
        let stopScan = Locked(false)
        Task { try? await BlockingIO.run { self.scan(paths, until: stopScan) } }
        defer { stopScan.withLock { $0 = true } }
        var parentRoot: Tree?
        if let parent = options.parent { parentRoot = try await repository.loadTree(parent.tree) }
        let slots = AsyncSemaphore(permits: max(1, options.fileConcurrency))
        var rootNodes: [Node] = []
        for (path, name) in zip(paths, names) {
            var st = stat()
            guard lstat(path, &st) == 0 else {
                throw SnapshotError(.unreadable, "cannot back up \(path)", path: path,
                                    cause: POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO))
            }
            var node = Node(name: name, stat: st)
            let previous = parentRoot?.node(named: name)
            switch node.type {
            case .dir:
                node = try await archiveDirectory(path, node: node, previous: previous, slots: slots)
            case .file:
                guard let archived = try await archiveFileOrReuse(path, node: node, previous: previous) else {
                    throw SnapshotError(.unreadable, "cannot back up \(errors.withLock { $0.last ?? path })", path: path)
                }
                node = archived
            default:
                node = try describeSpecial(path, node: node)
            }
            rootNodes.append(node)
        }
        let root = try await repository.saveBlob(.tree, Tree(nodes: rootNodes).encoded())
        summary.withLock { $0.bytesAdded += root.added; $0.blobsAdded += root.added > 0 ? 1 : 0 }
        // Durability order: data and index first, the snapshot that refers to them last.
        try await repository.flush(since: mark)
        var final = summary.withLock { $0 }
        final.errors = errors.withLock { $0.count }
        final.seconds = Date().timeIntervalSince(start)
        var manifest = SnapshotManifest(time: start, hostname: options.hostname,
                                        username: ProcessInfo.processInfo.environment["USER"] ?? "",
                                        paths: paths, tree: root.id, parent: options.parent?.id,
                                        tags: options.tags, program: "cairn \(CairnVersion.current)",
                                        summary: final)
        manifest.id = try await SnapshotFiles.save(manifest, to: repository)
        return BackupResult(snapshot: manifest, errors: errors.withLock { $0 })
    }

    /// Stores one directory (a volume's files, read on the host) as a node called `name`, reusing the
    /// unchanged files of `previous`. The caller holds a repository lock and has loaded the index; no
    /// snapshot is written (the caller places the node in one).
    /// `exclude`: paths under `path` left out (`PathExclusion`).
    public func archiveDirectory(_ path: String, name: String, previous: Node?, exclude: PathExclusion = PathExclusion([])) async throws
        -> (node: Node, summary: BackupSummary, errors: [String])
    {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SnapshotError(.invalidArgument, "\(path) is not a directory on this machine", path: path)
        }
        let node = try await archiveDirectory(path, node: Node(name: name, stat: st), previous: previous,
                                              slots: AsyncSemaphore(permits: BackupOptions.defaultFileConcurrency),
                                              excluding: exclude.isEmpty ? nil : Excluding(root: path, rule: exclude))
        var final = summary.withLock { $0 }
        final.errors = errors.withLock { $0.count }
        return (node, final, errors.withLock { $0 })
    }

    func record(_ error: SnapshotError) {
        logger.warning("backup.source.unreadable", metadata: ["file.path": "\(error.path ?? "")", "error": "\(error.description)"])
        errors.withLock { $0.append(error.description) }
        summary.withLock { $0.errors += 1 }
    }

    /// A `PathExclusion` and the directory its paths are relative to.
    struct Excluding: Sendable {
        let root: String
        let rule: PathExclusion

        func excludes(_ full: String) -> Bool {
            full.count > root.count && rule.excludes(String(full.dropFirst(root.count).drop(while: { $0 == "/" })))
        }
    }

    func archiveDirectory(_ path: String, node: Node, previous: Node?, slots: AsyncSemaphore, excluding: Excluding? = nil) async throws -> Node {
        var node = node
        let entries: [DirectoryEntry]
        do {
            entries = try await DirectoryEntry.read(path)
        } catch let error as SnapshotError where error.code == .unreadable {
            record(error)
            entries = []
        }
        let previousTree: Tree?
        if let previous, previous.type == .dir, let subtree = previous.subtree {
            previousTree = try? await repository.loadTree(subtree)
        } else {
            previousTree = nil
        }
        var nodes = [Node?](repeating: nil, count: entries.count)
        try await withThrowingTaskGroup(of: (Int, Node?).self) { group in
            for (i, entry) in entries.enumerated() {
                let full = entry.path
                if let excluding, excluding.excludes(full) { continue }
                guard let child = entry.node else {
                    record(SnapshotError.unreadable(full, errno: entry.errno, operation: "lstat"))
                    continue
                }
                let before = previousTree?.node(named: entry.name)
                switch child.type {
                case .dir:
                    if directorySlots.tryAcquire() {
                        group.addTask { [child] in
                            defer { self.directorySlots.release() }
                            return (i, try await self.archiveDirectory(full, node: child, previous: before, slots: slots,
                                                                       excluding: excluding))
                        }
                    } else {
                        nodes[i] = try await archiveDirectory(full, node: child, previous: before, slots: slots,
                                                              excluding: excluding)
                    }
                case .file:
                    if let before, let reused = reuse(child, previous: before) {
                        nodes[i] = reused
                        continue
                    }
                    let large = child.size > UInt64(repository.chunker.parameters.minSize)
                    try await slots.acquire()
                    if large {
                        do {
                            try await largeFileSlots.acquire()
                        } catch {
                            slots.release()
                            throw error
                        }
                    }
                    group.addTask {
                        defer {
                            slots.release()
                            if large { self.largeFileSlots.release() }
                        }
                        return (i, try await self.archiveFile(full, node: child, changed: before != nil))
                    }
                default:
                    do {
                        nodes[i] = try describeSpecial(full, node: child)
                    } catch let error as SnapshotError where error.code == .unreadable {
                        record(error)
                    }
                }
            }
            for try await (i, child) in group { nodes[i] = child }
        }
        let tree = Tree(sortedNodes: nodes.compactMap { $0 })
        // Nothing below changed: the previous tree blob is this directory's tree, no need to encode it.
        if let previousTree, let subtree = previous?.subtree, previousTree == tree, repository.hasBlob(subtree) {
            summary.withLock { $0.directories += 1 }
            node.subtree = subtree
            return node
        }
        let saved = try await repository.saveBlob(.tree, try tree.encoded())
        summary.withLock {
            $0.directories += 1
            $0.bytesAdded += saved.added
            $0.blobsAdded += saved.added > 0 ? 1 : 0
        }
        node.subtree = saved.id
        return node
    }

    /// The previous node, carried over, when the file is unchanged and all its blobs are still stored.
    func reuse(_ node: Node, previous: Node) -> Node? {
        guard node.sameFile(as: previous), let content = previous.content,
              content.allSatisfy({ repository.hasBlob($0) }) else { return nil }
        var node = node
        node.content = content
        summary.withLock {
            $0.filesUnmodified += 1
            $0.bytesTotal += Int(node.size)
        }
        progress.add(files: 1, bytes: Int(node.size))
        return node
    }

    func archiveFileOrReuse(_ path: String, node: Node, previous: Node?) async throws -> Node? {
        if let previous, let reused = reuse(node, previous: previous) { return reused }
        return try await archiveFile(path, node: node, changed: previous != nil)
    }

    /// Reads, chunks and stores one file. Source problems are recorded and give nil; repository
    /// problems are thrown. Opening and reading run through `BlockingIO`, so cold reads of many files
    /// overlap with hashing and compressing on the cooperative pool.
    func archiveFile(_ path: String, node: Node, changed: Bool) async throws -> Node? {
        let wholeUpTo = repository.chunker.parameters.minSize
        let file: (fd: Int32, node: Node, whole: Data?)
        do {
            // A small file whose data is in the page cache is read here, without a thread hop; what would wait
            // for the disk (opening included, when the walk's lstat left nothing cached) goes to BlockingIO.
            if let warm = Self.openCached(path, node: node, wholeUpTo: wholeUpTo) {
                file = warm
            } else {
                file = try await BlockingIO.run {
                    try Self.open(path, node: node, wholeUpTo: wholeUpTo)
                }
            }
        } catch let error as SnapshotError where error.code == .unreadable {
            record(error)
            return nil
        }
        defer { close(file.fd) }
        var node = file.node
        var ids: [BlobID] = []
        var bytesRead = 0
        do {
            if let data = file.whole {
                bytesRead = data.count
                if !data.isEmpty {
                    let saved = try await repository.saveBlob(.data, data)
                    ids.append(saved.id)
                    count(saved.added)
                }
            } else {
                (ids, bytesRead) = try await chunkAndStore(fd: file.fd, path: path)
            }
        } catch let error as SnapshotError where error.code == .unreadable {
            record(error)
            return nil
        }
        node.size = UInt64(bytesRead)
        node.content = ids
        summary.withLock {
            if changed { $0.filesChanged += 1 } else { $0.filesNew += 1 }
            $0.bytesRead += bytesRead
            $0.bytesTotal += bytesRead
        }
        progress.add(files: 1)
        return node
    }

    func count(_ added: Int) {
        if added > 0 {
            summary.withLock {
                $0.bytesAdded += added
                $0.blobsAdded += 1
            }
        }
    }

    /// A large file's chunks: read (through `BlockingIO`) and cut in order, `chunkWindow` of them stored at
    /// once, their IDs in file order.
    func chunkAndStore(fd: Int32, path: String) async throws -> ([BlobID], Int) {
        let reader = ChunkReader(FileChunker(chunker: repository.chunker, fd: fd, buffer: buffers.take()), path: path)
        defer { buffers.give(reader.chunker.buffer) }
        var ids: [BlobID] = []
        let repository = self.repository, chunkSlots = self.chunkSlots
        try await Concurrent.ordered(width: Self.chunkWindow, produce: { emit in
            while let chunk = try await reader.next() {
                progress.add(bytes: chunk.count)
                try await emit(chunk)
            }
        }, { chunk in
            try await chunkSlots.acquire()
            defer { chunkSlots.release() }
            return try await repository.saveBlob(.data, chunk)
        }, collect: { saved in
            ids.append(saved.id)
            count(saved.added)
        })
        return (ids, reader.chunker.bytesRead)
    }

    func describeSpecial(_ path: String, node: Node) throws -> Node {
        var node = node
        if node.type == .symlink {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n >= 0 else { throw SnapshotError.unreadable(path, errno: errno, operation: "readlink") }
            node.linkTarget = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        summary.withLock { $0.otherEntries += 1 }
        return node
    }

    /// Counts files and bytes below the paths, for the progress display's ETA.
    func scan(_ paths: [String], until stop: Locked<Bool>) {
        var stack = paths
        var files = 0, bytes = 0
        while let path = stack.popLast(), !stop.withLock({ $0 }) {
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                for name in (try? Self.listDirectory(path)) ?? [] { stack.append(path == "/" ? "/" + name : path + "/" + name) }
            } else if (st.st_mode & S_IFMT) == S_IFREG {
                files += 1
                bytes += Int(st.st_size)
            }
        }
        progress.counters.withLock {
            $0.totalFiles = files
            $0.totalBytes = bytes
            $0.scanDone = true
        }
    }

    static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SnapshotError.unreadable(path, errno: errno, operation: "opendir") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Opens a file and, when it has at most `wholeUpTo` bytes, reads it whole. Blocking.
    static func open(_ path: String, node: Node, wholeUpTo: Int) throws -> (fd: Int32, node: Node, whole: Data?) {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SnapshotError.unreadable(path, errno: errno, operation: "open") }
        var st = stat()
        let current = fstat(fd, &st) == 0 ? Node(name: node.name, stat: st) : node
        // Small files are one chunk: read them whole, no chunker buffer needed.
        guard current.size <= UInt64(wholeUpTo) else { return (fd, current, nil) }
        do {
            return (fd, current, try readAll(fd, sizeHint: Int(current.size), path: path))
        } catch {
            close(fd)
            throw error
        }
    }

    /// `open` for a small file whose data is all in the page cache, without blocking; nil otherwise.
    static func openCached(_ path: String, node: Node, wholeUpTo: Int) -> (fd: Int32, node: Node, whole: Data?)? {
        guard node.size <= UInt64(wholeUpTo) else { return nil }
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= wholeUpTo else {
            close(fd)
            return nil
        }
        var data = Data(count: Int(st.st_size) + 1)
        var filled = 0
        while true {
            let n = data.withUnsafeMutableBytes {
                FileIO.readCached(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...]), at: filled)
            }
            guard let n else {
                close(fd)
                return nil
            }
            if n == 0 { break }
            filled += n
            if filled == data.count {   // grew since fstat: the blocking path reads it whole
                close(fd)
                return nil
            }
        }
        data.count = filled
        return (fd, Node(name: node.name, stat: st), data)
    }

    static func readAll(_ fd: Int32, sizeHint: Int, path: String) throws -> Data {
        var data = Data(count: sizeHint + 1)
        var filled = 0
        while true {
            if filled == data.count { data.count += 64 << 10 }
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SnapshotError.unreadable(path, errno: errno, operation: "read")
            }
            if n == 0 { break }
            filled += n
        }
        data.count = filled
        return data
    }
}

/// A file being chunked, owned by one task at a time; each read runs through `BlockingIO`.
final class ChunkReader: @unchecked Sendable {
    var chunker: FileChunker
    let path: String

    init(_ chunker: FileChunker, path: String) {
        self.chunker = chunker
        self.path = path
    }

    func next() async throws -> Data? {
        try await BlockingIO.run {
            do {
                return try self.chunker.next()
            } catch {
                throw SnapshotError.unreadable(self.path, errno: (error as? POSIXError)?.code.rawValue ?? EIO, operation: "read")
            }
        }
    }
}

/// One directory's entries in name order, each with its metadata (`lstat`) or the error that kept it
/// from being read: the walk of a host backup and of the mover's sender, read off the cooperative pool.
struct DirectoryEntry: Sendable {
    var name: String
    var path: String
    var node: Node?
    var errno: Int32

    static func read(_ directory: String) async throws -> [DirectoryEntry] {
        try await BlockingIO.run {
            try Archiver.listDirectory(directory).map { name in
                let path = directory == "/" ? "/" + name : directory + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { return DirectoryEntry(name: name, path: path, node: nil, errno: Glibc.errno) }
                return DirectoryEntry(name: name, path: path, node: Node(name: name, stat: st), errno: 0)
            }
        }
    }
}

/// Reusable chunker buffers, so files do not each map and unmap a large buffer.
final class BufferPool: Sendable {
    struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawBufferPointer
    }

    let size: Int
    let free = Mutex<[Buffer]>([])

    init(size: Int) {
        self.size = size
    }

    func take() -> UnsafeMutableRawBufferPointer {
        free.withLock { $0.popLast() }?.pointer ?? .allocate(byteCount: size, alignment: 64)
    }

    func give(_ buffer: UnsafeMutableRawBufferPointer) {
        free.withLock { $0.append(Buffer(pointer: buffer)) }
    }

    deinit {
        free.withLock { $0.forEach { $0.pointer.deallocate() } }
    }
}
