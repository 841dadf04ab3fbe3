import Foundation

/// The one writer of nodes into a file system, for both restores of a snapshot (`Restorer`) and the
/// mover's side of a volume restore (`DirectoryReceiver`): directories, symbolic links, special files,
/// file content with holes, and metadata. Problems with one entry come back as text for the caller's
/// report; a failed content write throws `SnapshotError` (a full disk as `.noSpace`).
enum NodeWriter {
    static func failure(_ operation: String) -> String { "\(operation): \(String(cString: strerror(errno)))" }

    /// Creates a directory (mode and times are applied after its children: `applyMetadata`).
    static func makeDirectory(_ path: String) -> String? {
        mkdir(path, 0o700) != 0 && errno != EEXIST ? failure("mkdir") : nil
    }

    static func makeSymlink(_ node: Node, at path: String, asRoot: Bool) -> String? {
        guard symlink(node.linkTarget ?? "", path) == 0 else { return failure("symlink") }
        if asRoot { lchown(path, node.uid, node.gid) }
        setTimes(path, node: node, followLinks: false)
        return nil
    }

    /// A FIFO or device node, with its metadata.
    static func makeSpecial(_ node: Node, at path: String, asRoot: Bool) -> String? {
        let kind: mode_t = node.type == .fifo ? S_IFIFO : node.type == .chardev ? S_IFCHR : S_IFBLK
        guard mknod(path, kind | mode_t(node.mode), dev_t(node.rdev ?? 0)) == 0 else { return failure("mknod") }
        applyMetadata(path, node: node, asRoot: asRoot)
        return nil
    }

    /// Owner, mode and times of a file whose content is written.
    static func finishFile(_ fd: Int32, node: Node, asRoot: Bool) {
        if asRoot { fchown(fd, node.uid, node.gid) }
        fchmod(fd, mode_t(node.mode))
        var times = [timespec(ns: node.mtime), timespec(ns: node.mtime)]
        futimens(fd, &times)
    }

    /// Writes `data` at `offset`, leaving 4 KiB blocks of zeros unwritten (holes).
    static func writeSparse(_ fd: Int32, _ data: some ContiguousBytes, at offset: Int, path: String) throws {
        try data.withUnsafeBytes { raw in
            let block = 4096
            var start = 0
            while start < raw.count {
                // Skip zero blocks.
                var runStart = start
                while runStart < raw.count {
                    let end = min(runStart + block, raw.count)
                    if !isZero(raw, runStart, end) { break }
                    runStart = end
                }
                var runEnd = runStart
                while runEnd < raw.count {
                    let end = min(runEnd + block, raw.count)
                    if isZero(raw, runEnd, end) && end - runEnd == block { break }
                    runEnd = end
                }
                var done = runStart
                while done < runEnd {
                    let n = pwrite(fd, raw.baseAddress! + done, runEnd - done, off_t(offset + done))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw SnapshotError.writing(errno, "write", path: path)
                    }
                    done += n
                }
                start = runEnd
            }
        }
    }

    static func isZero(_ raw: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Bool {
        var i = from
        while i + 8 <= to {
            if raw.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < to {
            if raw[i] != 0 { return false }
            i += 1
        }
        return true
    }

    static func timespec(ns: Int64) -> Glibc.timespec {
        Glibc.timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    }

    static func setTimes(_ path: String, node: Node, followLinks: Bool) {
        var times = [timespec(ns: node.mtime), timespec(ns: node.mtime)]
        utimensat(AT_FDCWD, path, &times, followLinks ? 0 : AT_SYMLINK_NOFOLLOW)
    }

    static func applyMetadata(_ path: String, node: Node, asRoot: Bool) {
        if asRoot { chown(path, node.uid, node.gid) }
        chmod(path, mode_t(node.mode))
        setTimes(path, node: node, followLinks: true)
    }
}
