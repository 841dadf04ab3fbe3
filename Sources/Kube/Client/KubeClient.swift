import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix
import NIOSSL

/// A client of one Kubernetes API server, shared by the CLI, the controller and the protection engine.
///
/// Every request is rate limited on the client side, carries a deadline, is cancelled with its task, and
/// is retried by `RetryPolicy` when that is safe. Failures arrive as `KubeError` decoded from the
/// server's `Status`. Create one per process with `KubeClient.with(...)` (or call `shutdown()`), and share it.
public final class KubeClient: Sendable {
    public struct Options: Sendable {
        /// Client-side rate limit (requests per second, and the burst allowed above it); nil disables it.
        public var qps: Double?
        public var burst: Int
        public var retry: RetryPolicy
        /// Deadline of an ordinary request (not of watches, followed logs or exec sessions).
        public var requestTimeout: Duration
        public var userAgent: String

        public init(qps: Double? = 400, burst: Int = 800, retry: RetryPolicy = RetryPolicy(),
                    requestTimeout: Duration = .seconds(60), userAgent: String = "cairn") {
            self.qps = qps
            self.burst = burst
            self.retry = retry
            self.requestTimeout = requestTimeout
            self.userAgent = userAgent
        }
    }

    public let connection: ClusterConnection
    public let options: Options
    /// The resource types the server serves, cached.
    public let discovery: Discovery
    let http: HTTPClient
    /// Watches and followed logs: no idle read timeout (the server's `timeoutSeconds` bounds them).
    let streaming: HTTPClient
    let tls: TLSConfiguration?
    let tokens: TokenSource
    let limiter: RateLimiter?
    let logger: Logger
    /// Whose identity this client's requests carry, when not the connection's own.
    public let actingAs: UserInfo?
    /// Only the client made by `init` shuts the HTTP clients down; impersonating views share them.
    let ownsHTTP: Bool

    /// - Throws: `KubeError.configuration` when the certificates or key cannot be read.
    public init(connection: ClusterConnection, options: Options = Options(),
                logger: Logger = Logger(label: "cairn.kube")) throws {
        self.connection = connection
        self.options = options
        self.logger = logger
        self.tokens = TokenSource(connection.auth)
        self.limiter = options.qps.map { RateLimiter(qps: $0, burst: options.burst) }
        let tls = connection.scheme == "https" ? try Self.tlsConfiguration(connection) : nil
        self.tls = tls
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(90))
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 16
        // Answers are bounded (lists come in pages of 500): a compressed answer may not expand without limit.
        configuration.decompression = .enabled(limit: .size(Self.maxBody))
        self.http = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        var streamingConfiguration = configuration
        streamingConfiguration.timeout = .init(connect: .seconds(5), read: nil)
        // One HTTP/1.1 connection per watch, so a watch never shares (or is starved by) another stream.
        streamingConfiguration.httpVersion = .http1Only
        self.streaming = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                                    configuration: streamingConfiguration)
        self.discovery = Discovery()
        self.actingAs = nil
        self.ownsHTTP = true
    }

    private init(base: KubeClient, impersonating user: UserInfo) {
        connection = base.connection
        options = base.options
        discovery = base.discovery
        http = base.http
        streaming = base.streaming
        tls = base.tls
        tokens = base.tokens
        limiter = base.limiter
        logger = base.logger
        actingAs = user
        ownsHTTP = false
    }

    /// A client whose requests act as `user` (Kubernetes impersonation: the connection's own identity
    /// needs the `impersonate` verb on that user and its groups). It shares this client's connections,
    /// rate limit and discovery cache; shutting it down does nothing.
    public func impersonating(_ user: UserInfo) -> KubeClient {
        KubeClient(base: self, impersonating: user)
    }

    /// Runs `body` with a client and shuts it down afterwards, also when `body` throws.
    public static func with<T: Sendable>(_ connection: ClusterConnection, options: Options = Options(),
                                         logger: Logger = Logger(label: "cairn.kube"),
                                         _ body: (KubeClient) async throws -> T) async throws -> T {
        let client = try KubeClient(connection: connection, options: options, logger: logger)
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    public func shutdown() async throws {
        guard ownsHTTP else { return }
        try await http.shutdown()
        try await streaming.shutdown()
    }

    static func tlsConfiguration(_ connection: ClusterConnection) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let ca = connection.certificateAuthorityPEM {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
            }
            if let certificate = connection.clientCertificatePEM, let key = connection.clientKeyPEM {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
            }
        } catch {
            throw KubeError(.configuration, "cannot load the TLS certificates or key of context "
                            + "'\(connection.contextName ?? "in-cluster")': \(error)")
        }
        if connection.insecureSkipTLSVerify { tls.certificateVerification = .none }
        return tls
    }

    // MARK: - Requests

    struct APIRequest: Sendable {
        var method: HTTPMethod
        var path: String
        var query: [(String, String)] = []
        var body: [UInt8]?
        var contentType = "application/json"
        var accept = "application/json"
        /// Safe to send twice: see `RetryPolicy`.
        var idempotent: Bool
        /// For messages: `list configmaps in namespace a`.
        var operation: String
        var timeout: Duration?
    }

    struct APIResponse: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]

        func json(_ operation: String) throws -> JSONValue {
            do {
                return try JSONValue(parsing: body)
            } catch {
                throw KubeError(.decoding, "the server's answer is not JSON: \(error.description)", operation: operation)
            }
        }
    }

    func url(_ request: APIRequest) -> String {
        var url = connection.server + request.path
        if !request.query.isEmpty {
            url += "?" + request.query.map { key, value in
                key + "=" + (value.addingPercentEncoding(withAllowedCharacters: .kubeQueryValue) ?? value)
            }.joined(separator: "&")
        }
        return url
    }

    /// The largest answer read whole (decompressed): 256 MiB.
    static let maxBody = 256 << 20

    /// Sends a request and reads the whole answer; a non-2xx answer becomes a `KubeError`.
    func send(_ request: APIRequest) async throws -> APIResponse {
        try await withRetries(request) { () async throws -> APIResponse in
            let response = try await self.execute(request, on: self.http)
            let body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: Self.maxBody)
            } catch is NIOTooManyBytesError {
                throw KubeError(.transport, "the answer is larger than \(Self.maxBody >> 20) MiB; ask for less (list in smaller pages)",
                                operation: request.operation)
            } catch NIOHTTPDecompression.DecompressionError.limit {
                throw KubeError(.transport, "the compressed answer expands beyond \(Self.maxBody >> 20) MiB; refused",
                                operation: request.operation)
            } catch {
                throw self.transportError(error, request)
            }
            let bytes = Array(buffer: body)
            guard (200..<300).contains(Int(response.status.code)) else {
                throw KubeError.fromResponse(status: Int(response.status.code), body: bytes,
                                             retryAfterHeader: response.headers.first(name: "Retry-After"),
                                             operation: request.operation)
            }
            return APIResponse(status: Int(response.status.code), headers: response.headers, body: bytes)
        }
    }

    /// Opens a streaming request (watch, followed log); the caller reads the body. Only opening is retried.
    func open(_ request: APIRequest) async throws -> HTTPClientResponse {
        try await withRetries(request) { () async throws -> HTTPClientResponse in
            let response = try await self.execute(request, on: self.streaming)
            guard (200..<300).contains(Int(response.status.code)) else {
                let body = (try? await response.body.collect(upTo: 1 << 20)).map { Array(buffer: $0) } ?? []
                throw KubeError.fromResponse(status: Int(response.status.code), body: body,
                                             retryAfterHeader: response.headers.first(name: "Retry-After"),
                                             operation: request.operation)
            }
            return response
        }
    }

    private func execute(_ request: APIRequest, on client: HTTPClient) async throws -> HTTPClientResponse {
        if let limiter { try await limiter.acquire() }
        var http = HTTPClientRequest(url: url(request))
        http.method = request.method
        http.headers.add(name: "Accept", value: request.accept)
        http.headers.add(name: "User-Agent", value: options.userAgent)
        if let authorization = try await tokens.authorization() {
            http.headers.add(name: "Authorization", value: authorization)
        }
        for (name, value) in actingAs?.impersonationHeaders ?? [] { http.headers.add(name: name, value: value) }
        if let body = request.body {
            http.headers.add(name: "Content-Type", value: request.contentType)
            http.body = .bytes(ByteBuffer(bytes: body))
        }
        let timeout = request.timeout ?? options.requestTimeout
        do {
            return try await client.execute(http, deadline: .now() + .nanoseconds(timeout.nanoseconds))
        } catch {
            throw transportError(error, request)
        }
    }

    func transportError(_ error: any Error, _ request: APIRequest) -> KubeError {
        if let kube = error as? KubeError { return kube }
        // Only our own task's cancellation is a cancellation; a request the HTTP client gave up because its
        // connection went away is a transport failure like any other.
        if Task.isCancelled {
            return KubeError(.cancelled, "cancelled", operation: request.operation)
        }
        if let ssl = error as? NIOSSLError, case .handshakeFailed(let inner) = ssl {
            let why = "\(inner)".contains("CERTIFICATE_VERIFY_FAILED") ? "its certificate is not trusted" : "the TLS handshake failed"
            return KubeError(.tls, "cannot talk to \(connection.server): \(why)", operation: request.operation)
        }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return KubeError(.tls, "cannot talk to \(connection.server): its certificate is not for this address",
                             operation: request.operation)
        }
        if let decompression = error as? NIOHTTPDecompression.DecompressionError, decompression == .limit {
            return KubeError(.transport, "the compressed answer expands beyond \(Self.maxBody >> 20) MiB; refused",
                             operation: request.operation)
        }
        if let http = error as? HTTPClientError, http == .deadlineExceeded || http == .readTimeout {
            return KubeError(.timeout, "no answer from \(connection.server) in time", operation: request.operation)
        }
        return KubeError(.transport, "cannot reach \(connection.server): \(error)", operation: request.operation)
    }

    /// Runs `attempt` until it succeeds or `policy` (the client's `options.retry` unless given) says to stop.
    func withRetries<T: Sendable>(_ request: APIRequest, policy: RetryPolicy? = nil,
                                  _ attempt: () async throws -> T) async throws -> T {
        let policy = policy ?? options.retry
        let start = ContinuousClock.now
        var failures = 0
        var reauthenticated = false
        while true {
            do {
                return try await attempt()
            } catch let error as KubeError {
                if error.code == .cancelled || Task.isCancelled { throw error }
                if error.code == .unauthorized, !reauthenticated, await tokens.invalidate() {
                    reauthenticated = true
                    continue
                }
                failures += 1
                let decision = policy.decide(after: error, attempt: failures, idempotent: request.idempotent,
                                                    elapsed: .now - start, random: Double.random(in: 0..<1))
                guard case .retry(let delay) = decision else { throw error }
                logger.debug("kube.request.retry", metadata: [
                    "kube.operation": "\(request.operation)", "kube.error": "\(error.code.rawValue)",
                    "kube.attempt": "\(failures)",
                ])
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    throw KubeError(.cancelled, "cancelled", operation: request.operation)
                }
            }
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
