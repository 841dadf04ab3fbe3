import Foundation
import Repository
@testable import S3Storage
import Snapshot
import Storage
import StorageTesting
import Testing

let testKDF: Void = { setenv("CAIRN_KDF_N", "1024", 1) }()

/// Stores against the shared moto_server, directly or through a fault proxy.
enum S3Fixture {
    static func credentials(_ moto: MotoServer) -> S3Credentials {
        S3Credentials(accessKeyID: moto.accessKeyID, secretAccessKey: moto.secretAccessKey)
    }

    static func options(multipart: Bool = true, retryBudget: Duration = .seconds(180)) -> S3BlobStore.Options {
        var options = S3BlobStore.Options()
        // Small parts so the conformance suite's 11 MiB object goes up in three parts (5 MiB is S3's minimum).
        options.multipartThreshold = 6 << 20
        options.partSize = 5 << 20
        options.listPageSize = 100
        // Through the fault relay, on a loaded 2-core machine running the cluster suites beside this one, a
        // single request was once seen taking ~100 s before its connection closed: leave room to retry it.
        options.retryBudget = retryBudget
        return options
    }

    static func store(bucket: String, prefix: String = "repo", endpoint: String? = nil, protection: TimeInterval? = nil,
                      credentials: S3Credentials? = nil, region: String = "us-east-1", caFile: String? = nil,
                      moto: MotoServer? = nil, retryBudget: Duration = .seconds(180)) async throws -> S3BlobStore {
        let moto = if let moto { moto } else { try await MotoServer.shared() }
        let location = try S3Location(url: "s3://\(bucket)/\(prefix)", endpoint: endpoint ?? moto.endpoint, region: region,
                                      caFile: caFile, protectionPeriod: protection, environment: [:])
        return try await S3BlobStore.open(location, credentials: credentials ?? Self.credentials(moto),
                                          options: options(retryBudget: retryBudget))
    }
}

@Suite("S3 backend against moto_server")
struct S3StoreTests {
    @Test("the S3 store keeps the BlobStore contract (multipart, list pages, create-only included)")
    func conformance() async throws {
        let moto = try await MotoServer.shared()
        let store = try await S3Fixture.store(bucket: try moto.makeBucket())
        try await BlobStoreConformance(store).run()
    }

    @Test("the contract holds through a relay that throws SlowDown, 500s, resets, truncation and delays at 10% each")
    func conformanceThroughFaults() async throws {
        let moto = try await MotoServer.shared()
        let proxy = try FaultyHTTPProxy(targetPort: moto.port, rates: .each(0.10), seed: 7)
        defer { proxy.stop() }
        let store = try await S3Fixture.store(bucket: try moto.makeBucket(), endpoint: proxy.endpoint)
        try await BlobStoreConformance(store).run()
        let injected = proxy.injected
        for fault in ["slowDown", "serverError", "truncate", "delay"] {
            #expect((injected[fault] ?? 0) > 0, "no \(fault) was injected: \(injected)")
        }
        #expect((injected["resetBeforeForwarding"] ?? 0) + (injected["resetAfterForwarding"] ?? 0) > 0)
        #expect(await store.slowDowns > 0)
    }

    @Test("backup → check --read-data → restore through 5% faults: everything completes, nothing is lost; awscli sees the objects")
    func repositoryThroughFaults() async throws {
        _ = testKDF
        let moto = try await MotoServer.shared()
        let bucket = try await moto.makeBucket()
        let proxy = try FaultyHTTPProxy(targetPort: moto.port, rates: .each(0.05), seed: 11)
        defer { proxy.stop() }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"), seed: 3, files: 60, largeFileBytes: 9 << 20)
        let store = try await S3Fixture.store(bucket: bucket, endpoint: proxy.endpoint)
        var config = RepositoryConfig.new()
        config.packSize = 4 << 20
        let repo = try await Repository.initialize(store: store, password: "pw", config: config)
        let first = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")]))
        #expect(first.errors.isEmpty)
        try TestFiles.write(dir.sub("src/new-file"), Data(repeating: 7, count: 300_000))
        let second = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")], parent: first.snapshot))
        let check = try await repo.check(readData: true)
        #expect(check.errors.isEmpty, "\(check.errors)")
        let reopened = try await Repository.open(store: store, password: "pw")
        let report = try await Restorer(repository: reopened).run(second.snapshot, options: RestoreOptions(target: dir.sub("out")))
        #expect(report.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        #expect((proxy.injected["requests"] ?? 0) > 50)
        #expect(proxy.injected.keys.count > 3, "\(proxy.injected)")

        // An independent client sees what Cairn wrote, in the documented layout.
        let listing = try await moto.aws(["s3", "ls", "--recursive", "s3://\(bucket)/repo/"])
        #expect(listing.status == 0, "\(listing.stderr)")
        for path in ["repo/config", "repo/format", "repo/keys/", "repo/snapshots/", "repo/index/", "repo/data/"] {
            #expect(listing.stdout.contains(path), "aws s3 ls does not show \(path)")
        }
        let packs = try await store.list(.data)
        #expect(packs.count == listing.stdout.components(separatedBy: "repo/data/").count - 1)
    }

    @Test("a long range read in pieces comes through a relay that cuts every answer short: each retry asks only for what is missing")
    func streamedRangeResumes() async throws {
        let moto = try await MotoServer.shared()
        let bucket = try await moto.makeBucket()
        let proxy = try FaultyHTTPProxy(targetPort: moto.port, rates: FaultyHTTPProxy.Rates(), seed: 5)
        defer { proxy.stop() }
        let store = try await S3Fixture.store(bucket: bucket)
        var generator = SystemRandomNumberGenerator()
        let payload = Data((0..<(5 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let handle = BlobHandle(.data, String(repeating: "5e", count: 32))
        try await store.save(handle, data: payload)
        let flaky = try await S3Fixture.store(bucket: bucket, endpoint: proxy.endpoint)
        // Every answer loses its second half (down to 16 bytes): only a read that resumes where it stopped ends.
        proxy.setRates(FaultyHTTPProxy.Rates(truncate: 1))
        var pieces = Data()
        try await flaky.load(handle, range: 1000..<payload.count) { pieces.append($0) }
        #expect(pieces == payload.subdata(in: 1000..<payload.count))
        #expect((proxy.injected["truncate"] ?? 0) >= 10, "\(proxy.injected)")
    }

    @Test("a restore from S3 reads each pack once, however large the files and however many of them share it")
    func restoreRequests() async throws {
        _ = testKDF
        let moto = try await MotoServer.shared()
        let bucket = try await moto.makeBucket()
        let proxy = try FaultyHTTPProxy(targetPort: moto.port, rates: FaultyHTTPProxy.Rates(), seed: 7)
        defer { proxy.stop() }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 12)
        // Four files backed up at once: their blobs are interleaved in the packs, so a restore file by file
        // would read most packs several times.
        for name in ["a", "b", "c", "d"] { try TestFiles.write(dir.sub("src/\(name).bin"), rng.bytes(16 << 20)) }
        let store = try await S3Fixture.store(bucket: bucket, endpoint: proxy.endpoint)
        var config = RepositoryConfig.new()
        config.packSize = 8 << 20
        let repo = try await Repository.initialize(store: store, password: "pw", config: config)
        let backup = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("src")], fileConcurrency: 4))
        let packs = try await store.list(.data).count
        let reopened = try await Repository.open(store: store, password: "pw")
        try await reopened.loadIndex()
        let files = try await reopened.loadTree(try await reopened.loadTree(backup.snapshot.tree).nodes[0].subtree!).nodes
        var owners: [BlobID: Set<String>] = [:]
        for file in files { for id in file.content ?? [] { owners[reopened.location(of: id)!.pack, default: []].insert(file.name) } }
        let shared = owners.values.filter { $0.count > 1 }.count
        try #require(shared >= 2, "packs shared by several files: \(shared) of \(packs)")

        let before = proxy.requestLines.count
        let report = try await Restorer(repository: reopened).run(backup.snapshot, options: RestoreOptions(target: dir.sub("out")))
        let reads = proxy.requestLines.dropFirst(before).filter { $0.hasPrefix("GET ") && $0.contains("/repo/data/") }
        #expect(report.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        // One GET per pack, one for each of the two directories' trees: read file by file, the \(shared) shared
        // packs would be read once for every file they hold.
        #expect(packs >= 8 && reads.count <= packs + 2, "\(reads.count) reads of packs for \(packs) packs (\(shared) shared)")
    }

    @Test("a create whose first attempt landed but whose answer was lost succeeds on retry; a real duplicate is refused")
    func createOnlyRetry() async throws {
        let moto = try await MotoServer.shared()
        let proxy = try FaultyHTTPProxy(targetPort: moto.port, rates: FaultyHTTPProxy.Rates(), seed: 3)
        defer { proxy.stop() }
        let bucket = try await moto.makeBucket()
        let store = try await S3Fixture.store(bucket: bucket)
        let flaky = try await S3Fixture.store(bucket: bucket, endpoint: proxy.endpoint)
        // Half the answers are errors after the request was executed; a retried create then sees 412 and
        // must recognise its own object.
        proxy.setRates(FaultyHTTPProxy.Rates(serverError: 0.5))
        try await flaky.save(BlobHandle(.keys, "once"), data: Data("mine".utf8), options: SaveOptions(createOnly: true))
        #expect(try await store.load(BlobHandle(.keys, "once")) == Data("mine".utf8))
        await #expect(throws: StorageError.self) {
            try await store.save(BlobHandle(.keys, "once"), data: Data("theirs".utf8), options: SaveOptions(createOnly: true))
        }
    }

    @Test("bad input is a clear error: wrong secret, unknown key, missing bucket, wrong region, an endpoint that is not S3")
    func badInput() async throws {
        let plain = try await MotoServer.shared()
        let moto = try await MotoServer.shared(authenticated: true)
        let bucket = try await moto.makeBucket()
        func failure(_ open: () async throws -> S3BlobStore) async -> StorageError? {
            await caught(StorageError.self) { _ = try await open() }
        }
        _ = try await S3Fixture.store(bucket: bucket, moto: moto)
        let wrongSecret = await failure {
            try await S3Fixture.store(bucket: bucket, credentials: S3Credentials(accessKeyID: moto.accessKeyID,
                                                                               secretAccessKey: "wrong-secret-value"), moto: moto)
        }
        #expect(wrongSecret?.code == .permissionDenied)
        #expect(wrongSecret?.description.contains("secret access key is wrong") == true, "\(String(describing: wrongSecret))")
        #expect(wrongSecret?.description.contains("wrong-secret-value") == false)
        let unknownKey = await failure {
            try await S3Fixture.store(bucket: bucket, credentials: S3Credentials(accessKeyID: "AKIAUNKNOWN0000000", secretAccessKey: "x"),
                                      moto: moto)
        }
        #expect(unknownKey?.code == .permissionDenied)
        #expect(unknownKey?.description.contains("access key is not known") == true, "\(String(describing: unknownKey))")
        let missing = await failure {
            try await S3Fixture.store(bucket: "no-such-bucket-\(UUID().uuidString.prefix(6).lowercased())", moto: plain)
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.description.contains("does not exist") == true, "\(String(describing: missing))")
        let euro = try await plain.makeBucket("euro", region: "eu-west-1")
        let wrongRegion = await failure { try await S3Fixture.store(bucket: euro, region: "us-east-1", moto: plain) }
        #expect(wrongRegion?.code == .invalidArgument)
        #expect(wrongRegion?.description.contains("is in region 'eu-west-1'") == true, "\(String(describing: wrongRegion))")
        _ = try await S3Fixture.store(bucket: euro, region: "eu-west-1", moto: plain)
        let notS3 = try FaultyHTTPProxy(targetPort: plain.port, rates: FaultyHTTPProxy.Rates(notS3: true))
        defer { notS3.stop() }
        let web = await failure { try await S3Fixture.store(bucket: bucket, endpoint: notS3.endpoint) }
        #expect(web?.code == .invalidArgument)
        #expect(web?.description.contains("does not answer like S3") == true, "\(String(describing: web))")
        let closedPort = try Loopback.freePort()
        let unreachable = await failure {
            var options = S3Fixture.options()
            options.retryBudget = .seconds(2)
            let location = try S3Location(url: "s3://\(bucket)/r", endpoint: "http://127.0.0.1:\(closedPort)", environment: [:])
            return try await S3BlobStore.open(location, credentials: S3Fixture.credentials(plain), options: options)
        }
        #expect(unreachable?.code == .unavailable)
        #expect(unreachable?.description.contains("giving up") == true)
    }

    @Test("TLS with a private CA: trusted with the CA file, a clear error without it")
    func customCA() async throws {
        let moto = try await MotoServer.shared(tls: true)
        let bucket = try await moto.makeBucket()
        let store = try await S3Fixture.store(bucket: bucket, caFile: moto.caFile, moto: moto)
        try await BlobStoreConformance(store).run()
        var options = S3Fixture.options()
        options.retryBudget = .seconds(30)
        let untrusted = await caught(StorageError.self) {
            let location = try S3Location(url: "s3://\(bucket)/repo", endpoint: moto.endpoint, environment: [:])
            _ = try await S3BlobStore.open(location, credentials: S3Fixture.credentials(moto), options: options)
        }
        #expect(untrusted?.code == .permissionDenied, "\(String(describing: untrusted))")
        #expect(untrusted?.description.contains("certificate") == true, "\(String(describing: untrusted))")
        #expect(untrusted?.description.contains("the CA certificate that signed it") == true)
        #expect(untrusted?.description.contains("--") == false, "library messages name settings, not CLI flags")
    }

    @Test("with a protection period objects carry COMPLIANCE retention, are reported protected, and cannot be removed")
    func objectLock() async throws {
        let moto = try await MotoServer.shared()
        let plain = try await moto.makeBucket()
        let refused = await caught(StorageError.self) { _ = try await S3Fixture.store(bucket: plain, protection: 3600) }
        #expect(refused?.description.contains("object lock") == true)
        let bucket = try await moto.makeBucket("locked", objectLock: true)
        let store = try await S3Fixture.store(bucket: bucket, protection: 3600)
        try await store.save(BlobHandle(.data, "aa11"), data: Data("pack".utf8))
        try await store.save(BlobHandle(.locks, "l1"), data: Data("lock".utf8))
        let head = try await moto.aws(["s3api", "head-object", "--bucket", bucket, "--key", "repo/data/aa/aa11"])
        #expect(head.stdout.contains("\"ObjectLockMode\": \"COMPLIANCE\""), "\(head.stdout)")
        let protected = try await store.protectedObjects(.data)
        #expect(protected["aa11"].map { $0 > Date().addingTimeInterval(3500) } == true)
        await #expect(throws: StorageError.self) { try await store.remove(BlobHandle(.data, "aa11")) }
        #expect(try await store.exists(BlobHandle(.data, "aa11")))
        // Lock files are never retained: they come and go with every command.
        #expect(try await store.protectedObjects(.locks).isEmpty)
        try await store.remove(BlobHandle(.locks, "l1"))
    }
}
