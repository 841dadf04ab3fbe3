import Foundation

/// Typed views of the dynamic calls (`TypedObject` kinds).
extension KubeClient {
    public func get<T: TypedObject>(_ type: T.Type, _ name: String, namespace: String? = nil) async throws -> T {
        T(try await get(T.resource, name, namespace: namespace))
    }

    /// Every object of a kind (all pages). `namespace` nil lists across all namespaces.
    public func list<T: TypedObject>(_ type: T.Type, namespace: String? = nil, options: ListOptions = ListOptions())
        async throws -> [T]
    {
        try await listAll(T.resource, namespace: namespace, options: options).items.map(T.init)
    }

    public func create<T: TypedObject>(_ object: T, options: WriteOptions = WriteOptions()) async throws -> T {
        T(try await create(object.object, as: T.resource, namespace: object.namespace, options: options))
    }

    public func update<T: TypedObject>(_ object: T, options: WriteOptions = WriteOptions()) async throws -> T {
        T(try await update(object.object, options: options))
    }

    /// Read-modify-write with optimistic concurrency: reads the object, applies `change`, writes it, and
    /// starts over from a fresh read when someone else wrote in between (Conflict), up to `attempts` times.
    @discardableResult
    public func modify<T: TypedObject>(_ type: T.Type, _ name: String, namespace: String? = nil, attempts: Int = 5,
                                       _ change: (inout T) throws -> Void) async throws -> T {
        var attempt = 1
        while true {
            var object = try await get(type, name, namespace: namespace)
            try change(&object)
            do {
                return try await update(object)
            } catch let error as KubeError where error.code == .conflict && attempt < attempts {
                attempt += 1
            }
        }
    }

    @discardableResult
    public func delete<T: TypedObject>(_ type: T.Type, _ name: String, namespace: String? = nil,
                                       options: DeleteOptions = DeleteOptions()) async throws -> T? {
        try await delete(T.resource, name, namespace: namespace, options: options).map(T.init)
    }
}
