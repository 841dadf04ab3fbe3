import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// What the probes report: alive while the process serves; ready once the controller either leads with
/// its watches started or stands by as a healthy follower.
public final class ProbeState: Sendable {
    private let state = Mutex<(ready: Bool, reason: String)>((false, "starting"))

    public init() {}

    public func set(ready: Bool, reason: String) {
        state.withLock { $0 = (ready, reason) }
    }

    public var readiness: (ready: Bool, reason: String) { state.withLock { $0 } }
}

/// The controller's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
/// Small and read-only, on plain SwiftNIO.
public final class ProbeServer: Sendable {
    let metrics: ControllerMetrics
    let probes: ProbeState
    let logger: Logger

    public init(metrics: ControllerMetrics, probes: ProbeState, logger: Logger) {
        self.metrics = metrics
        self.probes = probes
        self.logger = logger
    }

    /// Binds `host:port` (retrying while the address is in use — a predecessor on the host network may
    /// still hold it) and serves until the task is cancelled.
    public func run(host: String, port: Int) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel: Channel
        var attempt = 0
        while true {
            do {
                channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.backlog, value: 64)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { [self] channel in
                        channel.pipeline.configureHTTPServerPipeline().flatMap {
                            channel.pipeline.addHandler(Handler(server: self))
                        }
                    }
                    .bind(host: host, port: port).get()
                break
            } catch {
                attempt += 1
                if attempt == 1 || attempt % 30 == 0 {
                    logger.warning("probes.bind.retry", metadata: ["cairn.address": "\(host):\(port)", "error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
        logger.info("probes.listening", metadata: ["cairn.address": "\(host):\(port)"])
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    func respond(to uri: String) -> (HTTPResponseStatus, String, [UInt8]) {
        let path = uri.split(separator: "?").first.map(String.init) ?? uri
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
        case "/healthz", "/livez":
            return (.ok, "text/plain", Array("ok\n".utf8))
        case "/readyz":
            let (ready, reason) = probes.readiness
            return (ready ? .ok : .serviceUnavailable, "text/plain", Array("\(reason)\n".utf8))
        default:
            return (.notFound, "text/plain", Array("not found; try /metrics, /healthz or /readyz\n".utf8))
        }
    }

    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: ProbeServer

        init(server: ProbeServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let request) = unwrapInboundIn(data) else { return }
            let (status, type, body) = request.method == .GET
                ? server.respond(to: request.uri)
                : (.methodNotAllowed, "text/plain", Array("only GET\n".utf8))
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: "\(body.count)")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                          promise: nil)
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            let keepAlive = request.isKeepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
