/// The parent listing as the mover's sender holds it: each listed file's size, times and inode, keyed by a
/// 64-bit hash of its path (the process's seeded hasher) — about 50 bytes a file, where a dictionary of
/// paths to listing entries held each path twice (~150 bytes): a volume of a million files costs the
/// mover pod ~50 MiB of its 512 MiB. Two paths with one hash cannot let a changed file pass as unchanged:
/// what is compared includes the inode, and Cairn checks every file reported unchanged against the
/// earlier backup's tree (`StreamArchiver`); a listed file whose entry another overwrote is just sent again.
public struct ParentListing: Sendable {
    private var files: [Int: FileIdentity] = [:]

    public init() {}

    public init(_ listed: [VolumeStream.ListedFile]) {
        files.reserveCapacity(listed.count)
        for file in listed { add(file) }
    }

    public var count: Int { files.count }

    public mutating func add(_ file: VolumeStream.ListedFile) {
        files[file.path.hashValue] = FileIdentity(size: file.size, mtime: file.mtime, ctime: file.ctime, inode: file.inode)
    }

    /// Whether `node`, found at `path`, is the file listed there: same size, mtime, ctime and inode.
    func unchanged(_ path: String, _ node: Node) -> Bool {
        guard node.type == .file, let listed = files[path.hashValue] else { return false }
        return FileIdentity(size: node.size, mtime: node.mtime, ctime: node.ctime, inode: node.inode) == listed
    }
}
