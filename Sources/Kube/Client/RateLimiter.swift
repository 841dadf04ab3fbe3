/// Client-side rate limiting: a token bucket of `burst` requests refilled at `qps` per second, like
/// client-go's. Callers wait their turn in order; the server's own fairness (429) is handled by retries.
public actor RateLimiter {
    public let qps: Double
    public let burst: Int
    private var tokens: Double
    private var last: ContinuousClock.Instant

    public init(qps: Double, burst: Int) {
        precondition(qps > 0 && burst > 0, "rate limit must be positive")
        self.qps = qps
        self.burst = burst
        self.tokens = Double(burst)
        self.last = .now
    }

    /// Waits until one request may be sent.
    public func acquire() async throws {
        let now = ContinuousClock.now
        let elapsed = now - last
        tokens = min(Double(burst), tokens + Double(elapsed.components.seconds) * qps
                     + Double(elapsed.components.attoseconds) / 1e18 * qps)
        last = now
        tokens -= 1
        if tokens >= 0 { return }
        // In debt: wait until the debt is repaid. The reservation is made before sleeping so waiters are
        // served in arrival order.
        let wait = Duration.seconds(-tokens / qps)
        try await Task.sleep(for: wait)
    }
}
