import Foundation

/// Whole reads and writes on file descriptors: short transfers and interruptions retried, errors as
/// `StorageError`s naming the path. Shared by the stores that spool to local files.
public enum FileIO {
    /// Writes all of `bytes` at the current position.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
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
}
