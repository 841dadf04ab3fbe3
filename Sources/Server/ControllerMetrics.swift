import Foundation
import Prometheus
import Synchronization

/// The controller's metrics in Prometheus format. Labels are object kinds, results, namespaces and
/// policy names — never a location, a Secret's content or anything else from a Profile.
public final class ControllerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let leader: Gauge
    /// The newest restore point time set per `namespace/policy`: older ones (reconciled later) never win.
    let newest = Mutex<[String: Double]>([:])

    public init() {
        leader = registry.makeGauge(descriptor: metric("cairn_controller_leader", "1 while this controller holds the leader Lease and acts, else 0"))
    }

    /// An action finished: counted by kind (`backup`, `restore`) and result (`succeeded`, `failed`).
    public func actionFinished(kind: String, result: String, seconds: Double) {
        registry.makeCounter(descriptor: metric("cairn_actions_total", "Backup and restore actions finished, by kind and result"), labels: [("kind", kind), ("result", result)]).increment()
        registry.makeValueHistogram(descriptor: metric("cairn_action_duration_seconds", "How long actions ran, by kind"), labels: [("kind", kind)], buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200]).record(seconds)
    }

    /// Bytes a backup read and newly stored.
    public func backupBytes(read: Int, added: Int) {
        registry.makeCounter(descriptor: metric("cairn_backup_bytes_read_total", "Bytes of volume data read by backups"))
            .increment(by: Int64(read))
        registry.makeCounter(descriptor: metric("cairn_backup_bytes_added_total", "Bytes backups added to repositories after deduplication and compression"))
            .increment(by: Int64(added))
    }

    /// The time of the newest restore point of an application (namespace) by a policy (`""` for backups
    /// not made by a policy) — what an alert such as "not protected for 25 h" compares with `time()`.
    public func lastSuccessfulBackup(namespace: String, policy: String, time: Date) {
        let value = time.timeIntervalSince1970
        newest.withLock { known in
            guard value > known["\(namespace)/\(policy)", default: -.infinity] else { return }
            known["\(namespace)/\(policy)"] = value
            registry.makeGauge(descriptor: metric("cairn_last_successful_backup_timestamp_seconds", "Unix time of the newest restore point per application and policy"), labels: [("namespace", namespace), ("policy", policy)])
                .set(to: value)
        }
    }

    /// The application is gone (its namespace deleted): its series go too, so "not protected" alerts do not
    /// fire for what no longer exists.
    public func forget(namespace: String) {
        newest.withLock { known in
            for key in known.keys where key.hasPrefix(namespace + "/") {
                known[key] = nil
                let policy = String(key.dropFirst(namespace.count + 1))
                registry.unregisterGauge(registry.makeGauge(
                    descriptor: metric("cairn_last_successful_backup_timestamp_seconds", "Unix time of the newest restore point per application and policy"),
                    labels: [("namespace", namespace), ("policy", policy)]))
            }
            registry.unregisterGauge(registry.makeGauge(descriptor: metric("cairn_restore_points", "Restore points per application"),
                                                        labels: [("namespace", namespace)]))
        }
    }

    public func restorePoints(namespace: String, count: Int) {
        registry.makeGauge(descriptor: metric("cairn_restore_points", "Restore points per application"), labels: [("namespace", namespace)]).set(to: Double(count))
    }

    public func reconcileFailed(kind: String) {
        registry.makeCounter(descriptor: metric("cairn_reconcile_errors_total", "Reconcile passes that ended in an error and were retried"), labels: [("kind", kind)]).increment()
    }

    public func setLeader(_ isLeader: Bool) {
        leader.set(to: isLeader ? 1 : 0)
    }

    /// The exposition text.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

private func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
}
