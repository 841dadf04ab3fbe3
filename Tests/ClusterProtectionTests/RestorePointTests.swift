import Foundation
import Kube
import KubeTesting
import Protection
import Repository
import Snapshot
import Storage
import StorageTesting
import Testing

@Suite("Restore points in a repository", .serialized)
struct RestorePointTests {
    @Test("a captured application is written as one snapshot, listed per namespace, and read back object for object")
    func writeListRead() async throws {
        setenv("CAIRN_KDF_N", "1024", 1)
        let cluster = try LocalCluster.shared()
        let connection = try ClusterConnection.resolve(kubeconfig: cluster.kubeconfig, context: "cairn-admin")
        let ns = "rp-\(UUID().uuidString.prefix(6).lowercased())"
        let repository = try await Repository.initialize(store: MemoryBlobStore(), password: "pw")
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("volume"), seed: 2, files: 5, largeFileBytes: 100_000)
        let volume = try await Archiver(repository: repository).run(BackupOptions(paths: [dir.sub("volume")])).snapshot
        let volumeNode = try await repository.loadTree(volume.tree).nodes[0]

        try await KubeClient.with(connection) { client in
            _ = try await client.create(Namespace(name: ns))
            defer { _ = try? cluster.kubectlBlocking(["delete", "namespace", ns, "--wait=false"]) }
            var settings = ConfigMap(name: "settings", namespace: ns)
            settings.data = ["mode": "fast", "unicode": "ü"]
            _ = try await client.create(settings)
            var secret = Secret(name: "db", namespace: ns)
            secret.data = ["password": Array("s3cret".utf8)]
            _ = try await client.create(secret)

            // Objects stored as they are listed, a page of one object at a time; every one of them, in memory,
            // for comparison.
            let stored = RestorePoint.ObjectWriter(repository: repository)
            var paged = ApplicationCapture(client: client)
            paged.pageSize = 1
            let capture = try await paged.capture(namespace: ns, into: stored)
            let all = ApplicationCapture.Collector()
            _ = try await ApplicationCapture(client: client).capture(namespace: ns, into: all)
            let first = try await RestorePoint.write(capture, objects: stored, namespace: ns, volumes: ["data": volumeNode], to: repository)
            let second = try await RestorePoint.write(capture, objects: stored, namespace: ns, to: repository,
                                                      time: Date().addingTimeInterval(1))
            #expect(first.tags.contains(RestorePoint.tag))
            // One host for every restore point (whichever machine or controller pod wrote it), so `cairn
            // forget --keep-*` sees an application's restore points as one series.
            #expect(first.hostname == RestorePoint.hostname && second.hostname == RestorePoint.hostname)

            let listed = try await RestorePoint.list(in: repository, namespace: ns)
            #expect(listed.map(\.id) == [first.id, second.id])
            #expect(try await RestorePoint.list(in: repository, namespace: "other").isEmpty)
            #expect(try await RestorePoint.list(in: repository).count == 2)  // the file snapshot is not one

            let (metadata, objects) = try await RestorePoint.read(first, from: repository)
            let every = await all.objects
            #expect(metadata.namespace == ns && metadata.objects == capture.count && capture.count == every.count)
            #expect(metadata.objectsByKind["ConfigMap"] == 1 && metadata.objectsByKind["Secret"] == 1)
            #expect(metadata.skipped.contains { $0.contains("kube-root-ca.crt") })
            #expect(Set(objects.map(\.json)) == Set(every.map(\.json)))  // exactly as captured
            #expect(objects.first { $0.name == "db" }.map { Secret($0).data["password"] } == Array("s3cret".utf8))

            // The volume tree sits beside the objects and restores byte for byte.
            let report = try await Restorer(repository: repository).run(first, options: RestoreOptions(target: dir.sub("out")))
            #expect(report.errors.isEmpty)
            #expect(try TestFiles.digest(dir.sub("volume"), includeTimes: false)
                    == TestFiles.digest(dir.sub("out/volumes/data"), includeTimes: false))
            // A second restore point of unchanged objects costs (almost) nothing: same blobs.
            let check = try await repository.check(readData: true)
            #expect(check.errors.isEmpty)
            let notOne = await #expect(throws: ProtectionError.self) { _ = try await RestorePoint.read(volume, from: repository) }
            #expect(notOne?.code == .notARestorePoint)
        }
    }
}
