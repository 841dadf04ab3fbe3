import Foundation
import Repository

/// The binary encoding of tree blobs (docs/repository-format.md, "Trees"):
///
/// ```
/// "CTR1" ‖ node count (UInt32)
/// node = name length (UInt32) ‖ name (UTF-8) ‖ type (UInt8) ‖ flags (UInt8)
///        ‖ mode, uid, gid (UInt32 each) ‖ mtime, ctime (Int64) ‖ inode, device, links, size (UInt64)
///        ‖ [flags & 1: link target length (UInt32) ‖ link target (UTF-8)]
///        ‖ [flags & 2: rdev (UInt64)]
///        ‖ [flags & 4: content count (UInt32) ‖ count × blob ID (32 bytes)]
///        ‖ [flags & 8: subtree ID (32 bytes)]
/// ```
/// All integers little-endian. Decoding checks every length against the input and fails on anything
/// left over.
enum TreeCodec {
    static let magic: [UInt8] = Array("CTR1".utf8)
    static let types: [NodeType] = [.file, .dir, .symlink, .fifo, .chardev, .blockdev, .socket]

    static func encode(_ tree: Tree) -> Data {
        var out = [UInt8]()
        out.reserveCapacity(16 + tree.nodes.count * 96)
        out += magic
        put(&out, UInt32(tree.nodes.count))
        for node in tree.nodes {
            let name = Array(node.name.utf8)
            put(&out, UInt32(name.count))
            out += name
            out.append(UInt8(types.firstIndex(of: node.type)!))
            var flags: UInt8 = 0
            if node.linkTarget != nil { flags |= 1 }
            if node.rdev != nil { flags |= 2 }
            if node.content != nil { flags |= 4 }
            if node.subtree != nil { flags |= 8 }
            out.append(flags)
            put(&out, node.mode)
            put(&out, node.uid)
            put(&out, node.gid)
            put(&out, UInt64(bitPattern: node.mtime))
            put(&out, UInt64(bitPattern: node.ctime))
            put(&out, node.inode)
            put(&out, node.device)
            put(&out, node.links)
            put(&out, node.size)
            if let target = node.linkTarget {
                let bytes = Array(target.utf8)
                put(&out, UInt32(bytes.count))
                out += bytes
            }
            if let rdev = node.rdev { put(&out, rdev) }
            if let content = node.content {
                put(&out, UInt32(content.count))
                for id in content { putID(&out, id) }
            }
            if let subtree = node.subtree { putID(&out, subtree) }
        }
        return Data(out)
    }

    @inline(__always)
    static func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    @inline(__always)
    static func putID(_ out: inout [UInt8], _ id: BlobID) {
        put(&out, id.w0.bigEndian)
        put(&out, id.w1.bigEndian)
        put(&out, id.w2.bigEndian)
        put(&out, id.w3.bigEndian)
    }

    /// One node of an encoded tree, read in place by `scan`: its name and IDs are views of the tree's bytes,
    /// valid during the visit. The walk of a check reads only what it needs; `node()` decodes all of it.
    struct RawNode {
        let raw: UnsafeRawBufferPointer
        /// The name's bytes, checked to be UTF-8.
        let name: UnsafeRawBufferPointer
        let type: NodeType
        /// Where mode, uid, gid, mtime, ctime, inode, device, links and size start.
        let fixed: Int
        let linkTarget: String?
        let rdev: UInt64?
        /// Where the content IDs start, and how many (nil: the node has no content list).
        let content: (start: Int, count: Int)?
        let subtree: BlobID?

        var nameString: String { String(decoding: name, as: UTF8.self) }

        func contentID(_ i: Int) -> BlobID {
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: raw[(content!.start + 32 * i)...]))
            return r.id()!
        }

        func node() -> Node {
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: raw[fixed...]))
            var node = Node(name: nameString, type: type, mode: r.u32()!, uid: r.u32()!, gid: r.u32()!,
                            mtime: Int64(bitPattern: r.u64()!), ctime: Int64(bitPattern: r.u64()!), inode: r.u64()!,
                            device: r.u64()!, links: r.u64()!, size: r.u64()!)
            node.linkTarget = linkTarget
            node.rdev = rdev
            if let content {
                var ids: [BlobID] = []
                ids.reserveCapacity(content.count)
                for i in 0..<content.count { ids.append(contentID(i)) }
                node.content = ids
            }
            node.subtree = subtree
            return node
        }
    }

    /// Reads every node of an encoded tree in place, in order, checking every length against the input, every
    /// name and link target for UTF-8 and that nothing is left over; false when the tree does not decode
    /// (`visit` may have seen the nodes before the fault). Nothing is copied for a node `visit` does not ask for.
    static func scan(_ data: Data, _ visit: (RawNode) -> Void) -> Bool {
        data.withUnsafeBytes { raw -> Bool in
            var r = ByteReader(raw)
            guard r.expect(Data(magic)), let count = r.u32(), Int(count) <= raw.count / 64 else { return false }
            for _ in 0..<count {
                guard let nameLength = r.u32(), let name = r.take(Int(nameLength)), isUTF8(name),
                      let t = r.u8(), Int(t) < types.count, let flags = r.u8() else { return false }
                let fixed = r.position
                // mode, uid, gid: 4 bytes each; mtime, ctime, inode, device, links, size: 8 each.
                guard r.take(60) != nil else { return false }
                var linkTarget: String?
                if flags & 1 != 0 {
                    guard let n = r.u32(), let bytes = r.take(Int(n)),
                          let target = String(validating: bytes, as: UTF8.self) else { return false }
                    linkTarget = target
                }
                var rdev: UInt64?
                if flags & 2 != 0 {
                    guard let value = r.u64() else { return false }
                    rdev = value
                }
                var content: (start: Int, count: Int)?
                if flags & 4 != 0 {
                    guard let n = r.u32(), Int(n) * 32 <= r.remaining else { return false }
                    content = (r.position, Int(n))
                    _ = r.take(Int(n) * 32)
                }
                var subtree: BlobID?
                if flags & 8 != 0 {
                    guard let id = r.id() else { return false }
                    subtree = id
                }
                visit(RawNode(raw: raw, name: name, type: types[Int(t)], fixed: fixed, linkTarget: linkTarget, rdev: rdev,
                              content: content, subtree: subtree))
            }
            return r.remaining == 0
        }
    }

    /// Whether `bytes` are UTF-8: ASCII (most names) without building a string.
    @inline(__always)
    static func isUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var high: UInt8 = 0
        for byte in bytes { high |= byte }
        return high < 0x80 || String(validating: bytes, as: UTF8.self) != nil
    }

    static func decode(_ data: Data) -> Tree? {
        var nodes: [Node] = []
        nodes.reserveCapacity(data.count / 96)
        guard scan(data, { nodes.append($0.node()) }) else { return nil }
        return Tree(sortedNodes: nodes)
    }
}
