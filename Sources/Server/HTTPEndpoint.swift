import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The controller's small HTTP/1.1 servers (probes and metrics; the admission webhook over TLS) on plain
/// SwiftNIO: binds, retrying while the address is in use (a predecessor on the host network may still hold
/// it), reads each request's body up to a limit, answers with what `respond` returns, and serves until the
/// task is cancelled.
public struct HTTPEndpoint: Sendable {
    public struct Request: Sendable {
        public var method: HTTPMethod
        /// The path without the query.
        public var path: String
        public var headers: HTTPHeaders
        public var body: [UInt8]
    }

    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var body: [UInt8]

        public init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        public static func text(_ status: HTTPResponseStatus, _ text: String) -> Response {
            Response(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
        }
    }

    /// For log lines: `probes`, `admission`.
    let name: String
    /// Larger bodies are answered 413 without being read further.
    let maxBody: Int
    let tls: NIOSSLContext?
    let logger: Logger
    let respond: @Sendable (Request) async -> Response

    public init(name: String, maxBody: Int, tls: NIOSSLContext?, logger: Logger,
                respond: @escaping @Sendable (Request) async -> Response) {
        self.name = name
        self.maxBody = maxBody
        self.tls = tls
        self.logger = logger
        self.respond = respond
    }

    /// Serves `host:port` until the task is cancelled.
    public func run(host: String, port: Int) async throws {
        var attempt = 0
        let channel: Channel
        while true {
            do {
                channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.backlog, value: 64)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { [self] channel in
                        channel.eventLoop.makeCompletedFuture {
                            let pipeline = channel.pipeline.syncOperations
                            if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls)) }
                            try pipeline.configureHTTPServerPipeline()
                            try pipeline.addHandler(Handler(endpoint: self))
                        }
                    }
                    .bind(host: host, port: port).get()
                break
            } catch {
                attempt += 1
                if attempt == 1 || attempt % 30 == 0 {
                    logger.warning("\(name).bind.retry", metadata: ["cairn.address": "\(host):\(port)", "error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
        logger.info("\(name).listening", metadata: ["cairn.address": "\(host):\(port)"])
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let endpoint: HTTPEndpoint
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        var tooLarge = false

        init(endpoint: HTTPEndpoint) { self.endpoint = endpoint }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let request):
                head = request
                body = []
                tooLarge = false
            case .body(var buffer):
                guard !tooLarge else { return }
                if body.count + buffer.readableBytes > endpoint.maxBody {
                    tooLarge = true
                    body = []
                } else {
                    body += buffer.readBytes(length: buffer.readableBytes) ?? []
                }
            case .end:
                guard let head else { return }
                self.head = nil
                let version = head.version, keepAlive = head.isKeepAlive && !tooLarge
                if tooLarge {
                    write(.text(.payloadTooLarge, "request bodies are limited to \(endpoint.maxBody) bytes\n"),
                          version: version, keepAlive: false, context: context)
                    return
                }
                let request = Request(method: head.method,
                                      path: head.uri.split(separator: "?").first.map(String.init) ?? head.uri,
                                      headers: head.headers, body: body)
                body = []
                let respond = endpoint.respond
                let promise = context.eventLoop.makePromise(of: Response.self)
                promise.completeWithTask { await respond(request) }
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                promise.futureResult.whenSuccess { response in
                    let (handler, context) = bound.value
                    handler.write(response, version: version, keepAlive: keepAlive, context: context)
                }
            }
        }

        func write(_ response: Response, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: "\(response.body.count)")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))),
                          promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))),
                          promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }
}
