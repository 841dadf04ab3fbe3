import Foundation
@testable import Repository
import S3Storage
import Snapshot
import Storage
import StorageTesting
import Testing
import TestSupport

@Suite("Copies into S3 through faults")
struct S3CopyTests {
    @Test("an export whose S3 destination goes away midway fails with the cause and shows nothing there; through 5% faults the next run resumes and completes")
    func exportThroughFaults() async throws {
        _ = testKDF
        let moto = try await MotoServer.shared()
        let bucket = try await moto.makeBucket()
        let proxy = try FaultyHTTPProxy(targetPort: moto.port, rates: FaultyHTTPProxy.Rates(), seed: 5)
        defer { proxy.stop() }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 17)
        for i in 0..<12 { try TestFiles.write(dir.sub("src/f\(i)"), rng.bytes(1_000_000)) }
        var config = RepositoryConfig.new()
        config.packSize = 1 << 20
        let source = try await Repository.initialize(store: MemoryBlobStore(), password: "pw", config: config)
        let snapshot = try await Archiver(repository: source).run(BackupOptions(paths: [dir.sub("src")])).snapshot

        // A short retry budget for the run that loses its destination (the default waits minutes before giving up).
        let failing = try await S3Fixture.store(bucket: bucket, endpoint: proxy.endpoint, retryBudget: .seconds(8))
        let flaky = try await S3Fixture.store(bucket: bucket, endpoint: proxy.endpoint)
        let direct = try await S3Fixture.store(bucket: bucket)
        let destination = try await Repository.initialize(store: failing, password: "dst", config: config, pairedWith: source)
        // The destination's endpoint stops answering (every connection reset) once 3 MB have been sent.
        let error = await #expect(throws: RepositoryError.self) {
            _ = try await SnapshotCopier(source: source, destination: destination).copy([snapshot]) { progress in
                if progress.transferredBytes > 3_000_000 { proxy.setRates(FaultyHTTPProxy.Rates(reset: 1.0)) }
            }
        }
        #expect(error?.code == .storage, "\(String(describing: error))")
        #expect(error?.storage?.code == .unavailable, "\(String(describing: error))")
        // Nothing partial is visible: either no snapshot, or a whole one — when the connections began to fail
        // while the snapshot itself was being written, the server may have stored it and lost only the answer
        // (the proxy resets half of the connections after forwarding the request); the check below reads it all.
        let visible = try await direct.list(.snapshots).count
        #expect(visible <= 1)

        // Back, with 5% of every fault: the next run sends the rest and the copy is whole.
        proxy.setRates(.each(0.05))
        let reopened = try await Repository.open(store: flaky, password: "dst")
        let resumed = try await SnapshotCopier(source: source, destination: reopened).copy([snapshot])
        #expect(resumed.copied.map(\.existed) == [visible == 1])
        #expect(resumed.progress.transferredBytes < 11_000_000, "sent \(resumed.progress.transferredBytes) again")
        let checked = try await Repository.open(store: direct, password: "dst")
        let report = try await checked.check(readData: true)
        #expect(report.errors.isEmpty, "\(report.errors)")
        let copy = try await SnapshotFiles.load(resumed.copied[0].copy, from: checked)
        let restored = try await Restorer(repository: checked).run(copy, options: RestoreOptions(target: dir.sub("out")))
        #expect(restored.errors.isEmpty)
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
    }
}
