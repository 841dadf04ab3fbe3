import Foundation
import Logging
import Concurrent
import Repository
import Storage
import Synchronization

/// What to do with a file that already exists in the restore target.
public enum ExistingPolicy: String, Sendable, CaseIterable {
    /// Stop before writing anything and list the conflicts.
    case fail
    /// Leave the existing file as it is.
    case skip
    /// Replace it with the snapshot's version.
    case overwrite
}

public struct RestoreOptions: Sendable {
    /// The directory to restore into (created if missing).
    public var target: String
    /// Paths inside the snapshot (as `cairn ls` shows them) to restore; empty means everything.
    public var include: [String]
    public var existing: ExistingPolicy
    public var fileConcurrency: Int
    /// Remove what the target holds beyond the snapshot (a volume back to a restore point's state); only
    /// for whole restores (no `include`).
    public var removeExtraneous: Bool

    public init(target: String, include: [String] = [], existing: ExistingPolicy = .fail, fileConcurrency: Int = 4,
                removeExtraneous: Bool = false) {
        self.target = target
        self.include = include
        self.existing = existing
        self.fileConcurrency = fileConcurrency
        self.removeExtraneous = removeExtraneous
    }
}

public struct RestoreReport: Sendable, Codable {
    public var files = 0
    public var directories = 0
    public var links = 0
    public var other = 0
    public var bytes = 0
    public var skipped = 0
    public var errors: [String] = []
}

/// Writes a snapshot's tree into a directory.
///
/// A file counts as restored only when all its content was read and verified; a file that fails is
/// removed (an existing file being replaced is written beside it and renamed over it), so a damaged blob
/// never leaves a half-written file behind: the file is reported and the rest is restored. Runs of zero bytes (4 KiB blocks) are not written, so
/// sparse files come back sparse. Hard links inside the restored set are re-created as links.
public final class Restorer: Sendable {
    let repository: Repository
    let logger: Logger
    public let bytesDone = Mutex(0)

    public init(repository: Repository, logger: Logger = Logger(label: "cairn.restorer")) {
        self.repository = repository
        self.logger = logger
    }

    struct Entry: Sendable {
        var path: String        // inside the snapshot, e.g. /src/a/b
        var node: Node
    }

    public func run(_ snapshot: SnapshotManifest, options: RestoreOptions) async throws -> RestoreReport {
        try await RepositoryLock.with(repository, exclusive: false, operation: "restore", wait: 30) {
            try await repository.loadIndex()
            return try await restore(snapshot, options: options)
        }
    }

    func restore(_ snapshot: SnapshotManifest, options: RestoreOptions) async throws -> RestoreReport {
        try await restore(tree: snapshot.tree, root: nil, source: "snapshot \(snapshot.shortID)",
                          options: options)
    }

    /// Restores the contents of a directory node (a volume of a restore point) into `options.target`,
    /// whose own metadata becomes the node's. The caller holds a repository lock and has loaded the index.
    public func restoreDirectory(_ node: Node, options: RestoreOptions) async throws -> RestoreReport {
        guard node.type == .dir, let subtree = node.subtree else {
            throw SnapshotError(.invalidArgument, "\(node.name) is not a directory")
        }
        return try await restore(tree: subtree, root: node, source: "\(node.name)", options: options)
    }

    func restore(tree: BlobID, root: Node?, source: String, options: RestoreOptions) async throws -> RestoreReport {
        var report = RestoreReport()
        let includes = options.include.map { Self.normalize($0) }
        var entries: [Entry] = []
        var unreadable: [String] = []
        try await collect(tree: tree, prefix: "", includes: includes, into: &entries, errors: &unreadable)
        report.errors += unreadable
        if !includes.isEmpty {
            for include in includes where !entries.contains(where: { $0.path == include }) {
                throw SnapshotError(.notFound, "\(include) is not in \(source)", path: include)
            }
        }
        let target = URL(fileURLWithPath: options.target).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)

        // Conflicts are decided before anything is written.
        var conflicts: Set<String> = []
        for entry in entries {
            var st = stat()
            if lstat(target + entry.path, &st) == 0 {
                let isDir = (st.st_mode & S_IFMT) == S_IFDIR
                if !(isDir && entry.node.type == .dir) { conflicts.insert(entry.path) }
            }
        }
        if !conflicts.isEmpty && options.existing == .fail {
            let sample = conflicts.sorted().prefix(5).joined(separator: ", ")
            throw SnapshotError(.conflict, "\(conflicts.count) entr\(conflicts.count == 1 ? "y" : "ies") already exist in "
                                + "\(target) (\(sample)); nothing was written — skip or overwrite existing entries, or restore "
                                + "into an empty directory", path: target)
        }

        let isRoot = geteuid() == 0
        var firstLink: [String: String] = [:]       // "device:inode" → restored path
        var deferredLinks: [(String, String)] = []  // (path, existing path)
        var directories: [Entry] = []
        let slots = AsyncSemaphore(permits: max(1, options.fileConcurrency))
        let results = Locked<(files: Int, bytes: Int, errors: [String])>((0, 0, []))

        try await withThrowingTaskGroup(of: Void.self) { group in
            for entry in entries {
                let dest = target + entry.path
                if conflicts.contains(entry.path) {
                    if options.existing == .skip {
                        report.skipped += 1
                        continue
                    }
                    if entry.node.type != .file { _ = try? FileManager.default.removeItem(atPath: dest) }
                }
                switch entry.node.type {
                case .dir:
                    if let problem = NodeWriter.makeDirectory(dest) { report.errors.append("\(entry.path): \(problem)") }
                    directories.append(entry)
                    report.directories += 1
                case .file:
                    if entry.node.links > 1 {
                        let key = "\(entry.node.device):\(entry.node.inode)"
                        if let first = firstLink[key] {
                            deferredLinks.append((dest, first))
                            continue
                        }
                        firstLink[key] = dest
                    }
                    let replacing = conflicts.contains(entry.path)
                    try await slots.acquire()
                    group.addTask {
                        defer { slots.release() }
                        do {
                            let bytes = try await self.restoreFile(entry.node, to: dest, asRoot: isRoot,
                                                                   replacing: replacing)
                            results.withLock { $0.files += 1; $0.bytes += bytes }
                        } catch let error as RepositoryError where error.code != .storage {
                            results.withLock { $0.errors.append("\(entry.path): \(error)") }
                        } catch let error as SnapshotError where error.code != .noSpace {
                            // One file the target refuses; a full disk stops the restore (every file would fail).
                            results.withLock { $0.errors.append("\(entry.path): \(error)") }
                        }
                    }
                case .symlink:
                    if let problem = NodeWriter.makeSymlink(entry.node, at: dest, asRoot: isRoot) {
                        report.errors.append("\(entry.path): \(problem)")
                        continue
                    }
                    report.links += 1
                case .fifo, .chardev, .blockdev:
                    if let problem = NodeWriter.makeSpecial(entry.node, at: dest, asRoot: isRoot) {
                        report.errors.append("\(entry.path): \(problem)")
                        continue
                    }
                    report.other += 1
                case .socket:
                    report.other += 1   // sockets are recreated by the programs that own them
                }
            }
            try await group.waitForAll()
        }
        let done = results.withLock { $0 }
        report.files += done.files
        report.bytes += done.bytes
        report.errors += done.errors
        for (path, existing) in deferredLinks {
            if options.existing == .overwrite { unlink(path) }
            if link(existing, path) != 0 {
                report.errors.append("\(path.dropFirst(target.count)): link: \(String(cString: strerror(errno)))")
            } else {
                report.files += 1
            }
        }
        if options.removeExtraneous && includes.isEmpty {
            var children: [String: Set<String>] = ["": []]
            for entry in entries {
                let parent = (entry.path as NSString).deletingLastPathComponent
                children[parent == "/" ? "" : parent, default: []].insert((entry.path as NSString).lastPathComponent)
                if entry.node.type == .dir { children[entry.path, default: []] = children[entry.path] ?? [] }
            }
            for (directory, names) in children {
                report.errors += ExtraneousEntries.remove(in: target + directory, keeping: names)
            }
        }
        // Directory metadata last, deepest first, so writing children does not change a parent's mtime.
        for entry in directories.reversed() {
            NodeWriter.applyMetadata(target + entry.path, node: entry.node, asRoot: isRoot)
        }
        if let root, includes.isEmpty { NodeWriter.applyMetadata(target, node: root, asRoot: isRoot) }
        return report
    }

    /// Flattens the selected part of the tree in restore order (parents before children).
    func collect(tree id: BlobID, prefix: String, includes: [String], into entries: inout [Entry],
                 errors: inout [String]) async throws {
        let tree: Tree
        do {
            tree = try await repository.loadTree(id)
        } catch let error as RepositoryError where error.code != .storage {
            errors.append("\(prefix.isEmpty ? "/" : prefix): directory cannot be read: \(error)")
            return
        }
        for node in tree.nodes {
            let path = prefix + "/" + node.name
            let selected = includes.isEmpty || includes.contains { path == $0 || path.hasPrefix($0 + "/") }
            let onTheWay = includes.contains { $0.hasPrefix(path + "/") }
            guard selected || onTheWay else { continue }
            entries.append(Entry(path: path, node: node))
            if node.type == .dir, let subtree = node.subtree {
                try await collect(tree: subtree, prefix: path, includes: includes, into: &entries, errors: &errors)
            }
        }
    }

    static func normalize(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { !$0.isEmpty && $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    /// Restores one file's content; returns bytes written. A new file is written in place and removed
    /// if anything fails; an existing file is replaced through a temporary file and a rename, so it is
    /// never left half-written either.
    func restoreFile(_ node: Node, to dest: String, asRoot: Bool, replacing: Bool) async throws -> Int {
        let dir = (dest as NSString).deletingLastPathComponent
        let tmp = replacing ? dir + "/.cairn-restore-" + UUID().uuidString.prefix(8) : dest
        let fd = try await BlockingIO.run {
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw SnapshotError.writing(errno, "create", path: tmp) }
            return fd
        }
        var completed = false
        defer {
            close(fd)
            if !completed { unlink(tmp) }
        }
        var offset = 0
        let content = node.content ?? []
        let repository = self.repository
        // Blobs stored back to back in one pack are read together (one request on object storage); at most
        // 2 runs of ≤ 4 MiB in flight per file: bounded memory whatever the file's size (files are restored
        // several at once, so the disk and the cores stay busy). Each run is written through `BlockingIO`
        // while the next one is read.
        try await Concurrent.ordered(width: 2, produce: { emit in
            for run in repository.contiguousRuns(content) { try await emit(content[run]) }
        }, { ids in
            try await repository.loadBlobs(ids)
        }, collect: { pieces in
            let start = offset
            let written = try await BlockingIO.run {
                var at = start
                for data in pieces {
                    try NodeWriter.writeSparse(fd, data, at: at, path: dest)
                    at += data.count
                }
                return at - start
            }
            offset += written
            bytesDone.withLock { $0 += written }
        })
        let size = offset
        try await BlockingIO.run {
            guard ftruncate(fd, off_t(size)) == 0 else {
                throw SnapshotError.writing(errno, "size", path: dest)
            }
            NodeWriter.finishFile(fd, node: node, asRoot: asRoot)
            if replacing {
                guard rename(tmp, dest) == 0 else {
                    throw SnapshotError.writing(errno, "move into place", path: dest)
                }
            }
        }
        completed = true
        return offset
    }
}
