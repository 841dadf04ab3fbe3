import Foundation
import Synchronization

/// A `BlobStore` in memory: for tests and as the reference behaviour of the contract.
public final class MemoryBlobStore: BlobStore {
    private let objects = Mutex<[BlobHandle: Data]>([:])

    public var location: String { "memory" }

    public init() {}

    public func save(_ handle: BlobHandle, data: Data, options: SaveOptions) async throws {
        try objects.withLock { objects in
            if options.createOnly, objects[handle] != nil {
                throw StorageError(.alreadyExists, "save: object already exists", location: handle.description)
            }
            objects[handle] = data
        }
    }

    public func load(_ handle: BlobHandle, range: Range<Int>?) async throws -> Data {
        let data = try objects.withLock { objects in
            guard let data = objects[handle] else {
                throw StorageError(.notFound, "load: no such object", location: handle.description)
            }
            return data
        }
        guard let range else { return data }
        guard range.lowerBound >= 0, range.upperBound <= data.count else {
            throw StorageError(.rangeNotSatisfiable,
                               "requested bytes \(range.lowerBound)..<\(range.upperBound) of \(data.count)",
                               location: handle.description)
        }
        return data.subdata(in: (data.startIndex + range.lowerBound)..<(data.startIndex + range.upperBound))
    }

    public func size(of handle: BlobHandle) async throws -> Int {
        try objects.withLock { objects in
            guard let data = objects[handle] else {
                throw StorageError(.notFound, "stat: no such object", location: handle.description)
            }
            return data.count
        }
    }

    public func remove(_ handle: BlobHandle) async throws {
        try objects.withLock { objects in
            guard objects.removeValue(forKey: handle) != nil else {
                throw StorageError(.notFound, "remove: no such object", location: handle.description)
            }
        }
    }

    public func list(_ kind: BlobKind) async throws -> [BlobInfo] {
        objects.withLock { objects in
            objects.filter { $0.key.kind == kind }.map { BlobInfo(name: $0.key.name, size: $0.value.count) }
        }
    }

    /// Replaces an object's bytes without the contract's checks: for corruption tests.
    public func tamper(_ handle: BlobHandle, _ transform: (inout Data) -> Void) {
        objects.withLock { objects in
            if var data = objects[handle] {
                transform(&data)
                objects[handle] = data
            }
        }
    }
}
