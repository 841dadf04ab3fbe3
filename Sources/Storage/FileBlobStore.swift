import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A `BlobStore` in a directory of the local filesystem.
///
/// Layout: `<root>/<kind>/<name>`, except pack files, which are spread over 256 subdirectories
/// `<root>/data/<first two hex digits>/<name>` so no directory grows too large. Writes go to
/// `<root>/tmp/` first, are `fsync`ed, renamed into place and the directory is `fsync`ed, so an object is
/// either absent or complete and durable. Leftovers in `tmp/` are harmless and removed by `prune`.
public struct FileBlobStore: BlobStore {
    public let root: URL
    /// `root` as a path, from which every file's path is built by joining strings: `URL` path operations
    /// ask the file system whether a component is a directory, a blocking `stat` on every read.
    let rootPath: String
    /// Open pack files, reused across ranged reads (a restore reads many blobs from each pack). Packs are
    /// immutable and named by their content, so a cached descriptor always reads the right bytes.
    let packFiles = DescriptorCache(capacity: 32)

    public var location: String { rootPath }

    public init(root: URL) {
        self.root = root.standardizedFileURL
        let path = self.root.path
        self.rootPath = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    /// `rootPath` and `components`, joined by slashes.
    func under(_ components: String...) -> String {
        components.reduce(rootPath) { $0 + "/" + $1 }
    }

    /// Creates the directory layout. Fails if `root` exists and is not empty.
    public func create() throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: rootPath, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw StorageError(.alreadyExists, "the repository path exists and is not a directory",
                                   location: rootPath)
            }
            let entries = (try? fm.contentsOfDirectory(atPath: rootPath)) ?? []
            if !entries.isEmpty {
                throw StorageError(.alreadyExists,
                                   "the directory is not empty; choose an empty or new directory for a repository",
                                   location: rootPath)
            }
        }
        // Parents before children: the root, each kind's directory (data/ among them), tmp/, data/00…ff.
        var dirs = [rootPath]
        dirs += BlobKind.allCases.filter { $0 != .config }.map { under($0.rawValue) }
        dirs.append(under("tmp"))
        for i in 0..<256 {
            dirs.append(under("data", String(format: "%02x", i)))
        }
        for dir in dirs where mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw StorageError.posix(errno, operation: "create repository directory", path: dir)
        }
    }

    func path(_ handle: BlobHandle) -> String {
        switch handle.kind {
        case .config:
            return under(handle.name)
        case .data:
            let prefix = handle.name.count >= 2 ? String(handle.name.prefix(2)) : "00"
            return under("data", prefix, handle.name)
        default:
            return under(handle.kind.rawValue, handle.name)
        }
    }

    func directory(_ handle: BlobHandle) -> String {
        let path = path(handle)
        return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    }

    public func makeAppender(_ kind: BlobKind) async throws -> (any BlobAppender)? {
        let tmpDir = under("tmp")
        try Self.ensureDirectory(tmpDir)
        return try FileAppender(store: self, path: tmpDir + "/" + kind.rawValue + "-" + UUID().uuidString)
    }

    public func save(_ handle: BlobHandle, data: Data, options: SaveOptions) async throws {
        let target = path(handle)
        let dir = directory(handle)
        let tmpDir = under("tmp")
        try await BlockingIO.run {
            try Self.ensureDirectory(dir)
            try Self.ensureDirectory(tmpDir)
            let tmp = tmpDir + "/" + handle.kind.rawValue + "-" + UUID().uuidString
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StorageError.posix(errno, operation: "create temporary file", path: tmp) }
            var ok = false
            defer {
                if !ok { unlink(tmp) }
            }
            do {
                defer { close(fd) }
                try data.withUnsafeBytes { try FileIO.writeAll(fd, $0, at: 0, path: target) }
                guard fsync(fd) == 0 else { throw StorageError.posix(errno, operation: "fsync", path: target) }
            }
            if options.createOnly {
                // link(2) fails with EEXIST instead of replacing: an atomic create-only publish.
                guard link(tmp, target) == 0 else {
                    throw StorageError.posix(errno, operation: "save", path: target)
                }
                unlink(tmp)
            } else {
                guard rename(tmp, target) == 0 else { throw StorageError.posix(errno, operation: "rename", path: target) }
            }
            ok = true
            try Self.syncDirectory(dir)
        }
    }

    public func load(_ handle: BlobHandle, range: Range<Int>?) async throws -> Data {
        let target = path(handle)
        let cache = handle.kind == .data && range != nil ? packFiles : nil
        return try await BlockingIO.run {
            let (fd, size) = try cache?.acquire(target) ?? Self.openForReading(target)
            defer {
                if let cache { cache.release(target, fd) } else { close(fd) }
            }
            let wanted = range ?? 0..<size
            guard wanted.lowerBound >= 0, wanted.upperBound <= size else {
                throw StorageError(.rangeNotSatisfiable,
                                   "requested bytes \(wanted.lowerBound)..<\(wanted.upperBound) of an object of \(size) bytes",
                                   location: target)
            }
            guard !wanted.isEmpty else { return Data() }
            // Read into memory that is not zeroed first (every byte is read over).
            guard let buffer = malloc(wanted.count) else { throw StorageError(.io, "out of memory", location: target) }
            var done = 0
            while done < wanted.count {
                let n = pread(fd, buffer + done, wanted.count - done, off_t(wanted.lowerBound + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    let error = StorageError.posix(errno, operation: "read", path: target)
                    free(buffer)
                    throw error
                }
                if n == 0 {
                    free(buffer)
                    throw StorageError(.io, "object shrank while it was read", location: target)
                }
                done += n
            }
            return Data(bytesNoCopy: buffer, count: wanted.count, deallocator: .free)
        }
    }

    static func openForReading(_ target: String) throws -> (Int32, Int) {
        let fd = open(target, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.posix(errno, operation: "open", path: target) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw StorageError.posix(errno, operation: "stat", path: target)
        }
        return (fd, Int(st.st_size))
    }

    /// Asks the kernel for the range now (`POSIX_FADV_WILLNEED`): the disk reads it with a deep queue
    /// while what came before is used, which a reader of 1 MiB at a time — one request waiting at a time —
    /// does not get from the kernel's own read-ahead.
    public func prefetch(_ handle: BlobHandle, range: Range<Int>) async {
        let target = path(handle)
        _ = try? await BlockingIO.run {
            let (fd, _) = try self.packFiles.acquire(target)
            _ = posix_fadvise(fd, off_t(range.lowerBound), off_t(range.count), Int32(POSIX_FADV_WILLNEED))
            self.packFiles.release(target, fd)
        }
    }

    public func prefetch(_ handles: [BlobHandle]) async {
        let paths = handles.map { path($0) }
        _ = try? await BlockingIO.run {
            for target in paths {
                let fd = open(target, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { continue }
                _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_WILLNEED))
                close(fd)
            }
        }
    }

    public func prefetch(every kind: BlobKind) async {
        guard let files = try? await list(kind) else { return }
        await prefetch(files.map { BlobHandle(kind, $0.name) })
    }

    public func size(of handle: BlobHandle) async throws -> Int {
        let target = path(handle)
        var st = stat()
        guard stat(target, &st) == 0 else { throw StorageError.posix(errno, operation: "stat", path: target) }
        return Int(st.st_size)
    }

    public func remove(_ handle: BlobHandle) async throws {
        let target = path(handle)
        let dir = directory(handle)
        try await BlockingIO.run {
            guard unlink(target) == 0 else { throw StorageError.posix(errno, operation: "remove", path: target) }
            if handle.kind == .data { self.packFiles.forget(target) }
            try Self.syncDirectory(dir)
        }
    }

    public func list(_ kind: BlobKind) async throws -> [BlobInfo] {
        let base = rootPath
        return try await BlockingIO.run {
            switch kind {
            case .config:
                return try ["config", "format"].compactMap { name -> BlobInfo? in
                    var st = stat()
                    let p = base + "/" + name
                    if stat(p, &st) != 0 {
                        if errno == ENOENT { return nil }
                        throw StorageError.posix(errno, operation: "stat", path: p)
                    }
                    return BlobInfo(name: name, size: Int(st.st_size))
                }
            case .data:
                var result: [BlobInfo] = []
                let dataDir = base + "/data"
                for sub in try Self.entries(dataDir) {
                    result += try Self.files(dataDir + "/" + sub)
                }
                return result
            default:
                return try Self.files(base + "/" + kind.rawValue)
            }
        }
    }

    public func removeLeftovers() async throws -> Int {
        let dir = under("tmp")
        return try await BlockingIO.run {
            try Self.entries(dir).filter { unlink(dir + "/" + $0) == 0 }.count
        }
    }

    static func entries(_ dir: String) throws -> [String] {
        guard let d = opendir(dir) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw StorageError.posix(errno, operation: "list", path: dir)
        }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }

    static func files(_ dir: String) throws -> [BlobInfo] {
        try entries(dir).compactMap { name in
            var st = stat()
            let p = dir + "/" + name
            guard stat(p, &st) == 0 else {
                if errno == ENOENT { return nil }
                throw StorageError.posix(errno, operation: "stat", path: p)
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            return BlobInfo(name: name, size: Int(st.st_size))
        }
    }

    static func ensureDirectory(_ dir: String) throws {
        var st = stat()
        if stat(dir, &st) == 0 { return }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw StorageError(.io, "cannot create directory", location: dir, underlying: "\(error)")
        }
    }

    static func syncDirectory(_ dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.posix(errno, operation: "open directory", path: dir) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StorageError.posix(errno, operation: "fsync directory", path: dir) }
    }
}

/// A temporary file in `tmp/` that becomes an object on `commit` (fsync, rename, fsync of the directory).
final class FileAppender: BlobAppender, @unchecked Sendable {
    let store: FileBlobStore
    let path: String
    let fd: Int32
    private var closed = false

    init(store: FileBlobStore, path: String) throws {
        self.store = store
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.posix(errno, operation: "create temporary file", path: path) }
    }

    deinit {
        if !closed { abort() }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try FileIO.writeAll(fd, bytes, at: offset, path: path)
    }

    func commit(as handle: BlobHandle, size: Int) async throws {
        let target = store.path(handle)
        let dir = store.directory(handle)
        try await BlockingIO.run { [self] in
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw StorageError.posix(errno, operation: "stat", path: path) }
            guard Int(st.st_size) == size else {
                throw StorageError(.io, "the temporary file holds \(st.st_size) bytes, \(size) were written", location: path)
            }
            guard fsync(fd) == 0 else { throw StorageError.posix(errno, operation: "fsync", path: target) }
            try FileBlobStore.ensureDirectory(dir)
            guard rename(path, target) == 0 else { throw StorageError.posix(errno, operation: "rename", path: target) }
            close(fd)
            closed = true
            try FileBlobStore.syncDirectory(dir)
        }
    }

    func abort() {
        guard !closed else { return }
        closed = true
        close(fd)
        unlink(path)
    }
}

/// A small cache of open, read-only file descriptors with reference counts: a descriptor is closed only
/// when evicted (or its file removed) and unused.
final class DescriptorCache: Sendable {
    struct Entry {
        var fd: Int32
        var size: Int
        var users: Int
        var lastUse: UInt64
    }

    let capacity: Int
    /// `retired`: descriptors of removed files still being read, closed by their last `release`.
    let entries = Mutex<(files: [String: Entry], clock: UInt64, retired: [Entry])>(([:], 0, []))

    init(capacity: Int) {
        self.capacity = capacity
    }

    func acquire(_ path: String) throws -> (Int32, Int) {
        if let hit = entries.withLock({ state -> (Int32, Int)? in
            guard var entry = state.files[path] else { return nil }
            state.clock += 1
            entry.users += 1
            entry.lastUse = state.clock
            state.files[path] = entry
            return (entry.fd, entry.size)
        }) {
            return hit
        }
        let (fd, size) = try FileBlobStore.openForReading(path)
        var raced = false
        let evicted: [Int32] = entries.withLock { state in
            state.clock += 1
            if state.files[path] != nil {
                // Another thread opened it meanwhile: share theirs (now in use, so never evicted).
                state.files[path]!.users += 1
                state.files[path]!.lastUse = state.clock
                raced = true
                return []
            }
            state.files[path] = Entry(fd: fd, size: size, users: 1, lastUse: state.clock)
            var evicted: [Int32] = []
            while state.files.count > capacity,
                  let victim = state.files.filter({ $0.value.users == 0 })
                      .min(by: { $0.value.lastUse < $1.value.lastUse }) {
                evicted.append(victim.value.fd)
                state.files.removeValue(forKey: victim.key)
            }
            return evicted
        }
        evicted.forEach { close($0) }
        if raced {
            close(fd)
            return entries.withLock { state in (state.files[path]!.fd, state.files[path]!.size) }
        }
        return (fd, size)
    }

    func release(_ path: String, _ fd: Int32) {
        let unused: Int32? = entries.withLock { state in
            if state.files[path]?.fd == fd {
                state.files[path]!.users -= 1
                return nil
            }
            guard let i = state.retired.firstIndex(where: { $0.fd == fd }) else { return nil }
            state.retired[i].users -= 1
            guard state.retired[i].users == 0 else { return nil }
            state.retired.remove(at: i)
            return fd
        }
        if let unused { close(unused) }
    }

    /// The file at `path` was removed: a later `acquire` must not read it through a descriptor kept open.
    func forget(_ path: String) {
        let unused: Int32? = entries.withLock { state in
            guard let entry = state.files.removeValue(forKey: path) else { return nil }
            if entry.users == 0 { return entry.fd }
            state.retired.append(entry)
            return nil
        }
        if let unused { close(unused) }
    }

    deinit {
        entries.withLock { state in (state.files.values + state.retired).forEach { close($0.fd) } }
    }
}
