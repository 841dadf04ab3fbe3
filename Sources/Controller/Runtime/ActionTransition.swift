import Foundation
import Kube

/// A step in the life of a BackupAction or RestoreAction. `ControllerContext.transition` is the one writer of
/// an action's lifecycle: the phase, the run's identity and attempts, the timestamps, the `Running` and
/// `Complete` conditions and the event that goes with each step.
enum ActionTransition: Sendable {
    /// Waiting for something outside it (its Profile to be ready): `Pending`, no event.
    case waiting(reason: String, message: String)
    /// Waiting for a free slot (`ActionSlots`), at `position` in line.
    case queued(position: Int, message: String)
    /// Claimed by this process for run `attempt`: written with the resourceVersion it was read with, so it
    /// fails with a conflict if anyone changed the action meanwhile (two controllers never both run it).
    /// `fields` are further status fields the run starts with.
    case running(attempt: Int, reason: String, message: String, event: String, fields: [String: JSONValue])
    /// Run `attempt` stopped for a transient reason: `Pending` until `at`, then it runs again.
    case retry(attempt: Int, at: Date, reason: String, message: String)
    /// Done; `fields` hold its result.
    case succeeded(message: String, fields: [String: JSONValue])
    /// Done, and failed for `reason` (a condition reason); `fields` hold whatever result there is.
    case failed(reason: String, message: String, fields: [String: JSONValue])

    /// The status an action has after this step.
    func apply(to object: inout KubeObject, identity: String, now: Date) {
        let time = JSONValue.string(Timestamp.format(now))
        switch self {
        case .waiting(let reason, let message):
            object.phase = .pending
            Conditions.set(Condition("Running", false, reason: reason, message: message), on: &object)
        case .queued(let position, let message):
            object.phase = .queued
            object["status", "queuePosition"] = .int(Int64(position))
            Conditions.set(Condition("Running", false, reason: "Queued", message: message), on: &object)
        case .running(let attempt, let reason, let message, _, let fields):
            object.phase = .running
            object["status", "queuePosition"] = nil
            object["status", "nextAttemptTime"] = nil
            object["status", "runID"] = .string(identity)
            object["status", "attempts"] = .int(Int64(attempt))
            if object["status", "startTime"] == nil { object["status", "startTime"] = time }
            for (key, value) in fields { object["status", key] = value }
            Conditions.set(Condition("Running", true, reason: reason, message: message), on: &object)
        case .retry(let attempt, let at, let reason, let message):
            object.phase = .pending
            object["status", "runID"] = nil
            object["status", "attempts"] = .int(Int64(attempt))
            object["status", "nextAttemptTime"] = .string(Timestamp.format(at))
            Conditions.set(Condition("Running", false, reason: reason, message: message), on: &object)
        case .succeeded(let message, let fields):
            finish(&object, time: time, fields: fields)
            Conditions.set(Condition("Running", false, reason: "Completed", message: "finished"), on: &object)
            Conditions.set(Condition("Complete", true, reason: "Succeeded", message: message), on: &object)
        case .failed(let reason, let message, let fields):
            finish(&object, time: time, fields: fields)
            Conditions.set(Condition("Running", false, reason: reason, message: "stopped"), on: &object)
            Conditions.set(Condition("Complete", false, reason: reason, message: message), on: &object)
        }
    }

    private func finish(_ object: inout KubeObject, time: JSONValue, fields: [String: JSONValue]) {
        object.phase = {
            if case .succeeded = self { return .succeeded }
            return .failed
        }()
        object["status", "completionTime"] = time
        if object["status", "startTime"] == nil { object["status", "startTime"] = time }
        object["status", "queuePosition"] = nil
        object["status", "nextAttemptTime"] = nil
        if object["status", "progress"] != nil { object["status", "progress", "step"] = "done" }
        for (key, value) in fields { object["status", key] = value }
    }

    /// The event that tells `kubectl describe` about this step, if any (`previous`: the phase before it).
    func event(previous: ActionPhase) -> (warning: Bool, reason: String, message: String)? {
        switch self {
        case .waiting: return nil
        case .queued(_, let message): return previous == .queued ? nil : (false, "Queued", message)
        case .running(_, let reason, _, let event, _): return (false, reason, event)
        case .retry(_, _, let reason, let message): return (true, reason, message)
        case .succeeded(let message, _): return (false, "Succeeded", message)
        case .failed(let reason, let message, _): return (true, reason, message)
        }
    }
}

extension ControllerContext {
    /// Writes an action's next step (`ActionTransition`) and records its event. Claims (`.running`) fail on a
    /// conflict and give the slot back; waiting and queued steps are written only when they change something,
    /// and a conflict is left to the next pass; the other steps are read, changed and written again until
    /// they land.
    @discardableResult
    func transition(_ action: KubeObject, _ kind: CairnKind, to step: ActionTransition) async throws -> KubeObject {
        let now = Date()
        var written: KubeObject
        switch step {
        case .running:
            var updated = action
            step.apply(to: &updated, identity: identity, now: now)
            do {
                written = try await client.updateStatus(updated)
            } catch {
                for key in await runs.releaseSlot(action.uid ?? "") { await queue.add(key) }
                throw error
            }
        case .waiting, .queued:
            var updated = action
            step.apply(to: &updated, identity: identity, now: now)
            guard updated["status"] != action["status"] else { return action }
            written = try await client.updateStatus(updated)
        case .retry, .succeeded, .failed:
            written = try await modifyStatus(kind, action.namespace ?? "", action.name) {
                step.apply(to: &$0, identity: identity, now: now)
            }
        }
        if let event = step.event(previous: action.phase) {
            await events.record(action, warning: event.warning, reason: event.reason, message: event.message)
        }
        return written
    }
}
