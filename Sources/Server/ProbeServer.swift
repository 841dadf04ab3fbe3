import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// What the probes report: ready once the controller either leads with its watches started or stands by
/// as a healthy follower; alive unless a part that must make progress is stuck — a worker in one reconcile
/// pass for longer than a pass may take, a watch that has heard nothing (not even a bookmark) for longer
/// than the server's watch timeout. The kubelet then restarts the controller.
public final class ProbeState: Sendable {
    private let state = Mutex<(ready: Bool, reason: String)>((false, "starting"))
    private let beats = Mutex<[String: (last: ContinuousClock.Instant, limit: Duration)]>([:])

    public init() {}

    public func set(ready: Bool, reason: String) {
        state.withLock { $0 = (ready, reason) }
    }

    public var readiness: (ready: Bool, reason: String) { state.withLock { $0 } }

    /// `part` made progress now; it is stuck if it makes none within `limit`.
    public func beat(_ part: String, limit: Duration, now: ContinuousClock.Instant = .now) {
        beats.withLock { $0[part] = (now, limit) }
    }

    /// `part` is idle (or gone): nothing to watch.
    public func rest(_ part: String) {
        beats.withLock { $0[part] = nil }
    }

    /// Alive, or which parts are stuck and for how long.
    public func liveness(now: ContinuousClock.Instant = .now) -> (alive: Bool, reason: String) {
        let stuck = beats.withLock { beats in
            beats.filter { now - $0.value.last > $0.value.limit }
                .map { "\($0.key) for \((now - $0.value.last).components.seconds) s" }.sorted()
        }
        return stuck.isEmpty ? (true, "ok") : (false, "stuck: " + stuck.joined(separator: ", "))
    }
}

/// The controller's HTTP endpoints: `/metrics` (Prometheus text format, for authorized scrapers only:
/// `MetricsAuthorizer`), `/healthz`, `/readyz` (open: the kubelet probes them).
public final class ProbeServer: Sendable {
    let metrics: ControllerMetrics
    let probes: ProbeState
    let authorizer: MetricsAuthorizer?
    let logger: Logger

    /// - Parameter authorizer: who may read `/metrics`; nil serves it to anyone (tests, local runs).
    public init(metrics: ControllerMetrics, probes: ProbeState, authorizer: MetricsAuthorizer?, logger: Logger) {
        self.metrics = metrics
        self.probes = probes
        self.authorizer = authorizer
        self.logger = logger
    }

    /// Serves `host:port` until the task is cancelled.
    public func run(host: String, port: Int) async throws {
        try await HTTPEndpoint(name: "probes", maxBody: 0, tls: nil, logger: logger) { [self] request in
            guard request.method == .GET else { return .text(.methodNotAllowed, "only GET\n") }
            if request.path == "/metrics", let authorizer {
                switch await authorizer.verdict(authorization: request.headers.first(name: "Authorization")) {
                case .allowed: break
                case .unauthenticated:
                    return .text(.unauthorized, "send a bearer token of an identity allowed to get /metrics (ClusterRole cairn-metrics-reader)\n")
                case .forbidden(let why):
                    return .text(.forbidden, "\(why)\n")
                }
            }
            let (status, type, body) = respond(to: request.path)
            return HTTPEndpoint.Response(status: status, contentType: type, body: body)
        }.run(host: host, port: port)
    }

    func respond(to path: String) -> (HTTPResponseStatus, String, [UInt8]) {
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
        case "/healthz", "/livez":
            let (alive, reason) = probes.liveness()
            return (alive ? .ok : .serviceUnavailable, "text/plain", Array("\(reason)\n".utf8))
        case "/readyz":
            let (ready, reason) = probes.readiness
            return (ready ? .ok : .serviceUnavailable, "text/plain", Array("\(reason)\n".utf8))
        default:
            return (.notFound, "text/plain", Array("not found; try /metrics, /healthz or /readyz\n".utf8))
        }
    }
}
