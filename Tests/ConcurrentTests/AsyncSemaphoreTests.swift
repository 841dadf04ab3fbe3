import Foundation
import Concurrent
import TestSupport
import Testing

@Suite("AsyncSemaphore")
struct AsyncSemaphoreTests {
    @Test("a task cancelled while waiting stops waiting and takes no permit; the others go on in order")
    func cancellation() async throws {
        let semaphore = AsyncSemaphore(permits: 1)
        try await semaphore.acquire()
        let order = Locked<[String]>([])
        let waiting = Task {
            do {
                try await semaphore.acquire()
                order.withLock { $0.append("cancelled one got a permit") }
                semaphore.release()
            } catch is CancellationError {
                order.withLock { $0.append("cancelled") }
            }
        }
        let next = Task {
            try await semaphore.acquire()
            order.withLock { $0.append("next") }
            semaphore.release()
        }
        try await eventually("both tasks to wait", timeout: .seconds(30)) { semaphore.waiting == 2 }
        waiting.cancel()
        try await waiting.value
        #expect(order.withLock { $0 } == ["cancelled"])
        semaphore.release()   // goes to `next`, not to the cancelled waiter
        try await next.value
        #expect(order.withLock { $0 } == ["cancelled", "next"])
        // Every permit is back: two acquisitions in a row succeed at once.
        try await semaphore.acquire()
        semaphore.release()

        // Already cancelled before asking: no wait, no permit.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await semaphore.acquire()
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        try await semaphore.acquire()
        semaphore.release()
    }
}
