import Crypto
import Foundation

/// A temporary directory removed when the value is dropped with `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(_ label: String = "cairn-test") throws {
        let template = NSTemporaryDirectory() + "/\(label)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw POSIXError(.EIO) }
        path = String(cString: made)
    }

    public func sub(_ name: String) -> String { path + "/" + name }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests and benchmarks generate the same data each run.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64

    public init(seed: UInt64) {
        state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed
    }

    public mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    public mutating func bytes(_ count: Int) -> Data {
        var data = Data(count: count)
        data.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= count {
                raw.storeBytes(of: next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < count {
                raw[i] = UInt8(truncatingIfNeeded: next())
                i += 1
            }
        }
        return data
    }

    /// Text-like, compressible bytes.
    public mutating func text(_ count: Int) -> Data {
        let words = ["volume", "cluster", "namespace", "backup", "restore", "snapshot", "pod", "claim", "data", "the",
                     "of", "and", "func", "let", "return", "{", "}", "(", ")", "\n", "  ", "0", "42", "cairn"]
        var out = Data(capacity: count + 16)
        while out.count < count {
            out.append(contentsOf: words[Int(next() % UInt64(words.count))].utf8)
            out.append(0x20)
        }
        return out.prefix(count)
    }
}

/// Writes files and compares trees in tests.
public enum TestFiles {
    public static func write(_ path: String, _ data: Data, mode: mode_t = 0o644) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: data) else { throw POSIXError(.EIO) }
        chmod(path, mode)
    }

    /// A description of every entry below `root`: type, mode, size, mtime (files, symlinks), content hash,
    /// link target, and which paths share an inode. Equal descriptions mean equal trees.
    public static func digest(_ root: String, includeTimes: Bool = true) throws -> [String: String] {
        var out: [String: String] = [:]
        var inodes: [UInt64: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: root)
        var paths: [String] = []
        while let p = enumerator?.nextObject() as? String { paths.append(p) }
        for rel in paths.sorted() {
            let full = root + "/" + rel
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            var parts = ["mode=\(String(st.st_mode, radix: 8))", "uid=\(st.st_uid)", "gid=\(st.st_gid)"]
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let data = try Data(contentsOf: URL(fileURLWithPath: full))
                parts.append("size=\(data.count)")
                parts.append("sha=\(SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined())")
                if includeTimes { parts.append("mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)") }
                if st.st_nlink > 1 {
                    if let first = inodes[UInt64(st.st_ino)] { parts.append("hardlink=\(first)") } else {
                        inodes[UInt64(st.st_ino)] = rel
                    }
                }
            case S_IFLNK:
                parts.append("target=\((try? FileManager.default.destinationOfSymbolicLink(atPath: full)) ?? "")")
            case S_IFDIR:
                if includeTimes { parts.append("mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)") }
            default:
                parts.append("special")
            }
            out[rel] = parts.joined(separator: " ")
        }
        return out
    }

    /// Allocated size in bytes (to check sparseness).
    public static func allocated(_ path: String) -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else { return -1 }
        return Int(st.st_blocks) * 512
    }

    /// Builds a varied tree: text and random files, nested directories, a symlink, a hard link, a sparse
    /// file, an empty file and an empty directory.
    public static func makeTree(at root: String, seed: UInt64 = 1, files: Int = 40, largeFileBytes: Int = 3 << 20) throws {
        var rng = SeededRandom(seed: seed)
        for i in 0..<files {
            let dir = root + "/d\(i % 5)/e\(i % 3)"
            let size = Int(rng.next() % 50_000)
            try write(dir + "/f\(i).txt", i % 2 == 0 ? rng.text(size) : rng.bytes(size), mode: i % 7 == 0 ? 0o600 : 0o644)
        }
        try write(root + "/large.bin", rng.bytes(largeFileBytes))
        try write(root + "/large.txt", rng.text(largeFileBytes))
        try write(root + "/empty", Data())
        try FileManager.default.createDirectory(atPath: root + "/emptydir", withIntermediateDirectories: true)
        symlink("d0/e0/f0.txt", root + "/link")
        symlink("/nonexistent/target", root + "/dangling")
        link(root + "/large.txt", root + "/hardlink.txt")
        let sparse = root + "/sparse.img"
        let fd = open(sparse, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        ftruncate(fd, 64 << 20)
        let marker = Data("middle".utf8)
        _ = marker.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 32 << 20) }
        close(fd)
    }
}
