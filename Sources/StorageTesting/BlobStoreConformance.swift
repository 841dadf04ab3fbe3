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
        try await store.remove(handle)
        try await expectError(.notFound, "load of a missing object is notFound") {
            _ = try await store.load(handle)
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
