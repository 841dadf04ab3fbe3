import Concurrent
import Foundation
import Storage

/// A failed conformance expectation, with the rule of the `BlobStore` contract it breaks.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public var rule: String
    public var detail: String
    public var description: String { "BlobStore contract broken: \(rule): \(detail)" }
}

/// The one suite every `BlobStore` backend runs: it checks each rule of the contract written on
/// `BlobStore`. Backends pass an empty store; the suite leaves it empty again.
public struct BlobStoreConformance: Sendable {
    public let store: any BlobStore

    public init(_ store: any BlobStore) {
        self.store = store
    }

    func require(_ condition: Bool, _ rule: String, _ detail: @autoclosure () -> String) throws {
        if !condition { throw ConformanceFailure(rule: rule, detail: detail()) }
    }

    func expectError(_ code: StorageError.Code, _ rule: String, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as StorageError {
            try require(error.code == code, rule, "expected \(code), got \(error.code): \(error)")
            return
        }
        throw ConformanceFailure(rule: rule, detail: "expected error \(code), call succeeded")
    }

    /// Runs every check.
    public func run() async throws {
        try await saveLoadRoundTrip()
        try await rangesAndErrors()
        try await createOnlyAndReplace()
        try await listingAndRemoval()
        try await concurrentWriters()
        try await appender()
    }

    /// Objects built with an appender (when the store offers one): pieces written at their offsets from
    /// several threads at once and out of order, visible only after commit, read back exactly, and nothing
    /// left behind by an aborted one. `large` bytes exercise a store's multipart path.
    func appender(large: Int = 11 << 20) async throws {
        guard let appender = try await store.makeAppender(.data) else { return }
        var expected = Data()
        var pieces: [(offset: Int, bytes: Data)] = []
        var seed: UInt64 = 0x9E3779B97F4A7C15
        for size in [1, 70_000, large, 3] {
            var bytes = [UInt8](repeating: 0, count: size)
            for i in 0..<size {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                bytes[i] = UInt8(truncatingIfNeeded: seed >> 33)
            }
            pieces.append((expected.count, Data(bytes)))
            expected.append(contentsOf: bytes)
        }
        try await Concurrent.forEach(pieces.reversed(), width: pieces.count, { piece in
            try await BlockingIO.run { try piece.bytes.withUnsafeBytes { try appender.write($0, at: piece.offset) } }
        }, collect: { _ in })
        let handle = BlobHandle(.data, String(repeating: "cd", count: 32))
        try require(!(try await store.exists(handle)), "an uncommitted object is invisible", "visible")
        try await appender.commit(as: handle, size: expected.count)
        try require(try await store.load(handle) == expected, "a committed object reads back exactly",
                    "\(expected.count) bytes expected")
        try require(try await store.load(handle, range: large..<(large + 4096)) == expected.subdata(in: large..<(large + 4096)),
                    "ranges of a committed object", "differs")
        var streamed = Data()
        try await store.load(handle, range: 70_000..<expected.count) { streamed.append($0) }
        try require(streamed == expected.subdata(in: 70_000..<expected.count), "a long range read in pieces is exactly the range",
                    "\(streamed.count) of \(expected.count - 70_000) bytes")
        // Where pieces should end (blob ends: many short, one far longer than a piece, one past the range) is
        // a hint; the pieces are still exactly the range.
        let ends = [70_100, 80_000, 300_000, 1_700_000, expected.count - 10, expected.count + 5]
        streamed = Data()
        var cuts: [Int] = []
        try await store.load(handle, range: 70_000..<expected.count, ends: ends) { piece in
            streamed.append(piece)
            cuts.append(70_000 + streamed.count)
        }
        try require(streamed == expected.subdata(in: 70_000..<expected.count), "a long range read in pieces with ends is exactly the range",
                    "\(streamed.count) of \(expected.count - 70_000) bytes")
        if store.readGap == 0 {
            // A store that chooses its own pieces ends each where the hint says.
            try require(cuts.allSatisfy { ends.contains($0) || $0 == expected.count }, "pieces end at the ends asked for",
                        "\(cuts)")
        }
        try await store.remove(handle)
        if let aborted = try await store.makeAppender(.data) {
            try Data(count: 1000).withUnsafeBytes { try aborted.write($0, at: 0) }
            aborted.abort()
        }
        try require(try await store.list(.data).isEmpty, "an aborted appender leaves nothing", "objects listed")
    }

    func saveLoadRoundTrip() async throws {
        for kind in BlobKind.allCases where kind != .config {
            let payload = Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ kind.rawValue.count) })
            let name = String(repeating: "ab", count: 32)
            let handle = BlobHandle(kind, name)
            try await store.save(handle, data: payload)
            let loaded = try await store.load(handle)
            try require(loaded == payload, "load returns exactly the bytes saved", "\(kind): \(loaded.count) bytes")
            let size = try await store.size(of: handle)
            try require(size == payload.count, "size matches", "\(size) != \(payload.count)")
            try await store.remove(handle)
        }
        let empty = BlobHandle(.locks, "empty")
        try await store.save(empty, data: Data())
        try require(try await store.load(empty).isEmpty, "empty objects round-trip", "not empty")
        try await store.remove(empty)
    }

    func rangesAndErrors() async throws {
        let handle = BlobHandle(.data, "00112233")
        let payload = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0) })
        try await store.save(handle, data: payload)
        let part = try await store.load(handle, range: 100..<300)
        try require(part == payload.subdata(in: 100..<300), "ranged load returns the range", "\(part.count) bytes")
        let tail = try await store.load(handle, range: 4000..<4096)
        try require(tail == payload.subdata(in: 4000..<4096), "range up to the end", "\(tail.count) bytes")
        try await expectError(.rangeNotSatisfiable, "a range past the end is an error") {
            _ = try await store.load(handle, range: 4000..<5000)
        }
        var streamed = Data()
        try await store.load(handle, range: 100..<4096) { streamed.append($0) }
        try require(streamed == payload.subdata(in: 100..<4096), "a range read in pieces is exactly the range",
                    "\(streamed.count) bytes")
        try await expectError(.rangeNotSatisfiable, "a range read in pieces past the end is an error") {
            try await store.load(handle, range: 4000..<5000) { _ in }
        }
        struct Refused: Error {}
        do {
            try await store.load(handle, range: 0..<4096) { _ in throw Refused() }
            throw ConformanceFailure(rule: "an error of the receiver of pieces is passed on as it is", detail: "none thrown")
        } catch is Refused {}
        try await store.remove(handle)
        try await expectError(.notFound, "load of a missing object is notFound") {
            _ = try await store.load(handle)
        }
        try await expectError(.notFound, "a range of a missing object read in pieces is notFound") {
            try await store.load(handle, range: 0..<10) { _ in }
        }
        try await expectError(.notFound, "size of a missing object is notFound") {
            _ = try await store.size(of: handle)
        }
        try await expectError(.notFound, "remove of a missing object is notFound") {
            try await store.remove(handle)
        }
        try require(!(try await store.exists(handle)), "exists is false after remove", "still exists")
    }

    func createOnlyAndReplace() async throws {
        let handle = BlobHandle(.keys, "k1")
        try await store.save(handle, data: Data("one".utf8), options: SaveOptions(createOnly: true))
        try await expectError(.alreadyExists, "createOnly refuses an existing name") {
            try await store.save(handle, data: Data("two".utf8), options: SaveOptions(createOnly: true))
        }
        try require(try await store.load(handle) == Data("one".utf8), "a refused createOnly changes nothing",
                    "content changed")
        try await store.save(handle, data: Data("three".utf8))
        try require(try await store.load(handle) == Data("three".utf8), "save replaces", "content not replaced")
        try await store.remove(handle)
    }

    func listingAndRemoval() async throws {
        var names: Set<String> = []
        for i in 0..<300 {
            let name = String(format: "%064x", i * 7919)
            names.insert(name)
            try await store.save(BlobHandle(.index, name), data: Data(repeating: UInt8(i % 256), count: i))
        }
        let listed = try await store.list(.index)
        try require(Set(listed.map(\.name)) == names, "list returns every saved object",
                    "\(listed.count) of \(names.count)")
        for info in listed {
            let expected = Int(info.name, radix: 16)! / 7919
            try require(info.size == expected, "list reports sizes", "\(info.name): \(info.size)")
        }
        try require(try await store.list(.snapshots).isEmpty, "kinds are separate namespaces", "snapshots not empty")
        for name in names { try await store.remove(BlobHandle(.index, name)) }
        try require(try await store.list(.index).isEmpty, "removed objects are not listed", "index not empty")
    }

    func concurrentWriters() async throws {
        let payloads = (0..<32).map { i in Data(repeating: UInt8(i), count: 10_000 + i) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, payload) in payloads.enumerated() {
                group.addTask {
                    try await store.save(BlobHandle(.data, String(format: "%064x", i)), data: payload)
                }
            }
            try await group.waitForAll()
        }
        for (i, payload) in payloads.enumerated() {
            let handle = BlobHandle(.data, String(format: "%064x", i))
            try require(try await store.load(handle) == payload, "concurrent saves do not mix", "\(i)")
            try await store.remove(handle)
        }
    }
}
