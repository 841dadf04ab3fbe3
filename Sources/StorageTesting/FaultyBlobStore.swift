import Foundation
import Storage
import Synchronization

/// Wraps a `BlobStore` and injects faults: for tests of what callers do when storage misbehaves. It also
/// counts the calls that reach it (how many requests a caller makes). Mocks never stand in for a real
/// backend; this only adds failures on top of one.
public final class FaultyBlobStore: BlobStore {
    public struct Rule: Sendable {
        public var kinds: Set<BlobKind>
        public var operations: Set<Operation>
        public var error: StorageError
        /// How many more matching calls fail (`nil`: all of them).
        public var remaining: Int?
        /// How many matching calls succeed before the rule starts failing (a store that fills up midway).
        public var after: Int

        public init(kinds: Set<BlobKind> = Set(BlobKind.allCases), operations: Set<Operation>,
                    error: StorageError, remaining: Int? = nil, after: Int = 0) {
            self.kinds = kinds
            self.operations = operations
            self.error = error
            self.remaining = remaining
            self.after = after
        }
    }

    /// `write`: a write into an object being streamed (a `BlobAppender`'s), with `streamsPacks`.
    public enum Operation: Sendable, Hashable { case save, load, size, remove, list, write }

    public let base: any BlobStore
    private let rules = Mutex<[Rule]>([])
    private let counts = Mutex<[Operation: [BlobKind: Int]]>([:])

    public var location: String { base.location }

    /// The base's, or the one given (a memory store counting reads as object storage would make them).
    public let readGap: Int

    /// Whether objects are streamed through the base's appender (each write then checked as `.write`), or
    /// saved whole (the default: `save` calls are what most tests count).
    public let streamsPacks: Bool

    public init(_ base: any BlobStore, readGap: Int? = nil, streamsPacks: Bool = false) {
        self.base = base
        self.readGap = readGap ?? base.readGap
        self.streamsPacks = streamsPacks
    }

    public func makeAppender(_ kind: BlobKind) async throws -> (any BlobAppender)? {
        guard streamsPacks, let inner = try await base.makeAppender(kind) else { return nil }
        return FaultyAppender(inner: inner, kind: kind, store: self)
    }

    /// The base's appender, each write first checked against the rules.
    final class FaultyAppender: BlobAppender {
        let inner: any BlobAppender
        let kind: BlobKind
        let store: FaultyBlobStore

        init(inner: any BlobAppender, kind: BlobKind, store: FaultyBlobStore) {
            self.inner = inner
            self.kind = kind
            self.store = store
        }

        func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
            try store.check(.write, kind)
            try inner.write(bytes, at: offset)
        }

        func commit(as handle: BlobHandle, size: Int) async throws {
            try await inner.commit(as: handle, size: size)
        }

        func abort() {
            inner.abort()
        }
    }

    public func inject(_ rule: Rule) {
        rules.withLock { $0.append(rule) }
    }

    public func clear() {
        rules.withLock { $0.removeAll() }
    }

    /// How many `op` calls for `kind` were made (failed ones included).
    public func calls(_ op: Operation, _ kind: BlobKind) -> Int {
        counts.withLock { $0[op]?[kind] ?? 0 }
    }

    fileprivate func check(_ op: Operation, _ kind: BlobKind) throws {
        counts.withLock { $0[op, default: [:]][kind, default: 0] += 1 }
        let failure: StorageError? = rules.withLock { rules in
            for i in rules.indices where rules[i].operations.contains(op) && rules[i].kinds.contains(kind) {
                if rules[i].after > 0 {
                    rules[i].after -= 1
                    continue
                }
                if let left = rules[i].remaining {
                    if left <= 0 { continue }
                    rules[i].remaining = left - 1
                }
                return rules[i].error
            }
            return nil
        }
        if let failure { throw failure }
    }

    struct Gather {
        var operation: Operation
        var kind: BlobKind
        var count: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let gathering = Mutex<Gather?>(nil)

    /// Holds the next `count` `op` calls for `kind` until all of them are waiting, then lets them go
    /// together: calls that could race (two creators of one file) then do.
    public func gather(_ op: Operation, _ kind: BlobKind, count: Int) {
        gathering.withLock { $0 = Gather(operation: op, kind: kind, count: count) }
    }

    private func arrive(_ op: Operation, _ kind: BlobKind) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let release: [CheckedContinuation<Void, Never>] = gathering.withLock { gather in
                guard var g = gather, g.operation == op, g.kind == kind else { return [continuation] }
                g.waiting.append(continuation)
                if g.waiting.count < g.count {
                    gather = g
                    return []
                }
                gather = nil
                return g.waiting
            }
            for waiter in release { waiter.resume() }
        }
    }

    public func save(_ handle: BlobHandle, data: Data, options: SaveOptions) async throws {
        await arrive(.save, handle.kind)
        try check(.save, handle.kind)
        try await base.save(handle, data: data, options: options)
    }

    public func load(_ handle: BlobHandle, range: Range<Int>?) async throws -> Data {
        try check(.load, handle.kind)
        return try await base.load(handle, range: range)
    }

    public func size(of handle: BlobHandle) async throws -> Int {
        try check(.size, handle.kind)
        return try await base.size(of: handle)
    }

    public func remove(_ handle: BlobHandle) async throws {
        try check(.remove, handle.kind)
        try await base.remove(handle)
    }

    public func list(_ kind: BlobKind) async throws -> [BlobInfo] {
        try check(.list, kind)
        return try await base.list(kind)
    }
}
