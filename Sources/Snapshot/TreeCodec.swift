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

    static func decode(_ data: Data) -> Tree? {
        data.withUnsafeBytes { raw -> Tree? in
            var r = ByteReader(raw)
            guard r.expect(Data(magic)), let count = r.u32(), Int(count) <= raw.count / 64 else { return nil }
            var nodes: [Node] = []
            nodes.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let nameLength = r.u32(), let nameBytes = r.take(Int(nameLength)),
                      let name = String(validating: nameBytes, as: UTF8.self),
                      let t = r.u8(), Int(t) < types.count, let flags = r.u8(),
                      let mode = r.u32(), let uid = r.u32(), let gid = r.u32(), let mtime = r.u64(),
                      let ctime = r.u64(), let inode = r.u64(), let device = r.u64(), let links = r.u64(),
                      let size = r.u64() else { return nil }
                var node = Node(name: name, type: types[Int(t)], mode: mode, uid: uid, gid: gid,
                                mtime: Int64(bitPattern: mtime), ctime: Int64(bitPattern: ctime), inode: inode,
                                device: device, links: links, size: size)
                if flags & 1 != 0 {
                    guard let n = r.u32(), let bytes = r.take(Int(n)),
                          let target = String(validating: bytes, as: UTF8.self) else { return nil }
                    node.linkTarget = target
                }
                if flags & 2 != 0 {
                    guard let rdev = r.u64() else { return nil }
                    node.rdev = rdev
                }
                if flags & 4 != 0 {
                    guard let n = r.u32(), Int(n) * 32 <= r.remaining else { return nil }
                    var content: [BlobID] = []
                    content.reserveCapacity(Int(n))
                    for _ in 0..<n { content.append(r.id()!) }
                    node.content = content
                }
                if flags & 8 != 0 {
                    guard let subtree = r.id() else { return nil }
                    node.subtree = subtree
                }
                nodes.append(node)
            }
            guard r.remaining == 0 else { return nil }
            return Tree(sortedNodes: nodes)
        }
    }
}
