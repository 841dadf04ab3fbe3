import Concurrent
import Foundation
@testable import Repository
@testable import Snapshot
import Storage
import StorageTesting
import Testing

/// The volume stream between a mover pod and Cairn, without a cluster: both ends run here, the bytes in
/// between held in memory (the exec session carries exactly these bytes).
@Suite("Volume stream")
struct VolumeStreamTests {
    /// Runs a sender into memory and returns the bytes, cut into uneven pieces as a network delivers them.
    static func stream(_ send: (VolumeStreamWriter) async throws -> Void) async throws -> [[UInt8]] {
        let collected = Locked([UInt8]())
        let writer = VolumeStreamWriter(flushThreshold: 10_000, sink: { bytes in collected.withLock { $0 += bytes } })
        try await send(writer)
        let all = collected.withLock { $0 }
        var pieces: [[UInt8]] = []
        var offset = 0
        var size = 1
        while offset < all.count {
            let n = min(size, all.count - offset)
            pieces.append(Array(all[offset..<(offset + n)]))
            offset += n
            size = size * 3 % 70_001 + 1
        }
        return pieces
    }

    /// A temporary directory and a new repository with its index loaded.
    static func scratch() async throws -> (TemporaryDirectory, Repository) {
        let dir = try TemporaryDirectory()
        let repo = try await newRepository()
        try await repo.loadIndex()
        return (dir, repo)
    }

    static func reader(_ pieces: [[UInt8]]) -> VolumeStreamReader {
        let queue = Locked(pieces[...])
        return VolumeStreamReader(source: { queue.withLock { $0.popFirst() } })
    }

    static func makeVolume(_ root: String) throws {
        try TestFiles.makeTree(at: root, seed: 9, files: 30, largeFileBytes: 5 << 20)
        try FileManager.default.createDirectory(atPath: root + "/nothing-here", withIntermediateDirectories: true)
        symlink("d0/e0/f0.txt", root + "/link")
        symlink("missing", root + "/dangling")
        let fd = open(root + "/sparse", O_CREAT | O_WRONLY, 0o640)
        ftruncate(fd, 64 << 20)
        _ = "middle".withCString { pwrite(fd, $0, 6, 32 << 20) }
        close(fd)
        chmod(root, 0o750)
    }

    /// (path, type, size, content) of every entry below a node, for comparing trees by content.
    static func listing(_ node: Node, _ repo: Repository, _ prefix: String = "") async throws -> [String] {
        var lines: [String] = []
        for child in try await repo.loadTree(node.subtree!).nodes {
            let path = prefix + "/" + child.name
            lines.append("\(path) \(child.type) \(child.mode) \(child.size) \(child.linkTarget ?? "") \((child.content ?? []).map(\.short))")
            if child.type == .dir { lines += try await listing(child, repo, path) }
        }
        return lines
    }

    @Test("a volume sent by a mover is stored with the same chunks as a host backup, comes back byte for byte and sparse, and only changed files travel the second time")
    func roundTrip() async throws {
        let (dir, repo) = try await Self.scratch()
        defer { dir.remove() }
        let volume = dir.sub("volume")
        try Self.makeVolume(volume)

        let found = try await ChildProcess.run(["find", volume, "-type", "f", "-not", "-name", "sparse", "-printf", "%s\\n"])
        let files = found.stdout.split(separator: "\n").count + 1
        let dataBytes = found.stdout.split(separator: "\n").compactMap { Int($0) }.reduce(0, +)
        let pieces = try await Self.stream { writer in
            let totals = try await DirectorySender(root: volume).send(to: writer)
            #expect(totals.files == UInt64(files) && totals.warnings == 0)
        }
        // The sparse file's 64 MiB travel as a hole: the stream is about the size of the data.
        #expect(pieces.map(\.count).reduce(0, +) < dataBytes + (1 << 20))
        let streamed = try await StreamArchiver(repository: repo).archive(Self.reader(pieces), name: "data")
        #expect(streamed.files == files && streamed.unchangedFiles == 0 && streamed.warnings.isEmpty)
        let host = try await Archiver(repository: repo).archiveDirectory(volume, name: "data", previous: nil)
        try await repo.flush()
        #expect(host.summary.bytesAdded < 64 << 10, "the host backup found every chunk already stored")
        #expect(try await Self.listing(streamed.root, repo) == Self.listing(host.node, repo))
        #expect(streamed.root.mode == 0o750)

        // Cairn → mover: written into an empty directory exactly as it was.
        let restored = try await Self.stream { writer in _ = try await TreeSender(repository: repo).send(streamed.root, to: writer) }
        let totals = try await DirectoryReceiver(root: dir.sub("restored")).receive(from: Self.reader(restored))
        #expect(totals.errors.isEmpty && totals.files == files && totals.links == 2)
        let diff = try await ChildProcess.run(["diff", "-r", "--no-dereference", volume, dir.sub("restored")])
        #expect(diff.status == 0, "\(diff.stdout)")
        var st = stat()
        #expect(lstat(dir.sub("restored/sparse"), &st) == 0 && st.st_size == 64 << 20 && st.st_blocks * 512 < 1 << 20)
        #expect(lstat(dir.sub("restored"), &st) == 0 && st.st_mode & 0o777 == 0o750)

        // Second backup with the parent listing: only the changed file's content is sent.
        try Data("changed".utf8).write(to: URL(fileURLWithPath: volume + "/d1/e1/f1.txt"))
        let listingBytes = try await Self.stream { try await StreamArchiver.writeListing(of: streamed.root, in: repo, to: $0) }
        let parent = try await Self.reader(listingBytes).listing()
        #expect(parent.count == files)
        let second = try await Self.stream { writer in _ = try await DirectorySender(root: volume, parent: parent).send(to: writer) }
        #expect(second.map(\.count).reduce(0, +) < 64 << 10)
        let again = try await StreamArchiver(repository: repo, previous: streamed.root).archive(Self.reader(second), name: "data")
        #expect(again.files == files && again.unchangedFiles == files - 1)
        let host2 = try await Archiver(repository: repo).archiveDirectory(volume, name: "data", previous: nil)
        try await repo.flush()
        #expect(try await Self.listing(again.root, repo) == Self.listing(host2.node, repo))
    }

    @Test("a volume restore reads a directory's small files together: a request per pack share, not one per file")
    func smallFilesReadTogether() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for i in 0..<400 {
            try TestFiles.write(dir.sub("src/d\(i % 4)/f\(i).txt"), Data((0..<(1000 + i)).map { UInt8(truncatingIfNeeded: $0 * 7 + i) }))
        }
        try TestFiles.write(dir.sub("src/d1/large.bin"), Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }))
        // Reads counted as object storage makes them (blobs up to a MiB apart in one request).
        let store = FaultyBlobStore(MemoryBlobStore(), readGap: 1 << 20)
        let repo = try await newRepository(store)
        try await repo.loadIndex()
        let host = try await Archiver(repository: repo).archiveDirectory(dir.sub("src"), name: "data", previous: nil)
        try await repo.flush()
        let before = store.calls(.load, .data)
        let pieces = try await Self.stream { writer in _ = try await TreeSender(repository: repo).send(host.node, to: writer) }
        let reads = store.calls(.load, .data) - before
        #expect(reads <= 24, "\(reads) reads for 401 files in 4 directories")
        let totals = try await DirectoryReceiver(root: dir.sub("restored")).receive(from: Self.reader(pieces))
        #expect(totals.errors.isEmpty && totals.files == 401)
        let diff = try await ChildProcess.run(["diff", "-r", dir.sub("src"), dir.sub("restored")])
        #expect(diff.status == 0, "\(diff.stdout)")
    }

    @Test("a mover that reports a file unchanged which the earlier backup does not hold as such is refused; the parent listing is streamed and names only files whose blobs are stored")
    func unchangedClaimsChecked() async throws {
        let (dir, repo) = try await Self.scratch()
        defer { dir.remove() }
        let volume = dir.sub("volume")
        try Self.makeVolume(volume)
        let first = try await StreamArchiver(repository: repo).archive(
            Self.reader(try await Self.stream { _ = try await DirectorySender(root: volume).send(to: $0) }), name: "data")
        try await repo.flush()
        let listed = try await Self.reader(try await Self.stream {
            let count = try await StreamArchiver.writeListing(of: first.root, in: repo, to: $0)
            #expect(count == first.files)
        }).listing()
        #expect(listed.count == first.files)
        let known = try #require(listed.first { $0.path.contains("/") })

        // The stream of a lying (or buggy) mover: a file reported unchanged under a name, or with an
        // identity, the earlier backup does not have.
        func lie(_ name: String, size: UInt64, in directories: [String]) async throws -> [[UInt8]] {
            try await Self.stream { w in
                try await w.header()
                func node(_ name: String, _ type: NodeType, size: UInt64 = 0) -> Node {
                    Node(name: name, type: type, mode: 0o755, uid: 0, gid: 0, mtime: known.mtime, ctime: known.ctime,
                         inode: known.inode, device: 0, links: 1, size: size)
                }
                try await w.node(node("root", .dir))
                for directory in directories { try await w.node(node(directory, .dir)) }
                try await w.node(node(name, .file, size: size), unchanged: true)
                for _ in directories { try await w.up() }
                try await w.up()
                try await w.end(files: 1, bytes: size)
            }
        }
        let parts = known.path.split(separator: "/").map(String.init)
        for (name, size, directories) in [("ghost", known.size, [String]()),
                                           (parts.last!, known.size + 1, Array(parts.dropLast()))] {
            await #expect(throws: SnapshotError.self) {
                _ = try await StreamArchiver(repository: repo, previous: first.root).archive(Self.reader(try await lie(name, size: size, in: directories)), name: "data")
            }
        }
        // The truth is accepted: the same file with its identity as listed.
        let truth = try await StreamArchiver(repository: repo, previous: first.root).archive(
            Self.reader(try await lie(parts.last!, size: known.size, in: Array(parts.dropLast()))), name: "data")
        #expect(truth.unchangedFiles == 1)
        // Without an earlier backup nothing may be reported unchanged.
        await #expect(throws: SnapshotError.self) {
            _ = try await StreamArchiver(repository: repo).archive(Self.reader(try await lie("ghost", size: 1, in: [])), name: "data")
        }
    }

    @Test("the sender's parent listing: a file is unchanged only at its own path with the same size, times and inode")
    func parentListing() {
        let listed = VolumeStream.ListedFile(path: "a/b.txt", size: 10, mtime: 100, ctime: 200, inode: 7)
        var listing = ParentListing()
        listing.add(listed)
        listing.add(VolumeStream.ListedFile(path: "a/c.txt", size: 11, mtime: 100, ctime: 200, inode: 8))
        #expect(listing.count == 2)
        func file(size: UInt64 = 10, mtime: Int64 = 100, ctime: Int64 = 200, inode: UInt64 = 7, type: NodeType = .file) -> Node {
            Node(name: "b.txt", type: type, mode: 0o644, uid: 0, gid: 0, mtime: mtime, ctime: ctime, inode: inode, device: 1,
                 links: 1, size: size)
        }
        #expect(listing.unchanged("a/b.txt", file()))
        #expect(!listing.unchanged("a/c.txt", file()), "another path's entry")
        #expect(!listing.unchanged("a/d.txt", file()), "not listed")
        #expect(!listing.unchanged("a/b.txt", file(size: 11)))
        #expect(!listing.unchanged("a/b.txt", file(mtime: 101)))
        #expect(!listing.unchanged("a/b.txt", file(ctime: 201)))
        #expect(!listing.unchanged("a/b.txt", file(inode: 9)))
        #expect(!listing.unchanged("a/b.txt", file(type: .symlink)))
        #expect(ParentListing([listed]).unchanged("a/b.txt", file()))
    }

    @Test("excluded paths are left out alike by the host walk and the mover: unanchored patterns at any depth, anchored ones at the root, a directory's contents without the directory")
    func exclusion() async throws {
        let rule = PathExclusion(["pg_wal/*", "postmaster.pid", "/top-only", "tmp*"])
        #expect(rule.excludes("pgdata/pg_wal/000000010000000000000003"))
        #expect(rule.excludes("pg_wal/archive_status"))
        #expect(!rule.excludes("pgdata/pg_wal"), "the directory itself stays")
        #expect(rule.excludes("a/b/postmaster.pid") && rule.excludes("postmaster.pid"))
        #expect(rule.excludes("top-only") && !rule.excludes("x/top-only"))
        #expect(rule.excludes("base/tmp123") && !rule.excludes("base/attmp"))
        #expect(!rule.excludes("pgdata/base/1/1259") && !PathExclusion([]).excludes("anything"))

        let (dir, repo) = try await Self.scratch()
        defer { dir.remove() }
        let volume = dir.sub("volume")
        for path in ["pgdata/pg_wal/000001", "pgdata/pg_wal/archive_status/000001.done", "pgdata/base/1/1259", "pgdata/postmaster.pid",
                     "top-only", "pgdata/top-only", "pgdata/tmp-a"] {
            try FileManager.default.createDirectory(atPath: (volume + "/" + path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(path.utf8).write(to: URL(fileURLWithPath: volume + "/" + path))
        }
        let pieces = try await Self.stream { _ = try await DirectorySender(root: volume, exclude: rule).send(to: $0) }
        let streamed = try await StreamArchiver(repository: repo).archive(Self.reader(pieces), name: "data")
        let host = try await Archiver(repository: repo).archiveDirectory(volume, name: "data", previous: nil, exclude: rule)
        try await repo.flush()
        let kept = try await Self.listing(host.node, repo).map { String($0.split(separator: " ")[0]) }
        #expect(kept == ["/pgdata", "/pgdata/base", "/pgdata/base/1", "/pgdata/base/1/1259", "/pgdata/pg_wal", "/pgdata/top-only"], "\(kept)")
        #expect(try await Self.listing(streamed.root, repo) == Self.listing(host.node, repo))
    }

    @Test("restored exactly, a volume loses what was made after the backup — by the mover and on the host alike; otherwise it is kept")
    func exactRestore() async throws {
        let (dir, repo) = try await Self.scratch()
        defer { dir.remove() }
        let volume = dir.sub("volume")
        try Self.makeVolume(volume)
        let host = try await Archiver(repository: repo).archiveDirectory(volume, name: "data", previous: nil)
        try await repo.flush()
        func spoil(_ root: String) throws {
            try Data("new".utf8).write(to: URL(fileURLWithPath: root + "/d0/later.txt"))
            try FileManager.default.createDirectory(atPath: root + "/later/deeper", withIntermediateDirectories: true)
            try Data("x".utf8).write(to: URL(fileURLWithPath: root + "/later/deeper/x"))
            try Data("changed".utf8).write(to: URL(fileURLWithPath: root + "/d1/e1/f1.txt"))
            try FileManager.default.createDirectory(atPath: root + "/lost+found", withIntermediateDirectories: true)
        }
        for exact in [true, false] {
            // Mover side.
            let moverTarget = dir.sub("mover-\(exact)")
            try FileManager.default.copyItem(atPath: volume, toPath: moverTarget)
            try spoil(moverTarget)
            let pieces = try await Self.stream { writer in _ = try await TreeSender(repository: repo).send(host.node, to: writer) }
            let totals = try await DirectoryReceiver(root: moverTarget, removeExtraneous: exact).receive(from: Self.reader(pieces))
            #expect(totals.errors.isEmpty, "\(totals.errors)")
            // Host side.
            let hostTarget = dir.sub("host-\(exact)")
            try FileManager.default.copyItem(atPath: volume, toPath: hostTarget)
            try spoil(hostTarget)
            let report = try await Restorer(repository: repo).restoreDirectory(
                host.node, options: RestoreOptions(target: hostTarget, existing: .overwrite, removeExtraneous: exact))
            #expect(report.errors.isEmpty, "\(report.errors)")
            for target in [moverTarget, hostTarget] {
                #expect(FileManager.default.fileExists(atPath: target + "/d0/later.txt") == !exact)
                #expect(FileManager.default.fileExists(atPath: target + "/later") == !exact)
                #expect(FileManager.default.fileExists(atPath: target + "/lost+found"), "a file system's lost+found stays")
                #expect(FileManager.default.contentsEqual(atPath: target + "/d1/e1/f1.txt", andPath: volume + "/d1/e1/f1.txt"))
                if exact {
                    try FileManager.default.removeItem(atPath: target + "/lost+found")
                    let diff = try await ChildProcess.run(["diff", "-r", "--no-dereference", volume, target])
                    #expect(diff.status == 0, "\(diff.stdout)")
                }
            }
        }
    }

    @Test("a cut, foreign or inconsistent stream is an error that says so, never a silently short volume")
    func badStreams() async throws {
        let (dir, repo) = try await Self.scratch()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("v"), seed: 2, files: 5, largeFileBytes: 200_000)
        let pieces = try await Self.stream { _ = try await DirectorySender(root: dir.sub("v")).send(to: $0) }
        let bytes = pieces.flatMap { $0 }

        for cut in [bytes.count - 1, bytes.count - 17, bytes.count / 2, 9] {
            let error = await #expect(throws: SnapshotError.self) {
                _ = try await StreamArchiver(repository: repo).archive(Self.reader([Array(bytes[0..<cut])]), name: "v")
            }
            #expect(error?.description.contains("ended") == true, "\(String(describing: error))")
            #expect(error?.code == .malformedStream)
            await #expect(throws: SnapshotError.self) {
                _ = try await DirectoryReceiver(root: dir.sub("r\(cut)")).receive(from: Self.reader([Array(bytes[0..<cut])]))
            }
        }
        let foreign = await #expect(throws: SnapshotError.self) {
            _ = try await StreamArchiver(repository: repo).archive(Self.reader([Array("<html>hello</html>".utf8)]), name: "v")
        }
        #expect(foreign?.description.contains("CAIRNVS1") == true)
        // A sender claiming a file unchanged that Cairn never stored.
        let claim = try await Self.stream { writer in
            try await writer.header()
            try await writer.node(Node(name: "root", type: .dir, mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0, inode: 1,
                                       device: 0, links: 1, size: 0))
            try await writer.node(Node(name: "f", type: .file, mode: 0o644, uid: 0, gid: 0, mtime: 0, ctime: 0, inode: 2,
                                       device: 0, links: 1, size: 5), unchanged: true)
            try await writer.up()
            try await writer.end(files: 1, bytes: 5)
        }
        let unchanged = await #expect(throws: SnapshotError.self) {
            _ = try await StreamArchiver(repository: repo).archive(Self.reader(claim), name: "v")
        }
        #expect(unchanged?.description.contains("unchanged") == true)
    }

    @Test("random, mutated and ill-ordered streams never crash either end: each is an error or a whole tree")
    func fuzzedStreams() async throws {
        let (dir, repo) = try await Self.scratch()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("v"), seed: 5, files: 6, largeFileBytes: 20_000)
        let valid = try await Self.stream { _ = try await DirectorySender(root: dir.sub("v")).send(to: $0) }.flatMap { $0 }

        // Entries after the root directory ended, and an end of a directory that was never begun.
        let afterRoot = try await Self.stream { writer in
            try await writer.header()
            try await writer.node(Node(name: "root", type: .dir, mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0, inode: 1,
                                       device: 0, links: 1, size: 0))
            try await writer.up()
            var late = Node(name: "late", type: .symlink, mode: 0o777, uid: 0, gid: 0, mtime: 0, ctime: 0, inode: 2,
                            device: 0, links: 1, size: 0)
            late.linkTarget = "x"
            try await writer.node(late)
            try await writer.up()
            try await writer.end(files: 0, bytes: 0)
        }
        await #expect(throws: SnapshotError.self) {
            _ = try await StreamArchiver(repository: repo).archive(Self.reader(afterRoot), name: "v")
        }
        await #expect(throws: SnapshotError.self) {
            _ = try await DirectoryReceiver(root: dir.sub("after-root")).receive(from: Self.reader(afterRoot))
        }

        // Mutations of a valid stream (a fixed seed: the same cases every run).
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random(_ bound: Int) -> Int {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Int(state % UInt64(max(1, bound)))
        }
        var errors = 0, whole = 0
        for round in 0..<150 {
            var bytes = valid
            for _ in 0..<(1 + random(4)) {
                let at = random(bytes.count)
                switch random(5) {
                case 0: bytes[at] ^= UInt8(1 + random(255))
                case 1: bytes[at] = 0xFF
                case 2: bytes.removeSubrange(at..<min(bytes.count, at + 1 + random(64)))
                case 3: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + random(64))], at: at)
                default: bytes = Array(bytes[0..<at])
                }
                if bytes.isEmpty { bytes = [0] }
            }
            if round % 10 == 0 { bytes = (0..<random(4096)).map { _ in UInt8(random(256)) } }
            do {
                _ = try await StreamArchiver(repository: repo).archive(Self.reader([bytes]), name: "v")
                whole += 1
            } catch {
                errors += 1
            }
            do {
                _ = try await DirectoryReceiver(root: dir.sub("fuzz-\(round)")).receive(from: Self.reader([bytes]))
            } catch {
                errors += 1
            }
        }
        #expect(errors > 0)
        print("fuzzed streams: \(errors) errors, \(whole) whole trees, no crash")
    }
}
