import Foundation
import Storage
import StorageTesting
import Testing

@Suite("BlobStore contract")
struct BlobStoreConformanceTests {
    @Test("in-memory store keeps the contract")
    func memory() async throws {
        try await BlobStoreConformance(MemoryBlobStore()).run()
    }

    @Test("filesystem store keeps the contract")
    func filesystem() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = FileBlobStore(root: URL(fileURLWithPath: dir.sub("repo")))
        try store.create()
        try await BlobStoreConformance(store).run()
    }

    @Test("filesystem store refuses a non-empty directory for a new repository")
    func refusesNonEmpty() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.write(dir.sub("x/file"), Data("hello".utf8))
        #expect(throws: StorageError.self) { try FileBlobStore(root: URL(fileURLWithPath: dir.sub("x"))).create() }
    }

    @Test("a failed write leaves no object and no partial file")
    func failedWriteLeavesNothing() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = FileBlobStore(root: URL(fileURLWithPath: dir.sub("repo")))
        try store.create()
        // Make the destination directory unwritable for the rename: replace data/ab with a file.
        try FileManager.default.removeItem(atPath: dir.sub("repo/data/ab"))
        try TestFiles.write(dir.sub("repo/data/ab"), Data())
        await #expect(throws: StorageError.self) {
            try await store.save(BlobHandle(.data, "ab" + String(repeating: "0", count: 62)), data: Data([1, 2, 3]))
        }
        #expect(try await store.list(.data).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.sub("repo/tmp")).isEmpty)
    }

    @Test("permission problems are reported as such, with the path")
    func permissionDenied() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = FileBlobStore(root: URL(fileURLWithPath: "/proc/cairn-cannot-write-here"))
        do {
            try store.create()
            Issue.record("create succeeded in /proc")
        } catch let error as StorageError {
            #expect(error.location.contains("/proc/cairn-cannot-write-here"))
        }
    }
}
