import Crypto
import Foundation
import Storage
import Synchronization

/// Reusable memory for packs being filled. Packs are the largest allocations of a backup; allocating
/// and freeing 16+ MiB per pack makes glibc raise its mmap and trim thresholds and keep that much freed
/// memory per arena, so buffers are kept and reused instead.
final class PackMemory: Sendable {
    struct Block: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let capacity: Int
    }

    let capacity: Int
    let free = Mutex<[Block]>([])
    static let kept = 2

    init(capacity: Int) {
        self.capacity = capacity
    }

    func take(atLeast needed: Int) -> Block {
        if needed <= capacity, let block = free.withLock({ $0.popLast() }) { return block }
        let size = max(capacity, needed)
        return Block(pointer: UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), capacity: size)
    }

    func give(_ block: Block) {
        let keep = block.capacity == capacity && free.withLock { free -> Bool in
            guard free.count < Self.kept else { return false }
            free.append(block)
            return true
        }
        if !keep { block.pointer.deallocate() }
    }

    deinit {
        free.withLock { $0.forEach { $0.pointer.deallocate() } }
    }
}

/// A pack being filled: sealed blobs back to back, then (on `finish`) the sealed header and its length.
/// Streams into a temporary object when the store can (no pack in memory), otherwise fills pooled memory
/// and saves it whole. Owned by one party at a time: the repository's write state (under its lock), then
/// the task that writes it.
final class PackBuffer: @unchecked Sendable {
    let memory: PackMemory
    var block: PackMemory.Block?
    let appender: (any BlobAppender)?
    private(set) var size = 0
    var blobs: [PackedBlob] = []
    /// Set when a write failed: the bytes no longer match `size`, so the pack must never be stored.
    private(set) var broken = false

    init(memory: PackMemory, appender: (any BlobAppender)? = nil) {
        self.memory = memory
        self.appender = appender
    }

    deinit {
        if let block { memory.give(block) }
        appender?.abort()
    }

    var isEmpty: Bool { blobs.isEmpty }

    private func reserve(_ extra: Int) {
        if block == nil { block = memory.take(atLeast: extra) }
        guard let current = block, size + extra > current.capacity else { return }
        let bigger = memory.take(atLeast: (size + extra) * 3 / 2)
        bigger.pointer.copyMemory(from: current.pointer, byteCount: size)
        memory.give(current)
        block = bigger
    }

    private func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !broken else { throw RepositoryError(.storage, "an earlier write to this pack failed") }
        if let appender {
            do {
                try appender.append(bytes)
            } catch {
                broken = true
                throw error
            }
        } else {
            reserve(bytes.count)
            (block!.pointer + size).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        size += bytes.count
    }

    func append(type: BlobType, id: BlobID, sealed: Data, rawLength: Int) throws {
        let offset = UInt32(size)
        try sealed.withUnsafeBytes { try write($0) }
        blobs.append(PackedBlob(type: type, id: id, offset: offset, length: UInt32(sealed.count),
                                rawLength: UInt32(rawLength)))
    }

    /// Appends the sealed header and its length and stores the pack durably under its SHA-256 name.
    func finish(cipher: BlobCipher, store: any BlobStore) async throws -> BlobID {
        let header = try cipher.seal(PackFormat.encodeHeader(blobs), aad: PackFormat.headerAAD)
        try header.withUnsafeBytes { try write($0) }
        var length = UInt32(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try write($0) }
        if let appender {
            // Hash by reading back through the OS cache, 1 MiB at a time: the pack is never in memory.
            var hasher = SHA256()
            let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { piece.deallocate() }
            var offset = 0
            while offset < size {
                let n = min(piece.count, size - offset)
                let part = UnsafeMutableRawBufferPointer(rebasing: piece[0..<n])
                try appender.read(at: offset, into: part)
                hasher.update(bufferPointer: UnsafeRawBufferPointer(part))
                offset += n
            }
            let id = BlobID(bytes: Array(hasher.finalize()))
            try await appender.commit(as: BlobHandle(.data, id.hex))
            return id
        }
        let done = block!
        block = nil
        let memory = self.memory
        let bytes = UnsafeRawBufferPointer(start: done.pointer, count: size)
        let id = BlobID(bytes: Array(SHA256.hash(data: bytes)))
        let data = Data(bytesNoCopy: done.pointer, count: size, deallocator: .custom { _, _ in memory.give(done) })
        try await store.save(BlobHandle(.data, id.hex), data: data)
        return id
    }
}
