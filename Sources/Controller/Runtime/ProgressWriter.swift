import Foundation
import Kube
import Protection
import Synchronization

/// Writes an action's progress to its status at most every two seconds, in the background.
final class ProgressWriter: Sendable {
    let context: ControllerContext
    let kind: CairnKind
    let namespace: String
    let name: String
    let state = Mutex<(latest: JSONValue?, lastWrite: ContinuousClock.Instant?, task: Task<Void, Never>?)>((nil, nil, nil))

    init(context: ControllerContext, kind: CairnKind, namespace: String, name: String) {
        self.context = context
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    func update(_ progress: ApplicationBackup.Progress) {
        update(["step": .string(progress.step), "objects": .int(Int64(progress.objects)),
                "volumes": .int(Int64(progress.volumes)), "volumesDone": .int(Int64(progress.volumesDone)),
                "bytes": .int(Int64(progress.bytes))])
    }

    /// Sets `status.progress` to `progress` (soon, not at once).
    func update(_ progress: JSONValue) {
        state.withLock { s in
            s.latest = progress
            guard s.task == nil else { return }
            let wait: Duration = s.lastWrite.map { max(.zero, .seconds(2) - (ContinuousClock.now - $0)) } ?? .zero
            s.task = Task { [self] in
                try? await Task.sleep(for: wait)
                await write()
            }
        }
    }

    func write() async {
        let progress = state.withLock { s -> JSONValue? in
            s.task = nil
            s.lastWrite = .now
            return s.latest
        }
        guard let progress else { return }
        _ = try? await context.client.patch(kind.resource, name, namespace: namespace,
                                            .merge(["status": ["progress": progress]]), subresource: "status")
    }

    /// Waits for a pending write.
    func flush() async {
        let task = state.withLock { $0.task }
        await task?.value
    }
}
