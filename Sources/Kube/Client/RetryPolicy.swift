/// When a failed request is sent again. Pure decisions, tested without a server.
///
/// - 429 Too Many Requests, and any answer with Retry-After, is retried for every verb: the server did not
///   execute the request.
/// - 5xx, timeouts and connection failures are retried only for idempotent requests (GET, PUT with a
///   resourceVersion, DELETE, server-side apply): a POST that may have been executed is not repeated.
/// - Waits grow exponentially with full jitter, honour `Retry-After`, and stop when `maxAttempts` or the
///   time `budget` is spent; the last error is then returned unchanged.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    public var budget: Duration

    public init(maxAttempts: Int = 6, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5),
                budget: Duration = .seconds(60)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.budget = budget
    }

    public static let none = RetryPolicy(maxAttempts: 1)

    public enum Decision: Equatable, Sendable {
        case retry(after: Duration)
        case fail
    }

    /// - Parameters:
    ///   - attempt: 1 for the first failure.
    ///   - elapsed: time since the first attempt started.
    ///   - random: a number in [0, 1) for jitter.
    public func decide(after error: KubeError, attempt: Int, idempotent: Bool, elapsed: Duration,
                       random: Double) -> Decision {
        guard attempt < maxAttempts, error.isTransient else { return .fail }
        // The server answers 429, or a 5xx with Retry-After (e.g. admission waiting for a service-account
        // token), only for requests it did not execute: those are safe to repeat whatever the verb.
        let serverAskedForRetry = error.code == .tooManyRequests || (error.retryAfter != nil && error.httpStatus != nil)
        if !serverAskedForRetry && !idempotent { return .fail }
        var delay = min(maxDelay, baseDelay * Int(1 << min(attempt - 1, 20)))
        delay = delay * random
        if let after = error.retryAfter {
            delay = max(delay, min(Duration.seconds(after), maxDelay * 2))
        }
        guard elapsed + delay < budget else { return .fail }
        return .retry(after: delay)
    }
}
