import Foundation
import KubeModel
@testable import Protection
import Repository
import Snapshot
import Storage
import Testing

/// How a restore point stores a namespace's objects (`RestorePoint.ObjectGroup`), against a repository in memory.
@Suite("Restore points: objects several to a file")
struct RestorePointObjectsTests {
    static func configMap(_ i: Int, value: String = "v") throws -> KubeObject {
        // A line feed in a value: the file's lines are objects, so it must stay escaped.
        try object(#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-\#(String(format: "%05d", i))","namespace":"shop","resourceVersion":"\#(i)"},"data":{"config":"a: \#(value)\nb: \#(i)\n"}}"#)
    }

    static let storageClass = #"{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":"fast"},"provisioner":"x"}"#

    static func emptyRepository() async throws -> Repository {
        setenv("CAIRN_KDF_N", "1024", 1)
        return try await Repository.initialize(store: MemoryBlobStore(), password: "pw", config: .new())
    }

    /// Writes `objects` as a restore point of namespace `shop`, kind after kind as a capture does.
    static func write(_ objects: [KubeObject], to repository: Repository, at seconds: Double) async throws -> SnapshotManifest {
        let writer = RestorePoint.ObjectWriter(repository: repository)
        for object in objects { try await writer.add(object) }
        for kind in Set(objects.map { [$0.group, $0.kind] }) { try await writer.finished(group: kind[0], kind: kind[1]) }
        let capture = ApplicationCapture.Result(objects: [], count: objects.count, byKind: [:], skipped: [], warnings: [], resourceTypes: 2)
        return try await RestorePoint.write(capture, objects: writer, namespace: "shop", to: repository,
                                            time: Date(timeIntervalSince1970: seconds))
    }

    /// The files of ConfigMaps in namespace `shop`.
    static func files(_ snapshot: SnapshotManifest, _ repository: Repository) async throws -> [Node] {
        var nodes = try await repository.loadTree(snapshot.tree).nodes
        for name in ["objects", "core", "ConfigMap", "shop"] {
            nodes = try await repository.loadTree(try #require(nodes.first { $0.name == name }?.subtree)).nodes
        }
        return nodes
    }

    @Test("3,000 objects come back exactly, from a few dozen files; an unchanged object costs nothing the next time, a changed, removed or added one only its own file and the next")
    func grouped() async throws {
        let repository = try await Self.emptyRepository()
        var objects = try (0..<3000).map { try Self.configMap($0) }
            + [try object(#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"shop"},"data":{"p":"cw=="}}"#),
               try object(Self.storageClass)]
        let first = try await Self.write(objects, to: repository, at: 1000)
        let read = try await RestorePoint.read(first, from: repository).objects
        #expect(read.count == objects.count)
        #expect(Set(read.map(\.json)) == Set(objects.map(\.json)))

        let files = try await Self.files(first, repository)
        // One file every 64 objects on average: far fewer blobs than objects.
        #expect(files.count >= 3000 / 200 && files.count <= 3000 / 20, "\(files.count) files")
        #expect(files.allSatisfy { $0.name.hasSuffix(".jsonl") && $0.content?.count == 1 })
        #expect(repository.index.count < 3000 / 10, "\(repository.index.count) blobs in the index")
        // Named after their first object, in name order: files[i] holds the objects from its name to the next's.
        #expect(files.first?.name == "cm-00000.jsonl")
        #expect(files.map(\.name) == files.map(\.name).sorted())

        // One object changed, one removed, one added at the end.
        objects[1500] = try Self.configMap(1500, value: "changed")
        objects.remove(at: 700)
        objects.insert(try Self.configMap(3000), at: 2999)
        let second = try await Self.write(objects, to: repository, at: 2000)
        let read2 = try await RestorePoint.read(second, from: repository).objects
        #expect(Set(read2.map(\.json)) == Set(objects.map(\.json)) && read2.count == objects.count)
        let before = Set(files.compactMap { $0.content?.first })
        let after = try await Self.files(second, repository).compactMap { $0.content?.first }
        let new = after.filter { !before.contains($0) }
        #expect(new.count == 3, "\(new.count) of \(after.count) files new")
    }

    @Test("restore points of one object a file (written before files of objects) still read, next to files of objects; a damaged line is reported with its file and line")
    func olderAndDamaged() async throws {
        let repository = try await Self.emptyRepository()
        func restorePoint(_ files: [String: String]) async throws -> SnapshotManifest {
            var tree = MemoryTree(time: Date(timeIntervalSince1970: 1000))
            for (path, text) in files { try tree.addFile(path, Data(text.utf8)) }
            try tree.addFile("restorepoint.json", Data(#"{"namespace":"shop","time":"2026-12-01T00:00:00Z","cairnVersion":"0.1","objects":3,"objectsByKind":{},"skipped":[],"warnings":[]}"#.utf8))
            let written = try await tree.write(to: repository)
            try await repository.flush()
            var manifest = SnapshotManifest(time: tree.time, hostname: RestorePoint.hostname, username: "", paths: ["/restorepoints/shop"],
                                            tree: written.tree, tags: [RestorePoint.tag, RestorePoint.namespaceTag("shop")], program: "test")
            manifest.id = try await SnapshotFiles.save(manifest, to: repository)
            return manifest
        }
        let a = try Self.configMap(1), b = try Self.configMap(2), c = try Self.configMap(3)
        func line(_ o: KubeObject) -> String { String(decoding: o.json.serialized(), as: UTF8.self) + "\n" }
        let mixed = try await restorePoint([
            "objects/core/ConfigMap/shop/cm-00001.json": String(decoding: a.json.serialized(), as: UTF8.self),
            "objects/core/ConfigMap/shop/cm-00002.jsonl": line(b) + line(c),
            "objects/storage.k8s.io/StorageClass/_cluster/fast.json": Self.storageClass,
        ])
        let read = try await RestorePoint.read(mixed, from: repository).objects
        #expect(Set(read.map(\.json)) == Set([a, b, c, try object(Self.storageClass)].map(\.json)) && read.count == 4)

        let damaged = try await restorePoint(["objects/core/ConfigMap/shop/cm-00002.jsonl": line(b) + "{\"kind\": \n" + line(c)])
        let error = await #expect(throws: RepositoryError.self) { _ = try await RestorePoint.read(damaged, from: repository) }
        #expect(error?.code == .corrupt)
        #expect("\(error!)".contains("cm-00002.jsonl, line 2"), "\(error!)")
        let notObject = try await restorePoint(["objects/core/ConfigMap/shop/cm-00002.jsonl": line(b) + "[1,2]\n"])
        let error2 = await #expect(throws: RepositoryError.self) { _ = try await RestorePoint.read(notObject, from: repository) }
        #expect("\(error2!)".contains("line 2: not a JSON object"), "\(error2!)")
    }
}
