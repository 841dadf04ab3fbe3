import Foundation
import NIOCore
import Storage

/// An object built piece by piece: spooled to a local temporary file (never held in memory), uploaded on
/// `commit` — in one PUT, or in parts when larger than the multipart threshold.
final class S3Appender: BlobAppender, @unchecked Sendable {
    let store: S3BlobStore
    let kind: BlobKind
    let path: String
    private let fd: Int32
    private var closed = false

    init(store: S3BlobStore, kind: BlobKind) throws {
        self.store = store
        self.kind = kind
        path = store.options.spoolDirectory + "/cairn-s3-spool-\(UUID().uuidString)"
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.posix(errno, operation: "create a spool file", path: path) }
        unlink(path)  // anonymous from now on: nothing is left behind whatever happens to the process
    }

    deinit { abort() }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try FileIO.writeAll(fd, bytes, at: offset, path: path)
    }

    private func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        try FileIO.readAll(fd, into: buffer, at: offset, path: path)
    }

    /// Bytes of the spool file, read off the cooperative pool.
    func chunk(_ offset: Int, _ count: Int) async throws -> ByteBuffer {
        try await BlockingIO.run {
            var buffer = ByteBuffer()
            buffer.reserveCapacity(count)
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                try self.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<count]))
                return count
            }
            return buffer
        }
    }

    func commit(as handle: BlobHandle, size: Int) async throws {
        precondition(handle.kind == kind, "an appender commits to the kind it was made for")
        if size > store.options.multipartThreshold {
            try await store.uploadMultipart(handle, size: size) { offset, count in try await self.chunk(offset, count) }
        } else {
            let body = try await chunk(0, size)
            try await store.putObject(handle, body: body, md5: S3BlobStore.md5Base64(body),
                                      createOnly: false)
        }
        abort()
    }

    func abort() {
        guard !closed else { return }
        closed = true
        close(fd)
    }
}
