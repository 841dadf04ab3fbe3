import Concurrent
import Foundation
import Testing

@Suite("Concurrent: bounded fan-out and ordered windows")
struct BoundedTests {
    /// Counts how many `work` calls run at once.
    final class Gauge: Sendable {
        let state = Locked((now: 0, most: 0))
        func enter() { state.withLock { $0.now += 1; $0.most = max($0.most, $0.now) } }
        func leave() { state.withLock { $0.now -= 1 } }
        var most: Int { state.withLock { $0.most } }
    }

    @Test("an ordered window hands results back in emission order, never runs more than its width, and never holds more than its width")
    func orderedKeepsOrderAndBounds() async throws {
        let gauge = Gauge()
        var collected: [Int] = []
        var mostOutstanding = 0
        var emitted = 0
        try await Concurrent.ordered(width: 3, produce: { emit in
            for i in 0..<60 {
                try await emit(i)
                emitted += 1
                mostOutstanding = max(mostOutstanding, emitted - collected.count)
            }
        }, { i in
            gauge.enter()
            defer { gauge.leave() }
            // Later elements often finish first.
            try await Task.sleep(for: .milliseconds((60 - i) % 7))
            return i * 10
        }, collect: { collected.append($0) })
        #expect(collected == (0..<60).map { $0 * 10 })
        #expect(gauge.most <= 3)
        #expect(mostOutstanding <= 3, "emit waits while width results are not yet collected")
    }

    @Test("a failure in the work stops the producer and is rethrown; work still running is cancelled")
    func orderedStopsOnError() async throws {
        struct Boom: Error {}
        let cancelled = Locked(0)
        let sleeping = Locked(0)
        var emitted = 0
        await #expect(throws: Boom.self) {
            try await Concurrent.ordered(width: 4, produce: { emit in
                for i in 0..<1000 {
                    try await emit(i)
                    emitted += 1
                }
            }, { i in
                if i == 5 {
                    // Fails once later work is under way (on a loaded machine the producer may lag behind).
                    while sleeping.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(5)) }
                    throw Boom()
                }
                if i > 5 { sleeping.withLock { $0 += 1 } }
                do {
                    try await Task.sleep(for: .seconds(i < 5 ? 0 : 30))
                } catch {
                    cancelled.withLock { $0 += 1 }
                    throw error
                }
                return i
            }, collect: { _ in })
        }
        #expect(emitted < 20, "the producer stops soon after the failure (\(emitted) emitted)")
        #expect(cancelled.withLock { $0 } >= 1, "work still waiting was cancelled")
    }

    @Test("a failure in the producer is rethrown after nothing else is collected")
    func orderedProducerError() async throws {
        struct Unreadable: Error {}
        var collected: [Int] = []
        await #expect(throws: Unreadable.self) {
            try await Concurrent.ordered(width: 2, produce: { emit in
                try await emit(1)
                try await emit(2)
                throw Unreadable()
            }, { $0 }, collect: { collected.append($0) })
        }
        #expect(collected.allSatisfy { [1, 2].contains($0) })
    }
}
