import Concurrent
import Dispatch
import Foundation
import Storage
import Testing

@Suite("BlockingIO")
struct BlockingIOTests {
    /// Reads waiting for a cold disk must not hold the threads that hash and decrypt: on Linux a concurrent
    /// dispatch queue is served by the cooperative pool's own threads (one per core), and a cold restore
    /// then spent a third of its CPU time idle.
    @Test("calls that block leave every core's thread to the cooperative pool")
    func blockedCallsLeaveCoresFree() async throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let blockers = min(BlockingIO.width, 2 * cores + 2)
        let gate = DispatchSemaphore(value: 0)
        let started = Locked(0)
        // However the test goes, the blocked calls are let go after 10 s: a failure is slow, never a hang.
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 10)
            for _ in 0..<blockers { gate.signal() }
        }
        let clock = ContinuousClock()
        let begin = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<blockers {
                group.addTask {
                    try await BlockingIO.run {
                        started.withLock { $0 += 1 }
                        gate.wait()
                    }
                }
            }
            while started.withLock({ $0 }) < blockers, clock.now - begin < .seconds(10) {
                try await Task.sleep(for: .milliseconds(2))
            }
            let allStarted = clock.now - begin
            // CPU work for every core while all those calls block.
            let sums = await withTaskGroup(of: Int.self) { cpu in
                for n in 0..<cores {
                    cpu.addTask {
                        var x = n
                        for i in 0..<2_000_000 { x = x &* 31 &+ i }
                        return x
                    }
                }
                return await cpu.reduce(into: [Int]()) { $0.append($1) }
            }
            let computed = clock.now - begin
            for _ in 0..<blockers { gate.signal() }
            try await group.waitForAll()
            #expect(sums.count == cores)
            #expect(allStarted < .seconds(3), "only some blocking calls ran at once: \(allStarted)")
            #expect(computed < .seconds(3), "the cooperative pool waited for blocked calls: \(computed)")
        }
    }
}
