import Foundation
import Synchronization

/// Limits how many tasks do something at once; waiters resume in order.
public final class AsyncSemaphore: Sendable {
    private struct State {
        var permits: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    public init(permits: Int) {
        state = Mutex(State(permits: permits))
    }

    public func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.permits > 0 {
                    s.permits -= 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    public func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.permits += 1
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
