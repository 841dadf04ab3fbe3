import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay on 127.0.0.1 in front of a real server, for fault injection: `dropAll()` cuts every
/// relayed connection at once (as a network failure or a restarted load balancer would), `refuse` makes
/// new connections fail. The bytes themselves pass untouched, so TLS still ends at the real server.
public final class TCPProxy: @unchecked Sendable {
    public let port: Int
    private let targetHost: String
    private let targetPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var open: Set<Int32> = []
    private var accepted = 0
    private var refused = 0
    private var stopped = false
    private var refusing = false
    private var loseNext = false
    private var coalescing = false
    /// Upstream descriptors whose answers are being swallowed.
    private var muted: Set<Int32> = []
    /// Descriptors whose reading pump has ended, waiting for the other direction to end too.
    private var finished: Set<Int32> = []

    public init(targetHost: String, targetPort: Int) throws {
        self.targetHost = targetHost
        self.targetPort = targetPort
        (listener, port) = try Loopback.listen(backlog: 64)
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Connections accepted so far.
    public var connectionsAccepted: Int { lock.withLock { accepted } }

    /// Connections closed at once because `refuse` was set.
    public var refusedConnections: Int { lock.withLock { refused } }

    /// Connections currently relayed.
    public var openConnections: Int { lock.withLock { open.count / 2 } }

    /// When true, new connections are accepted and closed at once.
    public var refuse: Bool {
        get { lock.withLock { refusing } }
        set { lock.withLock { refusing = newValue } }
    }

    /// The next request sent through the relay reaches the server, but its answer never comes back: the
    /// connection is cut half a second later. What a client sees when a connection dies mid-request.
    public func loseNextResponse() {
        lock.withLock { loseNext = true }
    }

    /// When true, what the server sends is held back briefly and delivered in one write, so a client sees an
    /// answer and whatever followed it (e.g. a 101 and the first WebSocket frames) in a single read.
    public var coalesceResponses: Bool {
        get { lock.withLock { coalescing } }
        set { lock.withLock { coalescing = newValue } }
    }

    /// Cuts every relayed connection (both directions, both ends).
    public func dropAll() {
        // Under the lock: a descriptor in `open` is not closed (and so not reused) meanwhile.
        lock.withLock {
            for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Stops accepting and cuts every connection. Idempotent: the listener is closed exactly once —
    /// a second close (say from `deinit` after an explicit `stop()`) would close whatever socket the
    /// process opened since under the same descriptor number, such as one of SwiftNIO's.
    public func stop() {
        let first: Bool = lock.withLock {
            if stopped { return false }
            stopped = true
            for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
            return true
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let (isStopped, isRefusing) = lock.withLock { (stopped, refusing) }
            if isStopped { close(client); return }
            if isRefusing {
                lock.withLock { refused += 1 }
                close(client)
                continue
            }
            guard let upstream = connectTarget() else { close(client); continue }
            lock.withLock {
                accepted += 1
                open.insert(client)
                open.insert(upstream)
            }
            Thread.detachNewThread { [self] in pump(from: client, to: upstream, clientSide: true) }
            Thread.detachNewThread { [self] in pump(from: upstream, to: client, clientSide: false) }
        }
    }

    private func connectTarget() -> Int32? {
        Loopback.connect(targetHost, port: targetPort)
    }

    private func pump(from source: Int32, to destination: Int32, clientSide: Bool) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if !clientSide, lock.withLock({ muted.contains(source) }) { continue }
            if !clientSide, coalesceResponses {
                usleep(300_000)
                while n < buffer.count {
                    let more = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress! + n, $0.count - n, Int32(MSG_DONTWAIT)) }
                    if more <= 0 { break }
                    n += more
                }
            }
            if clientSide {
                let lose = lock.withLock {
                    guard loseNext else { return false }
                    loseNext = false
                    muted.insert(destination)
                    return true
                }
                if lose {
                    Thread.detachNewThread { [self] in
                        usleep(500_000)
                        lock.withLock {
                            if open.contains(source) { shutdown(source, Int32(SHUT_RDWR)) }
                            if open.contains(destination) { shutdown(destination, Int32(SHUT_RDWR)) }
                        }
                    }
                }
            }
            var sent = 0
            while sent < n {
                let w = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { sent = -1; break }
                sent += w
            }
            if sent < 0 { break }
        }
        // The last pump of a connection closes both descriptors, under the lock: until then the other
        // pump may still write to them, and no one may shut down a number the process reused.
        lock.withLock {
            shutdown(source, Int32(SHUT_RDWR))
            shutdown(destination, Int32(SHUT_RDWR))
            if finished.remove(destination) != nil {
                for fd in [source, destination] {
                    open.remove(fd)
                    muted.remove(fd)
                    close(fd)
                }
            } else {
                finished.insert(source)
            }
        }
    }
}
