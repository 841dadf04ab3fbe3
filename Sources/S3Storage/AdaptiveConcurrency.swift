/// How many requests may be in flight at once, adapted to what the server says (AIMD, as TCP does):
/// every success widens the window a little (by 1/window), every SlowDown halves it (at most once a
/// second, so one burst of throttling counts once). Waiters are served in arrival order.
public actor AdaptiveConcurrency {
    public let minimum: Int
    public let maximum: Int
    public private(set) var window: Double
    private var inFlight = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var lastDecrease: ContinuousClock.Instant?
    /// How often the window was halved — for tests and diagnostics.
    public private(set) var decreases = 0

    public init(initial: Int = 16, minimum: Int = 1, maximum: Int = 64) {
        self.minimum = minimum
        self.maximum = maximum
        self.window = Double(initial)
    }

    public func acquire() async {
        if inFlight < Int(window) && waiters.isEmpty {
            inFlight += 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    public enum Outcome: Sendable { case success, slowDown, failure }

    public func release(_ outcome: Outcome) {
        inFlight -= 1
        switch outcome {
        case .success:
            window = Swift.min(Double(maximum), window + 1 / window)
        case .slowDown:
            let now = ContinuousClock.now
            if lastDecrease.map({ now - $0 > .seconds(1) }) ?? true {
                window = Swift.max(Double(minimum), window / 2)
                lastDecrease = now
                decreases += 1
            }
        case .failure:
            break
        }
        while inFlight < Int(window), !waiters.isEmpty {
            inFlight += 1
            waiters.removeFirst().resume()
        }
    }
}
