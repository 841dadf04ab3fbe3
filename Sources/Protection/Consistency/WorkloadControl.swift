import Foundation
import Kube

/// A Deployment or StatefulSet as blueprints, hooks and `quiesce: scale` act on it: its pods, its scale,
/// waiting for it to be ready or stopped. One place for each of these, used by all of them.
public struct WorkloadRef: Sendable, Hashable, CustomStringConvertible {
    public var kind: String
    public var name: String

    public init(kind: String, name: String) {
        self.kind = kind
        self.name = name
    }

    public var resource: APIResource { kind == "StatefulSet" ? StatefulSet.resource : Deployment.resource }
    public var description: String { "\(kind)/\(name)" }
}

struct WorkloadControl: Sendable {
    let client: KubeClient
    let namespace: String

    func get(_ workload: WorkloadRef) async throws -> KubeObject {
        do {
            return try await client.get(workload.resource, workload.name, namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            throw ProtectionError(.phaseFailed, "\(workload) does not exist in namespace \(namespace)", cause: error)
        }
    }

    /// The pods a workload's selector (`matchLabels`) selects, terminating ones included.
    func pods(of workload: KubeObject) async throws -> [KubeObject] {
        let labels = KubeObject.stringMap(workload["spec", "selector", "matchLabels"])
        guard !labels.isEmpty else { return [] }
        return try await pods(selector: labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))
    }

    func pods(selector: String) async throws -> [KubeObject] {
        var options = ListOptions()
        options.labelSelector = selector
        return try await client.listAll(Pod.resource, namespace: namespace, options: options).items
            .sorted { $0.name < $1.name }
    }

    /// Sets the replica count; the annotation (when given) remembers the count to come back to.
    func scale(_ workload: WorkloadRef, to replicas: Int, remember: Int? = nil, annotation: String? = nil) async throws {
        var patch: JSONValue = ["spec": ["replicas": .int(Int64(replicas))]]
        if let annotation {
            patch["metadata"] = ["annotations": [annotation: remember.map { .string(String($0)) } ?? .null]]
        }
        _ = try await client.patch(workload.resource, workload.name, namespace: namespace, .merge(patch))
    }

    enum Condition: Sendable {
        /// Every replica ready, at the current spec.
        case ready
        /// No pod of the workload left, terminating ones included (they may still write).
        case stopped
    }

    /// Waits until the workload meets `condition`, polling; throws `.phaseFailed` when `timeout` passes.
    func wait(_ workload: WorkloadRef, _ condition: Condition, timeout: Duration, code: ProtectionError.Code = .phaseFailed) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let current = try await get(workload)
            switch condition {
            case .stopped:
                if (current["status", "replicas"]?.int ?? 0) == 0, try await pods(of: current).isEmpty { return }
            case .ready:
                let want = current["spec", "replicas"]?.int ?? 1
                let observed = (current["status", "observedGeneration"]?.int ?? 0) >= (current["metadata", "generation"]?.int ?? 0)
                let ready = current["status", "readyReplicas"]?.int ?? 0
                let total = current["status", "replicas"]?.int ?? 0
                let updated = current["status", "updatedReplicas"]?.int ?? want
                if observed, ready >= want, total == want, updated >= want {
                    // The pods themselves, not only the counters (a StatefulSet's counters lag at restore).
                    let pods = try await pods(of: current).filter { $0.deletionTimestamp == nil }
                    if pods.count == Int(want), pods.allSatisfy({ Pod($0).isReady }) { return }
                }
            }
            guard ContinuousClock.now < deadline else {
                let what = condition == .ready ? "ready (every replica)" : "stopped (no pod left)"
                throw ProtectionError(code, "\(workload) was not \(what) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
