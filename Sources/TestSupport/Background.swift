import Foundation
import Synchronization

/// Clean-up that a test starts and does not wait for (a `defer` cannot `await`, and holding one of the
/// cooperative pool's threads while a namespace terminates would stall the tests beside it). Each piece runs
/// on a thread of its own; the test process waits for every piece still running before it exits, so
/// nothing a test made outlives the run.
public enum Background {
    private static let pending = Mutex(0)
    private static let registered: Void = { atexit { Background.waitForAll(timeout: 300) } }()

    /// Runs `work` on a thread of its own, now, without waiting for it.
    public static func run(_ work: @escaping @Sendable () -> Void) {
        _ = registered
        pending.withLock { $0 += 1 }
        Thread.detachNewThread {
            work()
            pending.withLock { $0 -= 1 }
        }
    }

    /// Waits (at most `timeout` seconds) until no piece runs.
    public static func waitForAll(timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        while pending.withLock({ $0 }) > 0, Date() < deadline { usleep(100_000) }
    }
}
