import Foundation
import Kube
import Logging

/// Writes `v1` Events about Cairn's objects, so `kubectl describe` and `kubectl get events` tell what
/// the controller did. Failing to write an event never fails a reconcile.
public struct EventRecorder: Sendable {
    static let resource = APIResource(group: "", version: "v1", name: "events", kind: "Event", namespaced: true)
    let client: KubeClient
    let instance: String
    let logger: Logger

    public init(client: KubeClient, instance: String, logger: Logger) {
        self.client = client
        self.instance = instance
        self.logger = logger
    }

    public func record(_ object: KubeObject, warning: Bool = false, reason: String, message: String) async {
        let now = Date()
        let namespace = object.namespace ?? "default"
        let suffix = String(UInt64(now.timeIntervalSince1970 * 1e9), radix: 16)
        var event = KubeObject(apiVersion: "v1", kind: "Event", name: "\(object.name).\(suffix)", namespace: namespace)
        event["involvedObject"] = ["apiVersion": .string(object.apiVersion), "kind": .string(object.kind),
                                   "name": .string(object.name), "namespace": .string(namespace),
                                   "uid": .string(object.uid ?? "")]
        event["reason"] = .string(reason)
        event["message"] = .string(String(message.prefix(1024)))
        event["type"] = .string(warning ? "Warning" : "Normal")
        event["source"] = ["component": "cairn-controller"]
        event["reportingComponent"] = "cairn.dev/controller"
        event["reportingInstance"] = .string(instance)
        event["firstTimestamp"] = .string(Timestamp.format(now))
        event["lastTimestamp"] = .string(Timestamp.format(now))
        event["count"] = 1
        do {
            _ = try await client.create(event, as: Self.resource, namespace: namespace)
        } catch {
            logger.debug("event.write.failed", metadata: ["k8s.namespace": "\(namespace)", "error": "\(error)"])
        }
    }
}
