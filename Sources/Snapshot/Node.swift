import Foundation
import Repository

/// The type of a file system entry.
public enum NodeType: String, Codable, Sendable {
    case file, dir, symlink, fifo, chardev, blockdev, socket
}

/// One entry of a directory in a snapshot. Times are nanoseconds since the Unix epoch.
public struct Node: Sendable, Equatable {
    public var name: String
    public var type: NodeType
    /// Permission bits, including setuid, setgid and sticky (`mode & 0o7777`).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Int64
    public var ctime: Int64
    public var inode: UInt64
    public var device: UInt64
    public var links: UInt64
    public var size: UInt64
    /// Symlink target.
    public var linkTarget: String?
    /// Device number of character and block devices.
    public var rdev: UInt64?
    /// File content, in order.
    public var content: [BlobID]?
    /// Directory listing.
    public var subtree: BlobID?

    public init(name: String, type: NodeType, mode: UInt32, uid: UInt32, gid: UInt32, mtime: Int64, ctime: Int64,
                inode: UInt64, device: UInt64, links: UInt64, size: UInt64) {
        self.name = name
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.ctime = ctime
        self.inode = inode
        self.device = device
        self.links = links
        self.size = size
    }

    /// Builds a node from `lstat` output.
    init(name: String, stat st: stat) {
        let type: NodeType
        switch st.st_mode & S_IFMT {
        case S_IFDIR: type = .dir
        case S_IFLNK: type = .symlink
        case S_IFIFO: type = .fifo
        case S_IFCHR: type = .chardev
        case S_IFBLK: type = .blockdev
        case S_IFSOCK: type = .socket
        default: type = .file
        }
        self.init(name: name, type: type, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                  mtime: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                  ctime: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec),
                  inode: UInt64(st.st_ino), device: UInt64(st.st_dev), links: UInt64(st.st_nlink),
                  size: type == .file ? UInt64(st.st_size) : 0)
        if type == .chardev || type == .blockdev { rdev = UInt64(st.st_rdev) }
    }

    /// Whether a file is unchanged since `previous` was recorded: same size, mtime, ctime and inode.
    /// The one rule for "this file did not change since the earlier backup" (host backups and the mover
    /// alike): both are regular files with the same size, mtime, ctime and inode.
    func sameFile(as previous: Node) -> Bool {
        previous.type == .file && type == .file
            && FileIdentity(size: size, mtime: mtime, ctime: ctime, inode: inode)
            == FileIdentity(size: previous.size, mtime: previous.mtime, ctime: previous.ctime, inode: previous.inode)
    }
}

/// What identifies a file's content without reading it: equal identities mean an unchanged file.
struct FileIdentity: Equatable {
    var size: UInt64
    var mtime: Int64
    var ctime: Int64
    var inode: UInt64
}

/// A directory listing, stored as a tree blob in a compact binary encoding (see
/// docs/repository-format.md, "Trees"), nodes sorted by the bytes of their names, so that an unchanged
/// directory encodes to the same bytes and deduplicates.
public struct Tree: Sendable, Equatable {
    public var nodes: [Node]

    public init(nodes: [Node]) {
        self.nodes = nodes.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    init(sortedNodes: [Node]) {
        self.nodes = sortedNodes
    }

    public func node(named name: String) -> Node? {
        // Nodes are sorted by UTF-8 bytes: binary search.
        var lo = 0, hi = nodes.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let n = nodes[mid].name
            if n == name { return nodes[mid] }
            if n.utf8.lexicographicallyPrecedes(name.utf8) { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    public func encoded() throws -> Data { TreeCodec.encode(self) }

    public static func decode(_ data: Data, id: BlobID) throws -> Tree {
        guard let tree = TreeCodec.decode(data) else {
            throw RepositoryError(.corrupt, "tree \(id.short) does not decode", location: id.hex)
        }
        return tree
    }
}

extension Repository {
    /// Loads and decodes a tree blob.
    public func loadTree(_ id: BlobID) async throws -> Tree {
        try Tree.decode(try await loadBlob(id), id: id)
    }
}
