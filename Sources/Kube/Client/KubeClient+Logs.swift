import AsyncHTTPClient
import NIOCore

/// Which part of a container's log to read.
public struct LogOptions: Sendable {
    public var container: String?
    /// Keep the stream open and deliver lines as the container writes them.
    public var follow: Bool
    public var tailLines: Int?
    public var sinceSeconds: Int?
    public var timestamps: Bool
    /// The previous (crashed) instance of the container.
    public var previous: Bool

    public init(container: String? = nil, follow: Bool = false, tailLines: Int? = nil, sinceSeconds: Int? = nil,
                timestamps: Bool = false, previous: Bool = false) {
        self.container = container
        self.follow = follow
        self.tailLines = tailLines
        self.sinceSeconds = sinceSeconds
        self.timestamps = timestamps
        self.previous = previous
    }

    var query: [(String, String)] {
        var q: [(String, String)] = []
        if let container { q.append(("container", container)) }
        if follow { q.append(("follow", "true")) }
        if let tailLines { q.append(("tailLines", String(tailLines))) }
        if let sinceSeconds { q.append(("sinceSeconds", String(sinceSeconds))) }
        if timestamps { q.append(("timestamps", "true")) }
        if previous { q.append(("previous", "true")) }
        return q
    }
}

extension KubeClient {
    /// A container's log so far, as text.
    public func log(pod: String, namespace: String? = nil, options: LogOptions = LogOptions()) async throws -> String {
        var options = options
        options.follow = false
        var text = ""
        for try await line in logLines(pod: pod, namespace: namespace, options: options) { text += line + "\n" }
        return text
    }

    /// A container's log as lines; with `follow` the sequence continues as the container writes, until the
    /// container ends or the task is cancelled. Read as fast as it is consumed.
    public func logLines(pod: String, namespace: String? = nil, options: LogOptions = LogOptions()) -> LogLines {
        let ns = namespace ?? connection.namespace
        let request = APIRequest(
            method: .GET, path: Pod.resource.path(namespace: ns, name: pod, subresource: "log"), query: options.query,
            accept: "*/*", idempotent: true, operation: "read the log of pod \(pod) in namespace \(ns)",
            timeout: .seconds(30))
        return LogLines(client: self, request: request)
    }
}

public struct LogLines: AsyncSequence, Sendable {
    public typealias Element = String
    let client: KubeClient
    let request: KubeClient.APIRequest

    public struct AsyncIterator: AsyncIteratorProtocol {
        let lines: LogLines
        var body: HTTPClientResponse.Body.AsyncIterator?
        var buffer: [UInt8] = []
        var ended = false

        public mutating func next() async throws -> String? {
            while true {
                if let newline = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    return line
                }
                if ended {
                    guard !buffer.isEmpty else { return nil }
                    defer { buffer.removeAll() }
                    return String(decoding: buffer, as: UTF8.self)
                }
                if body == nil {
                    body = try await lines.client.open(lines.request).body.makeAsyncIterator()
                }
                do {
                    if let chunk = try await body?.next() {
                        buffer.append(contentsOf: chunk.readableBytesView)
                    } else {
                        ended = true
                    }
                } catch {
                    if Task.isCancelled { return nil }
                    throw lines.client.transportError(error, lines.request)
                }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(lines: self) }
}
