import Foundation
@testable import Repository
@testable import Snapshot
import Testing

/// Trees read in place (`TreeCodec.scan`): what `decode` and a check's walk are built on.
@Suite("Trees read in place")
struct TreeScanTests {
    static func id(_ n: UInt64) -> BlobID { BlobID(w0: n &* 0x9E37_79B9_7F4A_7C15, w1: n, w2: ~n, w3: n << 7) }

    static func file(_ name: String, _ content: [BlobID]) -> Node {
        var node = Node(name: name, type: .file, mode: 0o644, uid: 1, gid: 2, mtime: -5, ctime: 7, inode: 9, device: 3,
                        links: 1, size: 42)
        node.content = content
        return node
    }

    @Test("every field decodes as encoded (names in several scripts, links, devices, several blobs); a check's walk of the same tree finds its directories, and names exactly the files whose blobs are missing or damaged")
    func scanAndWalk() throws {
        var link = Node(name: "link", type: .symlink, mode: 0o777, uid: 0, gid: 0, mtime: 1, ctime: 1, inode: 2, device: 3,
                        links: 1, size: 0)
        link.linkTarget = "../données/ß"
        var dev = Node(name: "null", type: .chardev, mode: 0o666, uid: 0, gid: 0, mtime: 1, ctime: 1, inode: 4, device: 3,
                       links: 1, size: 0)
        dev.rdev = 0x0103
        var dir = Node(name: "répertoire", type: .dir, mode: 0o755, uid: 0, gid: 0, mtime: 1, ctime: 1, inode: 5, device: 3,
                       links: 2, size: 0)
        dir.subtree = Self.id(99)
        let nodes = [Self.file("a.txt", [Self.id(1)]), Self.file("b-missing.bin", [Self.id(2), Self.id(3)]),
                     Self.file("c-damaged", [Self.id(4)]), link, dev, Self.file("日本語.txt", [Self.id(5), Self.id(6)]), dir]
            .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        let data = try Tree(nodes: nodes).encoded()
        let decoded = try Tree.decode(data, id: Self.id(0))
        #expect(decoded.nodes == nodes)

        var index = MasterIndex()
        let location = { (n: UInt32) in PackedBlob(type: .data, id: Self.id(UInt64(n)), offset: n * 100, length: 100, rawLength: 90) }
        index.add(pack: Self.id(1000), blobs: [1, 4, 5, 6].map { location($0) })
        let read = try SnapshotWalker.read(data, id: Self.id(0), damaged: [Self.id(4)], index: index)
        #expect(read.directories.map(\.name) == ["répertoire"] && read.directories.map(\.subtree) == [Self.id(99)])
        #expect(read.files.map(\.path) == ["/b-missing.bin", "/c-damaged"])
        #expect(read.files.first?.reason.contains("missing from the index") == true)
        #expect(read.files.last?.reason.contains("damaged") == true)
        // All present, none damaged: nothing to report.
        index.add(pack: Self.id(1001), blobs: [2, 3].map { location($0) })
        #expect(try SnapshotWalker.read(data, id: Self.id(0), damaged: [], index: index).files.isEmpty)
    }

    @Test("a tree cut short, with bytes left over, or with a name that is not UTF-8 does not decode, and the walk reports it")
    func malformed() throws {
        let data = try Tree(nodes: [Self.file("ok", [Self.id(1)]), Self.file("zz", [Self.id(2)])]).encoded()
        var badName = data
        // The first name's first byte (after magic, count and the name's length).
        badName[badName.startIndex + 12] = 0xFF
        for bad in [data.prefix(data.count - 1), data + Data([0]), badName] {
            #expect(TreeCodec.decode(Data(bad)) == nil)
            #expect(throws: RepositoryError.self) { _ = try SnapshotWalker.read(Data(bad), id: Self.id(0), damaged: [], index: MasterIndex()) }
        }
    }
}
