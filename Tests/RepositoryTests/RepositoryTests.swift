import Concurrent
import Foundation
@testable import Repository
import Storage
import StorageTesting
import Synchronization
import Testing

/// Cheap scrypt for tests; the cost is recorded per key, so these keys still open later.
let testKDF: Void = { setenv("CAIRN_KDF_N", "1024", 1) }()

func newRepository(_ store: any BlobStore = MemoryBlobStore(), password: String = "pw",
                   packSize: Int = 1 << 20) async throws -> Repository {
    _ = testKDF
    var config = RepositoryConfig.new()
    config.packSize = packSize
    return try await Repository.initialize(store: store, password: password, config: config)
}

@Suite("Repository: keys, blobs, locks, check, prune")
struct RepositoryTests {
    @Test("a storage failure keeps its code and transience: a full disk is not an unreachable server")
    func storageCauseKept() async throws {
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let repo = try await newRepository(faulty)
        let id = try await repo.saveFile(Data("x".utf8), kind: .snapshots).hex
        for (code, transient) in [(StorageError.Code.unavailable, true), (.noSpace, false), (.permissionDenied, false)] {
            faulty.clear()
            faulty.inject(.init(operations: [.load, .list], error: StorageError(code, "injected", location: "here")))
            let error = await caught(RepositoryError.self) { _ = try await repo.loadFile(.snapshots, name: id) }
            #expect(error?.code == .storage)
            #expect(error?.storage?.code == code)
            #expect(error?.isTransient == transient, "\(code)")
            let listing = await caught(RepositoryError.self) { _ = try await repo.listFiles(.snapshots) }
            #expect(listing?.storage?.code == code, "every path into storage maps the same way")
        }
        faulty.clear()
        faulty.inject(.init(operations: [.load], error: StorageError(.notFound, "gone", location: "here")))
        #expect(await caught(RepositoryError.self) { _ = try await repo.loadFile(.snapshots, name: id) }?.code == .missing)
    }

    @Test("a lock that cannot be renewed stops the operation it guards, and so does a lock someone removed")
    func lockLostCancels() async throws {
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let repo = try await newRepository(faulty)
        let timing = RepositoryLock.Timing(refreshInterval: 0.2, staleAfter: 1.0, retryInterval: 0.2)
        let cancelled = Mutex(false)
        let failing = await caught(RepositoryError.self) {
            _ = try await RepositoryLock.with(repo, exclusive: false, operation: "backup", timing: timing) {
                faulty.inject(.init(kinds: [.locks], operations: [.save],
                                    error: StorageError(.unavailable, "connection refused", location: "locks")))
                // Far longer than the test may take: only a cancellation ends it (the suite runs beside others
                // that keep both cooperative threads busy for a while, so no tighter bound is asserted).
                do { try await Task.sleep(for: .seconds(900)) } catch { cancelled.withLock { $0 = true }; throw error }
                return 0
            }
        }
        #expect(failing?.code == .lockLost, "\(String(describing: failing))")
        #expect(failing?.storage?.code == .unavailable)
        #expect(failing?.isTransient == true)
        #expect(cancelled.withLock { $0 }, "the guarded operation was cancelled")

        faulty.clear()
        let removed = await caught(RepositoryError.self) {
            _ = try await RepositoryLock.with(repo, exclusive: true, operation: "prune", timing: timing) {
                _ = try await RepositoryLock.removeAll(repo) { _ in true }   // `cairn repo unlock --all` elsewhere
                try await Task.sleep(for: .seconds(900))
                return 0
            }
        }
        #expect(removed?.code == .lockLost)
        #expect(removed?.description.contains("removed by someone else") == true)
        #expect(try await repo.listFiles(.locks).isEmpty, "nothing is left behind")

        // A healthy lock is renewed while its operation runs (its file is replaced), and released after.
        let renewals = try await RepositoryLock.with(repo, exclusive: false, operation: "backup", timing: timing) {
            let first = try await repo.listFiles(.locks)
            try await eventually("the lock to be renewed", timeout: .seconds(300)) {
                let now = try await repo.listFiles(.locks)
                return now.count == 1 && now != first
            }
            return first.count
        }
        #expect(renewals == 1)
        #expect(try await repo.listFiles(.locks).isEmpty)
    }

    @Test("opens with the right password and refuses a wrong one with a clear error")
    func passwords() async throws {
        let store = MemoryBlobStore()
        _ = try await newRepository(store, password: "correct horse")
        let opened = try await Repository.open(store: store, password: "correct horse")
        #expect(opened.config.chunker.seed.count == 32)
        do {
            _ = try await Repository.open(store: store, password: "battery staple")
            Issue.record("a wrong password opened the repository")
        } catch let error as RepositoryError {
            #expect(error.code == .wrongPassword)
            #expect(error.description.contains("wrong password"))
            #expect(!error.description.contains("battery"))
        }
    }

    @Test("two creations in one place at once make one repository: with one password both open it, with another the loser is told why; an interrupted creation is finished")
    func concurrentCreation() async throws {
        _ = testKDF
        // Both pass the check for an existing repository before either writes its config.
        let store = FaultyBlobStore(MemoryBlobStore())
        store.gather(.save, .config, count: 2)
        async let a = Repository.initialize(store: store, password: "pw")
        async let b = Repository.initialize(store: store, password: "pw")
        let (first, second) = try await (a, b)
        #expect(first.config.id == second.config.id)
        #expect(first.keyName == second.keyName)
        #expect(try await store.list(.keys).count == 1, "the loser's key file is removed")
        let reopened = try await Repository.open(store: store, password: "pw")
        #expect(reopened.config.id == first.config.id)

        // Another password: one creation wins, the other says what happened, and the winner's repository opens.
        let other = FaultyBlobStore(MemoryBlobStore())
        other.gather(.save, .config, count: 2)
        func create(_ password: String) async -> Result<Repository, any Error> {
            do { return .success(try await Repository.initialize(store: other, password: password)) } catch { return .failure(error) }
        }
        async let c = create("one")
        async let d = create("two")
        let results = await [c, d]
        let won = results.compactMap { try? $0.get() }
        #expect(won.count == 1)
        for case .failure(let error) in results {
            #expect("\(error)".contains("created here at the same moment with another password"), "\(error)")
        }
        let winner = results.firstIndex { (try? $0.get()) != nil } == 0 ? "one" : "two"
        #expect(try await Repository.open(store: other, password: winner).config.id == won.first?.config.id)

        // A creation interrupted before its format marker: the store holds no repository, and creating one
        // again with that password finishes it.
        let interrupted = FaultyBlobStore(MemoryBlobStore())
        interrupted.inject(.init(kinds: [.config], operations: [.save], error: StorageError(.unavailable, "gone", location: "test"), after: 1))
        await #expect(throws: RepositoryError.self) { _ = try await Repository.initialize(store: interrupted, password: "pw") }
        interrupted.clear()
        await #expect(throws: RepositoryError.self) { _ = try await Repository.open(store: interrupted, password: "pw") }
        let finished = try await Repository.initialize(store: interrupted, password: "pw")
        #expect(try await Repository.open(store: interrupted, password: "pw").config.id == finished.config.id)
    }

    @Test("a second password opens the same repository; removing it locks it out")
    func addAndRemoveKeys() async throws {
        let store = MemoryBlobStore()
        let repo = try await newRepository(store, password: "one")
        let second = try await repo.addKey(password: "two")
        let viaTwo = try await Repository.open(store: store, password: "two")
        #expect(viaTwo.config.id == repo.config.id)
        await #expect(throws: RepositoryError.self) { try await viaTwo.removeKey(name: second) }  // key in use
        try await repo.removeKey(name: second)
        await #expect(throws: RepositoryError.self) { _ = try await Repository.open(store: store, password: "two") }
        _ = try await Repository.open(store: store, password: "one")
        await #expect(throws: RepositoryError.self) { try await repo.removeKey(name: repo.keyName) }
    }

    @Test("a directory that is not a repository, or of a newer format, is named as such")
    func notARepositoryAndNewerFormat() async throws {
        let store = MemoryBlobStore()
        do {
            _ = try await Repository.open(store: store, password: "x")
            Issue.record("opened an empty store")
        } catch let error as RepositoryError {
            #expect(error.code == .notARepository)
        }
        _ = try await newRepository(store)
        try await store.save(BlobHandle(.config, "format"), data: Data(#"{"cairn":"repository","version":7}"#.utf8))
        do {
            _ = try await Repository.open(store: store, password: "pw")
            Issue.record("opened a newer format")
        } catch let error as RepositoryError {
            #expect(error.code == .newerFormat)
            #expect(error.description.contains("upgrade"))
        }
    }

    @Test("blobs round-trip, deduplicate, and survive a reopen")
    func blobs() async throws {
        let store = MemoryBlobStore()
        let repo = try await newRepository(store)
        var rng = SeededRandom(seed: 11)
        var ids: [BlobID: Data] = [:]
        for i in 0..<60 {
            let data = i % 2 == 0 ? rng.text(50_000) : rng.bytes(50_000)
            let (id, added) = try await repo.saveBlob(.data, data)
            #expect(added > 0)
            ids[id] = data
            #expect(try await repo.saveBlob(.data, data).added == 0)
        }
        try await repo.flush()
        let reopened = try await Repository.open(store: store, password: "pw")
        let loaded = try await reopened.loadIndex()
        #expect(loaded.blobs == 60)
        for (id, data) in ids { #expect(try await reopened.loadBlob(id) == data) }
    }

    @Test("blob IDs are keyed: the same content has different IDs in different repositories")
    func keyedIDs() async throws {
        let a = try await newRepository()
        let b = try await newRepository()
        let data = Data("same content".utf8)
        #expect(a.blobID(for: data) != b.blobID(for: data))
    }

    @Test("shared locks coexist; an exclusive lock excludes them; stale locks are removed")
    func locks() async throws {
        let repo = try await newRepository()
        let s1 = try await RepositoryLock.acquire(repo, exclusive: false, operation: "backup")
        let s2 = try await RepositoryLock.acquire(repo, exclusive: false, operation: "backup")
        do {
            _ = try await RepositoryLock.acquire(repo, exclusive: true, operation: "prune")
            Issue.record("exclusive lock taken while shared locks are held")
        } catch let error as RepositoryError {
            #expect(error.code == .locked)
            #expect(error.description.contains("backup"))
        }
        await s1.release()
        await s2.release()
        let ex = try await RepositoryLock.acquire(repo, exclusive: true, operation: "prune")
        await #expect(throws: RepositoryError.self) {
            _ = try await RepositoryLock.acquire(repo, exclusive: false, operation: "backup")
        }
        await ex.release()

        // A lock of a dead process on this host (same boot and PID namespace), and a lock not refreshed for an
        // hour, are stale.
        let dead = LockInfo(time: Date(), exclusive: true, hostname: ProcessInfo.processInfo.hostName, pid: 999_999,
                            username: "x", operation: "prune", processSpace: LockInfo.currentProcessSpace)
        let old = LockInfo(time: Date().addingTimeInterval(-3600), exclusive: true, hostname: "elsewhere", pid: 1,
                           username: "x", operation: "prune")
        #expect(LockInfo.currentProcessSpace?.contains("/pid:[") == true)
        for info in [dead, old] { _ = try await repo.saveFile(JSONEncoder.sorted.encode(info), kind: .locks) }
        let fresh = try await RepositoryLock.acquire(repo, exclusive: true, operation: "prune")
        await fresh.release()
        #expect(try await repo.listFiles(.locks).isEmpty)

        // The same host name but another PID namespace (a hostNetwork pod, or the host seen from one), or a lock
        // of an older version that does not say: its PID means nothing here, so it is live until it ages.
        let pod = LockInfo(time: Date(), exclusive: true, hostname: ProcessInfo.processInfo.hostName, pid: 999_999,
                           username: "x", operation: "prune", processSpace: "another-boot/pid:[4026531836]")
        var older = pod
        older.processSpace = nil
        for info in [pod, older] {
            #expect(!info.isStale())
            let name = try await repo.saveFile(JSONEncoder.sorted.encode(info), kind: .locks).hex
            let refused = await caught(RepositoryError.self) {
                _ = try await RepositoryLock.acquire(repo, exclusive: false, operation: "backup")
            }
            #expect(refused?.code == .locked)
            try await repo.removeFile(.locks, name: name)
        }
    }

    @Test("a pack that cannot be stored fails every backup that placed blobs in it, and its blobs are stored again later")
    func lostPackFailsEveryWriter() async throws {
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let repo = try await newRepository(faulty, packSize: 1 << 20)
        var rng = SeededRandom(seed: 9)
        // Backup A places a blob in the open pack and goes on with other work.
        let markA = repo.writeMark
        let fromA = rng.bytes(300_000)
        let idA = try await repo.saveBlob(.data, fromA).id
        // Backup B fills the same pack; storing it (in the background) fails, and B's next blob fails with it.
        faulty.inject(.init(kinds: [.data], operations: [.save], error: StorageError(.unavailable, "injected", location: "pack"),
                            remaining: 1))
        var failedB: RepositoryError?
        var savedB = 0
        let markB = try await repo.work { markB in
            for _ in 0..<40 where failedB == nil {
                failedB = await caught(RepositoryError.self) { try await repo.saveBlob(.data, rng.bytes(300_000)) }
                if failedB == nil { savedB += 1 }
                try await Task.sleep(for: .milliseconds(5))
            }
            return markB
        }
        #expect(failedB?.storage?.code == .unavailable, "the backup placing blobs meanwhile sees the storage error")
        #expect(savedB < 8, "it fails soon after the loss, not after storing everything")
        // A must not write a snapshot that refers to its blob.
        let flushA = await caught(RepositoryError.self) { try await repo.flush(since: markA) }
        #expect(flushA?.code == .storage)
        #expect(flushA?.isTransient == true, "the cause is kept: a controller runs the backup again")
        #expect(await caught(RepositoryError.self) { try await repo.flush(since: markB) } != nil)
        // The lost blob is not taken for stored: a later backup stores it again and can read it back.
        let markC = repo.writeMark
        #expect(!repo.hasBlob(idA))
        #expect(try await repo.saveBlob(.data, fromA).added > 0)
        try await repo.flush(since: markC)
        #expect(try await repo.loadBlob(idA) == fromA)
    }

    @Test("a write into a streamed pack that fails loses the pack for every backup that placed blobs in it")
    func failedPackWriteFailsEveryWriter() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let faulty = FaultyBlobStore(FileBlobStore(root: URL(fileURLWithPath: dir.sub("repo"))), streamsPacks: true)
        let repo = try await newRepository(faulty, packSize: 4 << 20)
        var rng = SeededRandom(seed: 11)
        // Backup A places a small blob: it waits in the pack for the blobs placed after it.
        let markA = repo.writeMark
        let fromA = rng.bytes(100_000)
        let idA = try await repo.saveBlob(.data, fromA).id
        #expect(faulty.calls(.write, .data) == 0, "a small blob is written with the ones after it")
        // Backup B's blobs complete the batch; writing it fails.
        let markB = repo.writeMark
        faulty.inject(.init(kinds: [.data], operations: [.write], error: StorageError(.noSpace, "injected", location: "pack"),
                            remaining: 1))
        var failedB: RepositoryError?
        for _ in 0..<12 where failedB == nil {
            failedB = await caught(RepositoryError.self) { try await repo.saveBlob(.data, rng.bytes(100_000)) }
        }
        #expect(failedB?.storage?.code == .noSpace, "the backup whose blob completed the batch sees the error")
        // A's blob never reached the pack: A must not write a snapshot that refers to it.
        #expect(await caught(RepositoryError.self) { try await repo.flush(since: markA) }?.code == .storage)
        #expect(await caught(RepositoryError.self) { try await repo.flush(since: markB) } != nil)
        let markC = repo.writeMark
        #expect(!repo.hasBlob(idA))
        #expect(try await repo.saveBlob(.data, fromA).added > 0)
        try await repo.flush(since: markC)
        let reopened = try await Repository.open(store: faulty.base, password: "pw")
        try await reopened.loadIndex()
        #expect(try await reopened.loadBlob(idA) == fromA)
        #expect(try await reopened.check(readData: true).errors.isEmpty)
    }

    @Test("blobs written into a streamed pack from many tasks at once all read back")
    func concurrentPackWrites() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let repo = try await newRepository(FileBlobStore(root: URL(fileURLWithPath: dir.sub("repo"))), packSize: 4 << 20)
        let blobs = (0..<200).map { i -> Data in var rng = SeededRandom(seed: UInt64(100 + i)); return rng.bytes(20_000 + i * 997) }
        let ids = try await Concurrent.map(blobs, width: 16) { try await repo.saveBlob(.data, $0).id }
        try await repo.flush(since: repo.writeMark)
        let reopened = try await Repository.open(store: repo.store, password: "pw")
        try await reopened.loadIndex()
        for (id, data) in zip(ids, blobs) { #expect(try await reopened.loadBlob(id) == data) }
        #expect(try await reopened.check(readData: true).errors.isEmpty)
    }

    @Test("readBlobs reads each blob once, one request per pack; a damaged blob, a cut pack or an unknown ID fails only those blobs; the receiver's own error is passed on")
    func readBlobsAsStored() async throws {
        let memory = MemoryBlobStore()
        let store = FaultyBlobStore(memory)
        // Packs under the 1 MiB pieces a memory store reads a range in, so a pack is one read.
        let repo = try await newRepository(store, packSize: 512 << 10)
        var rng = SeededRandom(seed: 41)
        var blobs: [BlobID: Data] = [:]
        var order: [BlobID] = []
        for _ in 0..<40 {
            let data = rng.bytes(60_000)
            let id = try await repo.saveBlob(.data, data).id
            blobs[id] = data
            order.append(id)
        }
        try await repo.flush()
        let packs = Set(order.map { repo.location(of: $0)!.pack })
        #expect(packs.count >= 3)
        let unknown = repo.blobID(for: Data("never stored".utf8))
        // Asked in a scrambled order, some twice, with one ID the index does not have.
        let asked: [BlobID] = Array(order.reversed()) + order.prefix(10) + [unknown]
        func read() async throws -> [BlobID: Result<Data, RepositoryError>] {
            var got: [BlobID: Result<Data, RepositoryError>] = [:]
            var handed = 0
            try await repo.readBlobs(asked, width: 3, { id, result in (id, result) }, collect: {
                handed += 1
                got[$0.0] = $0.1
            })
            #expect(handed == 41, "each blob handed once")
            return got
        }
        let before = store.calls(.load, .data)
        let clean = try await read()
        #expect(store.calls(.load, .data) - before == packs.count, "one read per pack")
        for id in order { #expect(try clean[id]?.get() == blobs[id]) }
        #expect(throws: RepositoryError.self) { try clean[unknown]?.get() }

        // A flipped byte in one blob; the pack of others cut in the middle of its fourth blob.
        let flipped = order[3]
        let (flippedPack, flippedAt) = try #require(repo.location(of: flipped))
        memory.tamper(BlobHandle(.data, flippedPack.hex)) { $0[Int(flippedAt.offset) + 30] ^= 0x55 }
        let byPack = Dictionary(grouping: order) { repo.location(of: $0)!.pack }
        let cutPack = try #require(byPack.filter { $0.key != flippedPack }.max { $0.value.count < $1.value.count }?.key)
        let inCut = byPack[cutPack]!.sorted { repo.location(of: $0)!.location.offset < repo.location(of: $1)!.location.offset }
        #expect(inCut.count >= 5)
        let cutAt = Int(repo.location(of: inCut[3])!.location.offset) + 100
        memory.tamper(BlobHandle(.data, cutPack.hex)) { $0 = $0.prefix(cutAt) }
        let damaged = try await read()
        let failed = Set(damaged.filter { if case .failure = $0.value { true } else { false } }.keys)
        #expect(failed == Set([flipped, unknown] + inCut[3...]), "only the damaged blob, those past the cut and the unknown one")
        for id in order where !failed.contains(id) { #expect(try damaged[id]?.get() == blobs[id]) }
        if case .failure(let error)? = damaged[inCut[4]] { #expect(error.code == .missing) }
        if case .failure(let error)? = damaged[flipped] { #expect(error.code == .corrupt) }

        // An error the receiver throws — even one that looks like a damaged blob — ends the read, as it is.
        let stop = RepositoryError(.missing, "the receiver's own")
        let seen = Mutex(0)
        let thrown = await #expect(throws: RepositoryError.self) {
            try await repo.readBlobs(order, { _, _ in
                if seen.withLock({ $0 += 1; return $0 }) == 2 { throw stop }
            }, collect: { _ in })
        }
        #expect(thrown?.message == "the receiver's own")
        #expect(seen.withLock { $0 } < order.count, "the read stopped")
    }

    @Test("check finds a flipped byte in a pack, a truncated pack, a deleted pack and a damaged index file")
    func checkFindsDamage() async throws {
        let store = MemoryBlobStore()
        let repo = try await newRepository(store, packSize: 1 << 20)
        var rng = SeededRandom(seed: 2)
        for _ in 0..<40 { try await repo.saveBlob(.data, rng.bytes(100_000)) }
        try await repo.flush()
        #expect(try await repo.check(readData: true).errors.isEmpty)
        let packs = try await store.list(.data).map(\.name).sorted()
        #expect(packs.count >= 3)

        store.tamper(BlobHandle(.data, packs[0])) { $0[100] ^= 0xff }
        store.tamper(BlobHandle(.data, packs[1])) { $0 = $0.prefix($0.count / 2) }
        try await store.remove(BlobHandle(.data, packs[2]))
        let structural = try await repo.check(readData: false)
        #expect(structural.damagedPacks.map(\.hex).sorted() == [packs[1], packs[2]].sorted())
        let full = try await repo.check(readData: true)
        #expect(Set(full.damagedPacks.map(\.hex)) == Set(packs[0...2]))
        #expect(!full.damagedBlobs.isEmpty)
        #expect(full.errors.contains { $0.contains(packs[0]) })

        let index = try await store.list(.index).map(\.name)[0]
        store.tamper(BlobHandle(.index, index)) { $0[$0.count - 5] ^= 0x10 }
        let afterIndex = try await repo.check(readData: false)
        #expect(afterIndex.errors.contains { $0.contains(index) })
    }

    @Test("prune deletes unused packs, repacks sparse ones, and keeps every used blob readable")
    func prune() async throws {
        let store = MemoryBlobStore()
        let repo = try await newRepository(store, packSize: 1 << 20)
        var rng = SeededRandom(seed: 4)
        var kept: [BlobID: Data] = [:]
        var dropped: [BlobID] = []
        for i in 0..<60 {
            let data = rng.bytes(90_000)
            let id = try await repo.saveBlob(.data, data).id
            // Keep every third blob of the first half; drop the whole second half.
            if i < 30 && i % 3 == 0 { kept[id] = data } else { dropped.append(id) }
        }
        try await repo.flush()
        let packsBefore = try await store.list(.data).count
        let report = try await repo.prune(used: Set(kept.keys))
        #expect(report.packsDeleted + report.packsRepacked > 0)
        #expect(report.blobsRemoved == dropped.count)
        let packsAfter = try await store.list(.data).count
        #expect(packsAfter < packsBefore)
        #expect(try await store.list(.index).count == 1)
        let reopened = try await Repository.open(store: store, password: "pw")
        try await reopened.loadIndex()
        for (id, data) in kept { #expect(try await reopened.loadBlob(id) == data) }
        for id in dropped { #expect(reopened.location(of: id) == nil) }
        #expect(try await reopened.check(readData: true).errors.isEmpty)
    }

    @Test("trees and file data go to packs of their own, when a backup saves them and when prune repacks them")
    func treesApart() async throws {
        let store = MemoryBlobStore()
        let repo = try await newRepository(store, packSize: 1 << 20)
        var rng = SeededRandom(seed: 7)
        var data: [BlobID: Data] = [:]
        var trees: [BlobID: Data] = [:]
        var order: [BlobID] = []
        // Saved interleaved, from several tasks at once, as a backup does.
        for i in 0..<60 {
            let bytes = rng.bytes(40_000)
            async let saved = repo.saveBlob(.data, bytes)
            if i % 2 == 0 {
                let tree = rng.bytes(30_000)
                let id = try await repo.saveBlob(.tree, tree).id
                trees[id] = tree
                order.append(id)
            }
            let id = try await saved.id
            data[id] = bytes
            order.append(id)
        }
        try await repo.flush()
        func kinds() async throws -> [Set<BlobType>] {
            try await repo.readIndexFiles().files.flatMap { $0.file.packs.map { Set($0.blobs.map(\.type)) } }
        }
        let before = try await kinds()
        #expect(before.allSatisfy { $0.count == 1 }, "\(before)")
        #expect(before.filter { $0 == [.tree] }.count >= 1)

        // Every other blob kept (trees and data): the packs are sparse and repacked, still one type to a pack.
        let used = Set(order.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
        let report = try await repo.prune(used: used, maxUnusedFraction: 0.3)
        #expect(report.packsRepacked > 0 && report.packsWritten >= 2)
        let after = try await kinds()
        #expect(after.allSatisfy { $0.count == 1 }, "\(after)")
        for id in used { #expect(try await repo.loadBlob(id) == (data[id] ?? trees[id])) }
        #expect(try await repo.check(readData: true).errors.isEmpty)
    }

    @Test("prune removes leftover packs that no index names")
    func pruneLeftovers() async throws {
        let store = MemoryBlobStore()
        let repo = try await newRepository(store)
        let id = try await repo.saveBlob(.data, Data("keep me".utf8)).id
        try await repo.flush()
        try await store.save(BlobHandle(.data, String(repeating: "ab", count: 32)), data: Data("leftover".utf8))
        #expect(try await repo.check(readData: false).unindexedPacks.count == 1)
        let report = try await repo.prune(used: [id])
        #expect(report.leftoverPacksDeleted == 1)
        #expect(try await repo.check(readData: true).unindexedPacks.isEmpty)
    }

    @Test("storage failures surface as repository errors naming the object, never the password")
    func storageFailure() async throws {
        let faulty = FaultyBlobStore(MemoryBlobStore())
        let repo = try await newRepository(faulty, password: "hunter2")
        faulty.inject(.init(kinds: [.data], operations: [.save],
                            error: StorageError(.noSpace, "write: no space left", location: "data/x")))
        var rng = SeededRandom(seed: 1)
        do {
            for _ in 0..<30 { try await repo.saveBlob(.data, rng.bytes(100_000)) }
            try await repo.flush()
            Issue.record("no error surfaced")
        } catch let error as RepositoryError {
            #expect(error.code == .storage)
            #expect(error.description.contains("no space"))
            #expect(!error.description.contains("hunter2"))
        }
    }
}
