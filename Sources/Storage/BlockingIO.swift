import Concurrent
import Foundation

/// Runs blocking system calls (file reads and writes, `fsync`, directory listings) off Swift's cooperative
/// thread pool, so that a slow or cold disk never stalls the CPU-bound stages of a pipeline. Every blocking
/// file operation of Cairn goes through here.
///
/// At most `width` calls run at once; callers beyond that wait (without holding a thread) for a turn, in
/// order, and a caller cancelled while it waits stops waiting. The calls run on a dispatch queue: its threads
/// are created on demand and reused, which measured lower peak memory than a fixed pool of threads.
public enum BlockingIO {
    /// Enough for a disk's queue (and a network file system's latency) to stay busy; a limit so that a
    /// stalled disk cannot make the process create a thread per waiting task.
    public static let width = max(16, 4 * ProcessInfo.processInfo.activeProcessorCount)

    private static let queue = DispatchQueue(label: "cairn.blocking-io", attributes: .concurrent)
    private static let turns = AsyncSemaphore(permits: width)

    /// Runs `body` on a thread that may block and returns its result.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await turns.acquire()
        defer { turns.release() }
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
