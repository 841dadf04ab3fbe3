import Foundation
@testable import Repository
@testable import Snapshot
import Storage
import StorageTesting
import TestSupport
import Testing

@Suite("Copying snapshots between repositories")
struct SnapshotCopyTests {
    /// A source with one backup of `dir/src` (≈ 6 MiB of random files in a few directories).
    func source(_ dir: TemporaryDirectory) async throws -> (Repository, SnapshotManifest) {
        var rng = SeededRandom(seed: 7)
        for i in 0..<12 { try TestFiles.write(dir.sub("src/d\(i % 3)/f\(i)"), rng.bytes(500_000)) }
        let repo = try await newRepository()
        let first = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        return (repo, first)
    }

    func paired(with source: Repository, store: any BlobStore = MemoryBlobStore(), password: String = "other") async throws -> Repository {
        _ = testKDF
        var config = RepositoryConfig.new()
        config.packSize = 1 << 20
        return try await Repository.initialize(store: store, password: password, config: config, pairedWith: source)
    }

    @Test("a copy sends everything once, then only what changed; it restores identically and opens only with its own password")
    func incremental() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (a, first) = try await source(dir)
        let bStore = MemoryBlobStore()
        let b = try await paired(with: a, store: bStore)
        let copier = try SnapshotCopier(source: a, destination: b)
        let full = try await copier.copy([first])
        #expect(full.copied.map(\.existed) == [false])
        #expect(full.progress.transferredBytes > 5_500_000)

        // 5% changed: one file of twelve rewritten.
        var rng = SeededRandom(seed: 99)
        try TestFiles.write(dir.sub("src/d1/f4"), rng.bytes(500_000))
        let second = try await Archiver(repository: a).run(BackupOptions(paths: [dir.sub("src")], parent: first)).snapshot
        let next = try await copier.copy([first, second])
        #expect(next.copied.map(\.existed) == [true, false])
        #expect(next.progress.readBytes < 700_000, "read \(next.progress.readBytes)")
        #expect(next.progress.transferredBytes < 700_000, "sent \(next.progress.transferredBytes)")
        #expect(next.copied[1].original == second.id)

        // The copy restores to the same files, read with the destination's own password only.
        let reopened = try await Repository.open(store: bStore, password: "other")
        _ = try await reopened.loadIndex()
        let copy = try await SnapshotFiles.load(next.copied[1].copy, from: reopened)
        #expect(copy.original == second.id && copy.originalRepository == a.config.id)
        #expect(copy.parent == full.copied[0].copy)
        let report = try await Restorer(repository: reopened).run(copy, options: RestoreOptions(target: dir.sub("out")))
        #expect(report.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        await #expect(throws: RepositoryError.self) { _ = try await Repository.open(store: bStore, password: "pw") }
        // Re-encrypted: no sealed blob of the source appears in the destination's packs.
        let sourceSealed = try await a.loadSealedRun([first.tree][...]).first!
        for info in try await bStore.list(.data) {
            let pack = try await bStore.load(BlobHandle(.data, info.name))
            #expect(pack.range(of: sourceSealed.encoded.prefix(64)) == nil)
        }
    }

    @Test("a destination not created for copies is refused with what to do")
    func unpaired() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (a, _) = try await source(dir)
        let other = try await newRepository()
        let error = try #require(throws: RepositoryError.self) { try SnapshotCopier(source: a, destination: other) }
        #expect(error.code == .notPaired)
        #expect(error.message.contains("paired"))
    }

    @Test("a copy stopped by the destination's storage leaves no snapshot there, and the next one resumes")
    func interrupted() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 3)
        for i in 0..<10 { try TestFiles.write(dir.sub("src/f\(i)"), rng.bytes(1_000_000)) }
        var config = RepositoryConfig.new()
        config.packSize = 1 << 20
        _ = testKDF
        let a = try await Repository.initialize(store: MemoryBlobStore(), password: "pw", config: config)
        let snapshot = try await Archiver(repository: a).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let b = try await paired(with: a, store: faulty)
        // The destination fills up after four packs (≈ 4 MiB of the 10): by then they and their index are durable.
        faulty.inject(.init(kinds: [.data], operations: [.save], error: StorageError(.noSpace, "no space left on device", location: "test"),
                            after: 4))
        let copier = try SnapshotCopier(source: a, destination: b)
        let error = await #expect(throws: RepositoryError.self) { _ = try await copier.copy([snapshot]) }
        #expect(error?.storage?.code == .noSpace, "\(String(describing: error))")
        #expect(try await b.listFiles(.snapshots).isEmpty, "no partial snapshot")

        // Space again: the next copy sends the rest only, and the snapshot is whole.
        faulty.clear()
        let b2 = try await Repository.open(store: faulty, password: "other")
        let resumed = try await SnapshotCopier(source: a, destination: b2).copy([snapshot])
        #expect(resumed.copied.map(\.existed) == [false])
        #expect(resumed.progress.transferredBytes < 7_500_000, "sent \(resumed.progress.transferredBytes) again")
        #expect(resumed.progress.transferredBytes > 500_000)
        let check = try await b2.check(readData: true)
        #expect(check.errors.isEmpty, "\(check.errors)")
        let copy = try await SnapshotFiles.load(resumed.copied[0].copy, from: b2)
        let report = try await Restorer(repository: b2).run(copy, options: RestoreOptions(target: dir.sub("out")))
        #expect(report.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
    }

    @Test("a read-only destination refuses the copy with permission-denied and nothing appears there; writable again, the copy is whole")
    func readOnlyDestination() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 9)
        for i in 0..<3 { try TestFiles.write(dir.sub("src/f\(i)"), rng.bytes(400_000)) }
        let a = try await newRepository(MemoryBlobStore())
        let snapshot = try await Archiver(repository: a).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let b = try await paired(with: a, store: faulty)
        // The bucket policy turns read-only (every write refused) after the destination was made.
        faulty.inject(.init(kinds: [.data, .index, .snapshots, .locks], operations: [.save],
                            error: StorageError(.permissionDenied, "access denied", location: "test")))
        let error = await #expect(throws: RepositoryError.self) { _ = try await SnapshotCopier(source: a, destination: b).copy([snapshot]) }
        #expect(error?.storage?.code == .permissionDenied, "\(String(describing: error))")
        #expect(try await b.listFiles(.snapshots).isEmpty, "no partial snapshot")
        faulty.clear()
        let again = try await Repository.open(store: faulty, password: "other")
        let copied = try await SnapshotCopier(source: a, destination: again).copy([snapshot])
        #expect(copied.copied.map(\.existed) == [false])
        let check = try await again.check(readData: true)
        #expect(check.errors.isEmpty, "\(check.errors)")
    }

    @Test("damaged data in the source stops the copy with where it is, and nothing appears in the destination")
    func damagedSource() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 5)
        for i in 0..<4 { try TestFiles.write(dir.sub("src/f\(i)"), rng.bytes(300_000)) }
        let aStore = MemoryBlobStore()
        let a = try await newRepository(aStore)
        let snapshot = try await Archiver(repository: a).run(BackupOptions(paths: [dir.sub("src")])).snapshot
        let pack = try #require(try await aStore.list(.data).first)
        aStore.tamper(BlobHandle(.data, pack.name)) { $0[100] ^= 0x40 }
        let b = try await paired(with: a)
        let error = await #expect(throws: RepositoryError.self) { _ = try await SnapshotCopier(source: a, destination: b).copy([snapshot]) }
        #expect(error?.code == .corrupt)
        #expect(error?.location?.contains(pack.name) == true, "\(String(describing: error))")
        #expect(try await b.listFiles(.snapshots).isEmpty)
    }
}
