import Foundation

/// The byte stream a mover pod and Cairn exchange over `pods/exec`: a directory tree with its metadata
/// and file contents, in walk order. Format (all integers little-endian; documented in
/// docs/repository-format.md, "Volume stream"):
///
/// ```
/// stream  = "CAIRNVS1" record* end
/// record  = 'N' node              an entry; a directory's children follow until 'U',
///                                  a file's content follows as 'B'/'H' records until 'Z'
///         | 'K' node              a file unchanged since the parent listing: no content follows
///         | 'U'                   end of the current directory
///         | 'B' u32 n, n bytes    file data
///         | 'H' u64 n             n zero bytes (a hole)
///         | 'Z' u64 size          end of the current file, with its size
///         | 'W' str path, str msg an entry that could not be read
/// end     = 'E' u64 files, u64 bytes
/// node    = u8 type, str name, u32 mode, u32 uid, u32 gid, i64 mtime, i64 ctime, u64 inode,
///           u64 links, u64 size, u64 rdev, str linkTarget
/// str     = u32 n, n bytes of UTF-8
/// ```
///
/// The first record is the root directory (the volume's mount point). The parent listing sent the other
/// way before a backup is `"CAIRNPL1"`, u64 count, then per file: str path, u64 size, i64 mtime, i64 ctime,
/// u64 inode. Both are self-delimiting: with the exec protocol of Kubernetes before 1.29 (v4) stdin
/// cannot be closed, so a receiver must know where the input ends without seeing end-of-file.
public enum VolumeStream {
    public static let magic = Array("CAIRNVS1".utf8)
    /// A parent listing: entries each after a 1 byte, a 0 byte at the end (written as it is walked).
    public static let listingMagic = Array("CAIRNPL2".utf8)
    /// Largest data record written; readers accept up to `maxRecord`.
    public static let dataRecordSize = 1 << 20
    static let maxRecord = 64 << 20

    public enum Event: Sendable, Equatable {
        case node(Node)
        case unchanged(Node)
        case up
        case data([UInt8])
        case hole(UInt64)
        case fileEnd(UInt64)
        case warning(path: String, message: String)
        case end(files: UInt64, bytes: UInt64)
    }

    /// One file of a parent listing: what a sender compares to decide that a file is unchanged.
    public struct ListedFile: Sendable, Equatable {
        public var path: String
        public var size: UInt64
        public var mtime: Int64
        public var ctime: Int64
        public var inode: UInt64

        public init(path: String, size: UInt64, mtime: Int64, ctime: Int64, inode: UInt64) {
            self.path = path
            self.size = size
            self.mtime = mtime
            self.ctime = ctime
            self.inode = inode
        }
    }

    static let types: [NodeType] = [.file, .dir, .symlink, .fifo, .chardev, .blockdev, .socket]

}

/// Encodes records into a buffer and hands it to a sink whenever it holds `flushThreshold` bytes.
public final class VolumeStreamWriter {
    var buffer: [UInt8] = []
    let flushThreshold: Int
    let sink: ([UInt8]) async throws -> Void
    public private(set) var bytesWritten = 0

    public init(flushThreshold: Int = 256 << 10, sink: @escaping ([UInt8]) async throws -> Void) {
        self.flushThreshold = flushThreshold
        self.sink = sink
        buffer.reserveCapacity(flushThreshold + VolumeStream.dataRecordSize + 64)
    }

    public func header(_ magic: [UInt8] = VolumeStream.magic) async throws {
        buffer += magic
        try await maybeFlush()
    }

    public func node(_ node: Node, unchanged: Bool = false) async throws {
        buffer.append(unchanged ? UInt8(ascii: "K") : UInt8(ascii: "N"))
        buffer.append(UInt8(VolumeStream.types.firstIndex(of: node.type)!))
        string(node.name)
        int(node.mode); int(node.uid); int(node.gid)
        int(node.mtime); int(node.ctime); int(node.inode); int(node.links); int(node.size)
        int(node.rdev ?? 0)
        string(node.linkTarget ?? "")
        try await maybeFlush()
    }

    public func up() async throws {
        buffer.append(UInt8(ascii: "U"))
        try await maybeFlush()
    }

    /// File data, in records of at most `dataRecordSize` bytes (a `Data`, or a buffer's bytes).
    public func data<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes) async throws where Bytes.Index == Int {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let n = min(VolumeStream.dataRecordSize, bytes.endIndex - offset)
            buffer.append(UInt8(ascii: "B"))
            int(UInt32(n))
            buffer.append(contentsOf: bytes[offset..<(offset + n)])
            offset += n
            try await maybeFlush()
        }
    }

    public func hole(_ count: UInt64) async throws {
        guard count > 0 else { return }
        buffer.append(UInt8(ascii: "H"))
        int(count)
        try await maybeFlush()
    }

    public func fileEnd(size: UInt64) async throws {
        buffer.append(UInt8(ascii: "Z"))
        int(size)
        try await maybeFlush()
    }

    public func warning(path: String, message: String) async throws {
        buffer.append(UInt8(ascii: "W"))
        string(path)
        string(message)
        try await maybeFlush()
    }

    public func end(files: UInt64, bytes: UInt64) async throws {
        buffer.append(UInt8(ascii: "E"))
        int(files)
        int(bytes)
        try await flush()
    }

    /// Writes a whole parent listing.
    public func listing(_ files: [VolumeStream.ListedFile]) async throws {
        listingStart()
        for file in files { try await listed(file) }
        try await listingEnd()
    }

    /// Starts a parent listing written entry by entry (`listed`, then `listingEnd`).
    public func listingStart() {
        buffer += VolumeStream.listingMagic
    }

    public func listed(_ file: VolumeStream.ListedFile) async throws {
        buffer.append(1)
        string(file.path)
        int(file.size); int(file.mtime); int(file.ctime); int(file.inode)
        try await maybeFlush()
    }

    public func listingEnd() async throws {
        buffer.append(0)
        try await flush()
    }

    public func flush() async throws {
        guard !buffer.isEmpty else { return }
        let out = buffer
        buffer.removeAll(keepingCapacity: true)
        bytesWritten += out.count
        try await sink(out)
    }

    func maybeFlush() async throws {
        if buffer.count >= flushThreshold { try await flush() }
    }

    func int<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    func string(_ text: String) {
        let utf8 = Array(text.utf8)
        int(UInt32(utf8.count))
        buffer += utf8
    }
}

/// Decodes records from a source of byte chunks (the exec session's stdout, or a file descriptor).
public final class VolumeStreamReader {
    let source: () async throws -> [UInt8]?
    var buffer: [UInt8] = []
    var position = 0
    var finished = false
    public private(set) var bytesRead = 0

    public init(source: @escaping () async throws -> [UInt8]?) {
        self.source = source
    }

    /// Reads and checks a header.
    public func header(_ magic: [UInt8] = VolumeStream.magic) async throws {
        guard try await fill(magic.count), Array(buffer[position..<(position + magic.count)]) == magic else {
            throw SnapshotError.stream("the stream does not start with \(String(decoding: magic, as: UTF8.self)); is the mover image the same Cairn version?")
        }
        position += magic.count
    }

    /// The next record, or nil when the source ended (a complete stream ends with `.end` first).
    public func next() async throws -> VolumeStream.Event? {
        guard try await fill(1) else { return nil }
        let tag = buffer[position]
        position += 1
        switch tag {
        case UInt8(ascii: "N"), UInt8(ascii: "K"):
            let typeIndex = Int(try await byte())
            guard typeIndex < VolumeStream.types.count else { throw SnapshotError.stream("unknown entry type \(typeIndex)") }
            let name = try await string()
            var node = Node(name: name, type: VolumeStream.types[typeIndex], mode: try await int(), uid: try await int(),
                            gid: try await int(), mtime: try await int(), ctime: try await int(),
                            inode: try await int(), device: 0, links: try await int(), size: try await int())
            let rdev: UInt64 = try await int()
            let target = try await string()
            if node.type == .chardev || node.type == .blockdev { node.rdev = rdev }
            if node.type == .symlink { node.linkTarget = target }
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                throw SnapshotError.stream("invalid entry name '\(name)'")
            }
            return tag == UInt8(ascii: "N") ? .node(node) : .unchanged(node)
        case UInt8(ascii: "U"):
            return .up
        case UInt8(ascii: "B"):
            let n = Int(try await int() as UInt32)
            guard n <= VolumeStream.maxRecord else { throw SnapshotError.stream("data record of \(n) bytes") }
            return .data(try await bytes(n))
        case UInt8(ascii: "H"):
            return .hole(try await int())
        case UInt8(ascii: "Z"):
            return .fileEnd(try await int())
        case UInt8(ascii: "W"):
            return .warning(path: try await string(), message: try await string())
        case UInt8(ascii: "E"):
            return .end(files: try await int(), bytes: try await int())
        default:
            throw SnapshotError.stream("unknown record '\(tag)' at byte \(bytesRead - (buffer.count - position) - 1)")
        }
    }

    /// Reads a whole parent listing.
    public func listing() async throws -> [VolumeStream.ListedFile] {
        var files: [VolumeStream.ListedFile] = []
        try await listing { files.append($0) }
        return files
    }

    /// Reads a parent listing, handing each entry to `each` as it is read.
    public func listing(_ each: (VolumeStream.ListedFile) throws -> Void) async throws {
        try await header(VolumeStream.listingMagic)
        while true {
            switch try await byte() {
            case 0: return
            case 1:
                try each(VolumeStream.ListedFile(path: try await string(), size: try await int(), mtime: try await int(),
                                                 ctime: try await int(), inode: try await int()))
            case let other:
                throw SnapshotError.stream("unknown listing entry mark \(other)")
            }
        }
    }

    /// Makes at least `count` unread bytes available; false if the source ended first with none left.
    func fill(_ count: Int) async throws -> Bool {
        while buffer.count - position < count {
            if position > 0 {
                buffer.removeFirst(position)
                position = 0
            }
            guard !finished, let chunk = try await source() else {
                finished = true
                if buffer.count - position == 0 { return false }
                throw SnapshotError.stream("the stream ended in the middle of a record")
            }
            bytesRead += chunk.count
            buffer += chunk
        }
        return true
    }

    func need(_ count: Int) async throws {
        guard try await fill(count) else { throw SnapshotError.stream("the stream ended in the middle of a record") }
    }

    func byte() async throws -> UInt8 {
        try await need(1)
        defer { position += 1 }
        return buffer[position]
    }

    func int<T: FixedWidthInteger>() async throws -> T {
        let size = MemoryLayout<T>.size
        try await need(size)
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { dst in
            buffer.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[position..<(position + size)])) }
        }
        position += size
        return T(littleEndian: value)
    }

    func bytes(_ count: Int) async throws -> [UInt8] {
        try await need(count)
        defer { position += count }
        return Array(buffer[position..<(position + count)])
    }

    func string() async throws -> String {
        let n = Int(try await int() as UInt32)
        guard n <= 1 << 20 else { throw SnapshotError.stream("name of \(n) bytes") }
        return String(decoding: try await bytes(n), as: UTF8.self)
    }
}
