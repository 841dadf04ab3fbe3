import Foundation
@testable import Repository
@testable import Snapshot
import Storage
import StorageTesting
import Testing

@Suite("Snapshots assembled in memory")
struct MemoryTreeTests {
    @Test("files from memory and a directory from another snapshot restore together, byte for byte; unchanged files cost nothing again")
    func roundTrip() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("volume"), seed: 4, files: 12, largeFileBytes: 1 << 20)
        let repo = try await newRepository()
        let volume = try await Archiver(repository: repo).run(BackupOptions(paths: [dir.sub("volume")])).snapshot
        let volumeRoot = try await repo.loadTree(volume.tree).nodes[0]

        var tree = MemoryTree()
        let big = Data((0..<(2_500_000)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try tree.addFile("objects/apps/Deployment/web.json", Data(#"{"kind":"Deployment"}"#.utf8))
        try tree.addFile("objects/v1/ConfigMap/settings.json", Data("{}".utf8))
        try tree.addFile("objects/v1/ConfigMap/big.json", big)
        try tree.addFile("empty", Data())
        try tree.addExisting("volumes/data", volumeRoot)
        #expect(throws: SnapshotError.self) { try tree.addFile("objects/v1", Data()) }
        #expect(throws: SnapshotError.self) { try tree.addFile("../escape", Data()) }
        let written = try await tree.write(to: repo)
        #expect(written.files == 4 && written.bytes == big.count + 23)
        try await repo.flush()
        var manifest = SnapshotManifest(time: tree.time, hostname: "h", username: "u", paths: ["/restorepoint"],
                                        tree: written.tree, parent: nil, tags: ["restorepoint"], program: "test",
                                        summary: nil)
        manifest.id = try await SnapshotFiles.save(manifest, to: repo)

        let report = try await Restorer(repository: repo).run(manifest, options: RestoreOptions(target: dir.sub("out")))
        #expect(report.errors.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("out/objects/apps/Deployment/web.json")))
                == Data(#"{"kind":"Deployment"}"#.utf8))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("out/objects/v1/ConfigMap/big.json"))) == big)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("out/empty"))).isEmpty)
        #expect(try TestFiles.digest(dir.sub("volume"), includeTimes: false)
                == TestFiles.digest(dir.sub("out/volumes/data"), includeTimes: false))
        let check = try await repo.check(readData: true)
        #expect(check.errors.isEmpty)

        // The same files at the same time again: everything deduplicates.
        var again = MemoryTree(time: tree.time)
        try again.addFile("objects/apps/Deployment/web.json", Data(#"{"kind":"Deployment"}"#.utf8))
        try again.addFile("objects/v1/ConfigMap/settings.json", Data("{}".utf8))
        try again.addFile("objects/v1/ConfigMap/big.json", big)
        try again.addFile("empty", Data())
        try again.addExisting("volumes/data", volumeRoot)
        let second = try await again.write(to: repo)
        #expect(second.added == 0)
        #expect(second.tree == written.tree)

        // Stored as they come, a directory sealed once complete (only nodes kept): the same tree.
        var streamed = MemoryTree(time: tree.time)
        for (name, data) in [("big.json", big), ("gone.json", Data("x".utf8)), ("settings.json", Data("{}".utf8))] {
            try streamed.addExisting("objects/v1/ConfigMap/" + name, try await streamed.storedFile(named: name, data, in: repo))
        }
        try streamed.remove("objects/v1/ConfigMap/gone.json")
        let sealed = try #require(try await streamed.storedDirectory(at: "objects/v1", in: repo))
        try streamed.seal("objects/v1", with: sealed)
        #expect(try await streamed.storedDirectory(at: "objects/v1", in: repo) == nil)
        #expect(throws: SnapshotError.self) { try streamed.addFile("objects/v1/Secret/s.json", Data()) }
        try streamed.addFile("objects/apps/Deployment/web.json", Data(#"{"kind":"Deployment"}"#.utf8))
        try streamed.addExisting("empty", try await streamed.storedFile(named: "empty", Data(), in: repo))
        try streamed.addExisting("volumes/data", volumeRoot)
        #expect(try await streamed.write(to: repo).tree == written.tree)
    }
}
