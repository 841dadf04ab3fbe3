import Foundation
@testable import Repository
@testable import Snapshot
import Storage
import StorageTesting
import Testing

let testKDF: Void = { setenv("CAIRN_KDF_N", "1024", 1) }()

func newRepository(_ store: any BlobStore = MemoryBlobStore(), packSize: Int = 2 << 20) async throws -> Repository {
    _ = testKDF
    var config = RepositoryConfig.new()
    config.packSize = packSize
    return try await Repository.initialize(store: store, password: "pw", config: config)
}

@Suite("Backup and restore of file trees")
struct BackupRestoreTests {
    @Test("a varied tree comes back identical: content, modes, times, symlinks, hard links, sparse files")
    func roundTrip() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"))
        let repo = try await newRepository()
        let result = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")]))
        #expect(result.errors.isEmpty)
        let report = try await Restorer(repository: repo).run(result.snapshot, options: RestoreOptions(target: dir.sub("out")))
        #expect(report.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        // 64 MiB apparent size, a few KiB allocated: restored sparse.
        #expect(TestFiles.allocated(dir.sub("out/src/sparse.img")) < 1 << 20)
        var a = stat(), b = stat()
        lstat(dir.sub("out/src/large.txt"), &a)
        lstat(dir.sub("out/src/hardlink.txt"), &b)
        #expect(a.st_ino == b.st_ino)
    }

    @Test("files whose data is in memory and files that must come from the disk back up alike")
    func coldAndWarmFiles() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 21)
        var files: [String] = []
        for i in 0..<40 {
            let path = dir.sub("src/d\(i % 4)/f\(i).txt")
            try TestFiles.write(path, rng.text(1_000 + i * 3_000))
            files.append(path)
        }
        // Half the files leave the page cache (written back first, then dropped): reading them would wait for
        // the disk, so the archiver must take its blocking path for them.
        var cold = 0
        for path in files.enumerated().filter({ $0.offset % 2 == 0 }).map(\.element) {
            let fd = open(path, O_RDONLY)
            fsync(fd)
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            let probe = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
            if FileIO.readCached(fd, into: probe, at: 0) == nil { cold += 1 }
            probe.deallocate()
            close(fd)
        }
        #expect(cold > 0, "no file left the page cache: the test did not exercise the blocking path")
        let warm = open(files[1], O_RDONLY)
        let probe = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        #expect(FileIO.readCached(warm, into: probe, at: 0) ?? 0 > 0, "a file just written reads from memory")
        probe.deallocate()
        close(warm)
        let repo = try await newRepository()
        let result = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")]))
        #expect(result.errors.isEmpty)
        #expect(result.snapshot.summary?.filesNew == files.count)
        _ = try await Restorer(repository: repo).run(result.snapshot, options: RestoreOptions(target: dir.sub("out")))
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
    }

    @Test("an unchanged file is not read again; a changed one is")
    func incremental() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"))
        let repo = try await newRepository()
        let first = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")]))
        let second = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")], parent: first.snapshot))
        #expect(second.snapshot.summary?.bytesRead == 0)
        #expect(second.snapshot.summary?.bytesAdded == 0)
        #expect(second.snapshot.tree == first.snapshot.tree)

        var rng = SeededRandom(seed: 77)
        try TestFiles.write(dir.sub("src/d1/e1/f1.txt"), rng.text(10_000))
        let third = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")], parent: second.snapshot))
        let s = try #require(third.snapshot.summary)
        #expect(s.filesChanged == 1)
        #expect(s.bytesRead == 10_000)
        #expect(third.snapshot.tree != first.snapshot.tree)
    }

    @Test("restore of one path, and the existing-file policy: fail writes nothing, skip keeps, overwrite replaces")
    func partialAndExisting() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"))
        let repo = try await newRepository()
        let snap = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        let restorer = Restorer(repository: repo)

        _ = try await restorer.run(snap, options: RestoreOptions(target: dir.sub("one"), include: ["/src/d2"]))
        let entries = try FileManager.default.contentsOfDirectory(atPath: dir.sub("one/src"))
        #expect(entries == ["d2"])
        #expect(try TestFiles.digest(dir.sub("src/d2")) == TestFiles.digest(dir.sub("one/src/d2")))

        try TestFiles.write(dir.sub("out/src/d0/e0/f0.txt"), Data("local edit".utf8))
        do {
            _ = try await restorer.run(snap, options: RestoreOptions(target: dir.sub("out")))
            Issue.record("restore over existing files did not fail")
        } catch let error as SnapshotError {
            #expect(error.code == .conflict)
            #expect(error.description.contains("already exist"))
            #expect(error.description.contains("skip or overwrite"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.sub("out/src")) == ["d0"])

        let skipped = try await restorer.run(snap, options: RestoreOptions(target: dir.sub("out"), existing: .skip))
        #expect(skipped.skipped == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("out/src/d0/e0/f0.txt"))) == Data("local edit".utf8))

        let overwritten = try await restorer.run(snap, options: RestoreOptions(target: dir.sub("out"), existing: .overwrite))
        #expect(overwritten.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))

        let outside = await #expect(throws: SnapshotError.self) {
            _ = try await restorer.run(snap, options: RestoreOptions(target: dir.sub("x"), include: ["/src/nope"]))
        }
        #expect(outside?.code == .notFound)
    }

    @Test("a full disk stops a restore with a no-space error (not a bad request), leaving no half-written file")
    func fullDisk() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 40)
        try TestFiles.write(dir.sub("src/small.txt"), Data("small".utf8))
        try TestFiles.write(dir.sub("src/big.bin"), rng.bytes(4 << 20))
        let repo = try await newRepository()
        let snap = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        // A real small file system: 1 MiB of tmpfs (the tests run as root, as the local cluster needs).
        try FileManager.default.createDirectory(atPath: dir.sub("full"), withIntermediateDirectories: true)
        let mount = try await ChildProcess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.sub("full")])
        try #require(mount.status == 0, "mount tmpfs: \(mount.stderr)")
        defer { _ = try? ChildProcess.runBlocking(["umount", dir.sub("full")]) }

        let error = await caught(SnapshotError.self) {
            _ = try await Restorer(repository: repo).run(snap, options: RestoreOptions(target: dir.sub("full/out")))
        }
        #expect(error?.code == .noSpace, "\(String(describing: error))")
        #expect(error?.description.contains("no space left") == true)
        #expect(error?.isTransient == false)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("full/out/src/big.bin")), "the file that did not fit is removed")
    }

    @Test("a damaged pack: check names the affected files, and every other file still restores")
    func damagedPackIsolated() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 21)
        // Two files far larger than a pack, so each owns separate packs.
        try TestFiles.write(dir.sub("src/a.bin"), rng.bytes(6 << 20))
        try TestFiles.write(dir.sub("src/b.bin"), rng.bytes(6 << 20))
        try TestFiles.write(dir.sub("src/small.txt"), rng.text(1000))
        let store = MemoryBlobStore()
        let repo = try await newRepository(store, packSize: 1 << 20)
        let snap = try await Archiver(repository: repo, progress: BackupProgress())
            .run(BackupOptions(paths: [dir.sub("src")], fileConcurrency: 1)).snapshot
        try await repo.loadIndex()
        let aTree = try await repo.loadTree(try await repo.loadTree(snap.tree).nodes[0].subtree!)
        let aBlob = try #require(aTree.node(named: "a.bin")?.content?.first)
        let pack = try #require(repo.location(of: aBlob)).pack
        store.tamper(BlobHandle(.data, pack.hex)) { $0[10] ^= 0x55 }

        let report = try await repo.check(readData: true)
        #expect(report.damagedPacks == [pack])
        let damage = await SnapshotWalker(repository: repo).damage([snap], damaged: report.damagedBlobs)
        #expect(damage.map(\.path) == ["/src/a.bin"])
        #expect(damage.first?.snapshot == snap.id)

        let restored = try await Restorer(repository: repo).run(snap, options: RestoreOptions(target: dir.sub("out")))
        #expect(restored.errors.count == 1)
        #expect(restored.errors.first?.contains("/src/a.bin") == true)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("out/src/a.bin")))   // no half-written file
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.sub("out/src")).filter { $0.hasPrefix(".cairn") }
        #expect(leftovers.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("out/src/b.bin")))
            == Data(contentsOf: URL(fileURLWithPath: dir.sub("src/b.bin"))))
    }

    @Test("check walks a directory's subtrees a pack range at a time (a few reads for hundreds of directories); a damaged tree fails only its directory")
    func checkWalkByPack() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for i in 0..<600 {
            try TestFiles.write(dir.sub("src/d\(i % 20)/e\(i % 300)/f\(i).txt"), Data("file \(i)".utf8))
        }
        let memory = MemoryBlobStore()
        // Reads counted as object storage makes them (blobs up to a MiB apart in one request); a file system
        // reads only blobs that lie back to back together.
        let store = FaultyBlobStore(memory, readGap: 1 << 20)
        let repo = try await newRepository(store)
        let snap = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        let before = store.calls(.load, .data)
        let report = try await repo.check(readData: false)
        #expect(report.errors.isEmpty)
        #expect(await SnapshotWalker(repository: repo).damage([snap], damaged: []).isEmpty)
        // 322 trees (the root, src, 20 + 300 directories): one read for each directory's subtrees, not one a tree.
        let reads = store.calls(.load, .data) - before
        #expect(reads <= 30, "\(reads) reads for 322 trees")

        // One directory's tree damaged: that directory is reported, nothing else.
        let src = try await repo.loadTree(try #require(try await repo.loadTree(snap.tree).node(named: "src")?.subtree))
        let d3 = try await repo.loadTree(try #require(src.node(named: "d3")?.subtree))
        let e63 = try #require(d3.node(named: "e63")?.subtree)
        let (pack, location) = try #require(repo.location(of: e63))
        memory.tamper(BlobHandle(.data, pack.hex)) { $0[Int(location.offset) + 5] ^= 0x55 }
        let damage = await SnapshotWalker(repository: repo).damage([snap], damaged: [])
        #expect(damage.map(\.path) == ["/src/d3/e63"], "\(damage)")
        #expect(damage.first?.reason.contains("cannot be read") == true)
    }

    @Test("small files are restored a pack range at a time (a few reads for thousands of files); a damaged blob fails only its file")
    func smallFilesByPack() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 5)
        for i in 0..<3000 {
            try TestFiles.write(dir.sub("src/d\(i % 30)/f\(i).txt"), rng.text(100 + i % 1900))
        }
        let memory = MemoryBlobStore()
        // Reads counted as object storage makes them (blobs up to a MiB apart in one request); a file system
        // reads only blobs that lie back to back together.
        let store = FaultyBlobStore(memory, readGap: 1 << 20)
        let repo = try await newRepository(store)
        let snap = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        try await repo.loadIndex()
        let packs = repo.index.packs.count
        let before = store.calls(.load, .data)
        let report = try await Restorer(repository: repo).run(snap, options: RestoreOptions(target: dir.sub("out")))
        #expect(report.errors.isEmpty && report.files == 3000)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        let reads = store.calls(.load, .data) - before
        // A read per tree (32 directories), and for the files about one per batch (≤ 512 files) and pack it
        // touches; never one per file.
        #expect(reads <= 32 + packs + 3000 / Restorer.batchFiles + 2, "\(reads) reads of \(packs) packs for 3,000 files")

        // One blob damaged: its file is reported and not written; every other file comes back.
        let victim = dir.sub("src/d7/f1507.txt")
        let src = try await repo.loadTree(try #require(try await repo.loadTree(snap.tree).node(named: "src")?.subtree))
        let d7 = try await repo.loadTree(try #require(src.node(named: "d7")?.subtree))
        let blob = try #require(d7.node(named: "f1507.txt")?.content?.first)
        let (pack, location) = try #require(repo.location(of: blob))
        memory.tamper(BlobHandle(.data, pack.hex)) { $0[Int(location.offset) + 20] ^= 0x55 }
        let damaged = try await Restorer(repository: repo).run(snap, options: RestoreOptions(target: dir.sub("again")))
        #expect(damaged.errors.count == 1 && damaged.errors.first?.contains("/src/d7/f1507.txt") == true, "\(damaged.errors)")
        #expect(damaged.files == 2999)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("again/src/d7/f1507.txt")))
        try FileManager.default.removeItem(atPath: victim)
        #expect(try TestFiles.digest(dir.sub("src"), includeTimes: false) == TestFiles.digest(dir.sub("again/src"), includeTimes: false))
    }

    @Test("an interrupted backup leaves a valid repository and the next backup reuses what it wrote")
    func interruptedBackupReuse() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 5)
        try TestFiles.write(dir.sub("src/data.bin"), rng.bytes(8 << 20))
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let repo = try await newRepository(faulty, packSize: 1 << 20)
        // Data and index are written; the snapshot write fails (as if the process died just before it).
        faulty.inject(.init(kinds: [.snapshots], operations: [.save],
                            error: StorageError(.unavailable, "connection lost", location: "snapshots")))
        await #expect(throws: RepositoryError.self) {
            _ = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")]))
        }
        #expect(try await repo.listFiles(.snapshots).isEmpty)
        #expect(try await repo.check(readData: true).errors.isEmpty)
        faulty.clear()
        let reopened = try await Repository.open(store: faulty, password: "pw")
        let retry = try await Archiver(repository: reopened).run(BackupOptions(paths: [dir.sub("src")]))
        let s = try #require(retry.snapshot.summary)
        #expect(s.bytesRead == 8 << 20)
        #expect(s.bytesAdded < 4096, "re-added \(s.bytesAdded) bytes")
    }

    @Test("two backups into one repository at the same time both succeed")
    func concurrentBackups() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("a"), seed: 1)
        try TestFiles.makeTree(at: dir.sub("b"), seed: 2)
        let store = MemoryBlobStore()
        _ = try await newRepository(store)
        async let one = Archiver(repository: Repository.open(store: store, password: "pw")).run(BackupOptions(paths: [dir.sub("a")]))
        async let two = Archiver(repository: Repository.open(store: store, password: "pw")).run(BackupOptions(paths: [dir.sub("b")]))
        let (r1, r2) = try await (one, two)
        let repo = try await Repository.open(store: store, password: "pw")
        #expect(try await repo.check(readData: true).errors.isEmpty)
        for (result, name) in [(r1, "a"), (r2, "b")] {
            _ = try await Restorer(repository: repo).run(result.snapshot, options: RestoreOptions(target: dir.sub("out-\(name)")))
            #expect(try TestFiles.digest(dir.sub(name)) == TestFiles.digest(dir.sub("out-\(name)/\(name)")))
        }
    }
}

@Suite("Retention")
struct ForgetPolicyTests {
    func snapshots(_ dates: [String]) -> [SnapshotManifest] {
        dates.enumerated().map { i, text in
            var s = SnapshotManifest(time: try! Date(text, strategy: .iso8601), hostname: "h", username: "u", paths: ["/p"],
                                     tree: BlobID(w0: 0, w1: 0, w2: 0, w3: UInt64(i)), tags: [], program: "t")
            s.id = String(format: "%064d", i)
            return s
        }
    }

    @Test("keep-last, daily, weekly, monthly and yearly keep the newest of each period")
    func gfs() {
        let all = snapshots([
            "2026-01-01T10:00:00Z", "2026-01-01T22:00:00Z", "2026-01-02T10:00:00Z", "2026-01-09T10:00:00Z",
            "2026-02-15T10:00:00Z", "2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z", "2025-06-01T10:00:00Z",
        ])
        let daily = ForgetPolicy(daily: 3).apply(to: all)
        let keptDaily = Set(daily.filter(\.keep).map { $0.snapshot.time.formatted(.iso8601) })
        #expect(keptDaily == ["2026-03-01T10:00:00Z", "2026-02-15T10:00:00Z", "2026-01-09T10:00:00Z"])

        let mixed = ForgetPolicy(last: 1, monthly: 3, yearly: 2).apply(to: all)
        let kept = Set(mixed.filter(\.keep).map { $0.snapshot.time.formatted(.iso8601) })
        #expect(kept == ["2026-03-01T10:00:00Z", "2026-02-15T10:00:00Z", "2026-01-09T10:00:00Z", "2025-06-01T10:00:00Z"])
        let reasons = mixed.first { $0.snapshot.time.formatted(.iso8601) == "2026-03-01T10:00:00Z" }?.reasons
        #expect(reasons == ["last", "monthly", "yearly"])
        #expect(mixed.filter { !$0.keep }.count == 4)
    }

    @Test("an empty policy keeps nothing, so the CLI refuses to run without one")
    func emptyPolicy() {
        #expect(ForgetPolicy().isEmpty)
        #expect(ForgetPolicy().apply(to: snapshots(["2026-01-01T00:00:00Z"])).allSatisfy { !$0.keep })
    }
}
