import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Storage

/// Signed requests to one bucket, with retries and adaptive concurrency. Errors are `StorageError`s that
/// name the operation and object, never the credentials.
final class S3Client: Sendable {
    struct Options: Sendable {
        /// Total time one operation may spend retrying.
        var retryBudget: Duration = .seconds(120)
        var baseDelay: Duration = .milliseconds(50)
        var maxDelay: Duration = .seconds(5)
        var requestTimeout: Duration = .seconds(120)
        var maxConcurrency = 32
    }

    struct Request: Sendable {
        var method: HTTPMethod
        var key: String?
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body: ByteBuffer?
        /// What it is for messages: `upload`, `download`, `list`, …
        var operation: String
        /// The object (or prefix) concerned, for messages.
        var object: String
    }

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    let location: S3Location
    let signer: SigV4Signer
    let http: HTTPClient
    let options: Options
    let concurrency: AdaptiveConcurrency
    let logger: Logger

    init(location: S3Location, credentials: S3Credentials, options: Options, logger: Logger) throws {
        self.location = location
        self.signer = SigV4Signer(credentials: credentials, region: location.region)
        self.options = options
        self.logger = logger
        self.concurrency = AdaptiveConcurrency(initial: min(16, options.maxConcurrency), maximum: options.maxConcurrency)
        http = try Self.httpClient(caFile: location.caFile, maxConcurrency: options.maxConcurrency)
    }

    /// HTTP clients live as long as the process, one per TLS trust configuration — like
    /// `HTTPClient.shared` — so a store needs no shutdown and many stores share connections.
    private static let clientsLock = NSLock()
    nonisolated(unsafe) private static var clients: [String: HTTPClient] = [:]

    static func httpClient(caFile: String?, maxConcurrency: Int) throws -> HTTPClient {
        try clientsLock.withLock {
            let cacheKey = "\(caFile ?? "")|\(maxConcurrency)"
            if let client = clients[cacheKey] { return client }
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caFile {
                do {
                    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
                } catch {
                    throw S3Error.configuration("cannot read the CA certificate \(caFile): \(error)")
                }
            }
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
            configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
            configuration.connectionPool = .init(idleTimeout: .seconds(30))
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = maxConcurrency
            configuration.httpVersion = .http1Only
            let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
            clients[cacheKey] = client
            return client
        }
    }


    /// Sends a request, retrying transient failures (5xx, SlowDown, RequestTimeout, dropped connections,
    /// truncated bodies) with jittered exponential backoff until the retry budget is spent. Every S3 call we
    /// make is safe to repeat (see `S3BlobStore` for the create-only and multipart cases). A non-2xx answer
    /// that is not transient is returned to the caller, which knows what it means for its operation.
    func send(_ request: Request, accept: Set<Int> = []) async throws -> Response {
        let start = ContinuousClock.now
        var attempt = 0
        while true {
            attempt += 1
            await concurrency.acquire()
            let result: Result<Response, StorageError>
            do {
                result = .success(try await once(request))
            } catch let error as StorageError {
                result = .failure(error)
            } catch {
                result = .failure(transport(error, request))
            }
            switch result {
            case .success(let response) where (200..<300).contains(response.status) || accept.contains(response.status):
                await concurrency.release(.success)
                return response
            case .success(let response):
                let error = self.error(response, request)
                let slowDown = response.status == 503 || error.underlying?.contains("SlowDown") == true
                await concurrency.release(slowDown ? .slowDown : .failure)
                guard error.isTransient else { throw error }
                try await backOff(error, attempt: attempt, since: start, request: request)
            case .failure(let error):
                await concurrency.release(.failure)
                guard error.isTransient else { throw error }
                try await backOff(error, attempt: attempt, since: start, request: request)
            }
        }
    }

    private func backOff(_ error: StorageError, attempt: Int, since start: ContinuousClock.Instant,
                         request: Request) async throws {
        let cap = min(options.maxDelay, options.baseDelay * Int(1 << min(attempt - 1, 16)))
        let delay = cap * Double.random(in: 0.1...1)
        guard ContinuousClock.now - start + delay < options.retryBudget else {
            throw StorageError(error.code, "\(request.operation) failed after \(attempt) attempts in "
                               + "\(Int((ContinuousClock.now - start).components.seconds)) s; giving up",
                               location: error.location, underlying: error.underlying ?? error.message)
        }
        logger.debug("s3.retry", metadata: ["s3.operation": "\(request.operation)", "s3.object": "\(request.object)",
                                            "s3.attempt": "\(attempt)", "s3.error": "\(error.message)"])
        try await Task.sleep(for: delay)
    }

    private func once(_ request: Request) async throws -> Response {
        let response = try await execute(request)
        let collected = try await response.body.collect(upTo: 1 << 30)
        let bytes = Array(buffer: collected)
        if request.method != .HEAD, let declared = response.headers.first(name: "Content-Length").flatMap(Int.init),
           declared != bytes.count {
            throw StorageError(.unavailable, "\(request.operation): the answer was cut short "
                               + "(\(bytes.count) of \(declared) bytes)", location: request.object)
        }
        return Response(status: Int(response.status.code), headers: response.headers, body: bytes)
    }

    /// Signs and sends one request; the answer's body is still to be read.
    private func execute(_ request: Request) async throws -> HTTPClientResponse {
        let address = location.address(key: request.key)
        var headers: [(String, String)] = [("host", address.host)] + request.headers
        let payloadHash: String
        if let body = request.body {
            payloadHash = SigV4Signer.sha256Hex(body)
            headers.append(("Content-Length", String(body.readableBytes)))
        } else {
            payloadHash = SigV4Signer.emptyPayloadHash
        }
        signer.sign(method: request.method.rawValue, path: address.path, query: request.query, headers: &headers,
                    payloadHash: payloadHash, date: Date())
        var url = address.url
        if !request.query.isEmpty {
            url += "?" + request.query.map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }
                .joined(separator: "&")
        }
        var http = HTTPClientRequest(url: url)
        http.method = request.method
        for (name, value) in headers where name != "host" { http.headers.add(name: name, value: value) }
        if let body = request.body { http.body = .bytes(body) }
        return try await self.http.execute(http, deadline: .now() + .seconds(options.requestTimeout.components.seconds))
    }

    /// An error thrown by the receiver of a streamed body: passed on as it is, never retried.
    private struct Handed: Error { var error: any Error }

    /// A GET of `range` whose body is handed to `body` as it arrives, so a long range is one request and never
    /// held whole. Transient failures — also part-way through the body — are retried as `send` retries them,
    /// asking only for the bytes not handed over yet; the retry budget starts again whenever bytes arrived.
    /// An error thrown by `body` is rethrown as it is.
    func stream(_ request: Request, range: Range<Int>, into body: (ByteBuffer) async throws -> Void) async throws {
        var start = ContinuousClock.now
        var attempt = 0
        var done = range.lowerBound
        while done < range.upperBound {
            attempt += 1
            var ranged = request
            ranged.headers.append(("Range", "bytes=\(done)-\(range.upperBound - 1)"))
            await concurrency.acquire()
            let before = done
            let failure: StorageError
            var status = 0
            do {
                let response = try await execute(ranged)
                status = Int(response.status.code)
                guard status == 206 || (status == 200 && done == 0) else {
                    let answer = Response(status: status, headers: response.headers,
                                          body: Array(buffer: try await response.body.collect(upTo: 1 << 20)))
                    throw (200..<300).contains(status)
                        ? StorageError(.io, "\(request.operation): the S3 endpoint did not answer with the byte range asked "
                                       + "for (HTTP \(status))", location: request.object)
                        : self.error(answer, request)
                }
                // Fewer bytes declared than asked for: the range reaches past the end of the object.
                if let declared = response.headers.first(name: "Content-Length").flatMap(Int.init),
                   declared < range.upperBound - done {
                    throw StorageError(.rangeNotSatisfiable, "\(request.operation): range \(range) reaches past the end of the object",
                                       location: request.object)
                }
                for try await var piece in response.body {
                    if piece.readableBytes > range.upperBound - done {
                        piece.moveWriterIndex(to: piece.readerIndex + range.upperBound - done)
                    }
                    guard piece.readableBytes > 0 else { continue }
                    do { try await body(piece) } catch { throw Handed(error: error) }
                    done += piece.readableBytes
                    if done == range.upperBound { break }
                }
                guard done == range.upperBound else {
                    throw StorageError(.unavailable, "\(request.operation): the answer was cut short "
                                       + "(\(done - before) of \(range.upperBound - before) bytes)", location: request.object)
                }
                await concurrency.release(.success)
                return
            } catch let handed as Handed {
                await concurrency.release(.success)
                throw handed.error
            } catch let error as StorageError {
                failure = error
            } catch {
                failure = transport(error, request)
            }
            let slowDown = status == 503 || failure.underlying?.contains("SlowDown") == true
            await concurrency.release(slowDown ? .slowDown : .failure)
            guard failure.isTransient else { throw failure }
            if done > before {
                attempt = 1
                start = ContinuousClock.now
            }
            try await backOff(failure, attempt: attempt, since: start, request: request)
        }
    }

    func transport(_ error: any Error, _ request: Request) -> StorageError {
        if let tls = TLSFailure(error) {
            return StorageError(.permissionDenied, "\(request.operation): the S3 endpoint's TLS certificate is not trusted "
                                + "(\(tls.reason)); give Cairn the CA certificate that signed it, or fix the endpoint's name",
                                location: request.object)
        }
        if error is CancellationError { return StorageError(.io, "\(request.operation): cancelled", location: request.object) }
        if let http = error as? HTTPClientError, http == .deadlineExceeded || http == .readTimeout {
            return StorageError(.unavailable, "\(request.operation): no answer from the S3 endpoint in time",
                                location: request.object)
        }
        return StorageError(.unavailable, "\(request.operation): cannot reach the S3 endpoint "
                            + "\(location.endpoint.host ?? "")", location: request.object, underlying: "\(error)")
    }

    /// Turns a non-2xx answer into a StorageError by S3's error code.
    func error(_ response: Response, _ request: Request) -> StorageError {
        let xml = XMLElement.parse(response.body)
        let code = xml?["Code"] ?? ""
        let message = xml?["Message"] ?? ""
        let detail = code.isEmpty ? "HTTP \(response.status)" : "\(code): \(message)"
        let what = request.operation
        let object = request.object
        if xml == nil && !response.body.isEmpty && response.status != 404 {
            let snippet = String(decoding: response.body.prefix(120), as: UTF8.self)
            if response.status >= 500 {
                return StorageError(.unavailable, "\(what): the S3 endpoint failed (HTTP \(response.status))",
                                    location: object, underlying: snippet)
            }
            return StorageError(.invalidArgument, "\(what): the endpoint \(location.endpoint.string ?? "") does not "
                                + "answer like S3 (HTTP \(response.status)); check the S3 endpoint", location: object,
                                underlying: snippet)
        }
        switch (response.status, code) {
        case (_, "NoSuchBucket"):
            return StorageError(.notFound, "the bucket '\(location.bucket)' does not exist; create it or fix the location",
                                location: object, underlying: detail)
        case (404, _), (_, "NoSuchKey"):
            return StorageError(.notFound, "\(what): no such object", location: object, underlying: detail)
        case (_, "InvalidAccessKeyId"):
            return StorageError(.permissionDenied, "the S3 access key is not known to the endpoint; check "
                                + "AWS_ACCESS_KEY_ID or the profile", location: object, underlying: detail)
        case (_, "SignatureDoesNotMatch"):
            return StorageError(.permissionDenied, "the S3 endpoint rejected the request signature: the secret access "
                                + "key is wrong, or the region '\(location.region)' is not the bucket's region",
                                location: object, underlying: detail)
        case (_, "AuthorizationHeaderMalformed"), (301, _), (_, "PermanentRedirect"):
            let region = response.headers.first(name: "x-amz-bucket-region") ?? xml?["Region"]
            return StorageError(.invalidArgument, "the bucket '\(location.bucket)' is not in region '\(location.region)'"
                                + (region.map { "; it is in '\($0)': set the region to \($0)" } ?? ""),
                                location: object, underlying: detail)
        case (403, _):
            return StorageError(.permissionDenied, "\(what): access denied; check the credentials' permissions on the bucket",
                                location: object, underlying: detail)
        case (412, _):
            return StorageError(.alreadyExists, "\(what): object already exists", location: object, underlying: detail)
        case (416, _):
            return StorageError(.rangeNotSatisfiable, "\(what): range beyond the end of the object", location: object,
                                underlying: detail)
        case (_, "SlowDown"), (_, "RequestTimeout"), (_, "InternalError"), (_, "ServiceUnavailable"), (429, _),
             (500...599, _):
            return StorageError(.unavailable, "\(what): the S3 endpoint is busy or failing", location: object,
                                underlying: detail)
        default:
            return StorageError(.io, "\(what) failed", location: object, underlying: detail)
        }
    }
}

/// A TLS failure that retrying cannot fix: the peer's certificate is not trusted or not for this name.
struct TLSFailure {
    var reason: String

    init?(_ error: any Error) {
        if let ssl = error as? NIOSSLError, case .handshakeFailed(let inner) = ssl {
            let text = "\(inner)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") { reason = "certificate verify failed"; return }
            reason = "handshake failed"
            return
        }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            reason = "the certificate is not for this host name"
            return
        }
        return nil
    }
}
