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
        return allocate(max(capacity, needed))
    }

    /// A block of exactly `size` bytes, not from the pool (given back, it is kept only if a full pack's size).
    func allocate(_ size: Int) -> Block {
        Block(pointer: UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), capacity: size)
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
/// and saves it whole.
///
/// Room for a blob is taken under the repository's state lock (`add`), which fixes its offset. In a streamed
/// pack its bytes wait there with the blobs placed after it until they make a batch of `batchBytes`; the
/// task whose blob completes a batch writes it to the temporary object, outside any lock and off the
/// cooperative pool (`write`), while other tasks fill the next one. One write per batch, not per blob: each
/// write is a hand-off to a thread that may block, which costs more than writing a small blob. The pack's
/// SHA-256 (its name) is taken from the batches in memory as they are written, in offset order, never by
/// reading the pack back. `finish` writes what is left and waits for every write, so a pack is stored only
/// when all its blobs are in it.
final class PackBuffer: @unchecked Sendable {
    let memory: PackMemory
    var block: PackMemory.Block?
    let appender: (any BlobAppender)?
    /// Bytes placed so far, and the blobs placed; changed only under the repository's state lock while the
    /// pack is open, then only by the task that writes it.
    private(set) var size = 0
    var blobs: [PackedBlob] = []
    let writes = PendingWrites()
    /// A streamed pack's blobs placed and not yet handed out in a batch, the first of them at `stagedOffset`.
    private var staged: [Data] = []
    private var stagedOffset = 0
    private var stagedBytes = 0
    /// How many bytes of blobs are written to a streamed pack at once.
    static let batchBytes = 1 << 20

    /// Blobs placed one after another in a streamed pack, to be written together at `offset`.
    struct Batch: Sendable {
        let pieces: [Data]
        let offset: Int
        let count: Int
    }

    /// A streamed pack's name is the SHA-256 of its bytes, taken from the batches in memory as they are
    /// written, in offset order (they are written in any order: a batch written before the ones ahead of it
    /// waits here). One writer at a time hashes (`hashing`), every batch that is ready; the others leave
    /// theirs and go on. Only that writer touches `hasher`.
    private struct Digest {
        var hashed = 0
        var waiting: [Int: Batch] = [:]
        var hashing = false
    }
    private let digest = Mutex(Digest())
    private var hasher = SHA256()

    /// Bytes of memory the pack starts with, when not a pooled block of a full pack's size.
    let startSize: Int?

    init(memory: PackMemory, appender: (any BlobAppender)? = nil, startSize: Int? = nil) {
        self.memory = memory
        self.appender = appender
        self.startSize = startSize
    }

    deinit {
        if let block { memory.give(block) }
        appender?.abort()
    }

    var isEmpty: Bool { blobs.isEmpty }

    private func reserve(_ extra: Int) {
        if block == nil { block = startSize.map { memory.allocate(max($0, extra)) } ?? memory.take(atLeast: extra) }
        guard let current = block, size + extra > current.capacity else { return }
        let bigger = memory.take(atLeast: (size + extra) * 3 / 2)
        bigger.pointer.copyMemory(from: current.pointer, byteCount: size)
        memory.give(current)
        block = bigger
    }

    /// Places a sealed blob at the end of the pack; called under the repository's state lock. A pack in
    /// memory copies the bytes now (a memory copy, nothing that blocks) and returns nil; a streamed pack
    /// keeps them, and once they complete a batch returns it for the caller to `write`, counted as pending.
    func add(type: BlobType, id: BlobID, sealed: Data, rawLength: Int) -> Batch? {
        let offset = size
        blobs.append(PackedBlob(type: type, id: id, offset: UInt32(offset), length: UInt32(sealed.count),
                                rawLength: UInt32(rawLength)))
        size += sealed.count
        guard appender == nil else {
            if staged.isEmpty { stagedOffset = offset }
            staged.append(sealed)
            stagedBytes += sealed.count
            return stagedBytes >= Self.batchBytes ? takeBatch() : nil
        }
        reserve(sealed.count)
        sealed.withUnsafeBytes { (block!.pointer + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return nil
    }

    /// The blobs kept so far as a batch to write, counted as pending; nil when there are none.
    private func takeBatch() -> Batch? {
        guard !staged.isEmpty else { return nil }
        defer {
            staged = []
            stagedBytes = 0
        }
        writes.begin()
        return Batch(pieces: staged, offset: stagedOffset, count: stagedBytes)
    }

    /// Adds a written batch to the pack's hash, with every batch after it that was written before it.
    private func hashInOrder(_ batch: Batch) {
        let turn = digest.withLock { d -> Bool in
            d.waiting[batch.offset] = batch
            guard !d.hashing else { return false }
            d.hashing = true
            return true
        }
        guard turn else { return }
        while let next = digest.withLock({ d -> Batch? in
            guard let next = d.waiting.removeValue(forKey: d.hashed) else {
                d.hashing = false
                return nil
            }
            d.hashed += next.count
            return next
        }) {
            for piece in next.pieces { hasher.update(data: piece) }
        }
    }

    /// Writes a batch of blobs into the streamed pack.
    func write(_ batch: Batch) async throws {
        guard let appender else { return }
        do {
            try await BlockingIO.run {
                var offset = batch.offset
                for piece in batch.pieces {
                    try piece.withUnsafeBytes { try appender.write($0, at: offset) }
                    offset += piece.count
                }
                self.hashInOrder(batch)
            }
            writes.end(failed: false)
        } catch {
            writes.end(failed: true)
            throw error
        }
    }

    /// `add` and `write` for a pack with one owner (prune's repacking).
    func append(type: BlobType, id: BlobID, sealed: Data, rawLength: Int) async throws {
        if let batch = add(type: type, id: id, sealed: sealed, rawLength: rawLength) {
            try await write(batch)
        }
    }

    /// Appends the sealed header and its length and stores the pack durably under its SHA-256 name. Waits
    /// for the blobs' writes first; a pack one of them failed to reach is never stored.
    func finish(cipher: BlobCipher, store: any BlobStore) async throws -> BlobID {
        // Nothing is placed any more (the pack is no longer open): the last blobs are written now.
        if let rest = takeBatch() { try await write(rest) }
        guard await writes.settled() else {
            throw RepositoryError(.storage, "a blob of this pack could not be written to its temporary file")
        }
        var sealedHeader = try cipher.seal(PackFormat.encodeHeader(blobs), aad: PackFormat.headerAAD)
        withUnsafeBytes(of: UInt32(sealedHeader.count).littleEndian) { sealedHeader.append(contentsOf: $0) }
        let tail = sealedHeader
        let headerOffset = size
        size += tail.count
        if let appender {
            let size = self.size
            // Every batch was written, so every one was hashed: the hash covers the blobs up to the header.
            guard digest.withLock({ $0.hashed }) == headerOffset else {
                throw RepositoryError(.storage, "the pack's hash does not cover all of its blobs")
            }
            try await BlockingIO.run { try tail.withUnsafeBytes { try appender.write($0, at: headerOffset) } }
            hasher.update(data: tail)
            let id = BlobID(bytes: Array(hasher.finalize()))
            try await appender.commit(as: BlobHandle(.data, id.hex), size: size)
            return id
        }
        reserve(tail.count)
        tail.withUnsafeBytes { (block!.pointer + headerOffset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
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

/// Writes into a pack that have begun and not ended; `settled` waits until there are none.
final class PendingWrites: Sendable {
    private struct State {
        var running = 0
        var failed = false
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())

    func begin() {
        state.withLock { $0.running += 1 }
    }

    func end(failed: Bool) {
        let resume = state.withLock { s -> (CheckedContinuation<Bool, Never>, Bool)? in
            s.running -= 1
            s.failed = s.failed || failed
            guard s.running == 0, let waiter = s.waiter else { return nil }
            s.waiter = nil
            return (waiter, !s.failed)
        }
        if let (waiter, ok) = resume { waiter.resume(returning: ok) }
    }

    /// Waits until every write has ended; whether all of them succeeded. One waiter at a time (the task
    /// that writes the pack).
    func settled() async -> Bool {
        await withCheckedContinuation { continuation in
            let now = state.withLock { s -> Bool? in
                guard s.running > 0 else { return !s.failed }
                s.waiter = continuation
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }
}
