import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// What a command run by `exec` wrote, and how it ended.
public struct ExecResult: Sendable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var exitCode: Int32

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// Output of a running command.
public enum ExecOutput: Sendable, Equatable {
    case stdout([UInt8])
    case stderr([UInt8])
}

/// A command running in a container, spoken to over the API server's WebSocket exec protocol
/// (`v4.channel.k8s.io`; `v5` when the server offers it). Every message is one binary frame whose first
/// byte is the channel: 0 stdin, 1 stdout, 2 stderr, 3 the final `Status` (with the exit code), 4 resize,
/// and with v5, 255 to close a channel.
///
/// Output is read only as fast as it is consumed (`next()`); stdin is written with `write(_:)`.
/// Closing stdin (`closeStdin()`) needs v5 (Kubernetes 1.29+): with v4 the protocol has no way to say
/// end-of-input, so a command that reads stdin to its end should be given a known length instead.
///
/// One task may read output while another writes stdin (their state is disjoint); two readers or two
/// writers at once are not allowed.
public final class ExecSession: @unchecked Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
    /// The connection's event loop: a write made from another thread is queued there, and the writer learns
    /// that the connection is full only once the loop has run it (see `write`).
    let eventLoop: any EventLoop
    /// Bytes written to stdin since the event loop last caught up with the writes.
    private var unsettled = 0
    /// The subprotocol the server chose.
    public let protocolVersion: String
    let operation: String
    private var iterator: NIOAsyncChannelInboundStream<WebSocketFrame>.AsyncIterator
    private var fragments: ByteBuffer?
    private var status: JSONValue?
    private var closed = false
    /// For diagnostics: how the stream ended.
    private var frames = 0
    private var closeFrame: String?

    init(inbound: NIOAsyncChannelInboundStream<WebSocketFrame>, outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
         eventLoop: any EventLoop, protocolVersion: String, operation: String) {
        self.iterator = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.eventLoop = eventLoop
        self.protocolVersion = protocolVersion
        self.operation = operation
    }

    /// Sends bytes to the command's stdin (in frames of at most 64 KiB), no faster than the connection takes
    /// them: at most about 1 MiB is ever waiting in this process.
    ///
    /// The channel's writer waits while the connection is full, but a write from outside the event loop is
    /// queued on the loop and the writer hears of a full connection only when the loop has run it — a sender
    /// faster than the loop (a volume read from a local repository) would queue the whole stream. So after
    /// each MiB the sender waits for the loop to catch up.
    public func write(_ bytes: some Collection<UInt8>) async throws {
        var rest = bytes[...]
        repeat {
            let piece = rest.prefix(64 * 1024)
            rest = rest.dropFirst(piece.count)
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt8(0))
            buffer.writeBytes(piece)
            try await send(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: buffer))
            unsettled += piece.count
            if unsettled >= 1 << 20 {
                unsettled = 0
                try await eventLoop.submit {}.get()
            }
        } while !rest.isEmpty
    }

    /// Signals end of input. Returns false when the protocol cannot express it (v4).
    @discardableResult
    public func closeStdin() async throws -> Bool {
        guard protocolVersion == "v5.channel.k8s.io" else { return false }
        var buffer = ByteBuffer()
        buffer.writeBytes([255, 0])
        try await send(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: buffer))
        return true
    }

    private func send(_ frame: WebSocketFrame) async throws {
        do {
            try await outbound.write(frame)
        } catch {
            throw KubeError(.transport, "the exec connection closed: \(error)", operation: operation)
        }
    }

    /// The next piece of output, or nil when the command has ended (then `exitCode()` tells how).
    public func next() async throws -> ExecOutput? {
        while !closed {
            let frame: WebSocketFrame?
            do {
                frame = try await iterator.next()
            } catch {
                if Task.isCancelled { throw KubeError(.cancelled, "cancelled", operation: operation) }
                throw KubeError(.transport, "the exec connection dropped: \(error)", operation: operation)
            }
            guard let frame else {
                closed = true
                break
            }
            frames += 1
            switch frame.opcode {
            case .binary, .text, .continuation:
                var data = frame.unmaskedData
                if frame.opcode != .continuation { fragments = nil }
                if !frame.fin {
                    if fragments == nil { fragments = data } else { fragments!.writeBuffer(&data) }
                    continue
                }
                if var pending = fragments {
                    pending.writeBuffer(&data)
                    data = pending
                    fragments = nil
                }
                guard let channel = data.readInteger(as: UInt8.self) else { continue }
                let payload = Array(data.readableBytesView)
                switch channel {
                case 1 where !payload.isEmpty: return .stdout(payload)
                case 2 where !payload.isEmpty: return .stderr(payload)
                case 3 where !payload.isEmpty:
                    status = try? JSONValue(parsing: payload)
                    if status == nil {
                        status = ["status": "Failure", "message": .string(String(decoding: payload, as: UTF8.self))]
                    }
                default: continue
                }
            case .ping:
                var data = frame.unmaskedData
                let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: data.readSlice(length: data.readableBytes) ?? ByteBuffer())
                try? await outbound.write(pong)
            case .connectionClose:
                closed = true
                var data = frame.unmaskedData
                let code = data.readInteger(as: UInt16.self).map(String.init) ?? "none"
                closeFrame = "close code \(code) \(data.readString(length: data.readableBytes) ?? "")"
                let close = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: ByteBuffer())
                try? await outbound.write(close)
            default:
                continue
            }
        }
        return nil
    }

    /// How the command ended; reads (and drops) any output not yet consumed.
    ///
    /// - Throws: `KubeError` when the command could not run at all (no such executable, container not
    ///   running) — as opposed to running and exiting non-zero, which is an exit code.
    public func exitCode() async throws -> Int32 {
        while try await next() != nil {}
        guard let status else {
            throw KubeError(.transport, "the exec stream ended without the command's status (\(frames) frames, "
                            + "\(closeFrame ?? "no close frame"))", operation: operation)
        }
        if status["status"]?.string == "Success" { return 0 }
        if status["reason"]?.string == "NonZeroExitCode" {
            for cause in status["details", "causes"]?.array ?? [] where cause["reason"]?.string == "ExitCode" {
                if let code = cause["message"]?.string.flatMap(Int32.init) { return code }
            }
        }
        throw KubeError(.execFailed, status["message"]?.string ?? "the command failed to run", operation: operation)
    }
}

extension KubeClient {
    /// Runs a command in a container and collects its output and exit status.
    ///
    /// - Parameters:
    ///   - stdin: bytes for the command's standard input, or nil for none.
    ///   - timeout: the whole session's deadline.
    /// - Returns: stdout, stderr and the exit code (non-zero exit codes are results, not errors).
    /// - Throws: `KubeError` when the pod or container is not there, the user may not exec, the command
    ///   cannot be started (`execFailed`), or the deadline passes (`timeout`).
    public func exec(pod: String, namespace: String? = nil, container: String? = nil, command: [String],
                     stdin: [UInt8]? = nil, timeout: Duration = .seconds(300)) async throws -> ExecResult {
        try await exec(pod: pod, namespace: namespace, container: container, command: command,
                       stdin: stdin != nil, timeout: timeout) { session in
            if let stdin {
                try await session.write(stdin)
                try await session.closeStdin()
            }
            var out: [UInt8] = []
            var err: [UInt8] = []
            while let piece = try await session.next() {
                switch piece {
                case .stdout(let bytes): out += bytes
                case .stderr(let bytes): err += bytes
                }
            }
            return ExecResult(stdout: out, stderr: err, exitCode: try await session.exitCode())
        }
    }

    /// Runs a command in a container and hands the live session to `body`.
    public func exec<T: Sendable>(pod: String, namespace: String? = nil, container: String? = nil, command: [String],
                                  stdin: Bool = false, timeout: Duration = .seconds(300),
                                  _ body: @escaping @Sendable (ExecSession) async throws -> T) async throws -> T {
        guard !command.isEmpty else { throw KubeError(.invalid, "exec needs a command") }
        let ns = namespace ?? connection.namespace
        var query: [(String, String)] = command.map { ("command", $0) }
        query += [("stdout", "true"), ("stderr", "true")]
        if stdin { query.append(("stdin", "true")) }
        if let container { query.append(("container", container)) }
        let path = Pod.resource.path(namespace: ns, name: pod, subresource: "exec")
        let operation = "exec in pod \(pod) in namespace \(ns)"
        let request = APIRequest(method: .GET, path: path, query: query, idempotent: false, operation: operation)
        return try await withDeadline(timeout, operation: operation) {
            try await self.openWebSocket(request) { session in try await body(session) }
        }
    }

    func openWebSocket<T: Sendable>(_ request: APIRequest, _ body: @escaping @Sendable (ExecSession) async throws -> T)
        async throws -> T
    {
        if let limiter { try await limiter.acquire() }
        let authorization = try await tokens.authorization()
        let host = connection.host
        let port = connection.port
        var head = "GET \(String(url(request).dropFirst(connection.server.count - connection.basePath.count))) HTTP/1.1\r\n"
        head += "Host: \(port == 443 || port == 80 ? host : "\(host):\(port)")\r\n"
        head += "User-Agent: \(options.userAgent)\r\n"
        head += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        head += "Sec-WebSocket-Key: \(key)\r\n"
        head += "Sec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io\r\n"
        if let authorization { head += "Authorization: \(authorization)\r\n" }
        for (name, value) in actingAs?.impersonationHeaders ?? [] where !value.contains(where: \.isNewline) {
            head += "\(name): \(value)\r\n"
        }
        head += "\r\n"
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let sniHost: String? = (host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }) ? nil : host
        let requestHead = head

        // A connection that could not be made carried nothing, so trying again cannot run the command twice:
        // connecting is retried like an idempotent request (an API server slow to accept under load), for up to
        // a minute and a half whatever the client's own retry budget — an exec carries a mover's volume or a
        // blueprint's phase, minutes of work that one slow connect should not fail.
        var connecting = request
        connecting.idempotent = true
        let policy = RetryPolicy(maxAttempts: 8, baseDelay: .milliseconds(500), maxDelay: .seconds(5), budget: .seconds(90))
        let (channel, handshake) = try await withRetries(connecting, policy: policy) {
            do {
                return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(.seconds(10))
                    .connect(host: host, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            if let sslContext {
                                let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: sniHost)
                                try channel.pipeline.syncOperations.addHandler(handler)
                            }
                            let promise = channel.eventLoop.makePromise(of: String.self)
                            try channel.pipeline.syncOperations.addHandler(
                                WebSocketHandshakeHandler(request: requestHead, key: key, done: promise))
                            try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
                            try channel.pipeline.syncOperations.addHandler(
                                ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 16 << 20)))
                            let wrapped = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel)
                            return (wrapped, promise.futureResult)
                        }
                    }
            } catch {
                throw transportError(error, request)
            }
        }
        let chosen: String
        do {
            chosen = try await handshake.get()
        } catch let refusal as WebSocketHandshakeHandler.Refused {
            try? await channel.channel.close()
            // The server answered with an error instead of switching protocols. Ask again as a plain request
            // to read its Status (Forbidden, NotFound, container not running, …).
            _ = try await send(request)
            throw KubeError(.badRequest, "the API server refused to open an exec stream (HTTP \(refusal.status))",
                            operation: request.operation)
        } catch {
            try? await channel.channel.close()
            throw transportError(error, request)
        }
        let operation = request.operation
        return try await channel.executeThenClose { inbound, outbound in
            let session = ExecSession(inbound: inbound, outbound: outbound, eventLoop: channel.channel.eventLoop,
                                      protocolVersion: chosen, operation: operation)
            return try await body(session)
        }
    }

    /// Runs `operation`, cancelling it and throwing `KubeError.timeout` when `timeout` passes first.
    func withDeadline<T: Sendable>(_ timeout: Duration, operation name: String,
                                   _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw KubeError(.timeout, "did not finish within \(timeout)", operation: name)
            }
            return value
        }
    }
}

/// The client side of the WebSocket opening handshake (RFC 6455 §4), done by hand so that whatever the
/// server sends right after its 101 answer — for a short command: all its output, its status and the
/// close — is passed on to the frame decoder in the same breath, never dropped.
final class WebSocketHandshakeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Refused: Error {
        var status: Int
    }

    let request: String
    let key: String
    let done: EventLoopPromise<String>
    private var buffer = ByteBuffer()
    private var finished = false

    init(request: String, key: String, done: EventLoopPromise<String>) {
        self.request = request
        self.key = key
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if finished {
            context.fireChannelRead(data)
            return
        }
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if buffer.readableBytes > 64 * 1024 { fail(context, Refused(status: 0)) }
            return
        }
        let headLength = end.upperBound - view.startIndex
        let head = buffer.readString(length: headLength) ?? ""
        let lines = head.components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let expected = Data(Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8)))
            .base64EncodedString()
        guard status == 101, headers["sec-websocket-accept"] == expected else {
            fail(context, Refused(status: status))
            return
        }
        finished = true
        done.succeed(headers["sec-websocket-protocol"] ?? "v4.channel.k8s.io")
        // Frames that came with the answer go on to the decoder now.
        if buffer.readableBytes > 0 {
            let rest = buffer
            buffer = ByteBuffer()
            context.fireChannelRead(wrapInboundOut(rest))
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !finished {
            finished = true
            done.fail(KubeError(.transport, "the connection closed during the WebSocket handshake"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !finished {
            finished = true
            done.fail(error)
        }
        context.fireErrorCaught(error)
    }

    /// A channel closed before it was ever active (the connection failed or was closed while being set up)
    /// removes its handlers without `channelInactive`: the handshake's promise must still be completed.
    func handlerRemoved(context: ChannelHandlerContext) {
        if !finished {
            finished = true
            done.fail(KubeError(.transport, "the connection closed before the WebSocket handshake finished"))
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        finished = true
        done.fail(error)
        context.close(promise: nil)
    }
}
