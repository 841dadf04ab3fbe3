import Crypto
import Foundation
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
    static let kept = 3

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

/// A pack being filled in memory: sealed blobs back to back, then (on `finish`) the sealed header and
/// its length. Owned by one party at a time: the repository's write state (under its lock), then the
/// task that writes it.
final class PackBuffer: @unchecked Sendable {
    let memory: PackMemory
    var block: PackMemory.Block?
    var size = 0
    var blobs: [PackedBlob] = []

    init(memory: PackMemory) {
        self.memory = memory
    }

    deinit {
        if let block { memory.give(block) }
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

    private func write(_ bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count)
        (block!.pointer + size).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        size += bytes.count
    }

    func append(type: BlobType, id: BlobID, sealed: Data, rawLength: Int) {
        blobs.append(PackedBlob(type: type, id: id, offset: UInt32(size), length: UInt32(sealed.count),
                                rawLength: UInt32(rawLength)))
        sealed.withUnsafeBytes { write($0) }
    }

    /// Seals the header, appends it and its length, and hands the bytes out without copying; the memory
    /// returns to the pool when the returned `Data` is released.
    func finish(cipher: BlobCipher) throws -> (Data, BlobID) {
        let header = try cipher.seal(PackFormat.encodeHeader(blobs), aad: PackFormat.headerAAD)
        header.withUnsafeBytes { write($0) }
        var length = UInt32(header.count).littleEndian
        withUnsafeBytes(of: &length) { write($0) }
        let done = block!
        block = nil
        let memory = self.memory
        let bytes = UnsafeRawBufferPointer(start: done.pointer, count: size)
        let id = BlobID(bytes: Array(SHA256.hash(data: bytes)))
        let data = Data(bytesNoCopy: done.pointer, count: size, deallocator: .custom { _, _ in memory.give(done) })
        return (data, id)
    }
}
