import Foundation

/// The kinds of objects a repository keeps. Each kind lives in its own namespace of a store.
public enum BlobKind: String, Sendable, CaseIterable, Codable {
    /// The repository's marker and encrypted configuration (`config`, `format`).
    case config
    /// Password-wrapped master keys, one object per password.
    case keys
    /// Lock objects of running processes.
    case locks
    /// Encrypted snapshot manifests.
    case snapshots
    /// Encrypted index files mapping blobs to packs.
    case index
    /// Pack files holding encrypted blobs.
    case data
}

/// The name of one object in a store.
public struct BlobHandle: Hashable, Sendable, CustomStringConvertible {
    public var kind: BlobKind
    public var name: String

    public init(_ kind: BlobKind, _ name: String) {
        self.kind = kind
        self.name = name
    }

    public var description: String { "\(kind.rawValue)/\(name)" }
}

/// One entry of a listing.
public struct BlobInfo: Hashable, Sendable {
    public var name: String
    public var size: Int

    public init(name: String, size: Int) {
        self.name = name
        self.size = size
    }
}

/// Options for `BlobStore.save`.
public struct SaveOptions: Sendable {
    /// Fail with `StorageError.alreadyExists` instead of replacing an existing object.
    public var createOnly: Bool

    public init(createOnly: Bool = false) {
        self.createOnly = createOnly
    }
}

/// A flat store of named, immutable objects: a directory tree, an S3 bucket, memory.
///
/// The contract every backend keeps (checked by `BlobStoreConformance` in `StorageTesting`):
///
/// - `save` is **atomic**: a reader sees either no object or the whole object, never a prefix.
///   When `save` returns, the object is **durable** (it survives a crash of this process and of the
///   machine, as far as the medium allows). Saving a name that exists replaces it atomically,
///   unless `SaveOptions.createOnly` is set, in which case the call fails with `.alreadyExists`.
/// - `load` returns exactly the bytes saved, or the requested byte range of them. A range that
///   reaches past the end is an error (`.rangeNotSatisfiable`), never a short read.
/// - `list` returns every object of a kind whose `save` has returned, in no particular order, and
///   nothing that is only partly written.
/// - `remove` of a missing object fails with `.notFound`.
/// - Every error is a `StorageError`; `StorageError.isTransient` tells the caller whether the same
///   request may succeed when retried.
public protocol BlobStore: Sendable {
    /// A human-readable location (path or URL) without secrets, for messages.
    var location: String { get }

    /// Stores `data` under `handle`. Atomic and durable on return.
    func save(_ handle: BlobHandle, data: Data, options: SaveOptions) async throws

    /// Loads the whole object, or `range` of it.
    func load(_ handle: BlobHandle, range: Range<Int>?) async throws -> Data

    /// Reads `range` of the object and hands it to `body` in order, a piece at a time as it arrives: a long
    /// range is read with one request (on object storage) and never held whole. The pieces together are
    /// exactly the range; the errors are `load`'s (`.notFound`, `.rangeNotSatisfiable`). A store that retries
    /// asks again only for what it has not handed over yet. An error thrown by `body` ends the read and is
    /// rethrown as it is. `ends` (ascending offsets in the object) is a hint: where the caller would have a
    /// piece end — the ends of the blobs it reads from a pack, so that it can use them where they lie,
    /// uncopied. A store that chooses its own pieces (a file read a MiB at a time) ends them there; one
    /// that hands on what the network brings ignores it.
    func load(_ handle: BlobHandle, range: Range<Int>, ends: [Int], pieces body: (Data) async throws -> Void) async throws

    /// Returns the size in bytes of the object.
    func size(of handle: BlobHandle) async throws -> Int

    /// Removes the object.
    func remove(_ handle: BlobHandle) async throws

    /// Lists every object of a kind.
    func list(_ kind: BlobKind) async throws -> [BlobInfo]

    /// Removes leftovers of interrupted writes that the store itself keeps (temporary files). Called only
    /// while no other process writes (under an exclusive repository lock). Returns how many it removed.
    func removeLeftovers() async throws -> Int

    /// Objects of `kind` that must not be removed yet — object-lock retention on stores that support it —
    /// with the time each may go. Prune and forget leave them alone; `remove` of one fails.
    func protectedObjects(_ kind: BlobKind) async throws -> [String: Date]

    /// How many bytes between two wanted ranges of an object are cheaper to read and drop than to ask for
    /// separately: 0 for a file system, about a request's worth of transfer on object storage.
    var readGap: Int { get }

    /// A hint that these objects are about to be read: a file system has the kernel read them ahead, in the
    /// background, so a reader that walks them one at a time finds them in memory; other stores ignore it.
    func prefetch(_ handles: [BlobHandle]) async

    /// The same hint for every object of `kind` (index files and snapshots while a key is derived): a file
    /// system lists them and has them read ahead; other stores ignore it without listing anything.
    func prefetch(every kind: BlobKind) async

    /// The same hint for a range of one object (the next run of blobs a reader will stream from a pack).
    func prefetch(_ handle: BlobHandle, range: Range<Int>) async

    /// A writer that builds one object piece by piece without holding it in memory, or nil when the store
    /// cannot (callers then buffer and use `save`). The object becomes visible only on `commit`, with the
    /// same atomicity and durability as `save`.
    func makeAppender(_ kind: BlobKind) async throws -> (any BlobAppender)?
}

/// An object built piece by piece (see `BlobStore.makeAppender`). Each piece is written at an offset the
/// caller chose — from several threads at once, as long as the pieces do not overlap — so nobody holds a lock
/// while the bytes reach the operating system. The calls block (they are file writes): run them
/// through `BlockingIO`. On `commit` the object is the bytes `0..<size`.
public protocol BlobAppender: AnyObject, Sendable {
    /// Writes bytes at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws
    /// Makes the object (`size` bytes, all written) durable and visible under `handle`. Atomic.
    func commit(as handle: BlobHandle, size: Int) async throws
    /// Discards everything written.
    func abort()
}

extension BlobStore {
    public func removeLeftovers() async throws -> Int { 0 }

    public func protectedObjects(_ kind: BlobKind) async throws -> [String: Date] { [:] }

    public func makeAppender(_ kind: BlobKind) async throws -> (any BlobAppender)? { nil }

    public var readGap: Int { 0 }

    public func prefetch(_ handles: [BlobHandle]) async {}
    public func prefetch(_ handle: BlobHandle, range: Range<Int>) async {}

    public func prefetch(every kind: BlobKind) async {}

    public func save(_ handle: BlobHandle, data: Data) async throws {
        try await save(handle, data: data, options: SaveOptions())
    }

    public func load(_ handle: BlobHandle) async throws -> Data {
        try await load(handle, range: nil)
    }

    public func load(_ handle: BlobHandle, range: Range<Int>, pieces body: (Data) async throws -> Void) async throws {
        try await load(handle, range: range, ends: [], pieces: body)
    }

    /// Stores without a cost per request read a range in pieces of about 1 MiB (what a reader of blobs
    /// holds beside the blob it is waiting for), each ending at the last of `ends` it reaches — or, where no
    /// end falls within a MiB (one blob longer than that), at the next end.
    public func load(_ handle: BlobHandle, range: Range<Int>, ends: [Int], pieces body: (Data) async throws -> Void) async throws {
        var at = range.lowerBound
        var next = 0    // the first of `ends` past `at`
        while at < range.upperBound {
            var end = min(range.upperBound, at + (1 << 20))
            while next < ends.count, ends[next] <= at { next += 1 }
            if next < ends.count {
                var last = next
                while last + 1 < ends.count, ends[last + 1] <= end { last += 1 }
                end = min(range.upperBound, ends[last] <= end ? ends[last] : ends[next])
            }
            let piece = try await load(handle, range: at..<end)
            try await body(piece)
            at = end
        }
    }

    /// Whether the object exists.
    public func exists(_ handle: BlobHandle) async throws -> Bool {
        do {
            _ = try await size(of: handle)
            return true
        } catch let error as StorageError where error.code == .notFound {
            return false
        }
    }
}
