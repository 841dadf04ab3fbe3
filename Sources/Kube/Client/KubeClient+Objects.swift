/// The dynamic client: any resource type, objects as JSON.
extension KubeClient {
    func namespace(_ r: APIResource, _ namespace: String?) -> String? {
        r.namespaced ? (namespace ?? connection.namespace) : nil
    }

    func describe(_ verb: String, _ r: APIResource, _ namespace: String?, _ name: String? = nil) -> String {
        var text = "\(verb) \(r.qualifiedName)"
        if let name { text += " \(name)" }
        if let namespace { text += " in namespace \(namespace)" }
        return text
    }

    /// Reads one object.
    public func get(_ r: APIResource, _ name: String, namespace: String? = nil) async throws -> KubeObject {
        let ns = self.namespace(r, namespace)
        let operation = describe("get", r, ns, name)
        let response = try await send(APIRequest(method: .GET, path: r.path(namespace: ns, name: name),
                                                 idempotent: true, operation: operation))
        return KubeObject(try response.json(operation))
    }

    /// One page of a list. `namespace` nil lists a namespaced type across all namespaces.
    public func list(_ r: APIResource, namespace: String? = nil, options: ListOptions = ListOptions()) async throws
        -> ObjectList
    {
        let ns = r.namespaced ? namespace : nil
        let operation = describe("list", r, ns)
        let response = try await send(APIRequest(method: .GET, path: r.path(namespace: ns), query: options.query,
                                                 idempotent: true, operation: operation))
        let json = try response.json(operation)
        guard let items = json["items"]?.array else {
            throw KubeError(.decoding, "the list has no items", operation: operation)
        }
        return ObjectList(
            items: items.map { item in
                var object = KubeObject(item)
                // Items of a list carry no apiVersion/kind; fill them in as kubectl does.
                if object.apiVersion.isEmpty { object.apiVersion = r.apiVersion }
                if object.kind.isEmpty { object.kind = r.kind }
                return object
            },
            resourceVersion: json["metadata", "resourceVersion"]?.string ?? "",
            continueToken: json["metadata", "continue"]?.string.flatMap { $0.isEmpty ? nil : $0 },
            remainingItemCount: json["metadata", "remainingItemCount"]?.int)
    }

    /// The pages of a list, fetched one at a time as they are consumed (`limit` per page).
    public func pages(_ r: APIResource, namespace: String? = nil, options: ListOptions = ListOptions(),
                      pageSize: Int = 500) -> ListPages {
        ListPages(client: self, resource: r, namespace: namespace, options: options, pageSize: pageSize)
    }

    /// Every object of a list, read page by page. When a continue token expires mid-list (410) the list
    /// restarts from the beginning, so the result is always one consistent snapshot.
    public func listAll(_ r: APIResource, namespace: String? = nil, options: ListOptions = ListOptions(),
                        pageSize: Int = 500) async throws -> ObjectList {
        var restarts = 0
        while true {
            do {
                var items: [KubeObject] = []
                var resourceVersion = ""
                for try await page in pages(r, namespace: namespace, options: options, pageSize: pageSize) {
                    items += page.items
                    if resourceVersion.isEmpty { resourceVersion = page.resourceVersion }
                }
                return ObjectList(items: items, resourceVersion: resourceVersion, continueToken: nil)
            } catch let error as KubeError where error.code == .gone && restarts < 3 {
                restarts += 1
            }
        }
    }

    /// Creates an object; its resource type comes from its apiVersion and kind.
    public func create(_ object: KubeObject, namespace: String? = nil, options: WriteOptions = WriteOptions())
        async throws -> KubeObject
    {
        try await create(object, as: try await resource(for: object), namespace: namespace, options: options)
    }

    public func create(_ object: KubeObject, as r: APIResource, namespace: String? = nil,
                       options: WriteOptions = WriteOptions()) async throws -> KubeObject {
        let ns = self.namespace(r, namespace ?? object.namespace)
        let operation = describe("create", r, ns, object.name.isEmpty ? nil : object.name)
        // A POST may have been executed when the connection dropped: not retried (see RetryPolicy).
        let response = try await send(APIRequest(
            method: .POST, path: r.path(namespace: ns), query: options.query, body: object.json.serialized(),
            idempotent: false, operation: operation))
        return KubeObject(try response.json(operation))
    }

    /// Replaces an object. With `metadata.resourceVersion` set the write is optimistic: if the object
    /// changed since it was read the server answers `Conflict` (`KubeError.Code.conflict`).
    public func update(_ object: KubeObject, subresource: String? = nil, options: WriteOptions = WriteOptions())
        async throws -> KubeObject
    {
        let r = try await resource(for: object)
        let ns = self.namespace(r, object.namespace)
        let operation = describe(subresource.map { "update \($0) of" } ?? "update", r, ns, object.name)
        let response = try await send(APIRequest(
            method: .PUT, path: r.path(namespace: ns, name: object.name, subresource: subresource),
            query: options.query, body: object.json.serialized(), idempotent: object.resourceVersion != nil,
            operation: operation))
        return KubeObject(try response.json(operation))
    }

    /// Writes an object's status through the `status` subresource.
    public func updateStatus(_ object: KubeObject) async throws -> KubeObject {
        try await update(object, subresource: "status")
    }

    /// Patches an object (or its subresource).
    public func patch(_ r: APIResource, _ name: String, namespace: String? = nil, _ patch: Patch,
                      subresource: String? = nil, options: WriteOptions = WriteOptions()) async throws -> KubeObject {
        let ns = self.namespace(r, namespace)
        let operation = describe(patch.name, r, ns, name)
        var query = options.query
        var idempotent = false
        if case .apply(_, let manager, let force) = patch {
            query = query.filter { $0.0 != "fieldManager" } + [("fieldManager", manager)]
            if force { query.append(("force", "true")) }
            idempotent = true
        }
        let response = try await send(APIRequest(
            method: .PATCH, path: r.path(namespace: ns, name: name, subresource: subresource), query: query,
            body: patch.body.serialized(), contentType: patch.contentType, idempotent: idempotent,
            operation: operation))
        return KubeObject(try response.json(operation))
    }

    /// Server-side apply of an object's full intent: creates it or converges it, owned by `fieldManager`.
    public func apply(_ object: KubeObject, fieldManager: String = "cairn", force: Bool = false,
                      dryRun: Bool = false) async throws -> KubeObject {
        let r = try await resource(for: object)
        return try await patch(r, object.name, namespace: object.namespace, .apply(object.json, fieldManager: fieldManager,
                                                                                 force: force),
                               options: WriteOptions(dryRun: dryRun, fieldManager: nil))
    }

    /// Deletes an object. Returns the object while it is still being finalized, nil once gone.
    @discardableResult
    public func delete(_ r: APIResource, _ name: String, namespace: String? = nil,
                       options: DeleteOptions = DeleteOptions()) async throws -> KubeObject? {
        let ns = self.namespace(r, namespace)
        let operation = describe("delete", r, ns, name)
        let response = try await send(APIRequest(
            method: .DELETE, path: r.path(namespace: ns, name: name), body: options.body.serialized(),
            idempotent: true, operation: operation))
        let json = try response.json(operation)
        return json["kind"]?.string == "Status" ? nil : KubeObject(json)
    }

    @discardableResult
    public func delete(_ object: KubeObject, options: DeleteOptions = DeleteOptions()) async throws -> KubeObject? {
        try await delete(try await resource(for: object), object.name, namespace: object.namespace, options: options)
    }
}

/// The pages of a list as an async sequence; each page is requested when the previous one is consumed.
public struct ListPages: AsyncSequence, Sendable {
    public typealias Element = ObjectList
    let client: KubeClient
    let resource: APIResource
    let namespace: String?
    let options: ListOptions
    let pageSize: Int

    public struct AsyncIterator: AsyncIteratorProtocol {
        let pages: ListPages
        var next: String?
        var done = false

        public mutating func next() async throws -> ObjectList? {
            guard !done else { return nil }
            var options = pages.options
            options.limit = pages.pageSize
            options.continueToken = next
            if next != nil { options.resourceVersion = nil }
            let page = try await pages.client.list(pages.resource, namespace: pages.namespace, options: options)
            next = page.continueToken
            done = next == nil
            return page
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pages: self, next: options.continueToken) }
}
