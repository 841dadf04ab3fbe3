import Foundation
import Synchronization

/// Limits how many tasks do something at once; waiters resume in order. A task cancelled while it waits
/// stops waiting: `acquire` throws `CancellationError` and takes no permit.
public final class AsyncSemaphore: Sendable {
    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var permits: Int
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    public init(permits: Int) {
        state = Mutex(State(permits: permits))
    }

    /// Takes a permit, waiting for one if none is free. Throws `CancellationError` (holding nothing) when the
    /// task is or becomes cancelled before it gets one.
    public func acquire() async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Decided under the lock that the cancellation handler takes too: either it finds this waiter
                // and resumes it, or the cancellation is already visible here.
                let ready: Bool? = state.withLock { s in
                    if Task.isCancelled { return nil }
                    if s.permits > 0 {
                        s.permits -= 1
                        return true
                    }
                    s.waiters.append(Waiter(id: id, continuation: continuation))
                    return false
                }
                switch ready {
                case true?: continuation.resume()
                case nil: continuation.resume(throwing: CancellationError())
                case false?: break
                }
            }
        } onCancel: {
            let waiting = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index).continuation
            }
            waiting?.resume(throwing: CancellationError())
        }
    }

    /// Takes a permit if one is free now, without waiting; whether it did.
    public func tryAcquire() -> Bool {
        state.withLock { s in
            guard s.permits > 0 else { return false }
            s.permits -= 1
            return true
        }
    }

    /// How many tasks wait now (for tests and diagnostics).
    public var waiting: Int { state.withLock { $0.waiters.count } }

    public func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            if s.waiters.isEmpty {
                s.permits += 1
                return nil
            }
            return s.waiters.removeFirst().continuation
        }
        next?.resume()
    }
}
