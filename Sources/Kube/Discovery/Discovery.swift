import Concurrent
import Foundation

/// The API server's resource types, read from `/api` and `/apis` and cached.
///
/// A lookup that misses (a CRD registered since the last read) reads the server again once before it fails,
/// like client-go's deferred REST mapper; `invalidate()` forces the next lookup to read again. A group
/// version that fails to answer (an unavailable aggregated API) is recorded in `failures`, and the rest
/// is still served.
public actor Discovery {
    private var resources: [APIResource] = []
    private var loadedAt: ContinuousClock.Instant?
    private var loading: Task<([APIResource], [String: String]), any Error>?
    /// Group versions that could not be read in the last refresh, with the reason.
    public private(set) var failures: [String: String] = [:]

    public init() {}

    public func invalidate() {
        loadedAt = nil
    }

    /// Every resource type (subresources folded into their parent's `subresources`).
    public func all(using client: KubeClient, refresh: Bool = false) async throws -> [APIResource] {
        if refresh || loadedAt == nil { try await reload(client) }
        return resources
    }

    /// The resource type of objects of `kind` in `apiVersion` (e.g. `apps/v1`, `Deployment`).
    public func resource(apiVersion: String, kind: String, using client: KubeClient) async throws -> APIResource {
        try await find(using: client, what: "kind \(kind) in \(apiVersion)") {
            $0.apiVersion == apiVersion && $0.kind == kind
        }
    }

    /// A resource type by the names kubectl accepts: plural, singular, short name or kind, optionally
    /// qualified by group (`deployments.apps`, `deploy`, `Deployment`). The preferred version wins.
    public func resource(named text: String, using client: KubeClient) async throws -> APIResource {
        let parts = text.split(separator: ".", maxSplits: 1).map(String.init)
        let name = parts[0].lowercased()
        let group = parts.count > 1 ? parts[1] : nil
        return try await find(using: client, what: "resource type '\(text)'") { r in
            (group == nil || r.group == group)
                && (r.name == name || r.singularName == name || r.shortNames.contains(name) || r.kind.lowercased() == name)
        }
    }

    private func find(using client: KubeClient, what: String, _ match: (APIResource) -> Bool) async throws -> APIResource {
        var fresh = false
        if loadedAt == nil {
            try await reload(client)
            fresh = true
        }
        if let hit = best(resources.filter(match)) { return hit }
        if !fresh {
            try await reload(client)
            if let hit = best(resources.filter(match)) { return hit }
        }
        throw KubeError(.unknownResource, "the server does not serve \(what)")
    }

    private func best(_ candidates: [APIResource]) -> APIResource? {
        candidates.first { $0.preferred && $0.group.isEmpty } ?? candidates.first { $0.preferred } ?? candidates.first
    }

    private func reload(_ client: KubeClient) async throws {
        if let loading {
            (resources, failures) = try await loading.value
            return
        }
        let task = Task { try await Self.read(client) }
        loading = task
        defer { loading = nil }
        (resources, failures) = try await task.value
        loadedAt = .now
    }

    private static func read(_ client: KubeClient) async throws -> ([APIResource], [String: String]) {
        // (group, version, preferred)
        var groupVersions: [(String, String, Bool)] = []
        let core = try await client.getJSON("/api", operation: "discover the core API")
        for v in core["versions"]?.array ?? [] {
            if let version = v.string { groupVersions.append(("", version, version == "v1")) }
        }
        let groups = try await client.getJSON("/apis", operation: "discover API groups")
        for g in groups["groups"]?.array ?? [] {
            guard let name = g["name"]?.string else { continue }
            let preferred = g["preferredVersion", "version"]?.string
            for v in g["versions"]?.array ?? [] {
                if let version = v["version"]?.string { groupVersions.append((name, version, version == preferred)) }
            }
        }
        var all: [APIResource] = []
        var failures: [String: String] = [:]
        try await Concurrent.forEach(groupVersions, width: 8, { group, version, preferred in
            let gv = group.isEmpty ? version : "\(group)/\(version)"
            let path = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
            do {
                let list = try await client.getJSON(path, operation: "discover \(gv)")
                return (parse(list, group: group, version: version, preferred: preferred), nil as String?, gv)
            } catch let error as KubeError where error.code != .cancelled {
                return ([], error.message, gv)
            }
        }) { resources, failure, gv in
            all += resources
            if let failure { failures[gv] = failure }
        }
        return (all, failures)
    }

    static func parse(_ list: JSONValue, group: String, version: String, preferred: Bool) -> [APIResource] {
        var byName: [String: APIResource] = [:]
        var subresources: [(String, String)] = []
        for r in list["resources"]?.array ?? [] {
            guard let name = r["name"]?.string, let kind = r["kind"]?.string else { continue }
            if let slash = name.firstIndex(of: "/") {
                subresources.append((String(name[..<slash]), String(name[name.index(after: slash)...])))
                continue
            }
            byName[name] = APIResource(
                group: group, version: version, name: name, kind: kind,
                namespaced: r["namespaced"]?.bool ?? false,
                verbs: Set(r["verbs"]?.array?.compactMap(\.string) ?? []),
                singularName: r["singularName"]?.string ?? "",
                shortNames: r["shortNames"]?.array?.compactMap(\.string) ?? [],
                categories: r["categories"]?.array?.compactMap(\.string) ?? [], preferred: preferred)
        }
        for (parent, sub) in subresources { byName[parent]?.subresources.insert(sub) }
        return byName.values.sorted { $0.name < $1.name }
    }
}

extension KubeClient {
    func getJSON(_ path: String, operation: String) async throws -> JSONValue {
        let response = try await send(APIRequest(method: .GET, path: path, idempotent: true, operation: operation))
        return try response.json(operation)
    }

    /// The resource type of an object, from its `apiVersion` and `kind`.
    public func resource(for object: KubeObject) async throws -> APIResource {
        guard !object.apiVersion.isEmpty, !object.kind.isEmpty else {
            throw KubeError(.invalid, "the object has no apiVersion or kind", operation: "resolve \(object)")
        }
        return try await discovery.resource(apiVersion: object.apiVersion, kind: object.kind, using: self)
    }

    public func resource(named name: String) async throws -> APIResource {
        try await discovery.resource(named: name, using: self)
    }

    public func resource(apiVersion: String, kind: String) async throws -> APIResource {
        try await discovery.resource(apiVersion: apiVersion, kind: kind, using: self)
    }

    public struct ServerVersion: Sendable {
        public var gitVersion: String
        public var major: String
        public var minor: String
        public var platform: String
    }

    /// `/version`.
    public func serverVersion() async throws -> ServerVersion {
        let v = try await getJSON("/version", operation: "read the server version")
        return ServerVersion(gitVersion: v["gitVersion"]?.string ?? "", major: v["major"]?.string ?? "",
                             minor: v["minor"]?.string ?? "", platform: v["platform"]?.string ?? "")
    }
}
