import Foundation

/// Whole reads and writes on file descriptors: short transfers and interruptions retried, errors as
/// `StorageError`s naming the path. Shared by the stores that spool to local files.
public enum FileIO {
    /// Writes all of `bytes` at `offset`.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.posix(errno, operation: "write", path: path)
            }
            done += n
        }
    }

    /// Fills `buffer` from `offset`; a file shorter than that is an error.
    public static func readAll(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.posix(errno, operation: "read", path: path)
            }
            if n == 0 { throw StorageError(.io, "file shorter than written", location: path) }
            done += n
        }
    }

    /// Where the next data of a sparse file lies, from `offset` in a file of `size` bytes: bytes
    /// `offset..<start` are a hole (zeros never written), `start..<end` hold data. Where the file system
    /// cannot say (no SEEK_DATA), everything from `offset` is data. The one rule for holes: backups on the
    /// host and through a mover read the same files the same way.
    public static func nextData(_ fd: Int32, from offset: Int, size: Int) -> (start: Int, end: Int) {
        let found = lseek(fd, off_t(offset), seekData)
        if found < 0 { return errno == ENXIO ? (size, size) : (offset, size) }
        let start = min(Int(found), size)
        let hole = lseek(fd, off_t(start), seekHole)
        return (start, hole > start ? min(Int(hole), size) : size)
    }
}

extension FileIO {
    /// Reads at `offset` only what the page cache holds, without waiting for the disk (`preadv2` with
    /// `RWF_NOWAIT`): the bytes read (0 at the end of the file), or nil when the next bytes are not in memory
    /// or the kernel cannot tell — read them through `BlockingIO` then. Lets a pipeline read warm files on its
    /// own thread and hand only cold ones to blocking threads.
    public static func readCached(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int? {
        guard let preadv2 = preadv2Function, buffer.count > 0 else { return nil }
        var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        while true {
            let n = preadv2(fd, &vector, 1, off_t(offset), rwfNoWait)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return nil
        }
    }

    private typealias Preadv2 = @convention(c) (Int32, UnsafePointer<iovec>, Int32, off_t, Int32) -> Int
    /// glibc's `preadv2`, which the Glibc module does not export.
    private static let preadv2Function: Preadv2? = dlsym(nil, "preadv2").map { unsafeBitCast($0, to: Preadv2.self) }
    private static let rwfNoWait: Int32 = 0x8
}

// Linux's lseek whence values (not exported by Glibc's module without _GNU_SOURCE).
private let seekData: Int32 = 3
private let seekHole: Int32 = 4
