import AsyncHTTPClient
import NIOCore

/// A change seen by a watch.
public enum WatchEvent: Sendable {
    case added(KubeObject)
    case modified(KubeObject)
    case deleted(KubeObject)
    /// The server's progress marker: everything up to this resourceVersion has been delivered.
    case bookmark(resourceVersion: String)
    /// The complete current set of objects: the first event when a watch starts without a
    /// resourceVersion, and again whenever the server no longer has the history to resume from (410 Gone)
    /// and the watch had to list again. Consumers replace what they knew with this set.
    case synced([KubeObject], resourceVersion: String)

    public var object: KubeObject? {
        switch self {
        case .added(let o), .modified(let o), .deleted(let o): return o
        case .bookmark, .synced: return nil
        }
    }
}

extension KubeClient {
    /// Watches a resource type in a namespace (all namespaces when nil), resiliently:
    ///
    /// - Without `options.resourceVersion` it lists first and yields `.synced`, then watches from there.
    /// - A connection that ends or drops is reopened from the last resourceVersion seen (events and
    ///   bookmarks both advance it), so nothing is missed and nothing repeated.
    /// - `410 Gone` (history compacted) lists again and yields `.synced`.
    /// - It reads from the server only as fast as the consumer takes events: nothing is buffered beyond
    ///   the HTTP stream's own window. It ends when the task is cancelled, or throws when the server stays
    ///   unreachable beyond the retry budget or refuses (e.g. Forbidden).
    public func watch(_ r: APIResource, namespace: String? = nil, options: ListOptions = ListOptions(),
                      serverTimeoutSeconds: Int = 300) -> WatchSequence {
        WatchSequence(client: self, resource: r, namespace: r.namespaced ? namespace : nil, options: options,
                      serverTimeoutSeconds: serverTimeoutSeconds)
    }
}

public struct WatchSequence: AsyncSequence, Sendable {
    public typealias Element = WatchEvent
    let client: KubeClient
    let resource: APIResource
    let namespace: String?
    let options: ListOptions
    let serverTimeoutSeconds: Int

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(sequence: self, resourceVersion: options.resourceVersion)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let sequence: WatchSequence
        var resourceVersion: String?
        var body: HTTPClientResponse.Body.AsyncIterator?
        var buffer: [UInt8] = []
        var failures = 0
        var failingSince: ContinuousClock.Instant?
        /// Number of times the stream was (re)opened — for tests and diagnostics.
        public private(set) var connections = 0
        /// Number of times the watch had to list (first sync and every 410).
        public private(set) var lists = 0

        init(sequence: WatchSequence, resourceVersion: String?) {
            self.sequence = sequence
            self.resourceVersion = resourceVersion
        }

        var operation: String {
            sequence.client.describe("watch", sequence.resource, sequence.namespace)
        }

        public mutating func next() async throws -> WatchEvent? {
            while true {
                if Task.isCancelled { return nil }
                guard resourceVersion != nil else {
                    return try await relist()
                }
                if body == nil {
                    do {
                        try await connect()
                    } catch let error as KubeError where error.code == .gone {
                        resourceVersion = nil
                        continue
                    } catch let error as KubeError where error.code == .cancelled {
                        return nil
                    } catch let error as KubeError where error.isTransient {
                        try await backOff(after: error)
                        continue
                    }
                }
                if let line = takeLine() {
                    if line.isEmpty { continue }
                    if let event = try handle(line) { return event }
                    continue
                }
                do {
                    guard let chunk = try await body?.next() else {
                        // The server closed the watch (its timeout): reopen from where we are.
                        body = nil
                        continue
                    }
                    buffer.append(contentsOf: chunk.readableBytesView)
                    failures = 0
                    failingSince = nil
                } catch {
                    body = nil
                    buffer.removeAll()
                    if Task.isCancelled { return nil }
                    try await backOff(after: sequence.client.transportError(error, request(watchFrom: resourceVersion)))
                }
            }
        }

        mutating func relist() async throws -> WatchEvent? {
            body = nil
            buffer.removeAll()
            var options = sequence.options
            options.resourceVersion = nil
            options.timeoutSeconds = nil
            let list: ObjectList
            do {
                list = try await sequence.client.listAll(sequence.resource, namespace: sequence.namespace, options: options)
            } catch let error as KubeError where error.code == .cancelled {
                return nil
            }
            lists += 1
            resourceVersion = list.resourceVersion
            return .synced(list.items, resourceVersion: list.resourceVersion)
        }

        func request(watchFrom rv: String?) -> KubeClient.APIRequest {
            var options = sequence.options
            options.resourceVersion = rv
            options.limit = nil
            options.continueToken = nil
            options.resourceVersionMatch = nil
            // Spread reconnects of many watches, as client-go does.
            options.timeoutSeconds = sequence.serverTimeoutSeconds + Int.random(in: 0...sequence.serverTimeoutSeconds / 5)
            var query = options.query
            query.append(("watch", "1"))
            query.append(("allowWatchBookmarks", "true"))
            return KubeClient.APIRequest(
                method: .GET, path: sequence.resource.path(namespace: sequence.namespace), query: query,
                idempotent: true, operation: operation, timeout: .seconds(30))
        }

        mutating func connect() async throws {
            let response = try await sequence.client.open(request(watchFrom: resourceVersion))
            body = response.body.makeAsyncIterator()
            buffer.removeAll()
            connections += 1
        }

        mutating func backOff(after error: KubeError) async throws {
            failures += 1
            let since = failingSince ?? .now
            failingSince = since
            let decision = sequence.client.options.retry.decide(
                after: error, attempt: failures, idempotent: true, elapsed: .now - since,
                random: Double.random(in: 0.5..<1))
            guard case .retry(let delay) = decision else { throw error }
            try await Task.sleep(for: Swift.max(delay, .milliseconds(50)))
        }

        mutating func takeLine() -> [UInt8]? {
            guard let newline = buffer.firstIndex(of: 0x0A) else { return nil }
            let line = Array(buffer[..<newline])
            buffer.removeSubrange(...newline)
            return line
        }

        mutating func handle(_ line: [UInt8]) throws -> WatchEvent? {
            let event: JSONValue
            do {
                event = try JSONValue(parsing: line)
            } catch {
                throw KubeError(.decoding, "a watch event is not JSON: \(error.description)", operation: operation)
            }
            let object = KubeObject(event["object"] ?? .null)
            switch event["type"]?.string {
            case "ADDED", "MODIFIED", "DELETED", "BOOKMARK":
                if let rv = object.resourceVersion { resourceVersion = rv }
            case "ERROR":
                let status = event["object"] ?? .null
                let code = status["code"]?.int.map(Int.init) ?? 500
                let error = KubeError.fromResponse(status: code, body: status.serialized(), retryAfterHeader: nil,
                                                   operation: operation)
                if error.code == .gone {
                    // History expired: list again.
                    resourceVersion = nil
                    body = nil
                    return nil
                }
                throw error
            default:
                throw KubeError(.decoding, "unknown watch event type \(event["type"]?.description ?? "none")",
                                operation: operation)
            }
            var typed = object
            if typed.apiVersion.isEmpty { typed.apiVersion = sequence.resource.apiVersion }
            if typed.kind.isEmpty { typed.kind = sequence.resource.kind }
            switch event["type"]?.string {
            case "ADDED": return .added(typed)
            case "MODIFIED": return .modified(typed)
            case "DELETED": return .deleted(typed)
            default: return .bookmark(resourceVersion: object.resourceVersion ?? "")
            }
        }
    }
}
