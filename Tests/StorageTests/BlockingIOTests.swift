import Concurrent
import Dispatch
import Foundation
import Storage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("BlockingIO")
struct BlockingIOTests {
    /// Reads waiting for a cold disk must not hold the threads that hash and decrypt: on Linux a concurrent
    /// dispatch queue is served by the cooperative pool's own threads (one per core), and a cold restore
    /// then spent a third of its CPU time idle. The property, checked without timing (other suites run
    /// meanwhile, and may hold most of BlockingIO's turns for a while): no blocking call runs on a thread
    /// that runs Swift tasks.
    @Test("calls that block run on threads of their own, never on the cooperative pool's")
    func blockedCallsLeaveCoresFree() async throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let blockers = min(BlockingIO.width, 2 * cores + 2)
        let gate = DispatchSemaphore(value: 0)
        let blocking = Locked<[UInt]>([])
        // The blocked calls are let go after 10 s at most: when other suites hold the turns, the calls that
        // could not start by then run one after another, still on BlockingIO's threads.
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 10)
            for _ in 0..<blockers { gate.signal() }
        }
        var pool = await Self.poolThreads(count: 8 * cores)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<blockers {
                group.addTask {
                    try await BlockingIO.run {
                        blocking.withLock { $0.append(UInt(pthread_self())) }
                        gate.wait()
                    }
                }
            }
            let clock = ContinuousClock()
            let begin = clock.now
            while blocking.withLock({ $0.count }) < blockers, clock.now - begin < .seconds(10) {
                try await Task.sleep(for: .milliseconds(2))
            }
            // Swift tasks while every call blocks.
            pool.formUnion(await Self.poolThreads(count: 8 * cores))
            for _ in 0..<blockers { gate.signal() }
            try await group.waitForAll()
        }
        let threads = blocking.withLock { $0 }
        #expect(threads.count == blockers)
        #expect(pool.isDisjoint(with: threads), "a blocking call ran on a thread of the cooperative pool")
    }

    /// The threads that ran `count` Swift tasks.
    static func poolThreads(count: Int) async -> Set<UInt> {
        await withTaskGroup(of: UInt.self) { group in
            for n in 0..<count {
                group.addTask {
                    var x = n
                    for i in 0..<10_000 { x = x &* 31 &+ i }
                    return x == 0 ? 0 : UInt(pthread_self())
                }
            }
            return await group.reduce(into: Set<UInt>()) { $0.insert($1) }
        }
    }
}
