import Foundation
import NIOPosix

/// Runs blocking system calls (file reads, writes, `fsync`, `rename`) off Swift's cooperative thread pool,
/// on one bounded pool of threads (swift-nio's `NIOThreadPool`), so that a slow disk never stalls the
/// CPU-bound stages of a pipeline and a burst of I/O cannot grow the process by a thread per request.
public enum BlockingIO {
    /// Threads that may block at once: enough to keep a disk queue full, few enough to stay bounded.
    public static let width = max(8, ProcessInfo.processInfo.activeProcessorCount * 4)

    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: width)
        pool.start()
        return pool
    }()

    /// Runs `body` on a thread of the pool and returns its result. Work already asked for runs even when the
    /// task is cancelled meanwhile: cleanup (removing a lock file, a temporary pack) must still happen.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.submit { state in
                switch state {
                case .active: continuation.resume(with: Result(catching: body))
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        }
    }
}
