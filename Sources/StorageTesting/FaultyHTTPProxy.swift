import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP relay on loopback in front of a real server that misbehaves on purpose, at configurable rates:
/// answers 503 SlowDown without forwarding, forwards and then answers 500 (the request was executed, the
/// answer lost), resets the connection before or after forwarding, cuts the response body short, or
/// delays the answer. Decisions come from a seeded generator, so a failing run can be repeated.
public final class FaultyHTTPProxy: @unchecked Sendable {
    public struct Rates: Sendable {
        public var slowDown = 0.0
        public var serverError = 0.0
        public var reset = 0.0
        public var truncate = 0.0
        public var delay = 0.0
        /// Answer every request with a web page instead of relaying (an endpoint that is not S3).
        public var notS3 = false

        public init(slowDown: Double = 0, serverError: Double = 0, reset: Double = 0, truncate: Double = 0,
                    delay: Double = 0, notS3: Bool = false) {
            self.slowDown = slowDown
            self.serverError = serverError
            self.reset = reset
            self.truncate = truncate
            self.delay = delay
            self.notS3 = notS3
        }

        /// The same rate of every fault.
        public static func each(_ rate: Double) -> Rates {
            Rates(slowDown: rate, serverError: rate, reset: rate, truncate: rate, delay: rate)
        }
    }

    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }
    private let targetPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var rates: Rates
    private var random: UInt64
    private var counts: [String: Int] = [:]
    private var stopped = false

    public init(targetPort: Int, rates: Rates, seed: UInt64 = 1) throws {
        self.targetPort = targetPort
        self.rates = rates
        self.random = seed | 1
        (listener, port) = try Loopback.listen()
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    public func stop() {
        let first: Bool = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        if first {
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
        }
    }

    public func setRates(_ new: Rates) { lock.withLock { rates = new } }

    /// How many of each fault were injected, and `requests` in all.
    public var injected: [String: Int] { lock.withLock { counts } }

    /// Every request relayed so far, as its method and path (`GET /bucket/repo/data/…`, the query left out).
    public var requestLines: [String] { lock.withLock { lines } }
    private var lines: [String] = []

    private func roll() -> Double {
        lock.withLock {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            return Double(random % 1_000_000) / 1_000_000
        }
    }

    private func count(_ what: String) { lock.withLock { counts[what, default: 0] += 1 } }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            Thread.detachNewThread { [self] in serve(client) }
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var buffered: [UInt8] = []
        while let request = readMessage(client, &buffered, isResponse: false, method: nil) {
            count("requests")
            let line = String(decoding: request.head.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ").prefix(2)
            lock.withLock { lines.append(line.map { $0.split(separator: "?").first.map(String.init) ?? "" }.joined(separator: " ")) }
            let current = lock.withLock { rates }
            if current.notS3 {
                let page = "<html><body><h1>Welcome</h1></body></html>"
                writeAll(client, Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: \(page.utf8.count)\r\n\r\n\(page)".utf8))
                continue
            }
            if roll() < current.slowDown {
                count("slowDown")
                let body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                writeAll(client, Array("HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
                continue
            }
            let resetRoll = roll()
            if resetRoll < current.reset / 2 {
                count("resetBeforeForwarding")
                abortConnection(client)
                return
            }
            guard let response = forward(request.head, request.body, method: request.method) else {
                abortConnection(client)
                return
            }
            if resetRoll < current.reset {
                count("resetAfterForwarding")
                abortConnection(client)
                return
            }
            if roll() < current.serverError {
                count("serverError")
                let body = "<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
                writeAll(client, Array("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
                continue
            }
            if roll() < current.delay {
                count("delay")
                usleep(UInt32.random(in: 50_000...300_000))
            }
            if response.body.count > 16, roll() < current.truncate {
                count("truncate")
                writeAll(client, response.head + Array(response.body.prefix(response.body.count / 2)))
                abortConnection(client)
                return
            }
            writeAll(client, response.head + response.body)
        }
    }

    private struct Message {
        var head: [UInt8]
        var body: [UInt8]
        var method: String
    }

    /// Reads one HTTP/1.1 message (head and Content-Length body); nil at end of stream.
    private func readMessage(_ fd: Int32, _ buffered: inout [UInt8], isResponse: Bool, method: String?) -> Message? {
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            if let range = find(separator, in: buffered) { headEnd = range; break }
            guard readMore(fd, &buffered) else { return nil }
        }
        let head = Array(buffered[..<(headEnd! + 4)])
        buffered.removeFirst(headEnd! + 4)
        let text = String(decoding: head, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let firstWord = lines.first?.split(separator: " ").first.map(String.init) ?? ""
        var length = 0
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                length = Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        let status = isResponse ? Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0 : 0
        if isResponse && (method == "HEAD" || status == 204 || status == 304) { length = 0 }
        while buffered.count < length {
            guard readMore(fd, &buffered) else { return nil }
        }
        let body = Array(buffered[..<length])
        buffered.removeFirst(length)
        return Message(head: head, body: body, method: isResponse ? (method ?? "") : firstWord)
    }

    private func forward(_ head: [UInt8], _ body: [UInt8], method: String) -> Message? {
        guard let upstream = Loopback.connect(port: targetPort) else { return nil }
        defer { close(upstream) }
        writeAll(upstream, head + body)
        var buffered: [UInt8] = []
        return readMessage(upstream, &buffered, isResponse: true, method: method)
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }

    private func readMore(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            buffer.append(contentsOf: chunk[..<n])
            return true
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Closes with a TCP reset (SO_LINGER 0), as a crashed middlebox would.
    private func abortConnection(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        shutdown(fd, Int32(SHUT_RDWR))
    }
}
