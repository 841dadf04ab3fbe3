import Foundation

/// Runs blocking system calls (file reads, writes, `fsync`) off Swift's cooperative thread pool, so
/// that a slow disk never stalls the CPU-bound stages of a pipeline.
public enum BlockingIO {
    private static let queue = DispatchQueue(label: "cairn.blocking-io", attributes: .concurrent)

    /// Runs `body` on a thread that may block and returns its result.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
