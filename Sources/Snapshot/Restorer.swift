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

    /// Files of at most this many bytes in one blob are written in batches (`Batch`).
    static let batchedFileSize: UInt64 = 512 << 10
    /// A batch is written once it holds this many files or bytes.
    static let batchFiles = 512
    static let batchBytes = 8 << 20
    /// Blobs of a batch at most this many bytes apart in a pack are read with one request, the bytes
    /// between read and dropped: a cold restore of 20k small files from a file system took 5–15% longer
    /// reading only blobs back to back (more, smaller reads). Trees are read with the store's gap only: a
    /// level of trees is spread thinly over a pack of trees, and reading through cost 8× the bytes.
    static let batchGap = 256 << 10

    /// Small files written together: their blobs are read pack range by pack range (blobs stored near each
    /// other in one request, however many files they belong to), each file written as its blob arrives.
    struct Batch: Sendable {
        typealias File = (path: String, dest: String, node: Node, replacing: Bool)
        var files: [File] = []
        var bytes = 0
    }

    /// Counters the writing tasks share.
    struct Written: Sendable {
        var files = 0
        var bytes = 0
        var errors: [String] = []
    }

    /// The restore streams: the snapshot's trees are walked one directory at a time (parents before
    /// children) and files are written as they are met, so memory does not grow with the number of files.
    /// Before anything is written, a first walk checks that every `include` exists and, with `existing:
    /// fail`, that nothing in the target is in the way (it keeps only what it finds).
    func restore(tree: BlobID, root: Node?, source: String, options: RestoreOptions) async throws -> RestoreReport {
        var report = RestoreReport()
        let includes = options.include.map { Self.normalize($0) }
        let target = URL(fileURLWithPath: options.target).standardizedFileURL.path
        if !includes.isEmpty || (options.existing == .fail && Self.exists(target)) {
            var found: Set<String> = []
            var conflicts = 0
            var sample: [String] = []
            var ignored: [String] = []
            try await walk(tree: tree, prefix: "", includes: includes, fresh: !Self.exists(target), errors: &ignored,
                           enter: { _, _, _ in }) { path, node, fresh in
                if includes.contains(path) { found.insert(path) }
                guard options.existing == .fail, !fresh else {
                    return node.type == .dir ? .descend(fresh: fresh) : .skip
                }
                let existing = Self.existing(target + path, for: node)
                if existing == .inTheWay {
                    conflicts += 1
                    if sample.count < 5 { sample.append(path) }
                }
                return node.type == .dir ? .descend(fresh: existing == .none) : .skip
            }
            for include in includes where !found.contains(include) {
                throw SnapshotError(.notFound, "\(include) is not in \(source)", path: include)
            }
            if conflicts > 0 {
                throw SnapshotError(.conflict, "\(conflicts) entr\(conflicts == 1 ? "y" : "ies") already exist in "
                                    + "\(target) (\(sample.joined(separator: ", "))); nothing was written — skip or overwrite existing entries, or restore "
                                    + "into an empty directory", path: target)
            }
        }
        let fresh = !Self.exists(target)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)

        let isRoot = geteuid() == 0
        var firstLink: [String: String] = [:]       // "device:inode" → restored path
        var deferredLinks: [(String, String)] = []  // (path, existing path)
        var directories: [(String, Node)] = []      // metadata applied last
        let slots = AsyncSemaphore(permits: max(1, options.fileConcurrency))
        let written = Locked(Written())
        let removeExtraneous = options.removeExtraneous && includes.isEmpty
        var errors: [String] = []

        try await withThrowingTaskGroup(of: Void.self) { group in
            var batch = Batch()
            func dispatch(_ work: @escaping @Sendable () async throws -> Void) async throws {
                try await slots.acquire()
                group.addTask {
                    defer { slots.release() }
                    try await work()
                }
            }
            func flush() async throws {
                guard !batch.files.isEmpty else { return }
                let full = batch
                batch = Batch()
                try await dispatch { try await self.writeBatch(full, asRoot: isRoot, into: written) }
            }
            var large = Batch()
            func flushLarge() async throws {
                guard !large.files.isEmpty else { return }
                let full = large
                large = Batch()
                try await dispatch { try await self.writeGroup(full, asRoot: isRoot, into: written) }
            }
            try await walk(tree: tree, prefix: "", includes: includes, fresh: fresh, errors: &errors, enter: { path, names, fresh in
                // A volume brought back to the restore point's state: what the directory holds beyond it goes.
                if removeExtraneous, !fresh { report.errors += ExtraneousEntries.remove(in: target + path, keeping: names) }
            }) { path, node, fresh in
                let dest = target + path
                var replacing = false
                if !fresh {
                    if Self.existing(dest, for: node) == .inTheWay {
                        if options.existing == .skip {
                            report.skipped += 1
                            return .skip
                        }
                        replacing = true
                        if node.type != .file { _ = try? FileManager.default.removeItem(atPath: dest) }
                    }
                }
                switch node.type {
                case .dir:
                    let made = mkdir(dest, 0o700) == 0
                    if !made, errno != EEXIST { report.errors.append("\(path): \(NodeWriter.failure("mkdir"))") }
                    directories.append((path, node))
                    report.directories += 1
                    return .descend(fresh: made)
                case .file:
                    if node.links > 1 {
                        let key = "\(node.device):\(node.inode)"
                        if let first = firstLink[key] {
                            deferredLinks.append((dest, first))
                            return .skip
                        }
                        firstLink[key] = dest
                    }
                    if (node.content?.count ?? 0) <= 1, node.size <= Self.batchedFileSize {
                        batch.files.append((path, dest, node, replacing))
                        batch.bytes += Int(node.size)
                        if batch.files.count >= Self.batchFiles || batch.bytes >= Self.batchBytes { try await flush() }
                    } else {
                        large.files.append((path, dest, node, replacing))
                        large.bytes += Int(node.size)
                        if large.files.count >= Self.groupFiles || large.bytes >= Self.groupBytes { try await flushLarge() }
                    }
                case .symlink:
                    if let problem = NodeWriter.makeSymlink(node, at: dest, asRoot: isRoot) {
                        report.errors.append("\(path): \(problem)")
                    } else {
                        report.links += 1
                    }
                case .fifo, .chardev, .blockdev:
                    if let problem = NodeWriter.makeSpecial(node, at: dest, asRoot: isRoot) {
                        report.errors.append("\(path): \(problem)")
                    } else {
                        report.other += 1
                    }
                case .socket:
                    report.other += 1   // sockets are recreated by the programs that own them
                }
                return .skip
            }
            try await flush()
            try await flushLarge()
            try await group.waitForAll()
        }
        report.errors += errors
        let done = written.withLock { $0 }
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
        // Directory metadata last, deepest first, so writing children does not change a parent's mtime.
        for (path, node) in directories.reversed() {
            NodeWriter.applyMetadata(target + path, node: node, asRoot: isRoot)
        }
        if let root, includes.isEmpty { NodeWriter.applyMetadata(target, node: root, asRoot: isRoot) }
        return report
    }

    /// What the target holds where `node` goes: nothing, a directory a directory node goes into, or an
    /// entry in the way (a conflict).
    enum Existing { case none, directory, inTheWay }

    static func existing(_ path: String, for node: Node) -> Existing {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .none }
        return (st.st_mode & S_IFMT) == S_IFDIR && node.type == .dir ? .directory : .inTheWay
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// What the walk does after visiting a node.
    enum Step {
        case skip
        /// Walk the directory's tree; `fresh`: it did not exist in the target, so nothing below it can.
        case descend(fresh: Bool)
    }

    /// Walks the selected part of a tree depth first, parents before children, one directory's tree in
    /// memory per level. `enter` hears each directory walked (its path, the names of its selected
    /// entries, whether it is new in the target) before its entries are visited. A tree that cannot be read
    /// is an error in `errors`.
    func walk(tree id: BlobID, prefix: String, includes: [String], fresh: Bool, errors: inout [String],
              enter: (String, Set<String>, Bool) async throws -> Void,
              visit: (String, Node, Bool) async throws -> Step) async throws {
        let tree: Tree
        do {
            tree = try await repository.loadTree(id)
        } catch let error as RepositoryError where error.code != .storage {
            errors.append("\(prefix.isEmpty ? "/" : prefix): directory cannot be read: \(error)")
            return
        }
        var selected: [(String, Node)] = []
        for node in tree.nodes {
            let path = prefix + "/" + node.name
            let wanted = includes.isEmpty || includes.contains { path == $0 || path.hasPrefix($0 + "/") }
            let onTheWay = includes.contains { $0.hasPrefix(path + "/") }
            if wanted || onTheWay { selected.append((path, node)) }
        }
        try await enter(prefix, Set(selected.map(\.1.name)), fresh)
        for (path, node) in selected {
            if case .descend(let freshBelow) = try await visit(path, node, fresh), let subtree = node.subtree {
                try await walk(tree: subtree, prefix: path, includes: includes, fresh: freshBelow, errors: &errors,
                               enter: enter, visit: visit)
            }
        }
    }

    /// Writes a batch of small files as their blobs are read (`readBlobs`: by pack range, blobs stored near
    /// each other in one request however many files they belong to, each blob read once), in the batch's
    /// task: the files of about a MiB of blobs written together through `BlockingIO` (batches run several at
    /// once, so the cores and the disk stay busy). A damaged blob fails only the files that hold it. Memory
    /// holds about a MiB of blobs, not the batch.
    func writeBatch(_ batch: Batch, asRoot: Bool, into written: Locked<Written>) async throws {
        var holders: [BlobID: [Batch.File]] = [:]
        var ready: [(files: [Batch.File], data: Data)] = []
        for file in batch.files {
            if let id = file.node.content?.first { holders[id, default: []].append(file) } else { ready.append(([file], Data())) }
        }
        var done = Written()
        var readyBytes = 0
        func write() async throws {
            guard !ready.isEmpty else { return }
            let some = try await Self.writeFiles(ready, asRoot: asRoot)
            ready = []
            readyBytes = 0
            done.files += some.files
            done.bytes += some.bytes
            done.errors += some.errors
            bytesDone.withLock { $0 += some.bytes }
        }
        try await repository.readBlobs(batch.files.compactMap { $0.node.content?.first }, maxGap: Self.batchGap, width: 1,
                                       { id, content in (id, content) }, collect: { id, content in
            let files = holders[id] ?? []
            switch content {
            case .success(let data):
                ready.append((files, data))
                readyBytes += data.count * files.count
                if readyBytes >= Self.writeGroupBytes || ready.count >= Self.writeGroupFiles { try await write() }
            case .failure(let error):
                done.errors += files.map { "\($0.path): \(error)" }
            }
        })
        try await write()
        written.withLock {
            $0.files += done.files
            $0.bytes += done.bytes
            $0.errors += done.errors
        }
    }

    /// Small files are written this many bytes or files at a time (one trip through `BlockingIO`).
    static let writeGroupBytes = 1 << 20
    static let writeGroupFiles = 64

    /// Writes each file of `groups` whole, with its group's content.
    static func writeFiles(_ groups: [(files: [Batch.File], data: Data)], asRoot: Bool) async throws -> Written {
        try await BlockingIO.run {
            var done = Written()
            for (files, data) in groups {
                for file in files {
                    do {
                        try writeWhole(data, node: file.node, to: file.dest, asRoot: asRoot, replacing: file.replacing)
                        done.files += 1
                        done.bytes += data.count
                    } catch let error as SnapshotError where error.code != .noSpace {
                        done.errors.append("\(file.path): \(error)")
                    }
                }
            }
            return done
        }
    }

    /// Writes one small file whole (blocking): created exclusively (beside an existing one, then renamed
    /// over it), removed if anything fails.
    static func writeWhole(_ data: Data, node: Node, to dest: String, asRoot: Bool, replacing: Bool) throws {
        let tmp = writtenPath(dest, replacing: replacing)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SnapshotError.writing(errno, "create", path: tmp) }
        var completed = false
        defer {
            close(fd)
            if !completed { unlink(tmp) }
        }
        try NodeWriter.writeSparse(fd, data, at: 0, path: dest)
        guard ftruncate(fd, off_t(data.count)) == 0 else { throw SnapshotError.writing(errno, "size", path: dest) }
        NodeWriter.finishFile(fd, node: node, asRoot: asRoot)
        if replacing {
            guard rename(tmp, dest) == 0 else { throw SnapshotError.writing(errno, "move into place", path: dest) }
        }
        completed = true
    }

    /// Where a file is written: in place when new; beside the existing file it replaces (renamed over it
    /// once whole), so that file is never left half-written.
    static func writtenPath(_ dest: String, replacing: Bool) -> String {
        replacing ? (dest as NSString).deletingLastPathComponent + "/.cairn-restore-" + UUID().uuidString.prefix(8) : dest
    }

    static func normalize(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { !$0.isEmpty && $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    /// Larger files (several blobs, or one above `batchedFileSize`) are written in groups of this many files
    /// or bytes: a group's blobs are read pack by pack, each pack once, whatever files share it.
    static let groupFiles = 64
    static let groupBytes = 1 << 30
    /// A group's packs are read by this many lanes at once (one request each), each with this many blobs
    /// being decrypted while it reads on.
    static let groupLanes = 4
    static let laneWidth = 2

    /// Writes a group of larger files together, by a plan across them: each blob of the group is read once,
    /// from its pack (the packs shared out among `groupLanes` lanes, each pack read by one lane in as few
    /// requests as its blobs allow — on object storage a pack that holds blobs of eight files is one GET, not
    /// eight), decrypted, verified and written at every offset it has in every file of the group. A new file
    /// is written in place; an existing one beside it, then renamed over it. A file whose blob is damaged or
    /// missing, or that the target refuses, is removed and reported; the rest of the group is written. A full
    /// disk or an unreachable store stops the restore. Memory holds the plan (a few entries per blob) and
    /// `groupLanes × laneWidth` blobs.
    func writeGroup(_ group: Batch, asRoot: Bool, into written: Locked<Written>) async throws {
        let files = group.files
        // Where each blob goes: (file, offset) pairs; the size each file will have.
        var places: [BlobID: [(file: Int, at: Int)]] = [:]
        var sizes = [Int](repeating: 0, count: files.count)
        var failures = [String?](repeating: nil, count: files.count)
        for (index, file) in files.enumerated() {
            var at = 0
            var mine: [(BlobID, Int)] = []
            for id in file.node.content ?? [] {
                guard let (_, place) = repository.location(of: id) else {
                    failures[index] = "\(file.path): \(Repository.notIndexed(id))"
                    break
                }
                mine.append((id, at))
                at += Int(place.rawLength)
            }
            guard failures[index] == nil else { continue }
            for (id, at) in mine { places[id, default: []].append((index, at)) }
            sizes[index] = at
        }
        // Each file created before any blob is read (exclusively: beside an existing one being replaced).
        let targets = files.map { Self.writtenPath($0.dest, replacing: $0.replacing) }
        let opened = try await BlockingIO.run { [failures] in
            var fds = [Int32](repeating: -1, count: files.count)
            var refused = failures
            for index in files.indices where refused[index] == nil {
                let fd = open(targets[index], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                if fd >= 0 {
                    fds[index] = fd
                    continue
                }
                let error = SnapshotError.writing(errno, "create", path: targets[index])
                if error.code == .noSpace {
                    for fd in fds where fd >= 0 { close(fd) }
                    for i in files.indices where fds[i] >= 0 { unlink(targets[i]) }
                    throw error
                }
                refused[index] = "\(files[index].path): \(error)"
            }
            return (fds, refused)
        }
        let fds = opened.0
        let failed = Locked(opened.1)
        var finished = false
        defer {
            // Thrown out of (a full disk, the store unreachable): nothing of the group stays half-written.
            if !finished {
                for index in files.indices where fds[index] >= 0 {
                    close(fds[index])
                    unlink(targets[index])
                }
            }
        }
        // The packs, in the order the group first needs them, dealt out to the lanes.
        var laneOfPack: [BlobID: Int] = [:]
        var lanes = [[BlobID]](repeating: [], count: Self.groupLanes)
        for file in files {
            for id in file.node.content ?? [] where places[id] != nil {
                guard let (pack, _) = repository.location(of: id) else { continue }
                let lane: Int
                if let known = laneOfPack[pack] {
                    lane = known
                } else {
                    lane = laneOfPack.count % Self.groupLanes
                    laneOfPack[pack] = lane
                }
                lanes[lane].append(id)
            }
        }
        let plan = places
        let work: @Sendable (BlobID, Result<Data, RepositoryError>) async throws -> Int = { id, content in
            let targets = (plan[id] ?? []).filter { target in failed.withLock { $0[target.file] == nil } }
            guard !targets.isEmpty else { return 0 }
            let data: Data
            switch content {
            case .success(let plain):
                data = plain
            case .failure(let error):
                failed.withLock { failed in
                    for target in targets where failed[target.file] == nil { failed[target.file] = "\(files[target.file].path): \(error)" }
                }
                return 0
            }
            return try await BlockingIO.run {
                var bytes = 0
                for target in targets {
                    do {
                        try NodeWriter.writeSparse(fds[target.file], data, at: target.at, path: files[target.file].dest)
                        bytes += data.count
                    } catch let error as SnapshotError where error.code != .noSpace {
                        failed.withLock { if $0[target.file] == nil { $0[target.file] = "\(files[target.file].path): \(error)" } }
                    }
                }
                return bytes
            }
        }
        try await Concurrent.forEach(lanes.filter { !$0.isEmpty }, width: Self.groupLanes, { lane in
            var bytes = 0
            try await self.repository.readBlobs(lane, width: Self.laneWidth, work, collect: { written in
                bytes += written
                self.bytesDone.withLock { $0 += written }
            })
            return bytes
        }, collect: { _ in })
        // Each file sized, given its metadata and moved into place — or removed.
        let reasons = failed.withLock { $0 }
        let done = try await BlockingIO.run { [sizes] in
            var done = Written()
            for index in files.indices where fds[index] >= 0 {
                let file = files[index]
                var problem = reasons[index]
                if problem == nil {
                    if ftruncate(fds[index], off_t(sizes[index])) != 0 {
                        problem = "\(file.path): \(SnapshotError.writing(errno, "size", path: file.dest))"
                    } else {
                        NodeWriter.finishFile(fds[index], node: file.node, asRoot: asRoot)
                    }
                }
                close(fds[index])
                if problem == nil, file.replacing, rename(targets[index], file.dest) != 0 {
                    problem = "\(file.path): \(SnapshotError.writing(errno, "move into place", path: file.dest))"
                }
                if let problem {
                    unlink(targets[index])
                    done.errors.append(problem)
                } else {
                    done.files += 1
                    done.bytes += sizes[index]
                }
            }
            for index in files.indices where fds[index] < 0 { done.errors += reasons[index].map { [$0] } ?? [] }
            return done
        }
        finished = true
        written.withLock {
            $0.files += done.files
            $0.bytes += done.bytes
            $0.errors += done.errors
        }
    }
}
