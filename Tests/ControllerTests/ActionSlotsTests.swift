import Testing
@testable import Controller

@Suite("Action slots: caps in all and per namespace, a fair line, places that are told")
struct ActionSlotsTests {
    func waiter(_ uid: String, _ namespace: String, _ created: String) -> ActionSlots.Waiter {
        ActionSlots.Waiter(uid: uid, namespace: namespace, created: created,
                           key: ObjectKey(.backupAction, namespace, uid))
    }

    @Test("per-namespace cap queues the third action of a namespace; others' actions go on; a freed slot goes to the first in line")
    func perNamespace() {
        var slots = ActionSlots(limits: .init(total: 8, perNamespace: 2))
        #expect(slots.request(waiter("a1", "a", "2026-01-01T00:00:01Z")) == .start)
        #expect(slots.request(waiter("a2", "a", "2026-01-01T00:00:02Z")) == .start)
        guard case .wait(let position, let reason) = slots.request(waiter("a3", "a", "2026-01-01T00:00:03Z")) else {
            Issue.record("a third action of namespace a started")
            return
        }
        #expect(position == 1)
        #expect(reason.contains("namespace a"))
        #expect(slots.request(waiter("b1", "b", "2026-01-01T00:00:04Z")) == .start)
        // Asking again keeps the place; the start is idempotent for a running one.
        #expect(slots.request(waiter("a1", "a", "2026-01-01T00:00:01Z")) == .start)
        let woken = slots.release("a1")
        #expect(woken.map(\.name) == ["a3"])
        #expect(slots.request(waiter("a3", "a", "2026-01-01T00:00:03Z")) == .start)
        #expect(slots.release("nobody").isEmpty)
    }

    @Test("the cluster cap: earlier waiters take free slots first, later ones learn their place")
    func total() {
        var slots = ActionSlots(limits: .init(total: 2, perNamespace: 2))
        #expect(slots.request(waiter("x", "a", "1")) == .start)
        #expect(slots.request(waiter("y", "b", "2")) == .start)
        #expect(slots.request(waiter("z", "c", "3")) == .wait(position: 1, reason: "all 2 action slots of the cluster are taken"))
        #expect(slots.request(waiter("w", "d", "4")) == .wait(position: 2, reason: "all 2 action slots of the cluster are taken"))
        _ = slots.release("x")
        // w asks first after the release, but z came first.
        #expect(slots.request(waiter("w", "d", "4")) == .wait(position: 2, reason: "earlier actions take the free slots first"))
        #expect(slots.request(waiter("z", "c", "3")) == .start)
    }

    @Test("a waiter that stops asking (deleted meanwhile) leaves the line")
    func patience() {
        var slots = ActionSlots(limits: .init(total: 1, perNamespace: 1))
        let start = ContinuousClock.now
        #expect(slots.request(waiter("x", "a", "1"), now: start) == .start)
        _ = slots.request(waiter("gone", "b", "2"), now: start)
        _ = slots.release("x")
        // Long after, the deleted one no longer holds the line.
        #expect(slots.request(waiter("late", "c", "3"), now: start + .seconds(120)) == .start)
    }
}
